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
use crate::fleet::Fleet;
use crate::lambda::error::HandlerError;
use crate::lambda::{Output, Seen};
use crate::model::event::{self, InvalidEvent, Parsed};
use crate::model::outcome::{Outcome, Report};
use crate::model::resource::Location;
use serde::Serialize;
use serde_json::{Value, json};
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

/// Handles one event the events queue handed back. `None` when it is done with (its outcome is
/// a success, or its failure is kept in the failed-events queue); `Some(why)` when the message
/// must stay on the queue.
pub(super) async fn handle_queued<C: Connector>(
    fleet: &Fleet<C>,
    message_id: &str,
    body: &str,
    home: &Location,
    deadline: Instant,
    observe: &(impl Fn(Seen<'_>) + Sync),
) -> Option<String> {
    let mut random = fastrand::Rng::new();
    let (event, failure) = match serde_json::from_str::<Value>(body) {
        Err(e) => (
            Value::String(body.to_owned()),
            HandlerError::InvalidEvent(InvalidEvent::Envelope(e)),
        ),
        Ok(event) => {
            match Box::pin(fleet.handle(event.clone(), Some(home), deadline, &mut random)).await {
                Err(invalid) => (event, HandlerError::InvalidEvent(invalid)),
                Ok(report) => {
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
            }
        }
    };
    let record = failure_record(message_id, home, event, &failure);
    let kept = fleet
        .send_to_queue(
            QueueKind::Failed,
            &[Outgoing {
                body: record.to_string(),
                group: None,
                dedup: None,
            }],
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
