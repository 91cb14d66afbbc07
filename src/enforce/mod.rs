//! The decision for one event: inspect, decide, apply under the retry policy, confirm, report.
//!
//! - `mod.rs`: the enforcer of one place, the per-event state (`EventRun`), the paced and
//!   retried calls;
//! - `drive.rs`: the one decision loop both services go through, with its waits and its write;
//! - `key_cache.rs`: the mandated key's resolution, cached per place;
//! - `kinesis.rs`, `firehose.rs`: each service's pure judgements of what it reads;
//! - `gate.rs`: the checks before the first write (exemption tag, report mode, flapping ledger);
//! - `report.rs`: the outcome, the reason and the IaC advice, from what the event decided.

mod drive;
mod firehose;
mod gate;
mod key_cache;
mod kinesis;
mod report;

use crate::aws::Aws;
use crate::aws::error::AwsError;
use crate::config::{Config, Mode};
use crate::model::caller::Tools;
use crate::model::event::Trigger;
use crate::model::exemption::ExemptTag;
use crate::model::key::{KeyInfo, MandatedKey};
use crate::model::outcome::{InitialState, Outcome, Report};
use crate::model::resource::Service;
use crate::policy::ratelimit::{Operation, RateLimiter};
use crate::policy::retry::{self, CallError, RandomSource, RetryPolicy, RetryState};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Error names the enforcer gives to failures it detects itself.
pub(crate) mod codes {
    /// The confirm step saw a key other than the mandated one, or no encryption, after Start.
    pub(crate) const KEY_MISMATCH: &str = "Enforcer.KeyMismatch";
    /// The invocation's deadline came: the resource was still changing, a call was unanswered,
    /// or the rate limiter's next turn was after it.
    pub(crate) const DEADLINE: &str = crate::aws::error::DEADLINE_EXCEEDED;
    /// Firehose reported `ENABLING_FAILED` without a failure type.
    pub(crate) const ENABLING_FAILED: &str = "ENABLING_FAILED";
    /// The key was re-applied `FLAP_THRESHOLD` times in 24 hours; the enforcer stopped.
    pub(crate) const FLAPPING: &str = "Enforcer.Flapping";
    /// The ledger could not be read where its check is required (`enforcer replay`).
    pub(crate) const LEDGER_UNREADABLE: &str = "Enforcer.LedgerUnreadable";
}

const NOT_FOUND: &str = "ResourceNotFoundException";

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
    /// Whether a ledger that cannot be read fails the event ([`Config::ledger_required`]).
    pub ledger_required: bool,
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
            ledger_required: config.ledger_required,
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
    resolved: Mutex<Option<key_cache::Resolved>>,
}

/// Why enforcement stopped short of a positive outcome.
enum Halt {
    Gone {
        reason: String,
        code: String,
    },
    Failed {
        reason: String,
        code: String,
    },
    Flapping {
        reason: String,
    },
    /// The resource is not ready, or in its settle period, and the event is deferred
    /// ([`Deferral::On`]): look again after this long.
    Later {
        after: Duration,
    },
}

/// Whether an event may be deferred instead of waited for in the invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deferral {
    /// Wait in the invocation (an event handled where it arrives).
    Off,
    /// Hand every wait back ([`Enforced::Later`]), carrying on from `carry` (none: the event's
    /// first handling).
    On(Option<Carry>),
}

/// What an event's handling carries to its next one when it is deferred: the waits counted
/// against the retry policy, what was found first, and the settle period begun.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Carry {
    /// The retry policy's counters of the waits for the resource ([`RetryState::counts`]).
    pub in_use: Vec<u64>,
    /// Inspections that found the resource not ready.
    pub not_ready: u32,
    /// The resource as first inspected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<InitialState>,
    /// Since when (milliseconds since the Unix epoch) the resource has been seen ready and
    /// unchanged in its settle period, and what it showed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_since_ms: Option<u64>,
    #[serde(default)]
    pub last_seen: String,
    /// Times deferred so far.
    pub deferrals: u32,
    /// When the event was first deferred (milliseconds since the Unix epoch).
    pub first_ms: u64,
}

/// The most times one event is deferred, and for how long in all: then it is waited for in the
/// invocation, as without deferral.
pub(crate) const MAX_DEFERRALS: u32 = 100;
/// See [`MAX_DEFERRALS`].
pub(crate) const MAX_DEFERRED: Duration = Duration::from_secs(3600);

