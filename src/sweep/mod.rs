//! The sweep: the same decision as for one event, for every stream and delivery stream in an
//! account and region. It catches what events miss (CloudTrail delivers to EventBridge on a
//! best-effort basis; streams created before the stack never produce an event).
//!
//! How the work is split: a scheduled sweep plans one message per account and region on the
//! sweep queue ([`plan`]), and each message sweeps its place in an invocation of its own. There,
//! everything is listed, then worked through with a few resources in flight at once, every call
//! paced by the shared rate limiter (so concurrency only fills the per-account budget, never
//! exceeds it). A resource is only started while enough of the invocation's time is left to
//! finish it; on the queue, resources are taken in a fixed order and a place that does not fit
//! continues in a follow-up message. Without the queue (`enforcer sweep`, or `SWEEP_QUEUE_URL`
//! unset), any resource not reached, and any that failed, is named in the summary and makes the
//! sweep an error, so Lambda's retries and the on-failure queue keep it, and resources are taken
//! in a random order, so that a retried sweep reaches those an earlier one did not. One
//! invocation inspects about `rate x (timeout - 32 s)` resources per account and region, where
//! the rate is its share of the Describe limit: with the template's defaults (360 s,
//! `PLACE_CONCURRENCY` 2) about 2,600 Kinesis streams or 330 delivery streams
//! (docs/operations.md, "How one invocation works through a place").

pub mod plan;

use crate::aws::Aws;
use crate::aws::connector::Connector;
use crate::enforce::Enforcer;
use crate::fleet::Fleet;
use crate::model::event::Trigger;
use crate::model::outcome::{Outcome, Report};
use crate::model::resource::Service;
use crate::model::resource::{Location, Resource};
use crate::policy::ratelimit::Operation;
use crate::policy::retry::{CallError, RandomSource};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// Resources worked on at once at the default share of the limits. The rate limiter, not this
/// number, bounds the request rate; it only has to be large enough to keep the limiter busy while
/// resources wait for their confirmation.
pub const CONCURRENCY: usize = 8;
/// The most resources worked on at once, whatever the share.
pub const MAX_CONCURRENCY: usize = 512;

/// Resources worked on at once when the limiter paces at `share` of the limits: [`CONCURRENCY`]
/// at the default share, in proportion above and below it, at least 1.
pub fn concurrency(share: f64) -> usize {
    let scaled = (CONCURRENCY as f64 * share / crate::policy::ratelimit::DEFAULT_SHARE).ceil();
    if scaled.is_finite() && scaled >= 1.0 {
        (scaled as usize).min(MAX_CONCURRENCY)
    } else {
        1
    }
}
/// A resource is started only with at least this much time left, enough for a Start and its
/// confirmation in the common case.
pub const RESERVE: Duration = Duration::from_secs(30);
/// The CloudTrail-style name sweep reports carry as `event_name`.
pub const SWEEP_EVENT_NAME: &str = "Sweep";

/// The result of a sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepSummary {
    /// Resources per outcome.
    pub counts: BTreeMap<&'static str, usize>,
    /// One report per resource reached, sorted by ARN.
    pub reports: Vec<Report>,
    /// ARNs of resources not reached before the deadline.
    pub unreached: Vec<String>,
    /// Accounts and regions that could not be reached or listed, with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unlisted: Vec<Unlisted>,
}

/// How many resources (and accounts and regions) a sweep's answer and summary line name; the
/// rest are counted. Every resource's report is in the log on a line of its own.
pub const ANSWER_LIMIT: usize = 100;

/// What a Lambda's sweep returns: counts and, capped, what is left off the mandated key. A sweep
/// of tens of thousands of resources would otherwise pass Lambda's 6 MB response limit, fail
/// when everything is compliant, and be retried for nothing.
#[derive(Debug, Clone, Serialize)]
pub struct SweepAnswer {
    /// Resources per outcome.
    pub counts: BTreeMap<&'static str, usize>,
    /// The first [`ANSWER_LIMIT`] resources left off the mandated key (failed, flapping,
    /// noncompliant), by ARN.
    pub not_compliant: Vec<Brief>,
    /// How many there are in all.
    pub not_compliant_total: usize,
    /// The first [`ANSWER_LIMIT`] ARNs not reached before the deadline.
    pub unreached: Vec<String>,
    /// How many there are in all.
    pub unreached_total: usize,
    /// The first [`ANSWER_LIMIT`] accounts and regions not listed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unlisted: Vec<Unlisted>,
    /// How many there are in all.
    pub unlisted_total: usize,
}

