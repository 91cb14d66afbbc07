//! The errors an invocation ends in, and what Lambda is told of each ([`Diagnostic`]).

use crate::aws::connector::CannotAct;
use crate::model::event::InvalidEvent;
use crate::model::outcome::{Outcome, Report};
use crate::sweep::{ANSWER_LIMIT, SweepSummary};
use lambda_runtime::Diagnostic;

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
    Accounts(CannotAct),
    /// An event could not be routed to the events queue.
    #[error("not routed to the events queue: {0}")]
    NotRouted(String),
    /// A planned sweep's messages could not all be sent to the sweep queue.
    #[error("sweep plan: {0}")]
    PlanNotSent(crate::sweep::plan::PlanNotSent),
    /// A sweep left resources failed or unreached.
    #[error("{}", sweep_message(.0))]
    SweepIncomplete(Box<SweepSummary>),
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

impl HandlerError {
    /// The name Lambda is told (`errorType`).
    pub fn error_type(&self) -> &'static str {
        match self {
            HandlerError::InvalidEvent(_) => "InvalidEvent",
            HandlerError::Failed(report) if report.outcome == Outcome::Flapping => {
                "ResourceFlapping"
            }
            HandlerError::Failed(_) => "RemediationFailed",
            HandlerError::Refused(_) => "EventRefused",
            HandlerError::Accounts(_) => "AccountsUnreadable",
            HandlerError::PlanNotSent(_) => "SweepPlanNotSent",
            HandlerError::NotRouted(_) => "EventNotRouted",
            HandlerError::SweepIncomplete(_) => "SweepIncomplete",
        }
    }
}

impl From<HandlerError> for Diagnostic {
    fn from(err: HandlerError) -> Self {
        Diagnostic {
            error_type: err.error_type().to_owned(),
            error_message: err.to_string(),
        }
    }
}
