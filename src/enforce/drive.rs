//! The one decision loop, for both services: read the resource, ask the service's pure `step`
//! what it means, and do what it says (wait, settle, pass the gate, write, confirm), until an
//! outcome. Each service supplies its reads, its write and its judgements as a [`Procedure`]
//! (`kinesis.rs`, `firehose.rs`).

use super::{Enforcer, EventRun, Halt, Verdict, codes, report};
use crate::aws::Aws;
use crate::aws::error::{AwsError, quota};
use crate::model::exemption::Tags;
use crate::model::key::{KeyInfo, MandatedKey};
use crate::model::outcome::InitialState;
use crate::model::resource::{Location, Resource};
use crate::policy::ratelimit::Operation;
use crate::policy::retry::{self, CallError, RetryDecision};
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// The error AWS answers a write with while the resource is not ready; an inspection that finds
/// it not ready counts as this error under the retry policy.
const IN_USE: &str = "ResourceInUseException";
/// How often a tool's resource is inspected during its settle period.
const SETTLE_POLL: Duration = Duration::from_secs(2);

/// The first delay of the confirm step's polling while a resource is UPDATING / ENABLING.
const CONFIRM_FIRST: Duration = Duration::from_millis(250);
/// How much each confirm delay grows over the last.
const CONFIRM_GROWTH: f64 = 1.2;
/// The longest confirm delay; the deadline bounds the polling in any case.
const CONFIRM_MAX: Duration = Duration::from_secs(2);

/// What one read of a resource means, and what to do next.
#[derive(Debug)]
pub(super) enum Step {
    /// Not ready (in this state): wait as the retry policy waits for ResourceInUseException,
    /// then read again.
    Wait(String),
    /// Decided without a write.
    Done(Verdict),
    /// Someone already asked for the mandated key: only confirm.
    Confirm,
    /// Ready and off the mandated key (`was`, in words). `seen` is what the read showed, for
    /// a tool's settle period: any change starts it over.
    Apply { was: String, seen: String },
}

/// What one read after the write means.
#[derive(Debug)]
pub(super) enum Poll {
    /// Confirmed, or judged.
    Done(Verdict),
    /// Still changing (in this state): read again after the next delay.
    Pending(String),
}

/// One service's side of the loop: its calls, and the pure judgements of what it reads.
pub(super) trait Procedure: Sized + Send + Sync {
    /// What a read shows.
    type Summary: Send;
    /// The read.
    const DESCRIBE: Operation;
    /// The tag listing, for the exemption tag.
    const LIST_TAGS: Operation;
    /// The write.
    const START: Operation;

