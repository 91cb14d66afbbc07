//! The retry policy: a Step Functions `Retry` field (Amazon States Language), parsed, validated
//! and executed with exactly its semantics.
//!
//! - Retriers are scanned in order; the first whose `ErrorEquals` names the error applies. When
//!   that retrier is exhausted the call fails: later retriers are not consulted.
//! - Each retrier counts its own attempts.
//! - Delay before retry `n` of a retrier: `min(IntervalSeconds * BackoffRate^(n-1), MaxDelaySeconds)`,
//!   and with `JitterStrategy: FULL` a uniform random value in `[0, that]`.

use crate::aws::error::AwsError;
use serde::Deserialize;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// The error name that matches every error. It must stand alone, in the last retrier.
pub const STATES_ALL: &str = "States.ALL";
/// Every error but `States.Timeout` (as in Step Functions).
pub const STATES_TASK_FAILED: &str = "States.TaskFailed";
/// An attempt ran out of time (`Enforcer.Timeout`).
pub const STATES_TIMEOUT: &str = "States.Timeout";
/// The access-denied family.
pub const STATES_PERMISSIONS: &str = "States.Permissions";

/// The error codes `States.Permissions` stands for: every service's access-denied answer.
pub const PERMISSION_ERRORS: [&str; 5] = [
    "AccessDeniedException",
    "AccessDenied",
    "KMSAccessDeniedException",
    "UnauthorizedOperation",
    "UnauthorizedException",
];

/// Errors that no retry can fix, which even `States.ALL` does not retry (as Step Functions'
/// `States.ALL` does not retry `States.Runtime`): a request the SDK could not build, and the
/// invocation's deadline (an attempt cut off at it, or a rate-limiter turn after it).
pub const LOCAL_ERRORS: [&str; 2] = [
    crate::aws::error::transport::REQUEST_ERROR,
    crate::aws::error::DEADLINE_EXCEEDED,
];

/// The services whose Step Functions AWS-SDK integration names errors `<Service>.<Code>`
/// (`Kinesis.ResourceInUseException`): the services the enforcer calls, compared
/// case-insensitively (Step Functions writes them in PascalCase, `Kms.`, and moto in lower case).
const SERVICE_PREFIXES: [&str; 6] = [
    "kinesis",
    "firehose",
    "kms",
    "sts",
    "organizations",
    "dynamodb",
];

/// What one `ErrorEquals` name matches.
#[derive(Debug, Clone, PartialEq)]
enum Matcher {
    /// `States.ALL`: everything but [`LOCAL_ERRORS`].
    All,
    /// `States.TaskFailed`: everything but `Enforcer.Timeout` and [`LOCAL_ERRORS`].
    TaskFailed,
    /// One error code; a `<Service>.` prefix removed. Step Functions always writes the
    /// `Exception` suffix, even where the service's own code has none (`Sts.ThrottlingException`
    /// for STS's `Throttling`), so such a name also matches the code without it.
    /// `Enforcer.ServerError` also matches every HTTP 5xx answer, whatever its code: a code the
    /// policy does not name (Organizations' `ServiceException`, a new one) is still AWS's fault.
    Code(String),
    /// A set of codes (`States.Timeout`, `States.Permissions`).
    Codes(&'static [&'static str]),
}

impl Matcher {
    fn matches(&self, error: &str, server_side: bool) -> bool {
        let local = LOCAL_ERRORS.contains(&error);
        match self {
            Self::All => !local,
            Self::TaskFailed => !local && error != crate::aws::error::transport::TIMEOUT,
            Self::Code(code) => {
                error == code
                    || code
                        .strip_suffix("Exception")
                        .is_some_and(|bare| bare == error)
                    || (server_side && code == crate::aws::error::transport::SERVER_ERROR)
            }
            Self::Codes(codes) => codes.contains(&error),
        }
    }
}

const TIMEOUT_ERRORS: [&str; 1] = [crate::aws::error::transport::TIMEOUT];

