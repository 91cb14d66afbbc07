//! The decision for one event: inspect, decide, apply under the retry policy, confirm, report.
//!
//! - `mod.rs`: the enforcer of one place, the per-event state ([`EventRun`]), the paced and
//!   retried calls, the waits, and the mandated key's resolution;
//! - `drive.rs`: the one decision loop both services go through;
//! - `kinesis.rs`, `firehose.rs`: each service's pure judgements of what it reads;
//! - `gate.rs`: the checks before the first write (exemption tag, report mode, flapping ledger);
//! - `report.rs`: the outcome, the reason and the IaC advice, from what the event decided.

mod drive;
mod firehose;
mod gate;
mod kinesis;
mod report;

use crate::aws::Aws;
use crate::aws::error::{AwsError, quota};
use crate::config::{Config, Mode};
use crate::model::caller::Tools;
use crate::model::event::Trigger;
use crate::model::exemption::ExemptTag;
use crate::model::key::{KeyInfo, MandatedKey};
use crate::model::outcome::{InitialState, Outcome, Report};
use crate::model::resource::{Resource, Service};
use crate::policy::ratelimit::{Operation, RateLimiter};
use crate::policy::retry::{self, CallError, RandomSource, RetryDecision, RetryPolicy, RetryState};
use crate::sync::lock;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Error names the enforcer gives to failures it detects itself.
pub mod codes {
    /// The confirm step saw a key other than the mandated one, or no encryption, after Start.
    pub const KEY_MISMATCH: &str = "Enforcer.KeyMismatch";
    /// The invocation's deadline came: the resource was still changing, a call was unanswered,
    /// or the rate limiter's next turn was after it.
    pub const DEADLINE: &str = crate::aws::error::DEADLINE_EXCEEDED;
    /// Firehose reported `ENABLING_FAILED` without a failure type.
    pub const ENABLING_FAILED: &str = "ENABLING_FAILED";
    /// The key was re-applied `FLAP_THRESHOLD` times in 24 hours; the enforcer stopped.
    pub const FLAPPING: &str = "Enforcer.Flapping";
}

const NOT_FOUND: &str = "ResourceNotFoundException";
/// The error AWS answers a write with while the resource is not ready; an inspection that finds
/// it not ready counts as this error under the retry policy.
const IN_USE: &str = "ResourceInUseException";
/// How often a tool's resource is inspected during its settle period.
const SETTLE_POLL: Duration = Duration::from_secs(2);
const KMS_NOT_FOUND: &str = "NotFoundException";

/// What the enforcer reads from the configuration, shared by the enforcers of every place.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The retry policy.
    pub policy: RetryPolicy,
    /// The exemption tag, if any.
    pub exempt_tag: Option<ExemptTag>,
    /// Enforce or report.
    pub mode: Mode,
    /// The IaC tools recognised from the caller.
    pub tools: Tools,
    /// How long a tool's resource must stay ready and unchanged before a write.
    pub settle: Duration,
    /// Re-applications per resource per 24 hours before the enforcer stops.
    pub flap_threshold: u32,
    /// How long a resolution of the mandated key is used before it is resolved again.
    pub key_ttl: Duration,
    /// The share of the per-account rate limits each container's calls are paced at.
    pub rate_share: f64,
}

impl Rules {
    /// The configuration's rules.
    pub fn new(config: &Config) -> Self {
        Self {
            policy: config.retry_policy.clone(),
            exempt_tag: config.exempt_tag.clone(),
            mode: config.mode,
            tools: config.iac_tools.clone(),
            settle: config.settle,
            flap_threshold: config.flap_threshold,
            key_ttl: config.key_ttl,
            rate_share: config.container_share(),
        }
    }
}

/// The enforcer of one account and region: the AWS port, the shared rules, and the mandated key
/// as it applies there (an alias or key id names a key in the place's own region). Built once
/// per place and container; the mandated key's resolution is cached in it.
pub struct Enforcer<A: Aws> {
    pub(crate) aws: A,
    rules: Arc<Rules>,
    key: MandatedKey,
    limiter: RateLimiter,
    resolved: Mutex<Option<Resolved>>,
}

