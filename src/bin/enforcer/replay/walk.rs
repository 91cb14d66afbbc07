//! The walk over the queue: receive, run each message's event, delete or release it.

use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;
use stream_encryption_enforcer::aws::error::AwsError;
use stream_encryption_enforcer::lambda::{HandlerError, Output};
use stream_encryption_enforcer::model::event::MAX_EVENT_BYTES;
use stream_encryption_enforcer::sweep::plan::PlaceMessage;

/// SQS returns at most ten messages per ReceiveMessage.
pub const BATCH: usize = 10;
/// SQS's longest visibility timeout: 12 hours.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// How long each receive waits for a message (long polling: every server is asked).
pub const WAIT: Duration = Duration::from_secs(1);
/// The walk gives up after this many receives in a row that bring only messages it already
/// handled (they come back once their visibility runs out in a long walk).
pub const MAX_SEEN_RECEIVES: usize = 100;
/// The end of the function's name (`FunctionName: <stack>-enforcer` in template.yaml).
pub const FUNCTION_SUFFIX: &str = "-enforcer";
/// The sources of the events the product's rules deliver: stream calls and the sweep's schedule.
pub const SOURCES: [&str; 3] = ["aws.kinesis", "aws.firehose", "aws.events"];

/// One message as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The message id: the same for every receipt of one message.
    pub id: String,
    /// The receipt handle of this receipt, for delete and visibility changes.
    pub receipt: String,
    pub body: String,
    /// SQS's `ApproximateReceiveCount` (1 on the first receipt), when it was given.
    pub receive_count: Option<u32>,
    /// EventBridge's `ERROR_CODE` attribute on a dead-letter message.
    pub error_code: Option<String>,
}

/// The calls the walk makes on a queue.
pub trait Queue {
    /// Up to `max` messages (1 to [`BATCH`]), each hidden for `visibility`.
    fn receive(
        &self,
        max: usize,
        visibility: Duration,
    ) -> impl Future<Output = Result<Vec<Received>, AwsError>>;
    fn delete(&self, receipt: &str) -> impl Future<Output = Result<(), AwsError>>;
    /// Makes the message visible again now.
    fn release(&self, receipt: &str) -> impl Future<Output = Result<(), AwsError>>;
    /// SQS's `ApproximateNumberOfMessages`, for the progress bar; `None` when it cannot be read.
    fn approximate_len(&self) -> impl Future<Output = Option<u64>>;
}

/// Where a message's event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// Lambda's on-failure destination record; the event is its `requestPayload`.
    OnFailure,
    /// A bare event, as a dead-letter queue holds it.
    Event,
    /// A sweep place message, as the sweep queue's dead-letter queue holds it: it is handed to
    /// the handler as a batch of one.
    Place,
}

