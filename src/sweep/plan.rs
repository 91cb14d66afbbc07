//! The sweep on SQS: a scheduled sweep plans, the queue carries the work.
//!
//! With `SWEEP_QUEUE_URL` set, a scheduled event does not sweep. It sends one [`PlaceMessage`]
//! per account and region the function serves ([`Fleet::send_plan`]) and succeeds once they are
//! sent. The same function consumes the queue through an SQS event source mapping; each message
//! sweeps one place ([`Fleet::sweep_part`]), so a place that cannot be reached, listed or
//! finished fails alone: its message is named in the batch's `batchItemFailures`, comes back
//! after the queue's visibility timeout, and moves to the dead-letter queue after
//! `maxReceiveCount` receives, while every other place is done
//! (<https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html>).
//!
//! A place too big for one invocation continues: resources are taken in a fixed order (service,
//! then name), and when the time runs out the part sends a follow-up message that starts at the
//! first resource it did not reach. A message is self-contained: handed again later, it sweeps
//! the same place from the same resource.

use crate::aws::connector::Connector;
use crate::aws::queue::{Outgoing, QueueKind};
use crate::fleet::Fleet;
use crate::model::outcome::{Outcome, Report};
use crate::model::resource::{Location, Resource, Service};
use crate::policy::retry::{self, RandomSource};
use crate::sweep::{ListError, SWEEP_EVENT_NAME, SweepSummary, sweep_listed};
use crate::sync::lock;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// What a [`PlaceMessage`]'s `kind` says: it tells the message from an event.
pub const MESSAGE_KIND: &str = "stream-encryption-enforcer/sweep-place";
/// The version of the message's shape.
pub const MESSAGE_VERSION: u32 = 1;
/// Time a part keeps back from its invocation's deadline to send its follow-up message.
pub const SEND_RESERVE: Duration = Duration::from_secs(5);

/// One account and region of a planned sweep, from a resource on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceMessage {
    /// Always [`MESSAGE_KIND`].
    pub kind: String,
    /// Always [`MESSAGE_VERSION`].
    pub version: u32,
    /// The sweep this place belongs to: every part's result carries it.
    pub sweep_id: String,
    /// The account.
    pub account: String,
    /// The region.
    pub region: String,
    /// The first resource to sweep; none: from the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Cursor>,
    /// 1 for the planned message, one more for each follow-up.
    pub part: u32,
}

/// A resource of a place, in the order a sweep takes them: Kinesis before Firehose, then by name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    /// `kinesis` or `firehose`.
    pub service: Service,
    /// The stream's or delivery stream's name.
    pub name: String,
}

impl Cursor {
    fn of(resource: &Resource) -> Self {
        Self {
            service: resource.service,
            name: resource.name.clone(),
        }
    }
}

/// The most characters of a sweep id.
const MAX_SWEEP_ID: usize = 128;

impl PlaceMessage {
    /// The first message of `at` in sweep `sweep_id`.
    pub fn first(sweep_id: &str, at: &Location) -> Self {
        Self {
            kind: MESSAGE_KIND.to_owned(),
            version: MESSAGE_VERSION,
            sweep_id: sweep_id.to_owned(),
            account: at.account.clone(),
            region: at.region.clone(),
            from: None,
            part: 1,
        }
    }

    /// The follow-up message: the same place, from `from`.
    pub fn next(&self, from: Cursor) -> Self {
        Self {
            from: Some(from),
            part: self.part.saturating_add(1),
            ..self.clone()
        }
    }

    /// The message as SQS carries it.
    pub fn body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether `body` claims to be a place message (its `kind`), well formed or not.
    pub fn claims(body: &str) -> bool {
        serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
            .is_some_and(|kind| kind == MESSAGE_KIND)
    }

    /// Reads and checks a message body. `Err` says what is wrong with it.
    pub fn parse(body: &str) -> Result<(Self, Location), String> {
        let message: Self =
            serde_json::from_str(body).map_err(|e| format!("not a sweep place message: {e}"))?;
        if message.kind != MESSAGE_KIND {
            return Err(format!("kind {:?} is not {MESSAGE_KIND:?}", message.kind));
        }
        if message.version != MESSAGE_VERSION {
            return Err(format!(
                "version {} is not {MESSAGE_VERSION}, the one this function reads",
                message.version
            ));
        }
        let id_ok = (1..=MAX_SWEEP_ID).contains(&message.sweep_id.len())
            && message
                .sweep_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b));
        if !id_ok {
            return Err(format!(
                "sweep_id {:?} is not 1 to {MAX_SWEEP_ID} of A-Z a-z 0-9 - _ : .",
                message.sweep_id
            ));
        }
        if message.part == 0 {
            return Err("part is 0; parts count from 1".into());
        }
        let at = Location::new(&message.account, &message.region).map_err(|e| e.to_string())?;
        if let Some(from) = &message.from {
            Resource::named(from.service, at.clone(), &from.name).map_err(|e| e.to_string())?;
        }
        Ok((message, at))
    }
}