/// The mandated key as kms:DescribeKey last resolved it, and when.
#[derive(Clone)]
struct Resolved {
    info: KeyInfo,
    at: Instant,
}

/// Why enforcement stopped short of a positive outcome.
enum Halt {
    Gone { reason: String, code: String },
    Failed { reason: String, code: String },
    Flapping { reason: String },
}

impl Halt {
    fn deadline() -> Self {
        Self::failed(
            codes::DEADLINE,
            "the invocation's time ran out while a call to AWS was still unanswered (a write in \
             flight may or may not have been received); a retry of the event inspects again"
                .into(),
        )
    }

    fn failed(code: &str, reason: String) -> Self {
        Self::Failed {
            reason,
            code: code.to_owned(),
        }
    }

    fn from_call(what: &str, err: CallError) -> Self {
        let code = err.aws().code().to_owned();
        if code == NOT_FOUND {
            return Self::Gone {
                reason: format!("{what}: {}", err.aws().message()),
                code,
            };
        }
        Self::Failed {
            reason: format!("{what} failed: {err}"),
            code,
        }
    }
}

/// A positive outcome and its reason.
#[derive(Debug)]
struct Verdict(Outcome, String);

/// One event's run: the deadline, the random source for jitter, what the event decided with
/// (the mandated key as it resolved it, the gate), the write calls made, and the waits.
struct EventRun<'a> {
    deadline: Instant,
    random: &'a mut (dyn RandomSource + Send),
    /// The IaC tool the caller is, if recognised.
    tool: Option<String>,
    /// Who left the resource off the mandated key, as the ledger records it.
    reverted_by: String,
    /// The mandated key as this event resolved it (none: not resolved, or an AWS managed alias
    /// not created yet); the report names it.
    key: Option<KeyInfo>,
    /// Write calls made (Start*Encryption attempts, refused ones included).
    writes: u32,
    /// Whether one of those writes took.
    took: bool,
    found: Option<InitialState>,
    /// The retry policy's counters for the event's write, one set per event, as if it were one
    /// Start call retried: every inspection that finds the resource not ready counts as a
    /// ResourceInUseException, exactly as a write it refused would, so the waits have the
    /// policy's delays and its bound; the write's throttling counts on its own retrier, across
    /// every write attempt of the event.
    in_use: RetryState<'a>,
    /// Inspections that found the resource not ready.
    not_ready: u32,
    /// The settle period of a tool's resource, and since when it has been seen ready.
    settle: Option<Settle>,
    /// The checks before the first write, once made.
    gate: Option<gate::Gate>,
    /// Said in the report's reason: something the outcome does not show (the ledger unread).
    note: Option<String>,
}

/// The settle period a tool's resource gets: it must stay ready and unchanged this long.
struct Settle {
    tool: String,
    period: Duration,
    quiet_since: Option<Instant>,
    /// What the last read showed (status, encryption, key): any change starts the period over.
    last_seen: String,
}

impl<'a> EventRun<'a> {
    fn new(
        rules: &'a Rules,
        trigger: &Trigger,
        deadline: Instant,
        random: &'a mut (dyn RandomSource + Send),
    ) -> Self {
        let tool = rules
            .tools
            .recognise(&trigger.caller)
            .map(|t| t.name.clone());
        let reverted_by = match (&tool, &trigger.caller.principal) {
            (Some(tool), Some(principal)) => format!("{tool} ({principal})"),
            (Some(who), None) | (None, Some(who)) => who.clone(),
            (None, None) => format!("an unknown caller ({})", trigger.event_name),
        };
        // A settle period protects the tool's next steps from a write; report mode makes none,
        // and a stream the create call itself tagged exempt gets none.
        let exempt_by_record = rules
            .exempt_tag
            .as_ref()
            .zip(trigger.tags.as_ref())
            .is_some_and(|(tag, tags)| tag.matches(tags));
        let settle = tool
            .clone()
            .filter(|_| !rules.settle.is_zero() && rules.mode != Mode::Report && !exempt_by_record)
            .map(|tool| Settle {
                tool,
                period: rules.settle,
                quiet_since: None,
                last_seen: String::new(),
            });
        Self {
            deadline,
            random,
            tool,
            reverted_by,
            key: None,
            writes: 0,
            took: false,
            found: None,
            in_use: rules.policy.start(),
            not_ready: 0,
            settle,
            gate: None,
            note: None,
        }
    }