    /// Reads the resource.
    fn describe<A: Aws>(
        aws: &A,
        resource: &Resource,
    ) -> impl Future<Output = Result<Self::Summary, AwsError>> + Send;
    /// Lists the resource's tags.
    fn tags<A: Aws>(
        aws: &A,
        resource: &Resource,
    ) -> impl Future<Output = Result<Tags, AwsError>> + Send;
    /// Puts the resource on the mandated key.
    fn start<A: Aws>(
        &self,
        aws: &A,
        resource: &Resource,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// Why the resource is gone, when the read says it is being deleted.
    fn deleting(summary: &Self::Summary) -> Option<&'static str>;
    /// What the first read found, for the report.
    fn found(summary: &Self::Summary) -> InitialState;
    /// An outcome the first read decides before the mandated key is resolved.
    fn before_key(summary: &Self::Summary) -> Option<Verdict>;
    /// What the first read decides when the mandated key cannot be resolved (`why`).
    fn unresolved(
        key: &MandatedKey,
        at: &Location,
        summary: &Self::Summary,
        why: Halt,
    ) -> Result<Verdict, Halt>;
    /// The procedure for the mandated key as resolved (none: an AWS managed alias not created
    /// yet).
    fn new(key: &MandatedKey, at: &Location, mandated: Option<KeyInfo>) -> Self;
    /// What a read means; `waited`: the enforcer waited for the resource, so a key found on
    /// since is someone else's doing.
    fn step(&self, summary: &Self::Summary, waited: bool) -> Step;
    /// What a read after the write means; `took`: this event's write took, `was`: what the
    /// resource was before it.
    fn confirmed(&self, summary: &Self::Summary, took: bool, was: &str) -> Result<Poll, Halt>;
}

/// Enforces the mandated key on `resource` with the procedure `P`.
pub(super) async fn drive<A: Aws, P: Procedure>(
    enforcer: &Enforcer<A>,
    resource: &Resource,
    record_tags: Option<&Tags>,
    run: &mut EventRun<'_>,
) -> Result<Verdict, Halt> {
    let mut now = describe::<A, P>(enforcer, resource, run).await?;
    if run.found.is_none() {
        run.found = Some(P::found(&now));
    }
    if let Some(done) = P::before_key(&now) {
        return Ok(done);
    }
    let mandated = match enforcer.mandated_key(run).await {
        Ok(mandated) => mandated,
        Err(why) => return P::unresolved(&enforcer.key, &resource.location, &now, why),
    };
    run.key = mandated.clone();
    let procedure = P::new(&enforcer.key, &resource.location, mandated);
    // Inspect before every write and wait with reads: AWS refuses a write on a resource that is
    // not ready, and a write while its creator is between two steps breaks the creator.
    loop {
        match procedure.step(&now, run.waited()) {
            Step::Wait(state) => enforcer.wait_until_ready(run, &state).await?,
            Step::Done(verdict) => return Ok(verdict),
            Step::Confirm => return confirm(enforcer, &procedure, resource, run, "").await,
            Step::Apply { was, seen } => {
                // Not settled: a tool is still at work, so read again.
                if enforcer.settled(run, seen).await?
                    && let Some(verdict) =
                        apply(enforcer, &procedure, resource, record_tags, run, &was).await?
                {
                    return Ok(verdict);
                }
            }
        }
        now = describe::<A, P>(enforcer, resource, run).await?;
    }
}

/// Passes the gate, writes and confirms; `None` when the write was refused as in use and the
/// resource is to be read again.
async fn apply<A: Aws, P: Procedure>(
    enforcer: &Enforcer<A>,
    procedure: &P,
    resource: &Resource,
    record_tags: Option<&Tags>,
    run: &mut EventRun<'_>,
    was: &str,
) -> Result<Option<Verdict>, Halt> {
    let list_tags = || P::tags(&enforcer.aws, resource);
    let gate = enforcer
        .gate(resource, record_tags, run, P::LIST_TAGS, list_tags)
        .await?;
    if let Some(end) = gate.end(was) {
        return end.map(Some);
    }
    let start = || procedure.start(&enforcer.aws, resource);
    if enforcer.write(resource, run, P::START, start).await? {
        return confirm(enforcer, procedure, resource, run, was)
            .await
            .map(Some);
    }
    // Someone else is changing the resource right now: inspect again before anything else.
    let state = format!(
        "being changed by another caller ({} answered ResourceInUseException)",
        P::START.name()
    );
    enforcer.wait_until_ready(run, &state).await?;
    Ok(None)
}

/// After a write (this event's, or one already under way with the mandated key): reads until
/// the procedure judges the result.
async fn confirm<A: Aws, P: Procedure>(
    enforcer: &Enforcer<A>,
    procedure: &P,
    resource: &Resource,
    run: &mut EventRun<'_>,
    was: &str,
) -> Result<Verdict, Halt> {
    let mut delay = CONFIRM_FIRST;
    loop {
        let now = describe::<A, P>(enforcer, resource, run).await?;
        match procedure.confirmed(&now, run.took, was)? {
            Poll::Done(verdict) => return Ok(verdict),
            Poll::Pending(state) => {
                enforcer.wait_to_confirm(delay, run, &state).await?;
                delay = delay.mul_f64(CONFIRM_GROWTH).min(CONFIRM_MAX);
            }
        }
    }
}

/// One read of the resource; one being deleted is gone.
async fn describe<A: Aws, P: Procedure>(
    enforcer: &Enforcer<A>,
    resource: &Resource,
    run: &mut EventRun<'_>,
) -> Result<P::Summary, Halt> {
    let summary = enforcer
        .read(run, P::DESCRIBE, || P::describe(&enforcer.aws, resource))
        .await?;
    match P::deleting(&summary) {
        Some(reason) => Err(Halt::Gone {
            reason: reason.into(),
            code: "DELETING".into(),
        }),
        None => Ok(summary),
    }
}

// ---- The waits and the write the loop makes.

impl<A: Aws> Enforcer<A> {
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
            RetryDecision::Retry { delay, .. } if run.defer => {
                // Deferred: the wait is the queue's, and the invocation goes on to other work.
                tracing::info!(
                    call = "inspect",
                    state,
                    delay_ms = delay.as_millis() as u64,
                    "deferred"
                );
                Err(Halt::Later { after: delay })
            }
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
        if run.defer {
            // The rest of the settle period passes in the queue; the next handling looks again.
            return Err(Halt::Later { after: end - now });
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
}
