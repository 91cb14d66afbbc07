//! The decision for one event: inspect, decide, apply under the retry policy, confirm, report.

use crate::aws_error::AwsError;
use crate::config::{Config, Mode};
use crate::event::Trigger;
use crate::exemption::{ExemptTag, Tags};
use crate::firehose::{
    DeliveryStatus, DeliverySummary, EncryptionStatus, FirehoseApi, FirehoseKey,
};
use crate::key::{KeyForm, KeyInfo, KeyMatch, MandatedKey, compare};
use crate::kinesis::{KinesisApi, StreamStatus, StreamSummary};
use crate::kms::KmsApi;
use crate::outcome::{Found, Outcome, Report};
use crate::ratelimit::{Operation, RateLimiter};
use crate::resource::{Location, Resource, Service};
use crate::retry::{self, CallError, RandomSource, RetryPolicy};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// Error names the enforcer gives to failures it detects itself.
pub mod codes {
    /// The confirm step saw a key other than the mandated one, or no encryption, after Start.
    pub const KEY_MISMATCH: &str = "Enforcer.KeyMismatch";
    /// The resource was still changing when the invocation's deadline came.
    pub const DEADLINE: &str = "Enforcer.DeadlineExceeded";
    /// Firehose reported `ENABLING_FAILED` without a failure type.
    pub const ENABLING_FAILED: &str = "ENABLING_FAILED";
}

const NOT_FOUND: &str = "ResourceNotFoundException";
const KMS_NOT_FOUND: &str = "NotFoundException";
const ACCESS_DENIED: &str = "AccessDeniedException";
/// Resolved foreign keys kept per container; a bound so that a long-lived container cannot grow.
const KEY_CACHE_LIMIT: usize = 256;

/// How often the confirm step polls while a resource is UPDATING / ENABLING: the delay starts at
/// `first`, grows by `factor` and stops growing at `max`. Always bounded by the deadline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConfirmPolling {
    /// First delay.
    pub first: Duration,
    /// Growth per poll.
    pub factor: f64,
    /// Largest delay.
    pub max: Duration,
}

impl Default for ConfirmPolling {
    fn default() -> Self {
        Self {
            first: Duration::from_millis(500),
            factor: 1.5,
            max: Duration::from_secs(5),
        }
    }
}

/// The enforcer: the AWS capabilities it needs, the mandated key and the retry policy. Built once
/// per container; the mandated key's resolution is cached in it.
pub struct Enforcer<K, F, M> {
    kinesis: K,
    firehose: F,
    kms: M,
    key: MandatedKey,
    policy: RetryPolicy,
    exempt_tag: Option<ExemptTag>,
    mode: Mode,
    polling: ConfirmPolling,
    limiter: RateLimiter,
    resolved: Mutex<Option<KeyInfo>>,
    foreign_keys: Mutex<HashMap<String, KeyInfo>>,
}

/// Why enforcement stopped short of a positive outcome.
enum Stop {
    Gone { reason: String, code: String },
    Failed { reason: String, code: String },
}