    /// Whether the enforcer waited for the resource (not ready, or a settle period begun), so
    /// that a key found on since is someone else's doing.
    fn waited(&self) -> bool {
        self.not_ready > 0
            || self
                .settle
                .as_ref()
                .is_some_and(|s| s.quiet_since.is_some())
    }
}

impl<A: Aws> Enforcer<A> {
    /// An enforcer over `aws` with `rules`, enforcing `key` (the configuration's as it applies
    /// to this enforcer's place: [`Config::mandated_key_at`]).
    pub fn new(aws: A, rules: Arc<Rules>, key: MandatedKey) -> Self {
        Self {
            aws,
            limiter: RateLimiter::new(rules.rate_share),
            rules,
            key,
            resolved: Mutex::new(None),
        }
    }

    /// The enforcer with the mandated key already resolved as `key`, from now (none: it resolves
    /// the key itself on first use).
    pub fn with_resolution(self, key: Option<KeyInfo>) -> Self {
        if let Some(info) = key {
            *lock(&self.resolved) = Some(Resolved {
                info,
                at: Instant::now(),
            });
        }
        self
    }

    /// The share of the per-account limits this enforcer's calls are paced at.
    pub fn rate_share(&self) -> f64 {
        self.limiter.share()
    }

    /// Enforces the mandated key on the resource an event names.
    pub async fn enforce(
        &self,
        trigger: &Trigger,
        deadline: Instant,
        random: &mut (dyn RandomSource + Send),
    ) -> Report {
        let mut run = EventRun::new(&self.rules, trigger, deadline, random);
        let (resource, tags) = (&trigger.resource, trigger.tags.as_ref());
        let enforcement = async {
            match resource.service {
                Service::Kinesis => {
                    drive::drive::<A, kinesis::Kinesis>(self, resource, tags, &mut run).await
                }
                Service::Firehose => {
                    drive::drive::<A, firehose::Firehose>(self, resource, tags, &mut run).await
                }
            }
        };
        // The whole enforcement is bounded by the deadline: every wait already stops short of
        // it, but an attempt that AWS never answers runs to its own timeout (10 s), which can
        // be past it. Then the event still gets its one outcome, in time to report it. Boxed:
        // the enforcement future is deep, and callers nest it further.
        let result = tokio::time::timeout_at(deadline, Box::pin(enforcement))
            .await
            .unwrap_or_else(|_| Err(Halt::deadline()));
        report::build(trigger, run, result, &self.key)
    }

    /// One AWS call under the rate limiter (every attempt waits for its slot) and the retry
    /// policy, by `deadline`. Returns the value and the number of calls made.
    pub(crate) async fn paced<T, Fut>(
        &self,
        deadline: Instant,
        random: &mut (dyn RandomSource + Send),
        operation: Operation,
        mut call: impl FnMut() -> Fut,
    ) -> Result<(T, u32), CallError>
    where
        Fut: Future<Output = Result<T, AwsError>>,
    {
        retry::run(
            &self.rules.policy,
            deadline,
            random,
            operation.name(),
            || {
                let attempt = call();
                async move {
                    self.limiter.acquire(operation, deadline).await?;
                    attempt.await
                }
            },
        )
        .await
    }