/// One resource of a [`SweepAnswer`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Brief {
    /// The resource's ARN.
    pub resource: Option<String>,
    /// Its outcome.
    pub outcome: Outcome,
    /// The error code of a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

/// An account and region a sweep could not reach or list.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Unlisted {
    /// The account.
    pub account: String,
    /// The region.
    pub region: String,
    /// Why, with the AWS error code.
    pub reason: String,
}

impl SweepSummary {
    /// Whether every account and region was listed, every resource reached, and none failed.
    pub fn is_complete(&self) -> bool {
        self.unlisted.is_empty()
            && self.unreached.is_empty()
            && !self.reports.iter().any(|r| r.outcome.is_failure())
    }

    /// The summary of an account and region that could not be reached or listed.
    pub fn unlisted(at: &Location, reason: String) -> Self {
        Self {
            counts: BTreeMap::new(),
            reports: Vec::new(),
            unreached: Vec::new(),
            unlisted: vec![Unlisted {
                account: at.account.clone(),
                region: at.region.clone(),
                reason,
            }],
        }
    }

    /// One summary of several sweeps.
    pub fn merge(parts: impl IntoIterator<Item = Self>) -> Self {
        let mut all = Self {
            counts: BTreeMap::new(),
            reports: Vec::new(),
            unreached: Vec::new(),
            unlisted: Vec::new(),
        };
        for part in parts {
            for (outcome, n) in part.counts {
                *all.counts.entry(outcome).or_default() += n;
            }
            all.reports.extend(part.reports);
            all.unreached.extend(part.unreached);
            all.unlisted.extend(part.unlisted);
        }
        all.reports.sort_by(|a, b| a.resource.cmp(&b.resource));
        all.unreached.sort();
        all.unlisted
            .sort_by(|a, b| (&a.account, &a.region).cmp(&(&b.account, &b.region)));
        all
    }

    /// Resources whose outcome leaves them off the mandated key: failed, noncompliant.
    pub fn not_compliant(&self) -> impl Iterator<Item = &Report> {
        self.reports
            .iter()
            .filter(|r| r.outcome.is_failure() || r.outcome == Outcome::Noncompliant)
    }

    /// The answer a Lambda returns for this sweep ([`SweepAnswer`]).
    pub fn answer(&self) -> SweepAnswer {
        SweepAnswer {
            counts: self.counts.clone(),
            not_compliant: self
                .not_compliant()
                .take(ANSWER_LIMIT)
                .map(|r| Brief {
                    resource: r.resource.clone(),
                    outcome: r.outcome,
                    error_code: r.error_code.clone(),
                })
                .collect(),
            not_compliant_total: self.not_compliant().count(),
            unreached: self.unreached.iter().take(ANSWER_LIMIT).cloned().collect(),
            unreached_total: self.unreached.len(),
            unlisted: self.unlisted.iter().take(ANSWER_LIMIT).cloned().collect(),
            unlisted_total: self.unlisted.len(),
        }
    }

    /// Logs the summary: the answer's counts and capped lists, on one line (each resource's
    /// report has a line of its own).
    pub fn log(&self) {
        let answer = self.answer();
        tracing::info!(
            counts = %serde_json::to_string(&answer.counts).unwrap_or_default(),
            not_compliant = %serde_json::to_string(&answer.not_compliant).unwrap_or_default(),
            not_compliant_total = answer.not_compliant_total,
            unreached = ?answer.unreached,
            unreached_total = answer.unreached_total,
            unlisted = ?answer.unlisted,
            "sweep summary"
        );
    }
}

/// The audit's verdict on one report.
pub fn verdict(report: &Report) -> &'static str {
    match report.outcome {
        Outcome::AlreadyCompliant | Outcome::Remediated => "compliant",
        Outcome::Noncompliant => match report.found.as_ref().and_then(|f| f.key.as_ref()) {
            Some(_) => "wrong key",
            None if report
                .found
                .as_ref()
                .is_some_and(|f| f.encryption != "NONE") =>
            {
                "wrong key"
            }
            None => "unencrypted",
        },
        Outcome::Exempt => "exempt",
        Outcome::NotApplicable => "not applicable",
        Outcome::Gone => "gone",
        Outcome::Failed => "error",
        Outcome::Flapping => "flapping",
        Outcome::Refused => "refused",
        Outcome::Ignored => "ignored",
    }
}