/// A sweep id for a plan made now (`enforcer sweep --enqueue`): the time and a random suffix.
pub fn new_sweep_id(prefix: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{prefix}-{secs}-{:08x}", fastrand::u32(..))
}

/// The sweep id of a scheduled event: its `id` (the same on Lambda's retries of the event, so
/// that a plan sent twice shows as one sweep), else a new one.
pub fn sweep_id_of(event: &serde_json::Value) -> String {
    match event.get("id").and_then(|v| v.as_str()) {
        Some(id)
            if (1..=MAX_SWEEP_ID).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b)) =>
        {
            id.to_owned()
        }
        _ => new_sweep_id("sweep"),
    }
}

/// How a part of a place's sweep ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartEnd {
    /// Every resource from the message's start was reached, and none failed.
    Swept,
    /// The time ran out; a follow-up message starting at this resource was sent.
    Continued(Cursor),
    /// The place could not be reached or listed, a resource failed, or the follow-up could not
    /// be sent: the message is retried.
    Failed(String),
}

impl PartEnd {
    /// `swept`, `continued` or `failed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Swept => "swept",
            Self::Continued(_) => "continued",
            Self::Failed(_) => "failed",
        }
    }
}

/// The result of one message.
#[derive(Debug, Clone)]
pub struct PartResult {
    /// The message.
    pub message: PlaceMessage,
    /// How it ended.
    pub end: PartEnd,
    /// The resources it reached.
    pub summary: SweepSummary,
}

impl PartResult {
    fn failed(message: &PlaceMessage, reason: String) -> Self {
        Self {
            message: message.clone(),
            end: PartEnd::Failed(reason),
            summary: SweepSummary::merge([]),
        }
    }

    /// Logs the part's result on one line, with its sweep id.
    pub fn log(&self) {
        let m = &self.message;
        let counts = serde_json::to_string(&self.summary.counts).unwrap_or_default();
        match &self.end {
            PartEnd::Failed(reason) => tracing::error!(
                sweep_id = %m.sweep_id, account = %m.account, region = %m.region, part = m.part,
                result = self.end.as_str(), counts = %counts, reason = %reason,
                "sweep place"
            ),
            PartEnd::Continued(from) => tracing::info!(
                sweep_id = %m.sweep_id, account = %m.account, region = %m.region, part = m.part,
                result = self.end.as_str(), counts = %counts,
                next = %format!("{}/{}", from.service, from.name),
                "sweep place"
            ),
            PartEnd::Swept => tracing::info!(
                sweep_id = %m.sweep_id, account = %m.account, region = %m.region, part = m.part,
                result = self.end.as_str(), counts = %counts,
                "sweep place"
            ),
        }
    }
}

/// Whether a sweep's report shows the event path failed for its resource: the sweep had to
/// remediate a resource created at least `after` before `now` (seconds since the Unix epoch),
/// long past the seconds its event takes. Events are delivered on a best-effort basis, and a
/// trail or rule that is off, or a region that is not forwarded, shows here first.
pub fn missed_by_events(report: &Report, now: i64, after: Duration) -> bool {
    let age = |created: i64| now.saturating_sub(created);
    report.outcome == Outcome::Remediated
        && report.event_name.as_deref() == Some(SWEEP_EVENT_NAME)
        && report
            .found
            .as_ref()
            .and_then(|f| f.created)
            .is_some_and(|created| {
                age(created) >= i64::try_from(after.as_secs()).unwrap_or(i64::MAX)
            })
}

/// A plan could not be sent whole.
#[derive(Debug, thiserror::Error)]
#[error("sent {sent} of {planned} place message(s): {reason}")]
pub struct PlanNotSent {
    /// Messages SQS took.
    pub sent: usize,
    /// Messages planned.
    pub planned: usize,
    /// Why the rest were not sent, with SQS's code.
    pub reason: String,
}