/// The meaning of one `ErrorEquals` name, or why it has none here.
fn matcher(name: &str) -> Result<Matcher, String> {
    use crate::aws::error::{quota, transport};
    match name {
        STATES_ALL => return Ok(Matcher::All),
        STATES_TASK_FAILED => return Ok(Matcher::TaskFailed),
        STATES_TIMEOUT => return Ok(Matcher::Codes(&TIMEOUT_ERRORS)),
        STATES_PERMISSIONS => return Ok(Matcher::Codes(&PERMISSION_ERRORS)),
        _ => {}
    }
    if name.starts_with("States.") {
        return Err(format!(
            "{name} is not an error this function can raise; the States.* names it gives a \
             meaning to are States.ALL, States.TaskFailed, States.Timeout and States.Permissions"
        ));
    }
    if quota::ALL.contains(&name) {
        return Err(format!(
            "{name} is a used-up quota, which is never retried: a retry within the invocation \
             cannot succeed"
        ));
    }
    if name.starts_with("Enforcer.") {
        let transport = [
            transport::CONNECTION_ERROR,
            transport::TIMEOUT,
            transport::RESPONSE_ERROR,
            transport::SERVER_ERROR,
            transport::UNKNOWN_ERROR,
            transport::REQUEST_ERROR,
        ];
        if !transport.contains(&name) {
            return Err(format!(
                "{name} is not an error of an AWS call; the Enforcer.* names a call can fail with \
                 are {}",
                transport.join(", ")
            ));
        }
        return Ok(Matcher::Code(name.to_owned()));
    }
    let code = match name.split_once('.') {
        None => name,
        Some((service, code))
            if SERVICE_PREFIXES.contains(&service.to_ascii_lowercase().as_str()) =>
        {
            code
        }
        Some((service, _)) => {
            return Err(format!(
                "{name}: {service} is not a service this function calls (Kinesis, Firehose, KMS, \
                 STS, Organizations, DynamoDB)"
            ));
        }
    };
    let valid = !code.is_empty()
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && code.as_bytes()[0].is_ascii_alphabetic();
    if !valid {
        return Err(format!(
            "{name:?} is not an error name (an AWS error code such as ResourceInUseException, or <Service>.<Code>)"
        ));
    }
    Ok(Matcher::Code(code.to_owned()))
}

// Limits of the Amazon States Language.
const MAX_INTEGER: u64 = 99_999_999;
const MAX_DELAY_SECONDS_LIMIT: u64 = 31_622_400;

/// One Retrier of a Step Functions `Retry` field.
#[derive(Debug, Clone, PartialEq)]
pub struct Retrier {
    /// Error names this retrier handles, or `States.ALL`.
    pub error_equals: Vec<String>,
    /// Delay before the first retry, in seconds (default 1).
    pub interval_seconds: u64,
    /// Retries allowed (default 3; 0 means never retry).
    pub max_attempts: u64,
    /// Multiplier of the delay per retry (default 2.0).
    pub backoff_rate: f64,
    /// Cap on any one delay, in seconds.
    pub max_delay_seconds: Option<u64>,
    /// Whether delays are randomised.
    pub jitter: JitterStrategy,
    /// What each of `error_equals` matches.
    matchers: Vec<Matcher>,
}

/// `JitterStrategy` of a retrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JitterStrategy {
    /// The delay is exactly the computed backoff.
    None,
    /// The delay is uniform in `[0, computed backoff]`.
    Full,
}

/// A validated retry policy: the retriers in the order they are scanned.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    retriers: Vec<Retrier>,
}

/// Why a retry policy was rejected.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The text is not a JSON array of retrier objects with known fields.
    #[error("not a JSON array of Retriers: {0}")]
    Json(#[source] serde_json::Error),
    /// A field of one retrier is invalid.
    #[error("Retrier {index}: {reason}")]
    Retrier {
        /// Position of the retrier in the array, from 0.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetrier {
    #[serde(rename = "ErrorEquals")]
    error_equals: Vec<String>,
    #[serde(rename = "IntervalSeconds")]
    interval_seconds: Option<serde_json::Number>,
    #[serde(rename = "MaxAttempts")]
    max_attempts: Option<serde_json::Number>,
    #[serde(rename = "BackoffRate")]
    backoff_rate: Option<serde_json::Number>,
    #[serde(rename = "MaxDelaySeconds")]
    max_delay_seconds: Option<serde_json::Number>,
    #[serde(rename = "JitterStrategy")]
    jitter_strategy: Option<String>,
    /// Workflow Studio writes one; it has no effect.
    #[serde(rename = "Comment")]
    #[allow(dead_code)]
    comment: Option<String>,
}

/// The policy used when `RETRY_POLICY` is not set, printed in full in docs/retry-policy.md.
pub const DEFAULT_POLICY_JSON: &str = r#"[
  {
    "ErrorEquals": ["ResourceInUseException"],
    "IntervalSeconds": 1,
    "BackoffRate": 1.0,
    "MaxAttempts": 240
  },
  {
    "ErrorEquals": [
      "LimitExceededException",
      "ThrottlingException",
      "Throttling",
      "KMSThrottlingException",
      "ServiceUnavailableException",
      "InternalFailure",
      "ServiceUnavailable",
      "KMSInternalException",
      "DependencyTimeoutException",
      "ProvisionedThroughputExceededException",
      "RequestLimitExceeded",
      "TooManyRequestsException",
      "ServiceException",
      "Enforcer.ConnectionError",
      "Enforcer.Timeout",
      "Enforcer.ResponseError",
      "Enforcer.ServerError"
    ],
    "IntervalSeconds": 1,
    "BackoffRate": 2.0,
    "MaxDelaySeconds": 20,
    "MaxAttempts": 6,
    "JitterStrategy": "FULL"
  }
]"#;