/// Runs the enforcer's decision on every resource, in a random order, `on_done` called after
/// each one.
pub async fn sweep<A: Aws>(
    enforcer: &Enforcer<A>,
    resources: Vec<Resource>,
    deadline: Instant,
    on_done: impl Fn(&Report),
) -> SweepSummary {
    let mut resources = resources;
    fastrand::Rng::new().shuffle(&mut resources);
    Box::pin(sweep_listed(enforcer, resources, deadline, on_done))
        .await
        .0
}

/// Runs the enforcer's decision on every resource, started in the order given, `on_done` called
/// after each one; also returns the resources not reached before the deadline.
pub(crate) async fn sweep_listed<A: Aws>(
    enforcer: &Enforcer<A>,
    resources: Vec<Resource>,
    deadline: Instant,
    on_done: impl Fn(&Report),
) -> (SweepSummary, Vec<Resource>) {
    let results: Vec<Result<Report, Resource>> = stream::iter(resources)
        .map(|resource| async move {
            if Instant::now() + RESERVE > deadline {
                return Err(resource);
            }
            let trigger = Trigger {
                event_id: None,
                event_name: SWEEP_EVENT_NAME.to_owned(),
                resource,
                tags: None,
                caller: Default::default(),
            };
            let mut random = fastrand::Rng::new();
            Ok(Box::pin(enforcer.enforce(&trigger, deadline, &mut random)).await)
        })
        .buffer_unordered(concurrency(enforcer.rate_share()))
        .inspect(|result| {
            if let Ok(report) = result {
                on_done(report);
            }
        })
        .collect()
        .await;
    let mut summary = SweepSummary {
        counts: BTreeMap::new(),
        reports: Vec::new(),
        unreached: Vec::new(),
        unlisted: Vec::new(),
    };
    let mut unreached = Vec::new();
    for result in results {
        match result {
            Ok(report) => {
                *summary.counts.entry(report.outcome.as_str()).or_default() += 1;
                summary.reports.push(report);
            }
            Err(resource) => {
                summary.unreached.push(resource.arn());
                unreached.push(resource);
            }
        }
    }
    summary.reports.sort_by(|a, b| a.resource.cmp(&b.resource));
    summary.unreached.sort();
    (summary, unreached)
}

// ---- The inventory: every resource of an account and region.

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