impl<C: Connector> Fleet<C> {
    /// Sends `messages` to `queue`, [`crate::aws::queue::BATCH`] a call, a message SQS refused
    /// sent again under the retry policy. Returns how many were sent, or why not all.
    pub async fn send_to_queue(
        &self,
        queue: QueueKind,
        messages: &[Outgoing],
        deadline: Instant,
        random: &mut (dyn RandomSource + Send),
    ) -> Result<usize, PlanNotSent> {
        let mut sent = 0;
        for chunk in messages.chunks(crate::aws::queue::BATCH) {
            let pending = Mutex::new(chunk.to_vec());
            let result = retry::run(
                &self.config().retry_policy,
                deadline,
                random,
                "sqs:SendMessageBatch",
                || async {
                    let batch = lock(&pending).clone();
                    let refused = self.connector().enqueue(queue, &batch).await?;
                    let Some(first) = refused.first() else {
                        lock(&pending).clear();
                        return Ok(());
                    };
                    let error = crate::aws::error::AwsError::new(
                        first.error.code(),
                        first.error.to_string(),
                    );
                    *lock(&pending) = refused
                        .iter()
                        .filter_map(|r| batch.get(r.index).cloned())
                        .collect();
                    Err(error)
                },
            )
            .await;
            let left = lock(&pending).len();
            sent += chunk.len() - left;
            if let Err(e) = result {
                return Err(PlanNotSent {
                    sent,
                    planned: messages.len(),
                    reason: e.to_string(),
                });
            }
        }
        Ok(sent)
    }

    /// Sends sweep `sweep_id`'s plan: one message per place in `locations`.
    pub async fn send_plan(
        &self,
        sweep_id: &str,
        locations: &[Location],
        deadline: Instant,
        random: &mut (dyn RandomSource + Send),
    ) -> Result<usize, PlanNotSent> {
        let messages: Vec<Outgoing> = locations
            .iter()
            .map(|at| Outgoing::grouped(PlaceMessage::first(sweep_id, at).body(), at.group()))
            .collect();
        self.send_to_queue(QueueKind::Sweep, &messages, deadline, random)
            .await
    }

    /// Sweeps one message's place from its start resource, until `deadline` less
    /// [`SEND_RESERVE`]; when the time runs out, sends the follow-up message.
    pub async fn sweep_part(
        &self,
        message: &PlaceMessage,
        at: &Location,
        home: &Location,
        deadline: Instant,
        on_done: impl Fn(&Report),
    ) -> PartResult {
        let mut random = fastrand::Rng::new();
        let failed = |reason: String| PartResult::failed(message, reason);
        let work_until = deadline.checked_sub(SEND_RESERVE).unwrap_or(deadline);
        // Another account's place needs the organisation's accounts, as its events do.
        if at.account != home.account
            && let Err(why) = self.refresh_accounts(work_until, &mut random).await
        {
            return failed(why.to_string());
        }
        if let Some(reason) = self.refusal(at, Some(home)) {
            return failed(format!("refused: {reason}"));
        }
        let enforcer = match self
            .enforcer_at(at, home, false, work_until, &mut random)
            .await
        {
            Ok(enforcer) => enforcer,
            Err(why) => return failed(why.to_string()),
        };
        let listed = Box::pin(enforcer.list_resources(at, work_until, &mut random)).await;
        let mut resources = match listed {
            Ok(resources) => resources,
            Err(ListError { operation, reason }) => {
                return failed(format!("{} failed: {reason}", operation.name()));
            }
        };
        resources.sort_by_key(Cursor::of);
        if let Some(from) = &message.from {
            resources.retain(|r| Cursor::of(r) >= *from);
        }
        let (summary, unreached) =
            Box::pin(sweep_listed(&enforcer, resources, work_until, on_done)).await;
        let next = unreached.iter().map(Cursor::of).min();
        let failures = summary
            .reports
            .iter()
            .filter(|r| r.outcome.is_failure())
            .count();
        let mut reasons = Vec::new();
        if failures > 0 {
            reasons.push(format!("{failures} resource(s) failed"));
        }
        if let Some(next) = &next {
            let follow_up = Outgoing::grouped(message.next(next.clone()).body(), at.group());
            if let Err(e) = self
                .send_to_queue(QueueKind::Sweep, &[follow_up], deadline, &mut random)
                .await
            {
                reasons.push(format!(
                    "{} resource(s) not reached, and the follow-up message was not sent: {}",
                    unreached.len(),
                    e.reason
                ));
            }
        }
        let end = match (reasons.is_empty(), next) {
            (false, _) => PartEnd::Failed(reasons.join("; ")),
            (true, Some(next)) => PartEnd::Continued(next),
            (true, None) => PartEnd::Swept,
        };
        PartResult {
            message: message.clone(),
            end,
            summary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::outcome::InitialState;

    fn at() -> Location {
        Location::new("111111111111", "eu-west-1").unwrap()
    }

    #[test]
    fn a_message_is_self_contained_and_read_back_as_sent() {
        let first = PlaceMessage::first("sweep-1", &at());
        let next = first.next(Cursor {
            service: Service::Firehose,
            name: "orders".into(),
        });
        for message in [&first, &next] {
            let (read, place) = PlaceMessage::parse(&message.body()).unwrap();
            assert_eq!(&read, message);
            assert_eq!(place, at());
            assert!(PlaceMessage::claims(&message.body()));
        }
        assert_eq!(next.part, 2);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&next.body()).unwrap(),
            serde_json::json!({
                "kind": MESSAGE_KIND, "version": 1, "sweep_id": "sweep-1",
                "account": "111111111111", "region": "eu-west-1",
                "from": {"service": "firehose", "name": "orders"}, "part": 2
            })
        );
    }

