//! The event's report: its outcome and reason from what the run decided, the key it decided
//! with, and what an operator or a tool's author can do about it.

use super::{EventRun, Halt, Verdict, codes};
use crate::aws::error::quota;
use crate::model::caller::advice;
use crate::model::event::Trigger;
use crate::model::key::MandatedKey;
use crate::model::outcome::{Outcome, Report};
use crate::model::resource::Service;

/// The report of an event that ended with `result`; `mandated` is the enforcer's key as
/// configured for the place, named when the event did not resolve it.
pub(super) fn build(
    trigger: &Trigger,
    run: EventRun<'_>,
    result: Result<Verdict, Halt>,
    mandated: &MandatedKey,
) -> Report {
    let (outcome, mut reason, error_code) = match result {
        Ok(Verdict(outcome, reason)) => (outcome, reason, None),
        Err(Halt::Gone { reason, code }) => (Outcome::Gone, reason, Some(code)),
        Err(Halt::Failed { reason, code }) => (Outcome::Failed, reason, Some(code)),
        Err(Halt::Flapping { reason }) => {
            (Outcome::Flapping, reason, Some(codes::FLAPPING.to_owned()))
        }
        // `enforce_with` hands a deferral back before a report is built.
        Err(Halt::Later { after }) => (
            Outcome::Failed,
            format!(
                "deferred by {}s without a way to come back",
                after.as_secs()
            ),
            Some(codes::DEADLINE.to_owned()),
        ),
    };
    let key = run
        .key
        .as_ref()
        .map_or_else(|| mandated.configured().to_owned(), |k| k.arn.clone());
    if let Some(note) = &run.note {
        reason = format!("{reason}; {note}");
    }
    if let Some(tool) = &run.tool
        && matches!(outcome, Outcome::Remediated | Outcome::Noncompliant)
    {
        let aws_owned = run.key.as_ref().is_none_or(|k| k.aws_managed);
        reason = format!(
            "{reason}. {}",
            iac_advice(trigger, tool, aws_owned, &key, mandated)
        );
    }
    Report {
        key: Some(key),
        attempts: run.writes,
        reason: Some(reason),
        error_code,
        settle_seconds: run
            .settle
            .as_ref()
            .filter(|s| s.quiet_since.is_some())
            .map(|s| s.period.as_secs()),
        found: run.found,
        creator: run.tool,
        key_changed_from: run.key_changed_from,
        ..Report::about(trigger, outcome)
    }
}

/// A tool's next run reverts what its definition does not declare: what the tool did, and
/// what to declare. `aws_owned`: the mandated key is AWS managed (or not created yet), which a
/// delivery stream takes as the AWS owned key; `resolved`: the key's ARN as resolved.
fn iac_advice(
    trigger: &Trigger,
    tool: &str,
    aws_owned: bool,
    resolved: &str,
    mandated: &MandatedKey,
) -> String {
    let firehose = trigger.resource.service == Service::Firehose;
    let declare = match (firehose, aws_owned) {
        (true, true) => crate::model::caller::AWS_OWNED,
        (true, false) => resolved,
        (false, _) => mandated.configured(),
    };
    let did = match trigger.event_name.as_str() {
        name if name.starts_with("Stop") => format!("turned encryption off ({name})"),
        name if name.starts_with("Start") => format!("applied another key ({name})"),
        name => format!("made the call ({name}) without the mandated key"),
    };
    format!("{tool} {did}: {}", advice(tool, firehose, declare))
}

/// What a used-up quota is, in a sentence, with where the docs say what to do; `None` for any
/// other error.
pub(super) fn quota_advice(code: &str) -> Option<&'static str> {
    Some(match code {
        quota::KINESIS_KEY_CHANGES => {
            "Kinesis allows a new key on a stream 25 times in a rolling 24 hours, and they are \
             used up; see docs/errors.md#enforcerkeychangequotaexceeded"
        }
        quota::FIREHOSE_ENCRYPTION_CALLS => {
            "Firehose allows 25 Start and Stop encryption calls per delivery stream in 24 hours, \
             and they are used up; see docs/errors.md#enforcerencryptioncallquotaexceeded"
        }
        quota::FIREHOSE_STREAMS_PER_KEY => {
            "the mandated key already encrypts 500 Firehose delivery streams, its limit; see \
             docs/errors.md#enforcerstreamsperkeyexceeded"
        }
        _ => return None,
    })
}