impl<A: Aws> Enforcer<A> {
    /// Every Kinesis data stream and Firehose delivery stream (all source types) in the
    /// account and region `at`, each listing paged and paced under the rate limits.
    pub async fn list_resources(
        &self,
        at: &Location,
        deadline: Instant,
        random: &mut (dyn RandomSource + Send),
    ) -> Result<Vec<Resource>, ListError> {
        let mut names: Vec<(Service, String)> = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .paced(deadline, &mut *random, Operation::ListStreams, || {
                    self.aws.list_streams(cursor.clone())
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
                .paced(
                    deadline,
                    &mut *random,
                    Operation::ListDeliveryStreams,
                    || self.aws.list_delivery_streams(after.clone()),
                )
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
}

// ---- Many accounts and regions: a central-mode sweep.

/// Accounts and regions swept at once. Each has its own limits, so this only bounds the
/// connections and memory one invocation uses; within each, the sweep's own concurrency applies.
pub const LOCATIONS_IN_FLIGHT: usize = 8;

impl<C: Connector> Fleet<C> {
    /// Where a scheduled sweep goes: the function's own account and every allowed account, in
    /// each allowed region (central mode without `ALLOWED_REGIONS`: the function's own region).
    pub fn sweep_locations(&self, home: &Location) -> Vec<Location> {
        let Some(central) = &self.config().central else {
            return vec![home.clone()];
        };
        let mut accounts = vec![home.account.clone()];
        if let Some(allowed) = self.allowed() {
            accounts.extend(allowed.iter().filter(|a| **a != home.account).cloned());
        }
        let mut locations = Vec::new();
        for account in &accounts {
            for region in &central.regions {
                if let Ok(at) = Location::new(account, region)
                    && at.partition == home.partition
                {
                    locations.push(at);
                }
            }
        }
        locations
    }

    /// Lists every stream and delivery stream in each of `locations` and runs the decision on
    /// each, [`LOCATIONS_IN_FLIGHT`] accounts and regions at a time, each paced by its own
    /// limits. One summary: a location that could not be reached or listed is named in
    /// `unlisted`, a resource not reached before the deadline in `unreached`.
    pub async fn sweep(
        &self,
        home: &Location,
        locations: Vec<Location>,
        deadline: Instant,
        on_done: impl Fn(&Report) + Sync,
    ) -> SweepSummary {
        let on_done = &on_done;
        let parts: Vec<SweepSummary> = stream::iter(locations)
            .map(|at| async move {
                let unlisted = |reason: String| SweepSummary::unlisted(&at, reason);
                if let Some(reason) = self.refusal(&at, Some(home)) {
                    return unlisted(reason);
                }
                if Instant::now() + RESERVE > deadline {
                    return unlisted("not reached before the deadline".into());
                }
                let mut random = fastrand::Rng::new();
                let enforcer = match self
                    .enforcer_at(&at, home, false, deadline, &mut random)
                    .await
                {
                    Ok(enforcer) => enforcer,
                    Err(why) => return unlisted(why.reason),
                };
                let listed = Box::pin(enforcer.list_resources(&at, deadline, &mut random)).await;
                match listed {
                    Ok(resources) => Box::pin(sweep(&enforcer, resources, deadline, on_done)).await,
                    Err(ListError { operation, reason }) => {
                        unlisted(format!("{} failed: {reason}", operation.name()))
                    }
                }
            })
            .buffer_unordered(LOCATIONS_IN_FLIGHT)
            .collect()
            .await;
        SweepSummary::merge(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_of_100000_resources_answers_in_well_under_lambdas_limit() {
        let report = |i: usize, outcome: Outcome| Report {
            service: Some(crate::model::resource::Service::Kinesis),
            resource: Some(format!(
                "arn:aws:kinesis:us-east-1:123456789012:stream/a-long-stream-name-{i:06}"
            )),
            event_name: Some(SWEEP_EVENT_NAME.into()),
            key: Some(
                "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
                    .into(),
            ),
            reason: Some("encrypted with alias/org-streams".into()),
            ..Report::new(outcome)
        };
        let mut summary = SweepSummary {
            counts: BTreeMap::new(),
            reports: (0..100_000)
                .map(|i| {
                    report(
                        i,
                        if i % 10 == 0 {
                            Outcome::Failed
                        } else {
                            Outcome::AlreadyCompliant
                        },
                    )
                })
                .collect(),
            unreached: (0..20_000)
                .map(|i| format!("arn:aws:kinesis:us-east-1:123456789012:stream/u-{i}"))
                .collect(),
            unlisted: Vec::new(),
        };
        summary.counts.insert("already_compliant", 90_000);
        summary.counts.insert("failed", 10_000);
        // The whole summary, as the Lambda returned it before: past the 6 MB limit.
        let whole = serde_json::to_vec(&summary).unwrap().len();
        assert!(whole > 6 * 1024 * 1024, "{whole}");
        let answer = summary.answer();
        let size = serde_json::to_vec(&answer).unwrap().len();
        assert!(size < 64 * 1024, "{size} bytes");
        assert_eq!(
            (answer.not_compliant.len(), answer.not_compliant_total),
            (ANSWER_LIMIT, 10_000)
        );
        assert_eq!(
            (answer.unreached.len(), answer.unreached_total),
            (ANSWER_LIMIT, 20_000)
        );
        assert_eq!(answer.not_compliant[0].outcome, Outcome::Failed);
    }

    #[test]
    fn concurrency_follows_the_share() {
        assert_eq!(
            concurrency(crate::policy::ratelimit::DEFAULT_SHARE),
            CONCURRENCY
        );
        assert_eq!(concurrency(0.9 / 8.0), 1);
        assert_eq!(concurrency(0.45), 4);
        assert_eq!(concurrency(9.0), 80);
        assert_eq!(concurrency(100.0), MAX_CONCURRENCY);
        assert_eq!(concurrency(f64::NAN), 1);
    }
}
