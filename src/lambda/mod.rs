//! The glue shared by the Lambda binary and `enforcer invoke`: deadline, logging, and the split
//! into a returned report or an error.

pub mod metrics;

use crate::aws::clients::AwsClients;
use crate::aws::connector::Connector;
use crate::fleet::Fleet;
use crate::lambda::metrics::{emf_line, now_ms};
use crate::model::event::{self, InvalidEvent};
use crate::model::outcome::{Outcome, Report};
use crate::model::resource::Location;
use crate::sweep::{ANSWER_LIMIT, SweepAnswer, SweepSummary};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// Time kept back from the invocation's deadline to log and return the outcome.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(2);

/// An event that did not end in a success outcome. Returned to Lambda as an error so that its
/// retries and the on-failure destination keep the event.
#[derive(thiserror::Error)]
pub enum HandlerError {
    /// The event cannot be used; retrying will not help, the on-failure destination keeps it.
    #[error("invalid event: {0}")]
    InvalidEvent(#[from] InvalidEvent),
    /// The outcome is `failed`.
    #[error("{}", failure_message(.0))]
    Failed(Box<Report>),
    /// The outcome is `refused`: the resource is outside the accounts and regions the function
    /// may act on.
    #[error("refused {}: {}", .0.resource.as_deref().unwrap_or("-"), .0.reason.as_deref().unwrap_or("-"))]
    Refused(Box<Report>),
    /// The organisation's accounts, which a sweep covers, could not be read.
    #[error("sweep: {0}")]
    Accounts(crate::aws::connector::CannotAct),
    /// A sweep left resources failed or unreached.
    #[error("{}", sweep_message(.0))]
    SweepIncomplete(Box<SweepSummary>),
}

/// What an invocation returns: one event's report, or a sweep's summary.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Output {
    /// The report of a CloudTrail event.
    Event(Report),
    /// The answer of a scheduled sweep: counts, and what is not compliant, capped.
    Sweep(SweepAnswer),
}

/// The error of an incomplete sweep: counts, and at most [`ANSWER_LIMIT`] names of each kind
/// (every report is in the log), so that it stays far below what Lambda takes.
fn sweep_message(summary: &SweepSummary) -> String {
    let failed: Vec<&str> = summary
        .reports
        .iter()
        .filter(|r| r.outcome.is_failure())
        .filter_map(|r| r.resource.as_deref())
        .collect();
    let unlisted: Vec<String> = summary
        .unlisted
        .iter()
        .take(ANSWER_LIMIT)
        .map(|u| format!("{}/{}: {}", u.account, u.region, u.reason))
        .collect();
    let unreached: Vec<&str> = summary.unreached.iter().map(String::as_str).collect();
    format!(
        "sweep incomplete: {} failed {:?}, {} not reached before the deadline {:?}, {} account(s) and region(s) not listed {:?}{}",
        failed.len(),
        &failed[..failed.len().min(ANSWER_LIMIT)],
        unreached.len(),
        &unreached[..unreached.len().min(ANSWER_LIMIT)],
        summary.unlisted.len(),
        unlisted,
        if failed
            .len()
            .max(unreached.len())
            .max(summary.unlisted.len())
            > ANSWER_LIMIT
        {
            format!(" (the first {ANSWER_LIMIT} of each; every one is in the log)")
        } else {
            String::new()
        }
    )
}

fn failure_message(report: &Report) -> String {
    format!(
        "{} {}: {} after {} write call(s): {}",
        report.service.map(|s| s.to_string()).unwrap_or_default(),
        report.resource.as_deref().unwrap_or("-"),
        report.error_code.as_deref().unwrap_or("-"),
        report.attempts,
        report.reason.as_deref().unwrap_or("-"),
    )
}