    /// A read of the event's resource, as [`Self::paced`]; a failure ends the event: a
    /// resource not found is gone, anything else failed.
    async fn read<T, Fut>(
        &self,
        run: &mut EventRun<'_>,
        operation: Operation,
        call: impl FnMut() -> Fut,
    ) -> Result<T, Halt>
    where
        Fut: Future<Output = Result<T, AwsError>>,
    {
        self.paced(run.deadline, &mut *run.random, operation, call)
            .await
            .map(|(value, _)| value)
            .map_err(|e| Halt::from_call(operation.name(), e))
    }

    /// A write call on `resource`, made once: throttling and the other errors the policy names
    /// are retried, but `ResourceInUseException` is not, because it means someone else is
    /// changing the resource, and only a fresh inspection can tell what to do next; nor are the
    /// quotas. `Ok(true)` when the write took, `Ok(false)` when it was refused as in use. Every
    /// attempt counts in `run.writes`. The ledger records it when it took.
    async fn write<Fut>(
        &self,
        resource: &Resource,
        run: &mut EventRun<'_>,
        operation: Operation,
        call: impl FnMut() -> Fut,
    ) -> Result<bool, Halt>
    where
        Fut: Future<Output = Result<(), AwsError>>,
    {
        let mut handed_back = vec![IN_USE];
        handed_back.extend(quota::ALL);
        let mut call = call;
        let deadline = run.deadline;
        let result = retry::run_in(
            &mut run.in_use,
            deadline,
            &mut *run.random,
            operation.name(),
            &handed_back,
            || {
                let attempt = call();
                async move {
                    self.limiter.acquire(operation, deadline).await?;
                    attempt.await
                }
            },
        )
        .await;
        let attempts = match &result {
            Ok((_, n)) => *n,
            Err(e) => e.calls(),
        };
        run.writes = run.writes.saturating_add(attempts);
        match result {
            Ok(_) => {
                run.took = true;
                self.record_application(resource, run).await;
                Ok(true)
            }
            Err(CallError::HandedBack { error, .. }) if error.code() == IN_USE => Ok(false),
            Err(e) => match report::quota_advice(e.aws().code()) {
                Some(advice) => Err(Halt::failed(
                    e.aws().code(),
                    format!("{} refused: {}. {advice}", operation.name(), e.aws()),
                )),
                None => Err(Halt::from_call(operation.name(), e)),
            },
        }
    }

    /// Waits before the next inspection of a resource that is not ready (`state`), as the retry
    /// policy's ResourceInUseException retrier would wait before retrying a write it refused.
    async fn wait_until_ready(&self, run: &mut EventRun<'_>, state: &str) -> Result<(), Halt> {
        if let Some(settle) = &mut run.settle {
            // The tool is still at work: its resource's quiet period starts again.
            settle.quiet_since = None;
        }
        run.not_ready = run.not_ready.saturating_add(1);
        let seen = run.not_ready;
        match run.in_use.on_error(IN_USE, &mut *run.random) {
            RetryDecision::Retry { delay, retry, .. } => {
                if Instant::now() + delay > run.deadline {
                    return Err(Halt::failed(
                        IN_USE,
                        format!(
                            "still {state} after {seen} inspection(s); the next in {:.1}s would pass \
                             the invocation's deadline, and a retry of the event will carry on",
                            delay.as_secs_f64()
                        ),
                    ));
                }
                // Logged as the policy's other retries are: the wait is this retrier's.
                tracing::info!(
                    call = "inspect",
                    error = IN_USE,
                    state,
                    retry,
                    delay_ms = delay.as_millis() as u64,
                    "retrying"
                );
                tokio::time::sleep(delay).await;
                Ok(())
            }
            RetryDecision::Exhausted { .. } => Err(Halt::failed(
                IN_USE,
                format!(
                    "still {state} after {seen} inspection(s); the retry policy's \
                     {IN_USE} retrier is exhausted"
                ),
            )),
            RetryDecision::NotRetryable => Err(Halt::failed(
                IN_USE,
                format!(
                    "the resource is {state}, and the retry policy names no retrier for {IN_USE}, \
                     so it is not waited for"
                ),
            )),
        }
    }