impl Stop {
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

/// A listing call failed (after the retry policy), so the inventory is incomplete.
#[derive(Debug, thiserror::Error)]
#[error("{} failed: {reason}", operation.name())]
pub struct ListError {
    /// The listing call.
    pub operation: Operation,
    /// Why, with the AWS error code.
    pub reason: String,
}

impl ListError {
    fn new(operation: Operation, err: CallError) -> Self {
        Self {
            operation,
            reason: err.to_string(),
        }
    }
}

/// The report of an event that needs no action.
pub fn ignored(
    event_id: Option<String>,
    service: Option<Service>,
    event_name: Option<String>,
    reason: String,
) -> Report {
    Report {
        outcome: Outcome::Ignored,
        service,
        resource: None,
        event_id,
        event_name,
        key: None,
        attempts: 0,
        reason: Some(reason),
        error_code: None,
        found: None,
    }
}

/// The report of an event whose resource is not the function's to act on.
pub fn refused(trigger: &Trigger, reason: String) -> Report {
    Report {
        outcome: Outcome::Refused,
        service: Some(trigger.resource.service),
        resource: Some(trigger.resource.arn()),
        event_id: trigger.event_id.clone(),
        event_name: Some(trigger.event_name.clone()),
        key: None,
        attempts: 0,
        reason: Some(reason),
        error_code: None,
        found: None,
    }
}

/// Why a resource at `at` is not the function's to act on, or `None` when it is in `home`.
pub fn out_of_scope(at: &Location, home: Option<&Location>) -> Option<String> {
    let Some(home) = home else {
        return Some(
            "the function's own account and region are unknown, so no resource can be checked \
             against them"
                .to_owned(),
        );
    };
    let differs = if at.partition != home.partition {
        "partition"
    } else if at.account != home.account {
        "account"
    } else if at.region != home.region {
        "region"
    } else {
        return None;
    };
    Some(format!(
        "the resource is in {at}, but this function serves {home} only (the {differs} differs); \
         no AWS call was made"
    ))
}

/// A positive outcome and its reason.
struct Done(Outcome, String);

/// Per-event state: the deadline, the random source for jitter, and the write calls made.
struct Run<'a> {
    deadline: Instant,
    random: &'a mut (dyn RandomSource + Send),
    writes: u32,
    found: Option<Found>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave these caches inconsistent: every write is one assignment.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<K: KinesisApi, F: FirehoseApi, M: KmsApi> Enforcer<K, F, M> {
    /// An enforcer over the given adapters with the configured key and policy.
    pub fn new(kinesis: K, firehose: F, kms: M, config: &Config) -> Self {
        Self {
            kinesis,
            firehose,
            kms,
            key: config.mandated_key.clone(),
            policy: config.retry_policy.clone(),
            exempt_tag: config.exempt_tag.clone(),
            mode: config.mode,
            polling: ConfirmPolling::default(),
            limiter: RateLimiter::new(config.container_share()),
            resolved: Mutex::new(None),
            foreign_keys: Mutex::new(HashMap::new()),
        }
    }

    /// The share of the per-account limits this enforcer's calls are paced at.
    pub fn rate_share(&self) -> f64 {
        self.limiter.share()
    }

    /// Every Kinesis data stream and Firehose delivery stream (all source types) in the
    /// account and region `at`, each listing paged and paced under the rate limits.
    pub async fn list_resources(
        &self,
        at: &Location,
        deadline: Instant,
        random: &mut (dyn RandomSource + Send),
    ) -> Result<Vec<Resource>, ListError> {
        let mut run = Run {
            deadline,
            random,
            writes: 0,
            found: None,
        };
        let mut names: Vec<(Service, String)> = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .limited(&mut run, Operation::ListStreams, || {
                    self.kinesis.list_streams(cursor.clone())
                })
                .await
                .map_err(|e| ListError::new(Operation::ListStreams, e))?
                .0;
            names.extend(page.names.into_iter().map(|n| (Service::Kinesis, n)));
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let mut after: Option<String> = None;
        loop {
            let (page, more) = self
                .limited(&mut run, Operation::ListDeliveryStreams, || {
                    self.firehose.list_delivery_streams(after.clone())
                })
                .await
                .map_err(|e| ListError::new(Operation::ListDeliveryStreams, e))?
                .0;
            after = page.last().cloned();
            names.extend(page.into_iter().map(|n| (Service::Firehose, n)));
            if !more || after.is_none() {
                break;
            }
        }
        names
            .into_iter()
            .map(|(service, name)| {
                Resource::named(service, at.clone(), &name).map_err(|invalid| ListError {
                    operation: match service {
                        Service::Kinesis => Operation::ListStreams,
                        Service::Firehose => Operation::ListDeliveryStreams,
                    },
                    reason: invalid.to_string(),
                })
            })
            .collect()
    }

    /// Enforces the mandated key on the resource an event names.
    pub async fn enforce(
        &self,
        trigger: &Trigger,
        deadline: Instant,
        random: &mut (dyn RandomSource + Send),
    ) -> Report {
        let mut run = Run {
            deadline,
            random,
            writes: 0,
            found: None,
        };
        let result = match trigger.resource.service {
            Service::Kinesis => {
                self.enforce_stream(&trigger.resource, trigger.tags.as_ref(), &mut run)
                    .await
            }
            Service::Firehose => {
                self.enforce_delivery_stream(&trigger.resource, trigger.tags.as_ref(), &mut run)
                    .await
            }
        };
        let (outcome, reason, error_code) = match result {
            Ok(Done(outcome, reason)) => (outcome, reason, None),
            Err(Stop::Gone { reason, code }) => (Outcome::Gone, reason, Some(code)),
            Err(Stop::Failed { reason, code }) => (Outcome::Failed, reason, Some(code)),
        };
        let key = lock(&self.resolved)
            .as_ref()
            .map_or_else(|| self.key.configured().to_owned(), |k| k.arn.clone());
        Report {
            outcome,
            service: Some(trigger.resource.service),
            resource: Some(trigger.resource.arn()),
            event_id: trigger.event_id.clone(),
            event_name: Some(trigger.event_name.clone()),
            key: Some(key),
            attempts: run.writes,
            reason: Some(reason),
            error_code,
            found: run.found,
        }
    }

    /// One AWS call under the rate limiter (every attempt waits for its slot) and the retry
    /// policy. Returns the value and the number of calls made.
    async fn limited<T, Fut>(
        &self,
        run: &mut Run<'_>,
        operation: Operation,
        mut call: impl FnMut() -> Fut,
    ) -> Result<(T, u32), CallError>
    where
        Fut: Future<Output = Result<T, AwsError>>,
    {
        retry::run(
            &self.policy,
            run.deadline,
            &mut *run.random,
            operation.name(),
            || {
                let attempt = call();
                async move {
                    self.limiter.acquire(operation).await;
                    attempt.await
                }
            },
        )
        .await
    }

    /// One AWS call, as [`Self::limited`], with write calls counted in `run.writes`.
    async fn call<T, Fut>(
        &self,
        run: &mut Run<'_>,
        operation: Operation,
        call: impl FnMut() -> Fut,
    ) -> Result<T, Stop>
    where
        Fut: Future<Output = Result<T, AwsError>>,
    {
        let result = self.limited(run, operation, call).await;
        if operation.is_write() {
            let attempts = match &result {
                Ok((_, n)) => *n,
                Err(e) => e.attempts(),
            };
            run.writes = run.writes.saturating_add(attempts);
        }
        result
            .map(|(value, _)| value)
            .map_err(|e| Stop::from_call(operation.name(), e))
    }

    /// Sleeps for the next confirm poll, or stops when it would pass the deadline.
    async fn wait_to_confirm(
        &self,
        delay: &mut Duration,
        run: &Run<'_>,
        state: &str,
    ) -> Result<(), Stop> {
        if Instant::now() + *delay > run.deadline {
            return Err(Stop::failed(
                codes::DEADLINE,
                format!(
                    "still {state} when the invocation's deadline came; a retry of the event will confirm"
                ),
            ));
        }
        tokio::time::sleep(*delay).await;
        *delay = delay.mul_f64(self.polling.factor).min(self.polling.max);
        Ok(())
    }

    /// The mandated key resolved with kms:DescribeKey, once per container. `None` only for an
    /// AWS managed alias (`alias/aws/...`) that does not exist yet: AWS creates it on first use.
    async fn mandated_key(&self, run: &mut Run<'_>) -> Result<Option<KeyInfo>, Stop> {
        if let Some(info) = lock(&self.resolved).clone() {
            return Ok(Some(info));
        }
        let configured = self.key.configured();
        match self
            .limited(run, Operation::DescribeKey, || {
                self.kms.describe_key(configured)
            })
            .await
        {
            Ok((info, _)) => {
                *lock(&self.resolved) = Some(info.clone());
                Ok(Some(info))
            }
            Err(e) if e.aws().code() == KMS_NOT_FOUND && self.key.form().is_aws_managed_alias() => {
                tracing::info!(
                    key = configured,
                    "AWS managed key not created yet; it is created on first use"
                );
                Ok(None)
            }
            Err(e) => Err(Stop::Failed {
                code: e.aws().code().to_owned(),
                reason: format!("cannot resolve the mandated key {configured}: {e}"),
            }),
        }
    }

    /// Whether a reported key is the configured mandated key by its form alone (no KMS).
    fn provably_configured(&self, reported: &str, at: &Location) -> bool {
        reported == self.key.configured()
            || KeyForm::parse(reported)
                .is_ok_and(|form| compare(&form, self.key.form(), at) == KeyMatch::Same)
    }

    /// Whether a key reported by a data stream is the mandated key. Forms that can be proven
    /// equal or different are decided without KMS; the rest are resolved (and cached).
    async fn is_mandated(
        &self,
        reported: &str,
        at: &Location,
        mandated: Option<&KeyInfo>,
        run: &mut Run<'_>,
    ) -> Result<bool, Stop> {
        if self.provably_configured(reported, at) {
            return Ok(true);
        }
        // Against the resolved key ARN, a key id or key ARN is decided without KMS: `Different`
        // is only ever proven between two key ARNs, so it is final.
        let resolved = mandated.and_then(|m| KeyForm::parse(&m.arn).ok());
        if let (Ok(form), Some(arn)) = (KeyForm::parse(reported), resolved) {
            match compare(&form, &arn, at) {
                KeyMatch::Same => return Ok(true),
                KeyMatch::Different => return Ok(false),
                KeyMatch::Unknown => {}
            }
        }
        let Some(mandated) = mandated else {
            // The mandated AWS managed key does not exist yet, so no stream can be using it.
            return Ok(false);
        };
        if let Some(info) = lock(&self.foreign_keys).get(reported).cloned() {
            return Ok(info.arn == mandated.arn);
        }
        match self
            .limited(run, Operation::DescribeKey, || {
                self.kms.describe_key(reported)
            })
            .await
        {
            Ok((info, _)) => {
                let same = info.arn == mandated.arn;
                let mut cache = lock(&self.foreign_keys);
                if cache.len() >= KEY_CACHE_LIMIT {
                    cache.clear();
                }
                cache.insert(reported.to_owned(), info);
                Ok(same)
            }
            // The stream's key does not exist (any more), or the role may not describe it: the
            // role may describe the mandated key (it was just resolved), so it is another key.
            Err(e) if [KMS_NOT_FOUND, ACCESS_DENIED].contains(&e.aws().code()) => Ok(false),
            Err(e) => Err(Stop::Failed {
                code: e.aws().code().to_owned(),
                reason: format!(
                    "cannot tell whether the stream's key {reported} is the mandated key: {e}"
                ),
            }),
        }
    }

    /// For a resource that is not on the mandated key: `exempt` when it carries the exemption tag
    /// (from the create call's own tags when the record has them, else listed), `noncompliant` in
    /// report mode, `None` when the key is to be applied.
    async fn exempt_or_reported<Fut>(
        &self,
        record_tags: Option<&Tags>,
        run: &mut Run<'_>,
        was: &str,
        list_operation: Operation,
        list_tags: impl FnMut() -> Fut,
    ) -> Result<Option<Done>, Stop>
    where
        Fut: Future<Output = Result<Tags, AwsError>>,
    {
        if let Some(tag) = &self.exempt_tag {
            let exempt = match record_tags {
                Some(tags) if tag.matches(tags) => true,
                _ => tag.matches(&self.call(run, list_operation, list_tags).await?),
            };
            if exempt {
                return Ok(Some(Done(
                    Outcome::Exempt,
                    format!("{was}; exempt by tag {tag}"),
                )));
            }
        }
        if self.mode == Mode::Report {
            return Ok(Some(Done(
                Outcome::Noncompliant,
                format!("{was}; report mode: the mandated key was not applied"),
            )));
        }
        Ok(None)
    }

    async fn describe_stream(
        &self,
        stream: &Resource,
        run: &mut Run<'_>,
    ) -> Result<StreamSummary, Stop> {
        let summary = self
            .call(run, Operation::DescribeStreamSummary, || {
                self.kinesis.stream_summary(stream)
            })
            .await?;
        if summary.status == StreamStatus::Deleting {
            return Err(Stop::Gone {
                reason: "the stream is being deleted".into(),
                code: "DELETING".into(),
            });
        }
        Ok(summary)
    }

    async fn enforce_stream(
        &self,
        stream: &Resource,
        record_tags: Option<&Tags>,
        run: &mut Run<'_>,
    ) -> Result<Done, Stop> {
        let before = self.describe_stream(stream, run).await?;
        run.found = Some(Found {
            status: before.status.name().to_owned(),
            encryption: if before.key_id.is_some() {
                "KMS"
            } else {
                "NONE"
            }
            .to_owned(),
            key: before.key_id.clone(),
        });
        let mandated = match self.mandated_key(run).await {
            Ok(mandated) => mandated,
            // Without KMS only the forms provably equal to the configured key can be trusted;
            // everything else is left to the retry of the event.
            Err(stop) => match &before.key_id {
                Some(key) if self.provably_configured(key, &stream.location) => {
                    tracing::warn!(stream_key = %key, "mandated key not resolved; the stream names it in an equal form");
                    return Ok(Done(
                        Outcome::AlreadyCompliant,
                        format!(
                            "encrypted with {key}, provably the configured key (KMS did not resolve it)"
                        ),
                    ));
                }
                _ => return Err(stop),
            },
        };
        if let Some(key) = &before.key_id
            && self
                .is_mandated(key, &stream.location, mandated.as_ref(), run)
                .await?
        {
            return Ok(Done(
                Outcome::AlreadyCompliant,
                format!("encrypted with {key}"),
            ));
        }
        let was = before
            .key_id
            .as_deref()
            .map_or("unencrypted".to_owned(), |k| format!("encrypted with {k}"));
        if let Some(done) = self
            .exempt_or_reported(record_tags, run, &was, Operation::ListTagsForStream, || {
                self.kinesis.stream_tags(stream)
            })
            .await?
        {
            return Ok(done);
        }
        // Kinesis takes the key in the configured form; CREATING / UPDATING answer
        // ResourceInUseException, which the retry policy waits out.
        self.call(run, Operation::StartStreamEncryption, || {
            self.kinesis.start_encryption(stream, self.key.configured())
        })
        .await?;
        let mut delay = self.polling.first;
        loop {
            let now = self.describe_stream(stream, run).await?;
            // While UPDATING the stream may still report its old key: judge only once ACTIVE.
            if now.status != StreamStatus::Active {
                self.wait_to_confirm(&mut delay, run, now.status.name())
                    .await?;
                continue;
            }
            let Some(key) = &now.key_id else {
                return Err(Stop::failed(
                    codes::KEY_MISMATCH,
                    "after StartStreamEncryption the stream is ACTIVE and not encrypted".into(),
                ));
            };
            if !self
                .is_mandated(key, &stream.location, mandated.as_ref(), run)
                .await?
            {
                return Err(Stop::failed(
                    codes::KEY_MISMATCH,
                    format!(
                        "after StartStreamEncryption the stream reports key {key}, not the mandated key"
                    ),
                ));
            }
            return Ok(Done(
                Outcome::Remediated,
                format!("was {was}; now encrypted with the mandated key"),
            ));
        }
    }

    async fn describe_delivery_stream(
        &self,
        stream: &Resource,
        run: &mut Run<'_>,
    ) -> Result<DeliverySummary, Stop> {
        let summary = self
            .call(run, Operation::DescribeDeliveryStream, || {
                self.firehose.delivery_summary(stream)
            })
            .await?;
        if summary.status == DeliveryStatus::Deleting {
            return Err(Stop::Gone {
                reason: "the delivery stream is being deleted".into(),
                code: "DELETING".into(),
            });
        }
        Ok(summary)
    }

    async fn enforce_delivery_stream(
        &self,
        stream: &Resource,
        record_tags: Option<&Tags>,
        run: &mut Run<'_>,
    ) -> Result<Done, Stop> {
        let before = self.describe_delivery_stream(stream, run).await?;
        run.found = Some(Found {
            status: before.status.name().to_owned(),
            encryption: before
                .encryption
                .as_ref()
                .map_or("NONE".to_owned(), |e| match &e.key {
                    Some(FirehoseKey::AwsOwned) => format!("{} AWS_OWNED_CMK", e.status.name()),
                    Some(FirehoseKey::CustomerManaged(_)) => {
                        format!("{} CUSTOMER_MANAGED_CMK", e.status.name())
                    }
                    None => e.status.name().to_owned(),
                }),
            key: before.encryption.as_ref().and_then(|e| match &e.key {
                Some(FirehoseKey::CustomerManaged(arn)) => Some(arn.clone()),
                _ => None,
            }),
        });
        if before.status == DeliveryStatus::CreatingFailed {
            return Ok(Done(
                Outcome::NotApplicable,
                "the delivery stream's creation failed (CREATING_FAILED): there is nothing to encrypt".into(),
            ));
        }
        if !before.is_direct_put() {
            return Ok(Done(
                Outcome::NotApplicable,
                format!(
                    "source is {}: only DirectPut delivery streams can have server-side encryption; the data is protected by its source's encryption",
                    before.source_type
                ),
            ));
        }
        // Firehose needs a key ARN; an AWS managed mandated key means the AWS owned key there.
        let wanted = match self.mandated_key(run).await? {
            Some(info) if !info.aws_managed => FirehoseKey::CustomerManaged(info.arn),
            _ => FirehoseKey::AwsOwned,
        };
        let current = before
            .encryption
            .as_ref()
            .filter(|e| e.key.as_ref() == Some(&wanted));
        match current.map(|e| &e.status) {
            Some(EncryptionStatus::Enabled) => {
                return Ok(Done(
                    Outcome::AlreadyCompliant,
                    "server-side encryption is ENABLED with the mandated key".into(),
                ));
            }
            // Someone (or an earlier delivery of this event) already asked for the mandated key.
            Some(EncryptionStatus::Enabling) => {}
            _ => {
                let was = before
                    .encryption
                    .as_ref()
                    .map_or("unencrypted".to_owned(), |e| e.to_string());
                if let Some(done) = self
                    .exempt_or_reported(
                        record_tags,
                        run,
                        &was,
                        Operation::ListTagsForDeliveryStream,
                        || self.firehose.delivery_stream_tags(stream),
                    )
                    .await?
                {
                    return Ok(done);
                }
                self.call(run, Operation::StartDeliveryStreamEncryption, || {
                    self.firehose.start_encryption(stream, &wanted)
                })
                .await?;
            }
        }
        let mut delay = self.polling.first;
        loop {
            let now = self.describe_delivery_stream(stream, run).await?;
            let Some(enc) = &now.encryption else {
                return Err(Stop::failed(
                    codes::KEY_MISMATCH,
                    "no encryption configuration after StartDeliveryStreamEncryption".into(),
                ));
            };
            match (&enc.status, enc.key.as_ref() == Some(&wanted)) {
                (EncryptionStatus::Enabled, true) => {
                    let outcome = if run.writes == 0 {
                        Outcome::AlreadyCompliant
                    } else {
                        Outcome::Remediated
                    };
                    return Ok(Done(
                        outcome,
                        "server-side encryption is ENABLED with the mandated key".into(),
                    ));
                }
                (EncryptionStatus::Enabling, _) => {
                    self.wait_to_confirm(&mut delay, run, "ENABLING").await?
                }
                (EncryptionStatus::EnablingFailed, _) => {
                    let failure = enc
                        .failure
                        .clone()
                        .unwrap_or_else(|| "no failure description".into());
                    let code = failure
                        .split(':')
                        .next()
                        .unwrap_or(codes::ENABLING_FAILED)
                        .to_owned();
                    return Err(Stop::Failed {
                        code,
                        reason: format!("encryption ENABLING_FAILED: {failure}"),
                    });
                }
                _ => {
                    return Err(Stop::failed(
                        codes::KEY_MISMATCH,
                        format!("after StartDeliveryStreamEncryption the stream reports {enc}"),
                    ));
                }
            }
        }
    }
}