// The runtime logs a handler's error with `{:?}`: make that the readable message, not a struct dump.
impl std::fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl From<HandlerError> for Diagnostic {
    fn from(err: HandlerError) -> Self {
        let error_type = match &err {
            HandlerError::InvalidEvent(_) => "InvalidEvent",
            HandlerError::Failed(report) if report.outcome == Outcome::Flapping => {
                "ResourceFlapping"
            }
            HandlerError::Failed(_) => "RemediationFailed",
            HandlerError::Refused(_) => "EventRefused",
            HandlerError::Accounts(_) => "AccountsUnreadable",
            HandlerError::SweepIncomplete(_) => "SweepIncomplete",
        };
        Diagnostic {
            error_type: error_type.to_owned(),
            error_message: err.to_string(),
        }
    }
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

/// Runs one invocation: a scheduled event sweeps every account and region the function serves
/// (its own; in central mode also the allowed ones), any other event is handled on its own and
/// refused unless its resource is one the function may act on. Every report is logged and
/// passed to `on_report`; `failed`, `refused`, an incomplete sweep and an unusable event become
/// errors.
pub async fn run_event<C: Connector>(
    fleet: &Fleet<C>,
    event: serde_json::Value,
    deadline: Instant,
    home: Option<&Location>,
    on_report: impl Fn(&Report) + Sync,
) -> Result<Output, HandlerError> {
    let mut random = fastrand::Rng::new();
    if event::is_scheduled(&event) {
        let home = home.ok_or_else(|| {
            InvalidEvent::Inconsistent(
                "a scheduled sweep needs the function's account and region".into(),
            )
        })?;
        fleet
            .refresh_accounts(deadline, &mut random)
            .await
            .map_err(HandlerError::Accounts)?;
        let locations = fleet.sweep_locations(home);
        let summary = Box::pin(fleet.sweep(home, locations, deadline, |report| {
            report.log();
            on_report(report);
        }))
        .await;
        summary.log();
        if !summary.is_complete() {
            return Err(HandlerError::SweepIncomplete(Box::new(summary)));
        }
        return Ok(Output::Sweep(summary.answer()));
    }
    // Boxed: the enforcement future is deep, and the runtime nests it further.
    let report = Box::pin(fleet.handle(event, home, deadline, &mut random)).await?;
    report.log();
    on_report(&report);
    match report.outcome {
        Outcome::Failed | Outcome::Flapping => {
            return Err(HandlerError::Failed(Box::new(report)));
        }
        Outcome::Refused => return Err(HandlerError::Refused(Box::new(report))),
        _ => {}
    }
    Ok(Output::Event(report))
}

/// The account and region of an invoked function's ARN
/// (`arn:<partition>:lambda:<region>:<account>:function:<name>`).
pub fn home_of(function_arn: &str) -> Option<Location> {
    let parts: Vec<&str> = function_arn.splitn(7, ':').collect();
    match parts[..] {
        ["arn", _, "lambda", region, account, "function", _] => Location::new(account, region).ok(),
        _ => None,
    }
}

/// The account and region the function serves. Lambda names them in the invoked function's
/// ARN; a local runtime may send a placeholder instead (`cargo lambda watch` sends
/// `function-arn`), and then they are those of the clients' credentials and region
/// (sts:GetCallerIdentity, asked once per container).
pub struct Home {
    clients: AwsClients,
    known: Mutex<Option<Location>>,
}

impl Home {
    /// A lookup that falls back to `clients`' identity.
    pub fn new(clients: AwsClients) -> Self {
        Self {
            clients,
            known: Mutex::new(None),
        }
    }

    /// The home for an invocation of `function_arn`, or `None` when it cannot be told.
    pub async fn of(&self, function_arn: &str) -> Option<Location> {
        if let Some(home) = home_of(function_arn) {
            return Some(home);
        }
        if let Some(home) = self.lock().clone() {
            return Some(home);
        }
        match self.clients.home().await {
            Ok(home) => {
                tracing::info!(
                    function_arn,
                    home = %home,
                    "the invoked function's ARN names no account; serving the credentials' own"
                );
                *self.lock() = Some(home.clone());
                Some(home)
            }
            Err(e) => {
                tracing::error!(function_arn, error = %e, "cannot tell the function's account");
                None
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Location>> {
        crate::sync::lock(&self.known)
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
    let metrics = |report: &Report| println!("{}", emf_line(metrics_namespace, report, now_ms()));
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

/// Installs the tracing subscriber: JSON lines (one per log record) or plain text, on stderr
/// when `to_stderr` (the CLI keeps stdout for its report).
pub fn init_tracing(level: tracing::Level, json: bool, to_stderr: bool) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_ansi(false);
    let result = match (json, to_stderr) {
        (true, false) => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        (true, true) => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(std::io::stderr)
            .try_init(),
        (false, _) => builder.with_writer(std::io::stderr).try_init(),
    };
    // A second initialisation (tests) keeps the first subscriber.
    drop(result);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_comes_from_the_function_arn() {
        let home = home_of("arn:aws:lambda:eu-west-1:123456789012:function:enforcer").unwrap();
        assert_eq!(
            (
                home.account.as_str(),
                home.region.as_str(),
                home.partition.as_str()
            ),
            ("123456789012", "eu-west-1", "aws")
        );
        assert!(home_of("function-arn").is_none());
        assert!(home_of("arn:aws:lambda:eu-west-1:123:function:x").is_none());
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
}