    /// For a tool's resource: whether it has now been ready and unchanged for the settle period,
    /// `seen` being what the last read showed. When not, sleeps until the next inspection.
    /// Always true for other resources.
    async fn settled(&self, run: &mut EventRun<'_>, seen: String) -> Result<bool, Halt> {
        let Some(settle) = &mut run.settle else {
            return Ok(true);
        };
        let now = Instant::now();
        if settle.last_seen != seen {
            // The tool changed something (or this is the first ready read): start over.
            settle.quiet_since = Some(now);
            settle.last_seen = seen;
        }
        let end = *settle.quiet_since.get_or_insert(now) + settle.period;
        if now >= end {
            return Ok(true);
        }
        if end > run.deadline {
            return Err(Halt::failed(
                codes::DEADLINE,
                format!(
                    "{} is configuring the resource, which must stay ready and unchanged for {}s \
                     (IAC_SETTLE_SECONDS) before a write, and that does not fit in the time left; \
                     a retry of the event will carry on",
                    settle.tool,
                    settle.period.as_secs()
                ),
            ));
        }
        tokio::time::sleep(SETTLE_POLL.min(end - now)).await;
        Ok(false)
    }

    /// Sleeps `delay` before the next confirm poll, or stops when it would pass the deadline.
    async fn wait_to_confirm(
        &self,
        delay: Duration,
        run: &EventRun<'_>,
        state: &str,
    ) -> Result<(), Halt> {
        if Instant::now() + delay > run.deadline {
            return Err(Halt::failed(
                codes::DEADLINE,
                format!(
                    "still {state} when the invocation's deadline came; a retry of the event will confirm"
                ),
            ));
        }
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// The mandated key resolved with kms:DescribeKey, again once the last resolution is
    /// `KEY_CACHE_SECONDS` old: an alias re-pointed to another key takes effect in warm
    /// containers within that time. A transient failure to resolve again (throttling, an
    /// outage, the deadline) keeps the last resolution, logged; a lasting one (the alias is
    /// gone, access is denied) fails the event. `None` only for an AWS managed alias
    /// (`alias/aws/...`) that does not exist yet: AWS creates it on first use.
    async fn mandated_key(&self, run: &mut EventRun<'_>) -> Result<Option<KeyInfo>, Halt> {
        let last = lock(&self.resolved).clone();
        if let Some(last) = &last
            && last.at.elapsed() < self.rules.key_ttl
        {
            return Ok(Some(last.info.clone()));
        }
        let configured = self.key.configured();
        match self
            .paced(
                run.deadline,
                &mut *run.random,
                Operation::DescribeKey,
                || self.aws.describe_key(configured),
            )
            .await
        {
            Ok((info, _)) => {
                if let Some(last) = &last
                    && last.info.arn != info.arn
                {
                    tracing::warn!(key = configured, was = %last.info.arn, now = %info.arn, "the mandated key resolves to another key now");
                }
                *lock(&self.resolved) = Some(Resolved {
                    info: info.clone(),
                    at: Instant::now(),
                });
                Ok(Some(info))
            }
            Err(e)
                if last.is_some()
                    && !matches!(
                        e,
                        CallError::Failed {
                            exhausted: false,
                            ..
                        }
                    ) =>
            {
                let last = last.map(|l| l.info);
                tracing::warn!(key = configured, error = %e, resolved = ?last.as_ref().map(|l| &l.arn), "cannot resolve the mandated key again; using the last resolution");
                Ok(last)
            }
            Err(e) if e.aws().code() == KMS_NOT_FOUND && self.key.form().is_aws_managed_alias() => {
                tracing::info!(
                    key = configured,
                    "AWS managed key not created yet; it is created on first use"
                );
                Ok(None)
            }
            Err(e) => Err(Halt::Failed {
                code: e.aws().code().to_owned(),
                reason: format!("cannot resolve the mandated key {configured}: {e}"),
            }),
        }
    }
}