/// The event a message holds, or why it holds none. `function`: the ARN of the function whose
/// on-failure records are replayed (`--function`), when known.
pub fn unwrap_message(
    body: &str,
    function: Option<&str>,
) -> Result<(Source, serde_json::Value), String> {
    if body.len() > 2 * MAX_EVENT_BYTES {
        return Err(format!("larger than {} bytes", 2 * MAX_EVENT_BYTES));
    }
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    if PlaceMessage::claims(body) {
        PlaceMessage::parse(body)?;
        let batch = serde_json::json!({"Records": [{
            "messageId": "replayed-place-message",
            "eventSource": "aws:sqs",
            "body": body,
        }]});
        return Ok((Source::Place, batch));
    }
    let serde_json::Value::Object(mut object) = value else {
        return Err("not a JSON object".into());
    };
    // An on-failure record always has requestContext; an EventBridge event never has it.
    let (source, event) = if let Some(context) = object.get("requestContext").cloned() {
        // With --function, the record must be that function's (its ARN, any qualifier):
        // anyone who may send to the queue could write a record, but not in Lambda's name.
        let recorded = context.get("functionArn").and_then(|v| v.as_str());
        if let Some(expected) = function {
            let unqualified =
                recorded.map(|arn| arn.split(':').take(7).collect::<Vec<_>>().join(":"));
            if unqualified.as_deref() != Some(expected) {
                return Err(format!(
                    "an on-failure record of {}, not of --function {expected}",
                    recorded.map_or("no function".to_owned(), |arn| format!("{arn:?}"))
                ));
            }
        }
        // template.yaml names the function `<stack>-enforcer`: a record of another function
        // belongs to someone else's queue.
        let function = recorded.and_then(|arn| arn.split(':').nth(6));
        if let Some(name) = function
            && !name.ends_with(FUNCTION_SUFFIX)
        {
            return Err(format!(
                "an on-failure record of the function {name:?}, not an enforcer's \
                 (<stack>{FUNCTION_SUFFIX})"
            ));
        }
        match object.remove("requestPayload") {
            Some(event) => (Source::OnFailure, event),
            None => {
                // Lambda leaves the payload out of a record too large for its destination.
                let field = |name: &str| context.get(name).and_then(|v| v.as_str()).unwrap_or("-");
                return Err(format!(
                    "a Lambda on-failure record without requestPayload (requestId {}, condition \
                     {}, {}): find the event in the function's log by its request id",
                    field("requestId"),
                    field("condition"),
                    object
                        .get("timestamp")
                        .and_then(|v| v.as_str())
                        .unwrap_or("no timestamp")
                ));
            }
        }
    } else {
        (Source::Event, serde_json::Value::Object(object))
    };
    match event.get("source").and_then(|v| v.as_str()) {
        Some(from) if SOURCES.contains(&from) => {}
        other => {
            return Err(format!(
                "its event's source is {}, not one the enforcer's rules deliver ({})",
                other.map_or("missing".to_owned(), |s| format!("{s:?}")),
                SOURCES.join(", ")
            ));
        }
    }
    // With --function, a scheduled event must come from the stack's own sweep rule
    // (template.yaml names it `<stack>-sweep`; the function is `<stack>-enforcer`). It then
    // plans the sweep onto the function's sweep queue, for the function to run.
    if let Some(function) = function
        && stream_encryption_enforcer::model::event::is_scheduled(&event)
    {
        let rule = sweep_rule_of(function).ok_or_else(|| {
            format!(
                "--function {function} is not a function ARN of a stack's <stack>{FUNCTION_SUFFIX}"
            )
        })?;
        let named = event
            .get("resources")
            .and_then(|r| r.as_array())
            .is_some_and(|r| r.iter().any(|v| v.as_str() == Some(rule.as_str())));
        if !named {
            return Err(format!(
                "a scheduled event whose resources do not name the stack's sweep rule {rule}"
            ));
        }
    }
    let size = serde_json::to_vec(&event).map_or(usize::MAX, |v| v.len());
    if size > MAX_EVENT_BYTES {
        return Err(format!("the event is larger than {MAX_EVENT_BYTES} bytes"));
    }
    Ok((source, event))
}

/// The ARN of the sweep rule of the stack whose function is `function`
/// (`arn:<partition>:lambda:<region>:<account>:function:<stack>-enforcer`).
fn sweep_rule_of(function: &str) -> Option<String> {
    let parts: Vec<&str> = function.split(':').collect();
    let [
        _,
        partition,
        "lambda",
        region,
        account,
        "function",
        name,
        ..,
    ] = parts.as_slice()
    else {
        return None;
    };
    let stack = name.strip_suffix(FUNCTION_SUFFIX)?;
    Some(format!(
        "arn:{partition}:events:{region}:{account}:rule/{stack}-sweep"
    ))
}

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The event's outcome was not a failure: the message is gone from the queue.
    Deleted,
    /// Dry run: the outcome was not a failure, so a replay would delete the message; it stays.
    WouldDelete,
    /// The event failed, was refused or cannot be used: the message stays in the queue.
    Kept,
}

/// One row of the summary: one message.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub message_id: String,
    pub source: Option<Source>,
    pub receive_count: Option<u32>,
    pub resource: Option<String>,
    /// The event's outcome; `sweep` for a complete scheduled sweep, `unusable` for a message
    /// with no usable event.
    pub outcome: String,
    pub action: Action,
    pub reason: Option<String>,
}

/// The walk's result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplaySummary {
    pub messages: Vec<Row>,
    /// Messages by outcome.
    pub counts: BTreeMap<String, usize>,
    pub deleted: usize,
    pub kept: usize,
    /// The receive, delete or release call that failed, when one did; the walk stops at a
    /// failed receive.
    pub errors: Vec<String>,
}

impl ReplaySummary {
    /// Every message handled was deleted (or, in a dry run, would be) and no call failed.
    pub fn complete(&self) -> bool {
        self.kept == 0 && self.errors.is_empty()
    }
}

/// How the walk runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Handle every message, delete none.
    pub dry_run: bool,
    /// Handle at most this many messages.
    pub max: Option<usize>,
    /// How long each received message stays hidden: the handler's timeout and a margin.
    pub visibility: Duration,
    /// The function whose on-failure records are replayed (`--function`); without it, any
    /// function named `<stack>-enforcer`.
    pub function_arn: Option<String>,
}

