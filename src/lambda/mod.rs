//! The glue shared by the Lambda binary and `enforcer invoke`: deadline, logging, and the split
//! into a returned report or an error.

mod error;
pub mod events;
mod home;
mod metrics;
pub mod sqs;

pub use error::HandlerError;
pub use home::{Home, home_of};

use crate::aws::connector::Connector;
use crate::fleet::Fleet;
use crate::lambda::metrics::now_ms;
use crate::model::event::{self, InvalidEvent};
use crate::model::outcome::{Outcome, Report};
use crate::model::resource::Location;
use crate::sweep::SweepAnswer;
use crate::sweep::plan::{PartEnd, PartResult, PlaceMessage, missed_by_events, sweep_id_of};
use futures_util::stream::{self, StreamExt};
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// Time kept back from the invocation's deadline to log and return the outcome.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(2);

/// What an invocation returns: one event's report, or a sweep's summary.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Output {
    /// The report of a CloudTrail event.
    Event(Report),
    /// The answer of a scheduled sweep: counts, and what is not compliant, capped.
    Sweep(SweepAnswer),
    /// The answer of a scheduled sweep planned on the sweep queue.
    Plan(PlanAnswer),
    /// The answer to a batch of the sweep or events queue: the messages to keep.
    Batch(sqs::BatchResponse),
    /// An event routed to its place's message group on the events queue.
    Routed(events::Routed),
}

/// What a planned sweep answers.
#[derive(Debug, Clone, Serialize)]
pub struct PlanAnswer {
    /// The sweep's id, which every place's result carries.
    pub sweep_id: String,
    /// The place messages sent.
    pub places: usize,
    /// Why the organisation's accounts could not be read, when they could not: the plan then
    /// holds the function's own account and the accounts last read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accounts_unread: Option<String>,
}

