//! Events at organisation scale: routed to their account and region's message group on the
//! events queue (a FIFO queue), and handled when the queue hands them back.
//!
//! Why: the API limits are per account and region, and SQS FIFO hands out one message group's
//! messages one batch at a time (a group's next messages wait while a batch of it is in flight,
//! <https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html>). With one group per
//! account and region, at most one invocation handles a place's events at once, whatever the
//! function's concurrency, so an organisation's burst is spread over as many invocations as it
//! has busy places instead of queueing behind a global cap, and one account's flood only ever
//! delays its own events. EventBridge cannot set the group from the event (an SQS FIFO target's
//! `MessageGroupId` is fixed per target), hence the routing step in the function itself.
//!
//! An event that fails when handled from the queue is not handed back to it (its place's group
//! would wait for the visibility timeout): it is kept in the failed-events queue as Lambda's
//! on-failure destination would keep it, for `enforcer replay`.

use crate::aws::connector::Connector;
use crate::aws::queue::{Outgoing, QueueKind};
use crate::fleet::{Carry, Deferral, Enforced, Fleet};
use crate::lambda::error::HandlerError;
use crate::lambda::{Output, Seen};
use crate::model::event::{self, InvalidEvent, Parsed};
use crate::model::outcome::{Outcome, Report};
use crate::model::resource::Location;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

/// What routing an event answers.
#[derive(Debug, Clone, Serialize)]
pub struct Routed {
    /// The event's id.
    pub event_id: String,
    /// The message group it went to: `<account>:<region>`.
    pub group: String,
}

/// The most characters of a FIFO deduplication id.
const MAX_DEDUP: usize = 128;

/// Routes `event` to its place's message group on the events queue. An event that needs no
/// action is answered `ignored` at once; one that cannot be used is an error, as if handled.
pub(super) async fn route<C: Connector>(
    fleet: &Fleet<C>,
    event: Value,
    deadline: Instant,
) -> Result<Output, HandlerError> {
    let body = event.to_string();
    let trigger = match event::parse(event)? {
        Parsed::Ignored {
            event_id,
            service,
            event_name,
            reason,
        } => {
            let report = Report::ignored(event_id, service, event_name, reason);
            report.log();
            return Ok(Output::Event(report));
        }
        Parsed::Trigger(trigger) => trigger,
    };
    let group = trigger.resource.location.group();
    let event_id = trigger.event_id.clone().unwrap_or_default();
    // EventBridge delivers at least once, with the same id: a copy within 5 minutes is taken
    // once. An id SQS would not take is replaced by the body's hash.
    let id_ok =
        (1..=MAX_DEDUP).contains(&event_id.len()) && event_id.bytes().all(|b| b.is_ascii_graphic());
    let mut message = Outgoing::grouped(body, group.clone());
    if id_ok {
        message.dedup = Some(event_id.clone());
    }
    let mut random = fastrand::Rng::new();
    fleet
        .send_to_queue(QueueKind::Events, &[message], deadline, &mut random)
        .await
        .map_err(|e| HandlerError::NotRouted(e.reason))?;
    tracing::info!(event_id = %event_id, group = %group, resource = %trigger.resource.arn(), "routed");
    Ok(Output::Routed(Routed { event_id, group }))
}

/// What a [`Recheck`]'s `kind` says.
pub const RECHECK_KIND: &str = "stream-encryption-enforcer/recheck";

/// Where a [`Recheck`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// On the re-check queue, waiting out its delay.
    Waiting,
    /// Back on the events queue, in its place's group, to be handled.
    Due,
}

/// An event deferred while its stream is not ready: it waits on the re-check queue (a standard
/// queue, whose messages can be delayed, up to 900 s), not in an invocation that would hold its
/// place's group, then goes back to that group and is handled on from what it carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recheck {
    /// Always [`RECHECK_KIND`].
    pub kind: String,
    /// Always 1.
    pub version: u32,
    /// Where it is.
    pub stage: Stage,
    /// Its place's message group.
    pub group: String,
    /// What the next handling carries on from.
    pub carry: Carry,
    /// The event.
    pub event: Value,
}

impl Recheck {
    /// `Some` when `body` claims to be a re-check (its `kind`): the re-check, or what is wrong.
    fn read(body: &str) -> Option<Result<Self, String>> {
        let value: Value = serde_json::from_str(body).ok()?;
        if value.get("kind").and_then(Value::as_str) != Some(RECHECK_KIND) {
            return None;
        }
        Some(
            serde_json::from_value::<Self>(value)
                .map_err(|e| format!("not a re-check message: {e}"))
                .and_then(|r| match r.version {
                    1 => Ok(r),
                    v => Err(format!("re-check version {v} is not 1")),
                }),
        )
    }
}

/// The most a standard queue delays a message
/// (<https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html>).
const MAX_DELAY: Duration = Duration::from_secs(900);