/// The outcome name, resource and failure reason of the handler's answer; whether the message
/// may go.
fn judge(answer: &Result<Output, HandlerError>) -> (String, Option<String>, Option<String>, bool) {
    match answer {
        Ok(Output::Event(report)) => (
            report.outcome.as_str().to_owned(),
            report.resource.clone(),
            None,
            !report.outcome.is_failure(),
        ),
        Ok(Output::Sweep(_) | Output::Plan(_)) => ("sweep".into(), None, None, true),
        Ok(Output::Routed(_)) => ("routed".into(), None, None, true),
        Ok(Output::Batch(answer)) if answer.batch_item_failures.is_empty() => {
            ("sweep_place".into(), None, None, true)
        }
        Ok(Output::Batch(_)) => (
            "sweep_place_failed".into(),
            None,
            Some("the place was not swept whole; its reason is in the log".into()),
            false,
        ),
        Err(HandlerError::Failed(report) | HandlerError::Refused(report)) => (
            report.outcome.as_str().to_owned(),
            report.resource.clone(),
            Some(answer_reason(answer)),
            false,
        ),
        Err(
            HandlerError::SweepIncomplete(_)
            | HandlerError::Accounts(_)
            | HandlerError::PlanNotSent(_)
            | HandlerError::NotRouted(_),
        ) => (
            "sweep_incomplete".into(),
            None,
            Some(answer_reason(answer)),
            false,
        ),
        Err(HandlerError::InvalidEvent(_)) => {
            ("unusable".into(), None, Some(answer_reason(answer)), false)
        }
    }
}