/// What an invocation shows its observer (the Lambda writes metrics from it).
#[derive(Debug, Clone, Copy)]
pub enum Seen<'a> {
    /// A resource's report, from an event or a sweep.
    Report(&'a Report),
    /// A resource a sweep remediated that its event should have
    /// ([`crate::sweep::plan::missed_by_events`]).
    Missed(&'a Report),
    /// A sweep's plan was sent: this many places, and whether the organisation's accounts could
    /// not be read (the plan then holds only the accounts known).
    Planned(usize, bool),
    /// One place message's result.
    Part(&'a PartResult),
}

/// The longest a Lambda invocation can run.
pub const MAX_LAMBDA_TIMEOUT: Duration = Duration::from_secs(900);

/// The instant by which the handler must be done, given the invocation's deadline.
///
/// Lambda always sends a deadline in the future. A deadline more than a day in the past is not a
/// clock's reading but a local runtime's placeholder (`cargo lambda watch` sends the constant
/// 600000 ms, i.e. 1970): then the longest Lambda timeout is assumed instead of none.
pub fn deadline_from(at: SystemTime) -> Instant {
    let now = SystemTime::now();
    let remaining = match at.duration_since(now) {
        Ok(remaining) => remaining,
        Err(past) if past.duration() > Duration::from_secs(86_400) => {
            tracing::warn!(
                deadline_ms = at
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                "the runtime's deadline is not a time; assuming the longest Lambda timeout"
            );
            MAX_LAMBDA_TIMEOUT
        }
        Err(_) => Duration::ZERO,
    };
    Instant::now() + remaining.saturating_sub(DEADLINE_MARGIN)
}

/// Runs one invocation:
/// - a scheduled event sweeps every account and region the function serves (its own; in
///   central mode also the allowed ones), or with `SWEEP_QUEUE_URL` plans that sweep: one
///   message per place on the queue;
/// - an SQS batch sweeps each place message's place and handles each event message, and answers
///   the messages to keep;
/// - with `EVENTS_QUEUE_URL`, any other event is routed to its account and region's message
///   group there ([`events`]);
/// - else it is handled on its own and refused unless its resource is one the function may act
///   on.
///
/// Every report is logged and shown to `observe`; `failed`, `refused`, an incomplete sweep, a
/// plan not sent and an unusable event become errors.
pub async fn run_event<C: Connector>(
    fleet: &Fleet<C>,
    event: serde_json::Value,
    deadline: Instant,
    home: Option<&Location>,
    observe: impl Fn(Seen<'_>) + Sync,
) -> Result<Output, HandlerError> {
    let mut random = fastrand::Rng::new();
    let needs_home = |what: &str| {
        home.ok_or_else(|| {
            InvalidEvent::Inconsistent(format!("{what} needs the function's account and region"))
        })
    };
    let swept = |report: &Report| {
        report.log();
        observe(Seen::Report(report));
        if let Some(after) = fleet.config().missed_after
            && missed_by_events(report, metrics::now_ms() as i64 / 1000, after)
        {
            tracing::warn!(
                resource = report.resource.as_deref().unwrap_or("-"),
                created = report
                    .found
                    .as_ref()
                    .and_then(|f| f.created)
                    .unwrap_or_default(),
                "missed by events: the sweep remediated a resource whose own event should have; \
                 check the trail, the rules and the forwarding of its account and region \
                 (docs/operations.md#missed-by-events)"
            );
            observe(Seen::Missed(report));
        }
    };
    if sqs::is_sqs(&event) {
        let home = needs_home("a sweep queue message")?;
        let records = sqs::records(&event)
            .map_err(|e| InvalidEvent::Inconsistent(format!("an SQS batch: {e}")))?;
        return Ok(Output::Batch(
            Box::pin(run_batch(fleet, records, home, deadline, &swept, &observe)).await,
        ));
    }
    if event::is_scheduled(&event) {
        let home = needs_home("a scheduled sweep")?;
        let accounts = fleet.refresh_accounts(deadline, &mut random).await;
        if fleet.config().sweep_queue_url.is_some() {
            // An organisation that cannot be read does not stop the sweep of what is known: the
            // function's own account, and the accounts last read.
            let accounts_unread = accounts.err().map(|why| {
                tracing::error!(error = %why, "cannot read the organisation's accounts; planning the accounts known");
                why.to_string()
            });
            let sweep_id = sweep_id_of(&event);
            let locations = fleet.sweep_locations(home);
            let places = fleet
                .send_plan(&sweep_id, &locations, deadline, &mut random)
                .await
                .map_err(HandlerError::PlanNotSent)?;
            tracing::info!(sweep_id = %sweep_id, places, "sweep planned");
            observe(Seen::Planned(places, accounts_unread.is_some()));
            return Ok(Output::Plan(PlanAnswer {
                sweep_id,
                places,
                accounts_unread,
            }));
        }
        accounts.map_err(HandlerError::Accounts)?;
        let locations = fleet.sweep_locations(home);
        let summary = Box::pin(fleet.sweep(home, locations, deadline, swept)).await;
        summary.log();
        if !summary.is_complete() {
            return Err(HandlerError::SweepIncomplete(Box::new(summary)));
        }
        return Ok(Output::Sweep(summary.answer()));
    }
    if fleet.config().events_queue_url.is_some() {
        return events::route(fleet, event, deadline).await;
    }
    // Boxed: the enforcement future is deep, and the runtime nests it further.
    let report = Box::pin(fleet.handle(event, home, deadline, &mut random)).await?;
    report.log();
    observe(Seen::Report(&report));
    match report.outcome {
        Outcome::Failed | Outcome::Flapping => {
            return Err(HandlerError::Failed(Box::new(report)));
        }
        Outcome::Refused => return Err(HandlerError::Refused(Box::new(report))),
        _ => {}
    }
    Ok(Output::Event(report))
}

/// A batch of the sweep queue or the events queue: each place message's place swept, each event
/// handled, [`crate::sweep::LOCATIONS_IN_FLIGHT`] messages at a time; the answer names the
/// messages that are not done.
async fn run_batch<C: Connector>(
    fleet: &Fleet<C>,
    records: Vec<sqs::Record>,
    home: &Location,
    deadline: Instant,
    swept: &(impl Fn(&Report) + Sync),
    observe: &(impl Fn(Seen<'_>) + Sync),
) -> sqs::BatchResponse {
    let failed: Vec<Option<String>> = stream::iter(records)
        .map(|record| async move {
            if !PlaceMessage::claims(&record.body) {
                let kept = Box::pin(events::handle_queued(
                    fleet,
                    &record.message_id,
                    &record.body,
                    home,
                    deadline,
                    observe,
                ))
                .await;
                return kept.map(|why| {
                    tracing::error!(message_id = %record.message_id, error = %why, "event kept on the queue");
                    record.message_id
                });
            }
            let (message, at) = match PlaceMessage::parse(&record.body) {
                Ok(read) => read,
                Err(reason) => {
                    tracing::error!(message_id = %record.message_id, error = %reason, "not a sweep place message; kept for the dead-letter queue");
                    return Some(record.message_id);
                }
            };
            let part = Box::pin(fleet.sweep_part(&message, &at, home, deadline, swept)).await;
            part.log();
            observe(Seen::Part(&part));
            matches!(part.end, PartEnd::Failed(_)).then_some(record.message_id)
        })
        .buffer_unordered(crate::sweep::LOCATIONS_IN_FLIGHT)
        .collect()
        .await;
    sqs::BatchResponse {
        batch_item_failures: failed
            .into_iter()
            .flatten()
            .map(|item_identifier| sqs::ItemFailure { item_identifier })
            .collect(),
    }
}

/// The Lambda handler: runs the invocation, writing one metrics line (EMF) per outcome.
pub async fn lambda_handler<C: Connector>(
    fleet: &Fleet<C>,
    metrics_namespace: &str,
    home: &Home,
    event: LambdaEvent<serde_json::Value>,
) -> Result<Output, HandlerError> {
    let deadline = deadline_from(event.context.deadline());
    let home = home.of(&event.context.invoked_function_arn).await;
    let metrics = |seen: Seen<'_>| {
        if let Some(line) = metrics::line(metrics_namespace, seen, now_ms()) {
            println!("{line}");
        }
    };
    let result = run_event(fleet, event.payload, deadline, home.as_ref(), metrics).await;
    // A `failed` or `refused` report is already logged as its outcome line.
    if let Some(err) = result
        .as_ref()
        .err()
        .filter(|e| !matches!(e, HandlerError::Failed(_) | HandlerError::Refused(_)))
    {
        tracing::error!(request_id = %event.context.request_id, error = %err, "invocation failed");
    }
    result
}

/// Crates whose `trace` records hold whole requests: aws-smithy-runtime logs
/// "transmitting request" with the request and its in-memory body (an STS `AssumeRole` body has
/// the external id, a ledger item principal ARNs), and the HTTP and TLS crates their traffic. They
/// log at most `debug` whatever `LOG_LEVEL` says (target prefixes, as tracing names them).
const CAPPED_AT_DEBUG: [&str; 5] = ["aws_", "hyper", "h2", "rustls", "tower"];

/// The most verbose level logged for records of `target` under `level`.
fn level_for(target: &str, level: tracing::Level) -> tracing::Level {
    if CAPPED_AT_DEBUG
        .iter()
        .any(|prefix| target.starts_with(prefix))
    {
        level.min(tracing::Level::DEBUG)
    } else {
        level
    }
}

/// The filter of every log record: `level`, with the request-logging crates capped at `debug`.
fn log_filter(
    level: tracing::Level,
) -> impl tracing_subscriber::layer::Filter<tracing_subscriber::Registry> {
    use tracing_subscriber::filter::{FilterExt, LevelFilter, filter_fn};
    LevelFilter::from_level(level).and(filter_fn(move |meta| {
        *meta.level() <= level_for(meta.target(), level)
    }))
}

/// Installs the tracing subscriber: JSON lines (one per log record) or plain text, on stderr
/// when `to_stderr` (the CLI keeps stdout for its report).
pub fn init_tracing(level: tracing::Level, json: bool, to_stderr: bool) {
    use tracing_subscriber::{Layer, fmt, layer::SubscriberExt, util::SubscriberInitExt};
    let layer = fmt::layer().with_target(false).with_ansi(false);
    let layer = match (json, to_stderr) {
        (true, false) => layer
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_filter(log_filter(level))
            .boxed(),
        (true, true) => layer
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(std::io::stderr)
            .with_filter(log_filter(level))
            .boxed(),
        (false, _) => layer
            .with_writer(std::io::stderr)
            .with_filter(log_filter(level))
            .boxed(),
    };
    // A second initialisation (tests) keeps the first subscriber.
    drop(tracing_subscriber::registry().with(layer).try_init());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::SdkAws;
    use crate::aws::connector::Organization;
    use crate::aws::error::AwsError;
    use crate::config::Config;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

    /// A log sink the test reads back.
    #[derive(Clone, Default)]
    struct Sink(std::sync::Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn at_trace_the_crates_that_log_requests_stay_at_debug() {
        use tracing_subscriber::{Layer, fmt, layer::SubscriberExt};
        let logged = |level| {
            let sink = Sink::default();
            let writer = sink.clone();
            let layer = fmt::layer()
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .with_filter(log_filter(level));
            let subscriber = tracing_subscriber::registry().with(layer);
            tracing::subscriber::with_default(subscriber, || {
                // What aws-smithy-runtime logs of every request at trace, body included.
                tracing::trace!(target: "aws_smithy_runtime::client::orchestrator", "transmitting request Action=AssumeRole&ExternalId=org-secret");
                tracing::debug!(target: "aws_smithy_runtime::client::orchestrator", "an SDK debug line");
                tracing::trace!(target: "hyper_util::client::legacy", "hyper trace");
                tracing::trace!(target: "rustls::conn", "rustls trace");
                tracing::trace!(target: "stream_encryption_enforcer::enforce", "the enforcer's own trace");
                tracing::debug!(target: "stream_encryption_enforcer::enforce", "the enforcer's own debug");
            });
            String::from_utf8(sink.0.lock().unwrap().clone()).unwrap()
        };
        let trace = logged(tracing::Level::TRACE);
        assert!(!trace.contains("ExternalId"), "{trace}");
        assert!(
            !trace.contains("hyper trace") && !trace.contains("rustls trace"),
            "{trace}"
        );
        assert!(trace.contains("an SDK debug line"), "{trace}");
        assert!(trace.contains("the enforcer's own trace"), "{trace}");
        // Below trace the level is the level, for every crate.
        let info = logged(tracing::Level::INFO);
        assert!(!info.contains("debug") && !info.contains("trace"), "{info}");
        let debug = logged(tracing::Level::DEBUG);
        assert!(debug.contains("an SDK debug line") && debug.contains("the enforcer's own debug"));
        assert!(!debug.contains("own trace"), "{debug}");
    }

    /// A connector whose organisation read can fail, whose queues keep what is sent to them
    /// (the failed-events queue refuses it when `failed_queue_down`), and which reaches no place
    /// (every event it is asked to enforce fails).
    #[derive(Default)]
    struct Planner {
        org_down: AtomicBool,
        failed_queue_down: AtomicBool,
        sent: Mutex<Vec<(crate::aws::queue::QueueKind, crate::aws::queue::Outgoing)>>,
    }

    impl Connector for Planner {
        type Aws = SdkAws;

        fn connect(&self, at: &Location, _: bool) -> Result<SdkAws, AwsError> {
            Err(AwsError::new("Unexpected", format!("connect {at}")))
        }

        async fn assume(&self, _: &Location) -> Result<(), AwsError> {
            Ok(())
        }

        async fn organization(&self) -> Result<Organization, AwsError> {
            if self.org_down.load(SeqCst) {
                return Err(AwsError::new(
                    "ServiceException",
                    "AWS Organizations can't complete your request",
                ));
            }
            Ok(Organization {
                id: "o-a1b2c3d4e5".into(),
                accounts: ["111111111111", "222222222222", "123456789012"]
                    .map(String::from)
                    .into(),
            })
        }

        async fn enqueue(
            &self,
            queue: crate::aws::queue::QueueKind,
            messages: &[crate::aws::queue::Outgoing],
        ) -> Result<Vec<crate::aws::queue::Refused>, AwsError> {
            if queue == crate::aws::queue::QueueKind::Failed && self.failed_queue_down.load(SeqCst)
            {
                return Err(AwsError::new("AccessDenied", "not authorized"));
            }
            self.sent
                .lock()
                .unwrap()
                .extend(messages.iter().map(|m| (queue, m.clone())));
            Ok(Vec::new())
        }
    }

    fn planner() -> Fleet<Planner> {
        planner_with(&[])
    }

    fn planner_with(more: &[(&str, &str)]) -> Fleet<Planner> {
        let vars = [
            ("MANDATED_KMS_KEY", "alias/org-streams"),
            ("TARGET_ROLE_NAME", "Member"),
            ("ORGANIZATION_ID", "o-a1b2c3d4e5"),
            ("ALLOWED_REGIONS", "us-east-1,eu-west-1"),
            (
                "SWEEP_QUEUE_URL",
                "https://sqs.us-east-1.amazonaws.com/123456789012/sweep",
            ),
        ];
        let config = Config::from_lookup(|name| {
            vars.iter()
                .chain(more)
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap();
        Fleet::new(Planner::default(), &config)
    }

    fn places_sent(fleet: &Fleet<Planner>) -> Vec<String> {
        let mut places: Vec<String> = std::mem::take(&mut *fleet.connector().sent.lock().unwrap())
            .iter()
            .map(|(queue, message)| {
                assert_eq!(*queue, crate::aws::queue::QueueKind::Sweep);
                let (m, _) = PlaceMessage::parse(&message.body).unwrap();
                format!("{}/{}", m.account, m.region)
            })
            .collect();
        places.sort();
        places
    }

    #[tokio::test(start_paused = true)]
    async fn an_organisation_that_cannot_be_read_still_plans_what_is_known() {
        let home = Location::new("123456789012", "us-east-1").unwrap();
        let scheduled: serde_json::Value =
            serde_json::from_str(include_str!("../../events/scheduled-sweep.json")).unwrap();
        let run = |fleet| {
            let event = scheduled.clone();
            let home = home.clone();
            async move {
                let deadline = Instant::now() + Duration::from_secs(60);
                run_event(fleet, event, deadline, Some(&home), |_| {}).await
            }
        };
        // Never read (a cold container) and Organizations down: the function's own account.
        let cold = planner();
        cold.connector().org_down.store(true, SeqCst);
        let Ok(Output::Plan(plan)) = run(&cold).await else {
            panic!("not a plan")
        };
        // The coverage alarm hears of it: the plan's metrics count a failed place.
        let line = metrics::line("N", Seen::Planned(plan.places, true), 0).unwrap();
        let line: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (&line["PlacesPlanned"], &line["PlacesFailed"]),
            (&2.into(), &1.into())
        );
        assert_eq!(plan.places, 2);
        assert!(
            plan.accounts_unread
                .as_deref()
                .is_some_and(|why| why.contains("ServiceException")),
            "{plan:?}"
        );
        assert_eq!(
            places_sent(&cold),
            ["123456789012/eu-west-1", "123456789012/us-east-1"]
        );
        // Read once, then down at the next read: the accounts last read.
        let warm = planner();
        let Ok(Output::Plan(first)) = run(&warm).await else {
            panic!("not a plan")
        };
        assert_eq!((first.places, first.accounts_unread), (6, None));
        assert_eq!(places_sent(&warm).len(), 6);
        warm.connector().org_down.store(true, SeqCst);
        tokio::time::advance(Duration::from_secs(601)).await;
        let Ok(Output::Plan(again)) = run(&warm).await else {
            panic!("not a plan")
        };
        assert_eq!(again.places, 6);
        assert_eq!(
            places_sent(&warm),
            [
                "111111111111/eu-west-1",
                "111111111111/us-east-1",
                "123456789012/eu-west-1",
                "123456789012/us-east-1",
                "222222222222/eu-west-1",
                "222222222222/us-east-1",
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_keeps_a_margin_and_a_placeholder_means_the_longest_timeout() {
        let now = Instant::now();
        let in_a_minute = SystemTime::now() + Duration::from_secs(60);
        let got = deadline_from(in_a_minute) - now;
        assert!(
            got <= Duration::from_secs(58) && got > Duration::from_secs(57),
            "{got:?}"
        );
        // Just past (clock skew): no time at all, so no retry is attempted.
        assert_eq!(
            deadline_from(SystemTime::now() - Duration::from_secs(5)),
            now
        );
        // cargo lambda watch's constant 600000 ms.
        let placeholder = SystemTime::UNIX_EPOCH + Duration::from_millis(600_000);
        assert_eq!(
            deadline_from(placeholder) - now,
            MAX_LAMBDA_TIMEOUT - DEADLINE_MARGIN
        );
    }

    const QUEUED: [(&str, &str); 2] = [
        (
            "EVENTS_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/123456789012/events.fifo",
        ),
        (
            "FAILED_EVENTS_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/123456789012/failed",
        ),
    ];

    fn fixture(name: &str) -> serde_json::Value {
        let path = format!("{}/events/{name}.json", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn taken(
        fleet: &Fleet<Planner>,
    ) -> Vec<(crate::aws::queue::QueueKind, crate::aws::queue::Outgoing)> {
        std::mem::take(&mut *fleet.connector().sent.lock().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_is_routed_to_its_places_group_deduplicated_by_its_id() {
        let fleet = planner_with(&QUEUED);
        let home = Location::new("123456789012", "us-east-1").unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut event = fixture("kinesis-create-stream");
        event["detail"]["recipientAccountId"] = "111111111111".into();
        event["account"] = "111111111111".into();
        event["detail"]["awsRegion"] = "eu-west-1".into();
        event["region"] = "eu-west-1".into();
        let id = event["id"].as_str().unwrap().to_owned();
        let Ok(Output::Routed(routed)) =
            run_event(&fleet, event.clone(), deadline, Some(&home), |_| {}).await
        else {
            panic!("not routed")
        };
        assert_eq!(routed.group, "111111111111:eu-west-1");
        let sent = taken(&fleet);
        assert_eq!(sent.len(), 1);
        let (queue, message) = &sent[0];
        assert_eq!(*queue, crate::aws::queue::QueueKind::Events);
        assert_eq!(message.group.as_deref(), Some("111111111111:eu-west-1"));
        assert_eq!(message.dedup.as_deref(), Some(id.as_str()));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&message.body).unwrap(),
            event
        );
        // An event that needs no action is answered at once, and one that cannot be used is an
        // error, as if it were handled here: neither is sent.
        let mut failed_call = fixture("kinesis-create-stream");
        failed_call["detail"]["errorCode"] = "AccessDenied".into();
        let Ok(Output::Event(report)) =
            run_event(&fleet, failed_call, deadline, Some(&home), |_| {}).await
        else {
            panic!("not answered")
        };
        assert_eq!(report.outcome, Outcome::Ignored);
        let unusable = serde_json::json!({"source": "aws.kinesis", "detail-type": "x"});
        assert!(matches!(
            run_event(&fleet, unusable, deadline, Some(&home), |_| {}).await,
            Err(HandlerError::InvalidEvent(_))
        ));
        assert!(taken(&fleet).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_that_fails_from_the_queue_is_kept_in_the_failed_events_queue_not_the_group() {
        let fleet = planner_with(&QUEUED);
        let home = Location::new("123456789012", "us-east-1").unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let event = fixture("kinesis-create-stream");
        let batch = serde_json::json!({"Records": [
            {"messageId": "m-1", "body": event.to_string(), "eventSource": "aws:sqs"},
            {"messageId": "m-2", "body": "not json", "eventSource": "aws:sqs"}
        ]});
        // The connector reaches no place: the event fails, the body is no event; both are kept
        // as Lambda's on-failure records, and the batch keeps neither.
        let Ok(Output::Batch(answer)) =
            run_event(&fleet, batch.clone(), deadline, Some(&home), |_| {}).await
        else {
            panic!("not a batch answer")
        };
        assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
        let mut records: Vec<serde_json::Value> = taken(&fleet)
            .into_iter()
            .map(|(queue, message)| {
                assert_eq!(queue, crate::aws::queue::QueueKind::Failed);
                assert_eq!(message.group, None);
                serde_json::from_str(&message.body).unwrap()
            })
            .collect();
        records.sort_by_key(|r| r["requestContext"]["requestId"].to_string());
        assert_eq!(records.len(), 2);
        assert_eq!(records[0]["requestPayload"], event);
        assert_eq!(
            records[0]["responsePayload"]["errorType"],
            "RemediationFailed"
        );
        assert_eq!(records[1]["responsePayload"]["errorType"], "InvalidEvent");
        assert!(
            records[0]["requestContext"]["functionArn"]
                .as_str()
                .unwrap()
                .starts_with("arn:aws:lambda:us-east-1:123456789012:function:")
        );
        // When the failed-events queue cannot take them, the messages stay on the events queue.
        fleet.connector().failed_queue_down.store(true, SeqCst);
        let Ok(Output::Batch(answer)) =
            run_event(&fleet, batch, deadline, Some(&home), |_| {}).await
        else {
            panic!("not a batch answer")
        };
        let kept: Vec<&str> = answer
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(kept.len(), 2);
        assert!(kept.contains(&"m-1") && kept.contains(&"m-2"));
    }
}