    #[test]
    fn a_bad_message_says_what_is_wrong() {
        let good = serde_json::to_value(PlaceMessage::first("s", &at())).unwrap();
        let with = |key: &str, value: serde_json::Value| {
            let mut v = good.clone();
            v[key] = value;
            v.to_string()
        };
        let cases = [
            ("{".to_owned(), "not a sweep place message"),
            (with("kind", "other".into()), "is not"),
            (with("version", 2.into()), "version 2"),
            (with("sweep_id", "a b".into()), "sweep_id"),
            (with("part", 0.into()), "part is 0"),
            (with("account", "12".into()), "12"),
            (with("region", "moon-1".into()), "moon-1"),
            (with("extra", 1.into()), "unknown field"),
            (
                with(
                    "from",
                    serde_json::json!({"service": "kinesis", "name": "a b"}),
                ),
                "a b",
            ),
        ];
        for (body, says) in cases {
            let err = PlaceMessage::parse(&body).unwrap_err();
            assert!(err.contains(says), "{body}: {err}");
        }
        assert!(!PlaceMessage::claims(r#"{"source": "aws.kinesis"}"#));
    }

    #[test]
    fn resources_are_taken_kinesis_first_then_by_name() {
        let r = |service, name: &str| Resource::named(service, at(), name).unwrap();
        let mut list = [
            r(Service::Firehose, "a"),
            r(Service::Kinesis, "b"),
            r(Service::Kinesis, "a"),
        ];
        list.sort_by_key(Cursor::of);
        let names: Vec<String> = list
            .iter()
            .map(|r| format!("{}/{}", r.service, r.name))
            .collect();
        assert_eq!(names, ["kinesis/a", "kinesis/b", "firehose/a"]);
    }

    #[test]
    fn only_an_old_resource_the_sweep_remediated_was_missed() {
        let report = |outcome, event: &str, created: Option<i64>| Report {
            event_name: Some(event.into()),
            found: Some(InitialState {
                status: "ACTIVE".into(),
                encryption: "NONE".into(),
                key: None,
                created,
            }),
            ..Report::new(outcome)
        };
        let after = Duration::from_secs(900);
        let now = 10_000;
        assert!(missed_by_events(
            &report(Outcome::Remediated, SWEEP_EVENT_NAME, Some(now - 900)),
            now,
            after
        ));
        // Younger: its event may still be on the way.
        assert!(!missed_by_events(
            &report(Outcome::Remediated, SWEEP_EVENT_NAME, Some(now - 899)),
            now,
            after
        ));
        // Already compliant, or handled by its event.
        assert!(!missed_by_events(
            &report(Outcome::AlreadyCompliant, SWEEP_EVENT_NAME, Some(0)),
            now,
            after
        ));
        assert!(!missed_by_events(
            &report(Outcome::Remediated, "CreateStream", Some(0)),
            now,
            after
        ));
        // No creation time: not counted.
        assert!(!missed_by_events(
            &report(Outcome::Remediated, SWEEP_EVENT_NAME, None),
            now,
            after
        ));
    }

    #[test]
    fn a_scheduled_events_id_is_its_sweep_id() {
        let event = serde_json::json!({"id": "89d1a02d-5ec7-412e-82f5-13505f849b41"});
        assert_eq!(sweep_id_of(&event), "89d1a02d-5ec7-412e-82f5-13505f849b41");
        let odd = sweep_id_of(&serde_json::json!({"id": "has space"}));
        assert!(odd.starts_with("sweep-"), "{odd}");
    }
}