impl RetryPolicy {
    /// Parses and validates a policy from its JSON text.
    pub fn parse(json: &str) -> Result<Self, PolicyError> {
        let raw: Vec<RawRetrier> = serde_json::from_str(json).map_err(PolicyError::Json)?;
        let count = raw.len();
        let retriers = raw
            .into_iter()
            .enumerate()
            .map(|(index, r)| validate(index, count, r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { retriers })
    }

    /// The built-in default policy ([`DEFAULT_POLICY_JSON`]).
    pub fn default_policy() -> Self {
        // The constant is part of the crate and covered by a unit test; a parse failure here is
        // a build defect, never something input can cause.
        Self::parse(DEFAULT_POLICY_JSON).unwrap_or(Self {
            retriers: Vec::new(),
        })
    }

    /// A policy that never retries.
    #[cfg(test)]
    pub(crate) fn never() -> Self {
        Self {
            retriers: Vec::new(),
        }
    }

    /// The retriers in scan order.
    pub fn retriers(&self) -> &[Retrier] {
        &self.retriers
    }

    /// Fresh attempt counters for one call.
    pub fn start(&self) -> RetryState<'_> {
        RetryState {
            policy: self,
            counts: vec![0; self.retriers.len()],
        }
    }

    /// The counters of a run that went before ([`RetryState::counts`]), carried on: the same
    /// bound holds over both. Counters of another policy (another number of retriers) start
    /// over.
    pub fn resume(&self, counts: &[u64]) -> RetryState<'_> {
        let mut state = self.start();
        if counts.len() == state.counts.len() {
            state.counts = counts.to_vec();
        }
        state
    }
}

fn validate(index: usize, count: usize, raw: RawRetrier) -> Result<Retrier, PolicyError> {
    let fail = |reason: String| PolicyError::Retrier { index, reason };
    if raw.error_equals.is_empty() {
        return Err(fail("ErrorEquals must name at least one error".into()));
    }
    let mut matchers = Vec::new();
    for name in &raw.error_equals {
        if name.is_empty() {
            return Err(fail("ErrorEquals contains an empty name".into()));
        }
        if name == STATES_ALL {
            if raw.error_equals.len() != 1 {
                return Err(fail("States.ALL must appear alone in ErrorEquals".into()));
            }
            if index + 1 != count {
                return Err(fail(
                    "States.ALL may only appear in the last Retrier".into(),
                ));
            }
        }
        matchers.push(matcher(name).map_err(fail)?);
    }
    let interval_seconds =
        integer(&raw.interval_seconds, "IntervalSeconds", 1, 1, MAX_INTEGER).map_err(fail)?;
    let max_attempts =
        integer(&raw.max_attempts, "MaxAttempts", 3, 0, MAX_INTEGER).map_err(fail)?;
    let max_delay_seconds = match &raw.max_delay_seconds {
        None => None,
        Some(_) => Some(
            integer(
                &raw.max_delay_seconds,
                "MaxDelaySeconds",
                0,
                1,
                MAX_DELAY_SECONDS_LIMIT,
            )
            .map_err(fail)?,
        ),
    };
    let backoff_rate = match &raw.backoff_rate {
        None => 2.0,
        Some(n) => match n.as_f64() {
            Some(v) if v.is_finite() && v >= 1.0 => v,
            _ => {
                return Err(fail(format!(
                    "BackoffRate must be a number >= 1.0, got {n}"
                )));
            }
        },
    };
    let jitter = match raw.jitter_strategy.as_deref() {
        None | Some("NONE") => JitterStrategy::None,
        Some("FULL") => JitterStrategy::Full,
        Some(other) => {
            return Err(fail(format!(
                "JitterStrategy must be FULL or NONE, got {other:?}"
            )));
        }
    };
    Ok(Retrier {
        matchers,
        error_equals: raw.error_equals,
        interval_seconds,
        max_attempts,
        backoff_rate,
        max_delay_seconds,
        jitter,
    })
}

fn integer(
    value: &Option<serde_json::Number>,
    field: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, String> {
    match value {
        None => Ok(default),
        Some(n) => match n.as_u64() {
            Some(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(format!(
                "{field} must be an integer from {min} to {max}, got {n}"
            )),
        },
    }
}

impl Retrier {
    /// Whether this retrier's `ErrorEquals` names `error` (an error code or transport name).
    pub fn handles(&self, error: &str) -> bool {
        self.handles_answer(error, false)
    }

    /// As [`Self::handles`], for an error AWS answered with HTTP 5xx when `server_side`.
    pub fn handles_answer(&self, error: &str, server_side: bool) -> bool {
        self.matchers.iter().any(|m| m.matches(error, server_side))
    }

    /// The delay before retry `n` (from 1) without jitter.
    pub fn backoff(&self, n: u64) -> Duration {
        let exponent = i32::try_from(n.saturating_sub(1)).unwrap_or(i32::MAX);
        let mut secs = self.interval_seconds as f64 * self.backoff_rate.powi(exponent);
        if let Some(cap) = self.max_delay_seconds {
            secs = secs.min(cap as f64);
        }
        // An uncapped backoff can overflow to infinity; no wait can exceed the function's 15
        // minutes anyway, so clamp to the language's own delay limit.
        Duration::from_secs_f64(secs.min(MAX_DELAY_SECONDS_LIMIT as f64))
    }
}

/// A source of uniform random numbers in `[0, 1)`, injected so that jittered delays can be
/// asserted exactly in tests.
pub trait RandomSource {
    /// The next value in `[0, 1)`.
    fn unit(&mut self) -> f64;
}

impl RandomSource for fastrand::Rng {
    fn unit(&mut self) -> f64 {
        self.f64()
    }
}

/// What to do after an error.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryDecision {
    /// Wait this long, then make attempt `retry` (from 1) of retrier `retrier`.
    Retry {
        /// How long to wait.
        delay: Duration,
        /// Index of the retrier that matched.
        retrier: usize,
        /// Which retry of that retrier this is, from 1.
        retry: u64,
    },
    /// The matching retrier has used all its attempts.
    Exhausted {
        /// Index of the retrier that matched.
        retrier: usize,
    },
    /// No retrier names this error.
    NotRetryable,
}

/// The attempt counters of one call under a policy.
#[derive(Debug)]
pub struct RetryState<'p> {
    policy: &'p RetryPolicy,
    counts: Vec<u64>,
}