fn answer_reason(answer: &Result<Output, HandlerError>) -> String {
    answer
        .as_ref()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

/// What the walk makes of one message.
enum Fate {
    /// The handler's answer.
    Answer(Box<Result<Output, HandlerError>>),
    /// No usable event, and why.
    Unusable(String),
    /// A sweep not run, because the sweep of this message id already ran in this replay; whether
    /// it completed.
    SweepRan(String, bool),
}

impl Fate {
    /// The outcome name, resource and reason of the row; whether the message may go.
    fn judge(&self) -> (String, Option<String>, Option<String>, bool) {
        match self {
            Self::Answer(answer) => judge(answer.as_ref()),
            Self::Unusable(why) => (
                "unusable".into(),
                None,
                Some(format!("the message holds no event: {why}")),
                false,
            ),
            Self::SweepRan(id, true) => (
                "sweep".into(),
                None,
                Some(format!(
                    "superseded: the sweep of message {id} completed in this replay"
                )),
                true,
            ),
            Self::SweepRan(id, false) => (
                "sweep_incomplete".into(),
                None,
                Some(format!(
                    "not run: the sweep of message {id} did not complete in this replay"
                )),
                false,
            ),
        }
    }
}

/// Walks the queue: each new message's event through `handle` (a batch at a time, its events
/// concurrently, its sweeps after them one at a time), deleting those whose outcome is not a
/// failure. `on_row` sees every row as it is made.
pub async fn replay<Q, H, Fut>(
    queue: &Q,
    options: Options,
    handle: H,
    on_row: impl Fn(&Row),
) -> ReplaySummary
where
    Q: Queue,
    H: Fn(serde_json::Value) -> Fut,
    Fut: Future<Output = Result<Output, HandlerError>>,
{
    let mut summary = ReplaySummary::default();
    // Messages handled and kept, by id, with their latest receipt (released at the end).
    let mut kept: HashMap<String, String> = HashMap::new();
    let mut deleted: std::collections::HashSet<String> = std::collections::HashSet::new();
    // The first sweep run in this replay: its message id, and whether it completed.
    let mut sweep: Option<(String, bool)> = None;
    let mut seen_receives = 0;
    let visibility = options.visibility.min(MAX_VISIBILITY);
    loop {
        let left = options
            .max
            .map_or(BATCH, |max| max.saturating_sub(summary.messages.len()));
        if left == 0 {
            break;
        }
        let batch = match queue.receive(left.min(BATCH), visibility).await {
            Ok(batch) => batch,
            Err(e) => {
                summary.errors.push(format!("sqs:ReceiveMessage: {e}"));
                break;
            }
        };
        if batch.is_empty() {
            break;
        }
        let mut new = Vec::new();
        for message in batch {
            if let Some(receipt) = kept.get_mut(&message.id) {
                // Back during the walk: hidden again by this receive, released at the end.
                *receipt = message.receipt;
            } else if deleted.contains(&message.id) {
                // A second copy of a message already deleted (SQS delivers at least once).
                if let Err(e) = queue.delete(&message.receipt).await {
                    summary
                        .errors
                        .push(format!("sqs:DeleteMessage {}: {e}", message.id));
                }
            } else if !new.iter().any(|m: &Received| m.id == message.id) {
                // (A second copy in the same receive is left to come back later.)
                new.push(message);
            }
        }
        if new.is_empty() {
            seen_receives += 1;
            if seen_receives >= MAX_SEEN_RECEIVES {
                summary.errors.push(format!(
                    "stopped after {MAX_SEEN_RECEIVES} receives in a row brought only messages \
                     already handled; replay again for the rest"
                ));
                break;
            }
            continue;
        }
        seen_receives = 0;
        let unwrapped: Vec<_> = new
            .iter()
            .map(|m| unwrap_message(&m.body, options.function_arn.as_deref()))
            .collect();
        let is_sweep = |u: &Result<(Source, serde_json::Value), String>| {
            u.as_ref().is_ok_and(|(_, event)| {
                stream_encryption_enforcer::model::event::is_scheduled(event)
            })
        };
        // The batch's events, concurrently; its sweeps wait.
        let answers = futures_util::future::join_all(unwrapped.iter().map(|u| {
            let handled = match u {
                Ok((_, event)) if !is_sweep(u) => Some(handle(event.clone())),
                _ => None,
            };
            async move {
                match handled {
                    Some(future) => Some(future.await),
                    None => None,
                }
            }
        }))
        .await;
        let mut fates = Vec::with_capacity(new.len());
        for ((message, unwrapped), answer) in new.iter().zip(&unwrapped).zip(answers) {
            let fate = match (unwrapped, answer) {
                (Err(why), _) => Fate::Unusable(why.clone()),
                (Ok(_), Some(answer)) => Fate::Answer(Box::new(answer)),
                // A sweep: the first one runs, alone; the others follow its result.
                (Ok((_, event)), None) => match &sweep {
                    Some((id, complete)) => Fate::SweepRan(id.clone(), *complete),
                    None => {
                        let answer = handle(event.clone()).await;
                        sweep = Some((message.id.clone(), answer.is_ok()));
                        Fate::Answer(Box::new(answer))
                    }
                },
            };
            fates.push(fate);
        }
        for ((message, unwrapped), fate) in new.into_iter().zip(unwrapped).zip(fates) {
            let (outcome, resource, reason, may_go) = fate.judge();
            let mut row = Row {
                message_id: message.id.clone(),
                source: unwrapped.ok().map(|(source, _)| source),
                receive_count: message.receive_count,
                resource,
                outcome,
                action: Action::Kept,
                reason,
            };
            if may_go && options.dry_run {
                row.action = Action::WouldDelete;
            } else if may_go {
                match queue.delete(&message.receipt).await {
                    Ok(()) => {
                        row.action = Action::Deleted;
                        deleted.insert(message.id.clone());
                    }
                    Err(e) => {
                        row.reason = Some(format!("handled, but sqs:DeleteMessage failed: {e}"));
                    }
                }
            }
            if row.action != Action::Deleted {
                tracing::warn!(
                    message_id = %row.message_id,
                    outcome = %row.outcome,
                    receive_count = row.receive_count,
                    dead_letter_error = message.error_code.as_deref(),
                    reason = row.reason.as_deref().unwrap_or("dry run"),
                    "message stays in the queue"
                );
                kept.insert(message.id, message.receipt);
            }
            *summary.counts.entry(row.outcome.clone()).or_default() += 1;
            match row.action {
                Action::Deleted => summary.deleted += 1,
                Action::Kept => summary.kept += 1,
                Action::WouldDelete => {}
            }
            on_row(&row);
            summary.messages.push(row);
        }
    }
    // What stays is visible again at once, for the next replay.
    for (id, receipt) in &kept {
        if let Err(e) = queue.release(receipt).await {
            summary.errors.push(format!(
                "sqs:ChangeMessageVisibility {id}: {e} (it becomes visible again after {} s)",
                visibility.as_secs()
            ));
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use stream_encryption_enforcer::model::outcome::{Outcome, Report};

    /// A queue in memory with SQS's visibility rules, minus the clock: a received message is
    /// hidden until it is released or deleted; `redeliver` hands an id out once more.
    #[derive(Default)]
    struct Fake {
        messages: RefCell<Vec<(String, String, bool, u32)>>,
        redeliver: RefCell<Vec<String>>,
        fail_receive: bool,
        /// At most this many messages per receive.
        batch: Option<usize>,
        calls: RefCell<Vec<String>>,
    }

    impl Fake {
        fn with(bodies: &[(&str, serde_json::Value)]) -> Self {
            let fake = Self::default();
            for (id, body) in bodies {
                let body = match body {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                fake.messages
                    .borrow_mut()
                    .push(((*id).into(), body, true, 0));
            }
            fake
        }
        fn visible(&self) -> Vec<String> {
            let messages = self.messages.borrow();
            messages
                .iter()
                .filter(|m| m.2)
                .map(|m| m.0.clone())
                .collect()
        }
        fn ids(&self) -> Vec<String> {
            self.messages.borrow().iter().map(|m| m.0.clone()).collect()
        }
    }

    impl Queue for Fake {
        async fn receive(&self, max: usize, _: Duration) -> Result<Vec<Received>, AwsError> {
            self.calls.borrow_mut().push(format!("receive {max}"));
            if self.fail_receive {
                return Err(AwsError::new("AccessDenied", "not allowed"));
            }
            // A message to hand out again is, once it has been received and is hidden.
            let hidden: Vec<String> = {
                let messages = self.messages.borrow();
                messages
                    .iter()
                    .filter(|m| !m.2)
                    .map(|m| m.0.clone())
                    .collect()
            };
            let mut again = Vec::new();
            self.redeliver.borrow_mut().retain(|id| {
                let now = hidden.contains(id);
                if now {
                    again.push(id.clone());
                }
                !now
            });
            let mut out = Vec::new();
            let max = self.batch.map_or(max, |b| b.min(max));
            for m in self.messages.borrow_mut().iter_mut() {
                if out.len() < max && (m.2 || again.contains(&m.0)) {
                    m.2 = false;
                    m.3 += 1;
                    out.push(Received {
                        id: m.0.clone(),
                        receipt: format!("{}#{}", m.0, m.3),
                        body: m.1.clone(),
                        receive_count: Some(m.3),
                        error_code: None,
                    });
                }
            }
            Ok(out)
        }
        async fn delete(&self, receipt: &str) -> Result<(), AwsError> {
            self.calls.borrow_mut().push(format!("delete {receipt}"));
            let id = receipt.split('#').next().unwrap_or_default();
            self.messages.borrow_mut().retain(|m| m.0 != id);
            Ok(())
        }
        async fn release(&self, receipt: &str) -> Result<(), AwsError> {
            self.calls.borrow_mut().push(format!("release {receipt}"));
            let id = receipt.split('#').next().unwrap_or_default();
            for m in self.messages.borrow_mut().iter_mut() {
                if m.0 == id {
                    m.2 = true;
                }
            }
            Ok(())
        }
        async fn approximate_len(&self) -> Option<u64> {
            Some(self.visible().len() as u64)
        }
    }

    /// An event the fake handler answers with `outcome` (`failed` as an error).
    fn event(outcome: &str) -> serde_json::Value {
        serde_json::json!({
            "source": "aws.kinesis",
            "detail-type": "AWS API Call via CloudTrail",
            "test-outcome": outcome
        })
    }

    fn scheduled(outcome: &str) -> serde_json::Value {
        serde_json::json!({"source": "aws.events", "detail-type": "Scheduled Event", "test-outcome": outcome})
    }

    fn summary_of(reports: Vec<Report>) -> stream_encryption_enforcer::sweep::SweepSummary {
        stream_encryption_enforcer::sweep::SweepSummary {
            counts: BTreeMap::new(),
            reports,
            unreached: vec!["arn:aws:kinesis:eu-west-1:111111111111:stream/late".into()],
            unlisted: Vec::new(),
        }
    }

    fn on_failure(event: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "version": "1.0",
            "timestamp": "2026-12-01T10:00:00.000Z",
            "requestContext": {
                "requestId": "00000000-0000-0000-0000-000000000000",
                "functionArn": "arn:aws:lambda:eu-west-1:111111111111:function:streams-enforcer:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 3
            },
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": {"errorType": "RemediationFailed", "errorMessage": "failed"}
        })
    }

    async fn handle(event: serde_json::Value) -> Result<Output, HandlerError> {
        match event["test-outcome"].as_str() {
            Some("failed") => {
                let mut report = Report::new(Outcome::Failed);
                report.reason = Some("KMS.NotFoundException: no such key".into());
                Err(HandlerError::Failed(Box::new(report)))
            }
            Some("remediated") => Ok(Output::Event(Report::new(Outcome::Remediated))),
            Some("ignored") => Ok(Output::Event(Report::new(Outcome::Ignored))),
            Some("flapping") => Err(HandlerError::Failed(Box::new(Report::new(
                Outcome::Flapping,
            )))),
            Some("refused") => Err(HandlerError::Refused(Box::new(Report::new(
                Outcome::Refused,
            )))),
            Some("invalid") => Err(HandlerError::InvalidEvent(
                stream_encryption_enforcer::model::event::parse(serde_json::json!(
                    "not an envelope"
                ))
                .expect_err("an invalid event"),
            )),
            Some("sweep-ok") => Ok(Output::Sweep(summary_of(Vec::new()).answer())),
            Some("sweep-incomplete") => Err(HandlerError::SweepIncomplete(Box::new(summary_of(
                Vec::new(),
            )))),
            Some("accounts") => Err(HandlerError::Accounts(
                stream_encryption_enforcer::aws::connector::CannotAct {
                    code: "AccessDeniedException".into(),
                    reason: "organizations:ListAccounts was denied".into(),
                },
            )),
            other => panic!("the handler got an event it should not: {other:?}"),
        }
    }

    const OPTIONS: Options = Options {
        dry_run: false,
        max: None,
        visibility: Duration::from_secs(360),
        function_arn: None,
    };

    #[tokio::test]
    async fn deletes_what_succeeded_and_releases_the_rest() {
        let queue = Fake::with(&[
            ("ok-record", on_failure(event("remediated"))),
            ("ok-bare", event("remediated")),
            ("failed", on_failure(event("failed"))),
            ("not-json", serde_json::Value::String("{oops".into())),
            ("no-payload", serde_json::json!({"requestContext": {}})),
        ]);
        let rows = RefCell::new(0);
        let summary = replay(&queue, OPTIONS, handle, |_| *rows.borrow_mut() += 1).await;
        assert_eq!(*rows.borrow(), 5);
        assert_eq!((summary.deleted, summary.kept), (2, 3));
        assert!(!summary.complete());
        assert_eq!(queue.ids(), ["failed", "not-json", "no-payload"]);
        // What stays is visible again for the next replay.
        assert_eq!(queue.visible(), queue.ids());
        let by_id: BTreeMap<_, _> = summary
            .messages
            .iter()
            .map(|r| (r.message_id.as_str(), r))
            .collect();
        assert_eq!(by_id["ok-record"].source, Some(Source::OnFailure));
        assert_eq!(by_id["ok-bare"].source, Some(Source::Event));
        assert_eq!(by_id["failed"].action, Action::Kept);
        assert_eq!(by_id["failed"].outcome, "failed");
        assert!(
            by_id["failed"]
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("KMS.NotFoundException")),
            "{:?}",
            by_id["failed"].reason
        );
        assert!(
            by_id["not-json"]
                .reason
                .as_deref()
                .unwrap()
                .contains("not JSON")
        );
        assert!(
            by_id["no-payload"]
                .reason
                .as_deref()
                .unwrap()
                .contains("without requestPayload")
        );
        assert_eq!(
            summary.counts,
            BTreeMap::from([
                ("failed".to_owned(), 1),
                ("remediated".to_owned(), 2),
                ("unusable".to_owned(), 2)
            ])
        );
    }

    #[tokio::test]
    async fn only_outcomes_that_are_not_failures_go() {
        let outcomes = [
            ("remediated", true),
            ("ignored", true),
            ("sweep-ok", true),
            ("failed", false),
            ("flapping", false),
            ("refused", false),
            ("invalid", false),
            ("sweep-incomplete", false),
            ("accounts", false),
        ];
        for (outcome, goes) in outcomes {
            let body = if outcome.starts_with("sweep") {
                scheduled(outcome)
            } else {
                event(outcome)
            };
            let queue = Fake::with(&[("m", on_failure(body))]);
            let summary = replay(&queue, OPTIONS, handle, |_| {}).await;
            assert_eq!(queue.ids().is_empty(), goes, "{outcome}: {summary:?}");
            let row = &summary.messages[0];
            assert_eq!(row.action == Action::Deleted, goes, "{outcome}: {row:?}");
            // Whatever stays says why.
            assert_eq!(row.reason.is_some(), !goes, "{outcome}: {row:?}");
        }
    }

    #[tokio::test]
    async fn one_sweep_runs_and_supersedes_the_others_or_keeps_them_when_it_did_not_complete() {
        for (first, later_go) in [("sweep-ok", true), ("sweep-incomplete", false)] {
            let queue = Fake::with(&[
                ("s1", on_failure(scheduled(first))),
                ("e1", event("remediated")),
                ("s2", scheduled("sweep-ok")),
                ("s3", on_failure(scheduled("sweep-ok"))),
            ]);
            let handled = RefCell::new(Vec::new());
            let summary = replay(
                &queue,
                OPTIONS,
                |e: serde_json::Value| {
                    handled
                        .borrow_mut()
                        .push(e["test-outcome"].as_str().unwrap_or_default().to_owned());
                    handle(e)
                },
                |_| {},
            )
            .await;
            // The event first (concurrently with the others of its batch), then one sweep.
            assert_eq!(handled.borrow().as_slice(), ["remediated", first]);
            let by_id: BTreeMap<_, _> = summary
                .messages
                .iter()
                .map(|r| (r.message_id.as_str(), r))
                .collect();
            for later in ["s2", "s3"] {
                let row = by_id[later];
                assert_eq!(row.action == Action::Deleted, later_go, "{row:?}");
                assert!(row.reason.as_deref().unwrap().contains("s1"), "{row:?}");
            }
            let left = if later_go {
                vec![]
            } else {
                vec!["s1", "s2", "s3"]
            };
            assert_eq!(queue.ids(), left, "{first}");
        }
    }

    #[tokio::test]
    async fn a_message_from_another_source_is_kept_unrun() {
        let mut foreign = event("remediated");
        foreign["source"] = "com.example.orders".into();
        let queue = Fake::with(&[("foreign", foreign), ("bare", serde_json::json!({"a": 1}))]);
        let summary = replay(&queue, OPTIONS, handle, |_| {}).await;
        assert_eq!(queue.ids(), ["foreign", "bare"]);
        for row in &summary.messages {
            assert_eq!(row.outcome, "unusable", "{row:?}");
            assert!(row.reason.as_deref().unwrap().contains("source"), "{row:?}");
        }
    }

    #[tokio::test]
    async fn a_receive_of_messages_already_handled_does_not_end_the_walk() {
        let queue = Fake {
            batch: Some(1),
            ..Fake::with(&[("failing", event("failed")), ("later", event("remediated"))])
        };
        // The second receive brings "failing" back, and only it.
        queue.redeliver.borrow_mut().push("failing".into());
        let summary = replay(&queue, OPTIONS, handle, |_| {}).await;
        assert_eq!(summary.messages.len(), 2, "{summary:?}");
        assert_eq!(queue.ids(), ["failing"]);
        let receives = queue
            .calls
            .borrow()
            .iter()
            .filter(|c| c.starts_with("receive"))
            .count();
        // failing, failing again, later, nothing.
        assert_eq!(receives, 4);
    }

    #[tokio::test]
    async fn a_dry_run_deletes_nothing_and_leaves_every_message_visible() {
        let queue = Fake::with(&[("a", event("remediated")), ("b", event("failed"))]);
        let options = Options {
            dry_run: true,
            ..OPTIONS
        };
        let summary = replay(&queue, options, handle, |_| {}).await;
        assert_eq!(queue.visible(), ["a", "b"]);
        assert!(!queue.calls.borrow().iter().any(|c| c.starts_with("delete")));
        let actions: Vec<Action> = summary.messages.iter().map(|r| r.action).collect();
        assert_eq!(actions, [Action::WouldDelete, Action::Kept]);
        assert_eq!((summary.deleted, summary.kept), (0, 1));
    }

    #[tokio::test]
    async fn max_bounds_the_messages_handled_and_each_receive_asks_for_no_more() {
        let ids: Vec<String> = (0..25).map(|i| format!("m{i:02}")).collect();
        let bodies: Vec<(&str, serde_json::Value)> = ids
            .iter()
            .map(|id| (id.as_str(), event("remediated")))
            .collect();
        let queue = Fake::with(&bodies);
        let options = Options {
            max: Some(13),
            ..OPTIONS
        };
        let summary = replay(&queue, options, handle, |_| {}).await;
        assert_eq!(summary.deleted, 13);
        assert_eq!(queue.ids().len(), 12);
        let receives: Vec<String> = queue
            .calls
            .borrow()
            .iter()
            .filter(|c| c.starts_with("receive"))
            .cloned()
            .collect();
        assert_eq!(receives, ["receive 10", "receive 3"]);
        // Without a bound the walk goes on until a receive brings nothing.
        let summary = replay(&queue, OPTIONS, handle, |_| {}).await;
        assert_eq!(summary.deleted, 12);
        assert!(queue.ids().is_empty() && summary.complete());
    }

    #[tokio::test]
    async fn a_message_back_during_the_walk_is_not_handled_twice() {
        let queue = Fake::with(&[("failing", event("failed")), ("later", event("remediated"))]);
        // "failing", received and hidden by the first receive, comes back with the second.
        queue.redeliver.borrow_mut().push("failing".into());
        let handled = RefCell::new(Vec::new());
        let summary = replay(
            &queue,
            OPTIONS,
            |e: serde_json::Value| {
                handled
                    .borrow_mut()
                    .push(e["test-outcome"].as_str().unwrap_or_default().to_owned());
                handle(e)
            },
            |_| {},
        )
        .await;
        assert_eq!(summary.messages.len(), 2);
        assert_eq!(handled.borrow().as_slice(), ["failed", "remediated"]);
        // Released with the receipt of its latest receive.
        let calls = queue.calls.borrow();
        let releases: Vec<&String> = calls.iter().filter(|c| c.starts_with("release")).collect();
        assert_eq!(releases, ["release failing#2"], "{calls:?}");
        assert_eq!(queue.visible(), ["failing"]);
    }

    #[tokio::test]
    async fn a_queue_that_cannot_be_read_is_an_error_with_nothing_handled() {
        let queue = Fake {
            fail_receive: true,
            ..Fake::with(&[("a", event("remediated"))])
        };
        let summary = replay(&queue, OPTIONS, handle, |_| {}).await;
        assert!(summary.messages.is_empty());
        assert_eq!(summary.errors.len(), 1);
        assert!(
            summary.errors[0].contains("AccessDenied"),
            "{:?}",
            summary.errors
        );
        assert!(!summary.complete());
    }

    #[test]
    fn unwraps_both_kinds_and_refuses_what_holds_no_event() {
        let bare = event("remediated");
        assert_eq!(
            unwrap_message(&bare.to_string(), None),
            Ok((Source::Event, bare.clone()))
        );
        assert_eq!(
            unwrap_message(&on_failure(bare.clone()).to_string(), None),
            Ok((Source::OnFailure, bare.clone()))
        );
        // With --function, only that function's records, whatever their qualifier: a record
        // planted under another function's ARN, or none, is kept unrun.
        let ours = "arn:aws:lambda:eu-west-1:111111111111:function:streams-enforcer";
        assert_eq!(
            unwrap_message(&on_failure(bare.clone()).to_string(), Some(ours)),
            Ok((Source::OnFailure, bare.clone()))
        );
        let other = "arn:aws:lambda:eu-west-1:111111111111:function:other-enforcer";
        let err = unwrap_message(&on_failure(bare.clone()).to_string(), Some(other)).unwrap_err();
        assert!(err.contains("not of --function"), "{err}");
        let mut unnamed = on_failure(bare.clone());
        unnamed["requestContext"]
            .as_object_mut()
            .unwrap()
            .remove("functionArn");
        assert!(unwrap_message(&unnamed.to_string(), Some(ours)).is_err());
        // A scheduled event, with --function, only from the stack's own sweep rule: a planted
        // one that names no rule, or another's, is kept unrun.
        let scheduled = |resources: serde_json::Value| {
            serde_json::json!({"source": "aws.events", "detail-type": "Scheduled Event", "resources": resources})
                .to_string()
        };
        let rule = "arn:aws:events:eu-west-1:111111111111:rule/streams-sweep";
        assert!(unwrap_message(&scheduled(serde_json::json!([rule])), Some(ours)).is_ok());
        for planted in [
            serde_json::json!([]),
            serde_json::json!(["arn:aws:events:eu-west-1:111111111111:rule/other-sweep"]),
            serde_json::json!(["arn:aws:events:eu-west-1:222222222222:rule/streams-sweep"]),
        ] {
            let err = unwrap_message(&scheduled(planted.clone()), Some(ours)).unwrap_err();
            assert!(
                err.contains("do not name the stack's sweep rule"),
                "{planted}: {err}"
            );
        }
        // A sweep place message (the sweep dead-letter queue's) is handed over as a batch of one.
        let place = PlaceMessage::first(
            "sweep-1",
            &stream_encryption_enforcer::model::resource::Location::new(
                "111111111111",
                "eu-west-1",
            )
            .unwrap(),
        )
        .body();
        let (source, batch) = unwrap_message(&place, None).unwrap();
        assert_eq!(source, Source::Place);
        assert_eq!(batch["Records"][0]["body"], serde_json::json!(place));
        assert_eq!(batch["Records"][0]["eventSource"], "aws:sqs");
        let broken = place.replace("\"part\":1", "\"part\":0");
        assert!(
            unwrap_message(&broken, None)
                .unwrap_err()
                .contains("part is 0")
        );
        for (body, why) in [
            ("[1]", "not a JSON object"),
            ("\"text\"", "not a JSON object"),
            ("", "not JSON"),
            (
                r#"{"requestContext":{"requestId":"r-1","condition":"RetriesExhausted"}}"#,
                "without requestPayload (requestId r-1, condition RetriesExhausted",
            ),
            (r#"{"detail-type":"Scheduled Event"}"#, "source is missing"),
            (
                r#"{"requestContext":{"functionArn":"arn:aws:lambda:eu-west-1:111111111111:function:orders:$LATEST"},"requestPayload":{"source":"aws.events"}}"#,
                "of the function \"orders\"",
            ),
        ] {
            let err = unwrap_message(body, None).expect_err(body);
            assert!(err.contains(why), "{body}: {err}");
        }
        let huge = format!(
            r#"{{"source":"aws.kinesis","detail":"{}"}}"#,
            "x".repeat(MAX_EVENT_BYTES)
        );
        assert!(
            unwrap_message(&huge, None)
                .unwrap_err()
                .contains("larger than")
        );
    }
}