/// Handles one message the events queue or the re-check queue handed over. `None` when it is
/// done with (its outcome is a success, its failure is kept in the failed-events queue, it is
/// deferred, or back in its group); `Some(why)` when the message must stay on its queue.
pub(super) async fn handle_queued<C: Connector>(
    fleet: &Fleet<C>,
    message_id: &str,
    body: &str,
    home: &Location,
    deadline: Instant,
    observe: &(impl Fn(Seen<'_>) + Sync),
) -> Option<String> {
    let mut random = fastrand::Rng::new();
    let (event, carry) = match Recheck::read(body) {
        // Its wait is over: back to its place's group, where the place's work is one at a time.
        Some(Ok(recheck)) if recheck.stage == Stage::Waiting => {
            let due = Recheck {
                stage: Stage::Due,
                ..recheck
            };
            let body = serde_json::to_string(&due).unwrap_or_default();
            let back = Outgoing::grouped(body, due.group.clone());
            return fleet
                .send_to_queue(QueueKind::Events, &[back], deadline, &mut random)
                .await
                .err()
                .map(|e| format!("not sent back to its group: {}", e.reason));
        }
        Some(Ok(recheck)) => (Ok(recheck.event), Some(recheck.carry)),
        Some(Err(why)) => (
            Err((
                Value::String(body.to_owned()),
                HandlerError::InvalidEvent(InvalidEvent::Inconsistent(why)),
            )),
            None,
        ),
        None => match serde_json::from_str::<Value>(body) {
            Ok(event) => (Ok(event), None),
            Err(e) => (
                Err((
                    Value::String(body.to_owned()),
                    HandlerError::InvalidEvent(InvalidEvent::Envelope(e)),
                )),
                None,
            ),
        },
    };
    let failure = match event {
        Err(failure) => failure,
        Ok(event) => match Box::pin(handle_deferring(
            fleet,
            event.clone(),
            carry,
            home,
            deadline,
        ))
        .await
        {
            Err(invalid) => (event, HandlerError::InvalidEvent(invalid)),
            Ok(None) => return None,
            Ok(Some(report)) => {
                report.log();
                observe(Seen::Report(&report));
                match report.outcome {
                    Outcome::Failed | Outcome::Flapping => {
                        (event, HandlerError::Failed(Box::new(report)))
                    }
                    Outcome::Refused => (event, HandlerError::Refused(Box::new(report))),
                    _ => return None,
                }
            }
        },
    };
    let (event, failure) = failure;
    let record = failure_record(message_id, home, event, &failure);
    let kept = fleet
        .send_to_queue(
            QueueKind::Failed,
            &[Outgoing::plain(record.to_string(), None)],
            deadline,
            &mut random,
        )
        .await;
    match kept {
        Ok(_) => {
            tracing::error!(message_id, error = %failure, "kept in the failed-events queue");
            None
        }
        Err(e) => Some(format!(
            "{failure}; and it could not be kept in the failed-events queue: {}",
            e.reason
        )),
    }
}

/// Handles `event` from its place's group: with the re-check queue, a wait for its stream is
/// deferred there (`Ok(None)`); without it, or when it cannot take the event, the wait is made
/// here. `Some`: the event's one outcome.
async fn handle_deferring<C: Connector>(
    fleet: &Fleet<C>,
    event: Value,
    carry: Option<Carry>,
    home: &Location,
    deadline: Instant,
) -> Result<Option<Report>, InvalidEvent> {
    let mut random = fastrand::Rng::new();
    let deferral = match fleet.config().recheck_queue_url {
        Some(_) => Deferral::On(carry),
        None => Deferral::Off,
    };
    let handled = fleet
        .handle_with(event.clone(), Some(home), deadline, &mut random, deferral)
        .await?;
    let (after, carry) = match handled {
        Enforced::Done(report) => return Ok(Some(report)),
        Enforced::Later { after, carry } => (after, carry),
    };
    let group = match event::parse(event.clone())? {
        Parsed::Trigger(trigger) => trigger.resource.location.group(),
        Parsed::Ignored { .. } => String::new(),
    };
    let recheck = Recheck {
        kind: RECHECK_KIND.to_owned(),
        version: 1,
        stage: Stage::Waiting,
        group,
        carry,
        event: event.clone(),
    };
    let delay = after.min(MAX_DELAY).as_secs_f64().ceil().max(1.0) as i32;
    let waiting = Outgoing::plain(
        serde_json::to_string(&recheck).unwrap_or_default(),
        Some(delay),
    );
    match fleet
        .send_to_queue(QueueKind::Recheck, &[waiting], deadline, &mut random)
        .await
    {
        Ok(_) => {
            tracing::info!(
                event_id = event["id"].as_str().unwrap_or("-"),
                delay_s = delay,
                deferrals = recheck.carry.deferrals,
                "deferred to the re-check queue"
            );
            Ok(None)
        }
        Err(e) => {
            // Nothing lost: the wait is made here instead.
            tracing::warn!(error = %e, "the re-check queue did not take the event; waiting here");
            let report = fleet
                .handle(event, Some(home), deadline, &mut random)
                .await?;
            Ok(Some(report))
        }
    }
}

/// The record Lambda's on-failure destination keeps for a failed asynchronous invocation
/// (<https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html>), for an
/// event from the events queue: `enforcer replay` reads both alike.
fn failure_record(
    message_id: &str,
    home: &Location,
    event: Value,
    failure: &HandlerError,
) -> Value {
    let name = std::env::var("AWS_LAMBDA_FUNCTION_NAME")
        .unwrap_or_else(|_| "stream-encryption-enforcer".to_owned());
    let now = aws_sdk_sqs::primitives::DateTime::from(std::time::SystemTime::now())
        .fmt(aws_sdk_sqs::primitives::DateTimeFormat::DateTime)
        .unwrap_or_default();
    json!({
        "version": "1.0",
        "timestamp": now,
        "requestContext": {
            "requestId": message_id,
            "functionArn": format!(
                "arn:{}:lambda:{}:{}:function:{name}:$LATEST",
                home.partition, home.region, home.account
            ),
            "condition": "EventsQueueFailure",
            "approximateInvokeCount": 1
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorType": failure.error_type(), "errorMessage": failure.to_string()}
    })
}