impl RetryState<'_> {
    /// The attempts counted per retrier, to carry to a later run ([`RetryPolicy::resume`]).
    pub fn counts(&self) -> Vec<u64> {
        self.counts.clone()
    }

    /// Records an error named `error` and decides whether and when to retry.
    pub fn on_error(&mut self, error: &str, random: &mut dyn RandomSource) -> RetryDecision {
        self.decide(error, false, random)
    }

    /// As [`Self::on_error`] for a failed call, whose HTTP 5xx answers also match
    /// `Enforcer.ServerError`.
    pub fn on_call_error(
        &mut self,
        error: &AwsError,
        random: &mut dyn RandomSource,
    ) -> RetryDecision {
        self.decide(error.code(), error.is_server_side(), random)
    }

    fn decide(
        &mut self,
        error: &str,
        server_side: bool,
        random: &mut dyn RandomSource,
    ) -> RetryDecision {
        let Some(index) = self
            .policy
            .retriers
            .iter()
            .position(|r| r.handles_answer(error, server_side))
        else {
            return RetryDecision::NotRetryable;
        };
        let retrier = &self.policy.retriers[index];
        let done = &mut self.counts[index];
        if *done >= retrier.max_attempts {
            return RetryDecision::Exhausted { retrier: index };
        }
        *done += 1;
        let backoff = retrier.backoff(*done);
        let delay = match retrier.jitter {
            JitterStrategy::None => backoff,
            JitterStrategy::Full => backoff.mul_f64(random.unit().clamp(0.0, 1.0)),
        };
        RetryDecision::Retry {
            delay,
            retrier: index,
            retry: *done,
        }
    }
}

/// Why a call made under the policy did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The error is not retried, or its retrier is exhausted.
    #[error("{error} (after {calls} call(s){})", if *.exhausted { ", retries exhausted" } else { "" })]
    Failed {
        /// The last error.
        #[source]
        error: AwsError,
        /// Calls made, the failed ones included (a `Report`'s `attempts` counts only
        /// writes).
        calls: u32,
        /// Whether a retrier matched and ran out (as opposed to no retrier matching).
        exhausted: bool,
    },
    /// The error is one the caller asked to handle itself ([`run_in`]).
    #[error("{error} (after {calls} call(s))")]
    HandedBack {
        /// The error.
        #[source]
        error: AwsError,
        /// Calls made, the failed ones included (a `Report`'s `attempts` counts only
        /// writes).
        calls: u32,
    },
    /// The next delay would pass the invocation's deadline.
    #[error("{error} (after {calls} call(s)); the next retry in {:.1}s would pass the invocation's deadline", .delay.as_secs_f64())]
    Deadline {
        /// The last error.
        #[source]
        error: AwsError,
        /// Calls made, the failed ones included (a `Report`'s `attempts` counts only
        /// writes).
        calls: u32,
        /// The delay that did not fit.
        delay: Duration,
    },
}

impl CallError {
    /// The last AWS error.
    pub fn aws(&self) -> &AwsError {
        match self {
            Self::Failed { error, .. }
            | Self::HandedBack { error, .. }
            | Self::Deadline { error, .. } => error,
        }
    }

    /// Calls made, the failed ones included.
    pub fn calls(&self) -> u32 {
        match self {
            Self::Failed { calls, .. }
            | Self::HandedBack { calls, .. }
            | Self::Deadline { calls, .. } => *calls,
        }
    }
}

/// Runs `call` until it succeeds, the policy gives up, or the next delay would pass `deadline`.
/// No attempt outlives `deadline` either: one still unanswered then is cut off and fails as
/// `Enforcer.DeadlineExceeded` (its own timeout, 10 s, can be longer than the time left).
/// Returns the value and the number of calls made.
pub async fn run<T, F, Fut>(
    policy: &RetryPolicy,
    deadline: Instant,
    random: &mut (dyn RandomSource + Send),
    what: &str,
    call: F,
) -> Result<(T, u32), CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    run_in(&mut policy.start(), deadline, random, what, &[], call).await
}