/// What enforcing an event that may be deferred ends in.
#[derive(Debug)]
pub enum Enforced {
    /// Its one outcome.
    Done(Report),
    /// Deferred: to be handled again after `after`, with `carry`.
    Later {
        /// How long to wait.
        after: Duration,
        /// What the next handling carries on from.
        carry: Carry,
    },
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
    /// The key ARN the mandated key resolved to before this event found it resolving to another.
    key_changed_from: Option<String>,
    /// Whether a wait is handed back instead of made ([`Deferral::On`]), and how many were.
    defer: bool,
    deferrals: u32,
    first_deferred_ms: Option<u64>,
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
            key_changed_from: None,
            defer: false,
            deferrals: 0,
            first_deferred_ms: None,
        }
    }

    /// The run carried on from an earlier handling of the same event, deferring its waits
    /// while it may ([`MAX_DEFERRALS`], [`MAX_DEFERRED`]).
    fn resume(mut self, rules: &'a Rules, carry: Option<Carry>) -> Self {
        let now = wall_ms();
        self.defer = true;
        let Some(carry) = carry else {
            return self;
        };
        self.in_use = rules.policy.resume(&carry.in_use);
        self.not_ready = carry.not_ready;
        self.found = carry.found;
        self.deferrals = carry.deferrals;
        self.first_deferred_ms = Some(carry.first_ms);
        if let Some(settle) = &mut self.settle {
            settle.last_seen = carry.last_seen;
            settle.quiet_since = carry.quiet_since_ms.map(|since| {
                let ago = Duration::from_millis(now.saturating_sub(since));
                Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
            });
        }
        let elapsed = Duration::from_millis(now.saturating_sub(carry.first_ms));
        self.defer = carry.deferrals < MAX_DEFERRALS && elapsed < MAX_DEFERRED;
        self
    }

    /// What the next handling carries on from.
    fn carry(&self) -> Carry {
        let now = wall_ms();
        let (quiet_since_ms, last_seen) = match &self.settle {
            Some(settle) => (
                settle
                    .quiet_since
                    .map(|since| now.saturating_sub(since.elapsed().as_millis() as u64)),
                settle.last_seen.clone(),
            ),
            None => (None, String::new()),
        };
        Carry {
            in_use: self.in_use.counts(),
            not_ready: self.not_ready,
            found: self.found.clone(),
            quiet_since_ms,
            last_seen,
            deferrals: self.deferrals.saturating_add(1),
            first_ms: self.first_deferred_ms.unwrap_or(now),
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
        match Box::pin(self.enforce_with(trigger, deadline, random, Deferral::Off)).await {
            Enforced::Done(report) => report,
            // Never without deferral; were it to happen, the event is reported, not lost.
            Enforced::Later { after, .. } => Report {
                reason: Some(format!(
                    "deferred by {}s without a way to come back",
                    after.as_secs()
                )),
                error_code: Some(codes::DEADLINE.to_owned()),
                ..Report::about(trigger, Outcome::Failed)
            },
        }
    }

    /// Enforces the mandated key on the resource an event names; with [`Deferral::On`], a wait
    /// for the resource (not ready, or a tool's settle period) is handed back as
    /// [`Enforced::Later`] instead of made, so that the invocation and its place are free
    /// meanwhile.
    pub async fn enforce_with(
        &self,
        trigger: &Trigger,
        deadline: Instant,
        random: &mut (dyn RandomSource + Send),
        deferral: Deferral,
    ) -> Enforced {
        let mut run = EventRun::new(&self.rules, trigger, deadline, random);
        if let Deferral::On(carry) = deferral {
            run = run.resume(&self.rules, carry);
        }
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
        // it, but an attempt that AWS never answers runs to its own `ATTEMPT_TIMEOUT`, which can
        // be past it. Then the event still gets its one outcome, in time to report it. Boxed:
        // the enforcement future is deep, and callers nest it further.
        let result = tokio::time::timeout_at(deadline, Box::pin(enforcement))
            .await
            .unwrap_or_else(|_| Err(Halt::deadline()));
        if let Err(Halt::Later { after }) = result {
            return Enforced::Later {
                after,
                carry: run.carry(),
            };
        }
        Enforced::Done(report::build(trigger, run, result, &self.key))
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
}

/// Milliseconds since the Unix epoch, by the wall clock (what a deferred event carries: another
/// container's `Instant` means nothing here), advanced by this process's monotonic clock from
/// its first reading, so that the tests' paused clock moves it too.
fn wall_ms() -> u64 {
    static ANCHOR: std::sync::OnceLock<(u64, Instant)> = std::sync::OnceLock::new();
    let (at, then) = ANCHOR.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        (now, Instant::now())
    });
    at.saturating_add(u64::try_from(then.elapsed().as_millis()).unwrap_or(u64::MAX))
}