/// As [`run`], counting on `state`: attempt counters that an earlier call (or the caller itself)
/// has already used, so that one logical call made in several parts has one budget. An error
/// whose code is in `handed_back` is returned at once as [`CallError::HandedBack`], without
/// consulting the policy: the caller retries it in its own way (a write refused with
/// `ResourceInUseException` is followed by a fresh inspection, never by the same write again).
pub async fn run_in<T, F, Fut>(
    state: &mut RetryState<'_>,
    deadline: Instant,
    random: &mut (dyn RandomSource + Send),
    what: &str,
    handed_back: &[&str],
    mut call: F,
) -> Result<(T, u32), CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    let mut calls = 0u32;
    loop {
        calls = calls.saturating_add(1);
        let error = match tokio::time::timeout_at(deadline, call()).await {
            Ok(Ok(value)) => return Ok((value, calls)),
            Ok(Err(error)) => error,
            Err(_) => AwsError::new(
                crate::aws::error::DEADLINE_EXCEEDED,
                format!("{what} was still unanswered when the invocation's deadline came"),
            ),
        };
        if error.is_unsent() {
            calls -= 1;
        }
        if handed_back.contains(&error.code()) {
            return Err(CallError::HandedBack { error, calls });
        }
        match state.on_call_error(&error, random) {
            RetryDecision::Retry {
                delay,
                retrier,
                retry,
            } => {
                if Instant::now() + delay > deadline {
                    return Err(CallError::Deadline {
                        error,
                        calls,
                        delay,
                    });
                }
                tracing::info!(
                    call = what,
                    error = error.code(),
                    retrier,
                    retry,
                    delay_ms = delay.as_millis() as u64,
                    "retrying"
                );
                tokio::time::sleep(delay).await;
            }
            RetryDecision::Exhausted { .. } => {
                return Err(CallError::Failed {
                    error,
                    calls,
                    exhausted: true,
                });
            }
            RetryDecision::NotRetryable => {
                return Err(CallError::Failed {
                    error,
                    calls,
                    exhausted: false,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random source that replays fixed values.
    struct Fixed(Vec<f64>);
    impl RandomSource for Fixed {
        fn unit(&mut self) -> f64 {
            if self.0.is_empty() {
                0.5
            } else {
                self.0.remove(0)
            }
        }
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn delays(
        policy: &RetryPolicy,
        errors: &[&str],
        random: &mut dyn RandomSource,
    ) -> Vec<RetryDecision> {
        let mut state = policy.start();
        errors.iter().map(|e| state.on_error(e, random)).collect()
    }

    fn reason(json: &str) -> String {
        RetryPolicy::parse(json).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_the_step_functions_defaults() {
        let policy = RetryPolicy::parse(r#"[{"ErrorEquals":["X"]}]"#).unwrap();
        let r = &policy.retriers()[0];
        assert_eq!(
            (r.interval_seconds, r.max_attempts, r.backoff_rate),
            (1, 3, 2.0)
        );
        assert_eq!(
            (r.max_delay_seconds, r.jitter),
            (None, JitterStrategy::None)
        );
        let got = delays(&policy, &["X"; 4], &mut Fixed(vec![]));
        assert_eq!(
            got,
            vec![
                RetryDecision::Retry {
                    delay: secs(1.0),
                    retrier: 0,
                    retry: 1
                },
                RetryDecision::Retry {
                    delay: secs(2.0),
                    retrier: 0,
                    retry: 2
                },
                RetryDecision::Retry {
                    delay: secs(4.0),
                    retrier: 0,
                    retry: 3
                },
                RetryDecision::Exhausted { retrier: 0 },
            ]
        );
    }

    #[test]
    fn max_delay_caps_the_backoff() {
        let policy = RetryPolicy::parse(
            r#"[{"ErrorEquals":["X"],"IntervalSeconds":3,"BackoffRate":3,"MaxDelaySeconds":20,"MaxAttempts":4}]"#,
        )
        .unwrap();
        let got: Vec<_> = delays(&policy, &["X"; 4], &mut Fixed(vec![]))
            .into_iter()
            .map(|d| match d {
                RetryDecision::Retry { delay, .. } => delay,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(got, vec![secs(3.0), secs(9.0), secs(20.0), secs(20.0)]);
    }

    #[test]
    fn full_jitter_scales_the_backoff_by_the_random_value() {
        let policy = RetryPolicy::parse(
            r#"[{"ErrorEquals":["X"],"IntervalSeconds":2,"MaxAttempts":3,"JitterStrategy":"FULL"}]"#,
        )
        .unwrap();
        let got = delays(&policy, &["X"; 3], &mut Fixed(vec![0.5, 0.0, 0.999]));
        let want = [secs(1.0), secs(0.0), secs(8.0 * 0.999)];
        for (g, w) in got.iter().zip(want) {
            let RetryDecision::Retry { delay, .. } = g else {
                panic!("{g:?}")
            };
            assert!(
                (delay.as_secs_f64() - w.as_secs_f64()).abs() < 1e-9,
                "{delay:?} != {w:?}"
            );
        }
        // With a real random source every delay stays within [0, backoff].
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..200 {
            let mut state = policy.start();
            for n in 1..=3u32 {
                let RetryDecision::Retry { delay, .. } = state.on_error("X", &mut rng) else {
                    panic!()
                };
                assert!(delay <= secs(2.0 * 2f64.powi(n as i32 - 1)));
            }
        }
    }

    #[test]
    fn first_matching_retrier_applies_and_exhaustion_does_not_fall_through() {
        let policy = RetryPolicy::parse(
            r#"[{"ErrorEquals":["A"],"MaxAttempts":1},{"ErrorEquals":["A","B"],"MaxAttempts":5},{"ErrorEquals":["States.ALL"],"MaxAttempts":1,"IntervalSeconds":7}]"#,
        )
        .unwrap();
        let got = delays(&policy, &["A", "A"], &mut Fixed(vec![]));
        assert_eq!(
            got[0],
            RetryDecision::Retry {
                delay: secs(1.0),
                retrier: 0,
                retry: 1
            }
        );
        // Retrier 0 is exhausted: the call fails even though retrier 1 also names A.
        assert_eq!(got[1], RetryDecision::Exhausted { retrier: 0 });
        let got = delays(&policy, &["Other"], &mut Fixed(vec![]));
        assert_eq!(
            got[0],
            RetryDecision::Retry {
                delay: secs(7.0),
                retrier: 2,
                retry: 1
            }
        );
    }

    #[test]
    fn each_retrier_counts_its_own_attempts() {
        let policy = RetryPolicy::parse(
            r#"[{"ErrorEquals":["A"],"MaxAttempts":2},{"ErrorEquals":["B"],"MaxAttempts":2,"IntervalSeconds":5}]"#,
        )
        .unwrap();
        let got = delays(&policy, &["A", "B", "A", "B", "A"], &mut Fixed(vec![]));
        assert_eq!(
            got,
            vec![
                RetryDecision::Retry {
                    delay: secs(1.0),
                    retrier: 0,
                    retry: 1
                },
                RetryDecision::Retry {
                    delay: secs(5.0),
                    retrier: 1,
                    retry: 1
                },
                RetryDecision::Retry {
                    delay: secs(2.0),
                    retrier: 0,
                    retry: 2
                },
                RetryDecision::Retry {
                    delay: secs(10.0),
                    retrier: 1,
                    retry: 2
                },
                RetryDecision::Exhausted { retrier: 0 },
            ]
        );
    }

    #[test]
    fn zero_attempts_never_retries_and_unmatched_is_not_retryable() {
        let policy = RetryPolicy::parse(r#"[{"ErrorEquals":["A"],"MaxAttempts":0}]"#).unwrap();
        assert_eq!(
            delays(&policy, &["A"], &mut Fixed(vec![]))[0],
            RetryDecision::Exhausted { retrier: 0 }
        );
        assert_eq!(
            delays(&policy, &["B"], &mut Fixed(vec![]))[0],
            RetryDecision::NotRetryable
        );
        assert_eq!(
            delays(&RetryPolicy::never(), &["A"], &mut Fixed(vec![]))[0],
            RetryDecision::NotRetryable
        );
    }

    #[test]
    fn a_policy_copied_from_a_state_machine_means_what_it_means_there() {
        let policy = RetryPolicy::parse(
            r#"[
              {"Comment": "Workflow Studio writes these", "ErrorEquals": ["Kinesis.ResourceInUseException", "Sts.ThrottlingException"], "MaxAttempts": 1},
              {"ErrorEquals": ["States.Timeout"], "MaxAttempts": 1},
              {"ErrorEquals": ["States.Permissions"], "MaxAttempts": 1},
              {"ErrorEquals": ["kms.KMSInternalException", "States.TaskFailed"], "MaxAttempts": 1}
            ]"#,
        )
        .unwrap();
        let first = |error: &str| {
            let mut state = policy.start();
            match state.on_error(error, &mut Fixed(vec![])) {
                RetryDecision::Retry { retrier, .. } => Some(retrier),
                _ => None,
            }
        };
        // The AWS-SDK integration's `<Service>.<Code>` is the bare code; Step Functions' own
        // `Exception` suffix also names STS's `Throttling`.
        assert_eq!(first("ResourceInUseException"), Some(0));
        assert_eq!(first("Throttling"), Some(0));
        assert_eq!(first("Enforcer.Timeout"), Some(1));
        assert_eq!(first("KMSAccessDeniedException"), Some(2));
        assert_eq!(first("AccessDeniedException"), Some(2));
        assert_eq!(first("KMSInternalException"), Some(3));
        // States.TaskFailed: every error but States.Timeout, which retrier 1 took first.
        assert_eq!(first("LimitExceededException"), Some(3));
        assert_eq!(first("Enforcer.ServerError"), Some(3));
        // No retrier, not even States.ALL, retries a request the SDK could not build.
        assert_eq!(first("Enforcer.RequestError"), None);
        let all = RetryPolicy::parse(r#"[{"ErrorEquals":["States.ALL"]}]"#).unwrap();
        let mut state = all.start();
        assert_eq!(
            state.on_error("Enforcer.RequestError", &mut Fixed(vec![])),
            RetryDecision::NotRetryable
        );
        assert!(matches!(
            state.on_error("Enforcer.Timeout", &mut Fixed(vec![])),
            RetryDecision::Retry { .. }
        ));
        let task_failed = RetryPolicy::parse(r#"[{"ErrorEquals":["States.TaskFailed"]}]"#).unwrap();
        assert_eq!(
            task_failed
                .start()
                .on_error("Enforcer.Timeout", &mut Fixed(vec![])),
            RetryDecision::NotRetryable
        );
    }

    #[test]
    fn invalid_policies_are_rejected_with_the_reason() {
        let cases = [
            (r#"{"ErrorEquals":["A"]}"#, "not a JSON array"),
            (r#"[{"ErrorEquals":[]}]"#, "at least one error"),
            (
                r#"[{"ErrorEquals":["A"],"Intervalseconds":1}]"#,
                "unknown field",
            ),
            (
                r#"[{"ErrorEquals":["A","States.ALL"]}]"#,
                "must appear alone",
            ),
            (
                r#"[{"ErrorEquals":["States.ALL"]},{"ErrorEquals":["A"]}]"#,
                "last Retrier",
            ),
            (
                r#"[{"ErrorEquals":["States.Runtime"]}]"#,
                "States.TaskFailed, States.Timeout and States.Permissions",
            ),
            (
                r#"[{"ErrorEquals":["Enforcer.KeyMismatch"]}]"#,
                "not an error of an AWS call",
            ),
            (
                r#"[{"ErrorEquals":["Enforcer.KeyChangeQuotaExceeded"]}]"#,
                "never retried",
            ),
            (
                r#"[{"ErrorEquals":["S3.NoSuchKeyException"]}]"#,
                "not a service this function calls",
            ),
            (
                r#"[{"ErrorEquals":["Rate exceeded"]}]"#,
                "is not an error name",
            ),
            (r#"[{"ErrorEquals":["A"],"Comment":7}]"#, "invalid type"),
            (
                r#"[{"ErrorEquals":["A"],"BackoffRate":0.5}]"#,
                "BackoffRate must be a number >= 1.0",
            ),
            (
                r#"[{"ErrorEquals":["A"],"MaxAttempts":-1}]"#,
                "MaxAttempts must be an integer",
            ),
            (
                r#"[{"ErrorEquals":["A"],"MaxAttempts":1.5}]"#,
                "MaxAttempts must be an integer",
            ),
            (
                r#"[{"ErrorEquals":["A"],"IntervalSeconds":0}]"#,
                "IntervalSeconds must be an integer from 1",
            ),
            (
                r#"[{"ErrorEquals":["A"],"MaxDelaySeconds":0}]"#,
                "MaxDelaySeconds must be an integer from 1",
            ),
            (
                r#"[{"ErrorEquals":["A"],"JitterStrategy":"HALF"}]"#,
                "JitterStrategy must be FULL or NONE",
            ),
        ];
        for (json, expected) in cases {
            let got = reason(json);
            assert!(
                got.contains(expected),
                "{json}: {got:?} does not mention {expected:?}"
            );
        }
        assert!(
            reason(r#"[{"ErrorEquals":["A"]},{"ErrorEquals":["B"],"BackoffRate":0}]"#)
                .starts_with("Retrier 1:")
        );
    }

    #[test]
    fn huge_backoff_does_not_overflow() {
        let policy = RetryPolicy::parse(
            r#"[{"ErrorEquals":["A"],"BackoffRate":1000,"MaxAttempts":99999999}]"#,
        )
        .unwrap();
        let mut state = policy.start();
        let mut random = Fixed(vec![]);
        let mut last = Duration::ZERO;
        for _ in 0..200 {
            let RetryDecision::Retry { delay, .. } = state.on_error("A", &mut random) else {
                panic!()
            };
            last = delay;
        }
        assert_eq!(last, Duration::from_secs(MAX_DELAY_SECONDS_LIMIT));
    }

    #[test]
    fn default_policy_waits_minutes_for_resource_in_use_and_jitters_throttling() {
        let policy = RetryPolicy::parse(DEFAULT_POLICY_JSON).unwrap();
        assert_eq!(policy, RetryPolicy::default_policy());
        let in_use = &policy.retriers()[0];
        let total: Duration = (1..=in_use.max_attempts).map(|n| in_use.backoff(n)).sum();
        assert!(
            total >= Duration::from_secs(180) && total <= Duration::from_secs(600),
            "{total:?}"
        );
        let throttling = &policy.retriers()[1];
        assert_eq!(throttling.jitter, JitterStrategy::Full);
        for code in [
            "LimitExceededException",
            "ThrottlingException",
            "Throttling",
            "KMSThrottlingException",
            "Enforcer.ConnectionError",
            "Enforcer.Timeout",
        ] {
            assert!(
                throttling.error_equals.iter().any(|e| e == code),
                "{code} not retried"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn run_stops_before_a_delay_that_would_pass_the_deadline() {
        let policy =
            RetryPolicy::parse(r#"[{"ErrorEquals":["A"],"IntervalSeconds":10,"MaxAttempts":5}]"#)
                .unwrap();
        let start = Instant::now();
        let deadline = start + Duration::from_secs(25);
        let mut calls = 0;
        let result: Result<((), u32), CallError> = run(
            &policy,
            deadline,
            &mut fastrand::Rng::with_seed(1),
            "op",
            || {
                calls += 1;
                async { Err(AwsError::new("A", "busy")) }
            },
        )
        .await;
        let err = result.unwrap_err();
        // Waits of 10 s then 20 s: the second would end at 30 s, past the 25 s deadline.
        assert!(
            matches!(err, CallError::Deadline { calls: 2, delay, .. } if delay == Duration::from_secs(20)),
            "{err:?}"
        );
        assert_eq!(calls, 2);
        assert_eq!(Instant::now() - start, Duration::from_secs(10));
        assert!(err.to_string().contains("deadline"));
    }

    #[tokio::test(start_paused = true)]
    async fn run_retries_then_succeeds_and_counts_attempts() {
        let policy = RetryPolicy::default_policy();
        let deadline = Instant::now() + Duration::from_secs(900);
        let busy = || Err(AwsError::new("ResourceInUseException", "CREATING"));
        let mut answers = vec![busy(), busy(), Ok(42)];
        let (value, attempts) = run(
            &policy,
            deadline,
            &mut fastrand::Rng::with_seed(1),
            "op",
            || {
                let next = answers.remove(0);
                async move { next }
            },
        )
        .await
        .unwrap();
        assert_eq!((value, attempts), (42, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_still_unanswered_at_the_deadline_is_cut_off_and_not_retried() {
        // Even States.ALL does not retry the deadline: no retry within the invocation can help.
        let policy =
            RetryPolicy::parse(r#"[{"ErrorEquals":["States.ALL"],"MaxAttempts":5}]"#).unwrap();
        let start = Instant::now();
        let deadline = start + Duration::from_secs(3);
        let mut calls = 0;
        let err = run(
            &policy,
            deadline,
            &mut fastrand::Rng::with_seed(1),
            "DescribeStreamSummary",
            || {
                calls += 1;
                async {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    Ok::<_, AwsError>(())
                }
            },
        )
        .await
        .unwrap_err();
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
        assert_eq!((calls, err.calls()), (1, 1));
        assert_eq!(err.aws().code(), "Enforcer.DeadlineExceeded");
        assert!(
            err.to_string().contains(
                "DescribeStreamSummary was still unanswered when the invocation's deadline came"
            ),
            "{err}"
        );
        // A refusal raised before sending (the rate limiter's) is not counted as a call.
        let err = run(
            &policy,
            deadline + Duration::from_secs(60),
            &mut fastrand::Rng::with_seed(1),
            "op",
            || async { Err::<(), _>(AwsError::unsent("Enforcer.DeadlineExceeded", "no turn")) },
        )
        .await
        .unwrap_err();
        assert_eq!(err.calls(), 0);
    }

    #[test]
    fn every_5xx_answer_matches_enforcer_server_error_whatever_its_code() {
        let policy = RetryPolicy::parse(
            r#"[{"ErrorEquals":["ResourceInUseException"],"MaxAttempts":1},
                {"ErrorEquals":["Enforcer.ServerError"],"MaxAttempts":2}]"#,
        )
        .unwrap();
        let mut random = fastrand::Rng::with_seed(1);
        let mut state = policy.start();
        // Organizations' ServiceException (HTTP 500) and a code nobody has seen yet (HTTP 503).
        for code in ["ServiceException", "BrandNewOutageException"] {
            let answered = AwsError::new(code, "try again").with_status(500);
            assert!(
                matches!(
                    state.on_call_error(&answered, &mut random),
                    RetryDecision::Retry { retrier: 1, .. }
                ),
                "{code}"
            );
        }
        assert_eq!(
            state.on_call_error(
                &AwsError::new("ServiceException", "x").with_status(500),
                &mut random
            ),
            RetryDecision::Exhausted { retrier: 1 }
        );
        // The same code answered with a 4xx is the client's fault, and not retried.
        let mut state = policy.start();
        assert_eq!(
            state.on_call_error(
                &AwsError::new("ServiceException", "x").with_status(400),
                &mut random
            ),
            RetryDecision::NotRetryable
        );
        // A code named earlier still goes to its own retrier first.
        assert!(matches!(
            state.on_call_error(
                &AwsError::new("ResourceInUseException", "x").with_status(500),
                &mut random
            ),
            RetryDecision::Retry { retrier: 0, .. }
        ));
        // The default policy retries Organizations' throttling and its 500.
        let default = RetryPolicy::default_policy();
        let mut state = default.start();
        for error in [
            AwsError::new("TooManyRequestsException", "slow down").with_status(400),
            AwsError::new("ServiceException", "internal").with_status(500),
            AwsError::new("ServiceException", "internal"),
        ] {
            assert!(
                matches!(
                    state.on_call_error(&error, &mut random),
                    RetryDecision::Retry { retrier: 1, .. }
                ),
                "{error}"
            );
        }
    }
}
