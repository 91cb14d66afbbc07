//! Kinesis Data Streams: wait while a stream is not `ACTIVE`, apply the mandated key in the
//! configured form with one `StartStreamEncryption`, and confirm it took. The judgements are
//! pure; [`super::drive`] makes the calls.

use super::drive::{Poll, Procedure, Step};
use super::{Halt, Verdict, codes};
use crate::aws::Aws;
use crate::aws::error::AwsError;
use crate::aws::kinesis::{KinesisApi, StreamStatus, StreamSummary};
use crate::model::exemption::Tags;
use crate::model::key::{KeyForm, KeyInfo, KeyMatch, MandatedKey, compare};
use crate::model::outcome::{InitialState, Outcome};
use crate::model::resource::{Location, Resource};
use crate::policy::ratelimit::Operation;
use std::future::Future;

/// The Kinesis procedure for one event: the mandated key as configured and as resolved.
pub(super) struct Kinesis {
    key: MandatedKey,
    at: Location,
    mandated: Option<KeyInfo>,
}

/// Whether a reported key is the configured mandated key by its form alone (no KMS).
fn provably_configured(key: &MandatedKey, reported: &str, at: &Location) -> bool {
    reported == key.configured()
        || KeyForm::parse(reported)
            .is_ok_and(|form| compare(&form, key.form(), at) == KeyMatch::Same)
}

impl Kinesis {
    /// Whether a key reported by a data stream is the mandated key: the configured form (or an
    /// equal one), or the mandated key's own ARN or key id. Another alias that points at the
    /// mandated key is not: any admin of the account can re-point it later, and no stream event
    /// fires when that happens. So no KMS call is needed to decide.
    fn is_mandated(&self, reported: &str) -> bool {
        if provably_configured(&self.key, reported, &self.at) {
            return true;
        }
        let resolved = self
            .mandated
            .as_ref()
            .and_then(|m| KeyForm::parse(&m.arn).ok());
        match (KeyForm::parse(reported), resolved) {
            (Ok(form @ (KeyForm::KeyId(_) | KeyForm::KeyArn { .. })), Some(arn)) => {
                compare(&form, &arn, &self.at) == KeyMatch::Same
            }
            _ => false,
        }
    }
}

impl Procedure for Kinesis {
    type Summary = StreamSummary;
    const DESCRIBE: Operation = Operation::DescribeStreamSummary;
    const LIST_TAGS: Operation = Operation::ListTagsForStream;
    const START: Operation = Operation::StartStreamEncryption;

    fn describe<A: Aws>(
        aws: &A,
        stream: &Resource,
    ) -> impl Future<Output = Result<StreamSummary, AwsError>> + Send {
        aws.stream_summary(stream)
    }

    fn tags<A: Aws>(
        aws: &A,
        stream: &Resource,
    ) -> impl Future<Output = Result<Tags, AwsError>> + Send {
        aws.stream_tags(stream)
    }

    fn start<A: Aws>(
        &self,
        aws: &A,
        stream: &Resource,
    ) -> impl Future<Output = Result<(), AwsError>> + Send {
        // Kinesis takes the key in the configured form.
        KinesisApi::start_encryption(aws, stream, self.key.configured())
    }

    fn deleting(summary: &StreamSummary) -> Option<&'static str> {
        (summary.status == StreamStatus::Deleting).then_some("the stream is being deleted")
    }

    fn found(summary: &StreamSummary) -> InitialState {
        InitialState {
            status: summary.status.name().to_owned(),
            encryption: if summary.key_id.is_some() {
                "KMS"
            } else {
                "NONE"
            }
            .to_owned(),
            key: summary.key_id.clone(),
            created: summary.created,
        }
    }

    fn before_key(_: &StreamSummary) -> Option<Verdict> {
        None
    }

    fn unresolved(
        key: &MandatedKey,
        at: &Location,
        summary: &StreamSummary,
        why: Halt,
    ) -> Result<Verdict, Halt> {
        // Without KMS only the forms provably equal to the configured key can be trusted;
        // everything else is left to the retry of the event.
        match &summary.key_id {
            Some(reported) if provably_configured(key, reported, at) => {
                tracing::warn!(stream_key = %reported, "mandated key not resolved; the stream names it in an equal form");
                Ok(Verdict(
                    Outcome::AlreadyCompliant,
                    format!(
                        "encrypted with {reported}, provably the configured key (KMS did not resolve it)"
                    ),
                ))
            }
            _ => Err(why),
        }
    }

    fn new(key: &MandatedKey, at: &Location, mandated: Option<KeyInfo>) -> Self {
        Self {
            key: key.clone(),
            at: at.clone(),
            mandated,
        }
    }

    fn step(&self, now: &StreamSummary, waited: bool) -> Step {
        if now.status != StreamStatus::Active {
            return Step::Wait(now.status.name().to_owned());
        }
        if let Some(key) = &now.key_id
            && self.is_mandated(key)
        {
            let by = if waited {
                ", the mandated key, put on by another caller while the enforcer waited"
            } else {
                ""
            };
            return Step::Done(Verdict(
                Outcome::AlreadyCompliant,
                format!("encrypted with {key}{by}"),
            ));
        }
        Step::Apply {
            was: now
                .key_id
                .as_deref()
                .map_or("unencrypted".to_owned(), |k| format!("encrypted with {k}")),
            seen: format!("{} {:?}", now.status.name(), now.key_id),
        }
    }

    fn confirmed(&self, now: &StreamSummary, _took: bool, was: &str) -> Result<Poll, Halt> {
        // While UPDATING the stream may still report its old key: judge only once ACTIVE.
        if now.status != StreamStatus::Active {
            return Ok(Poll::Pending(now.status.name().to_owned()));
        }
        let Some(key) = &now.key_id else {
            return Err(Halt::failed(
                codes::KEY_MISMATCH,
                "after StartStreamEncryption the stream is ACTIVE and not encrypted".into(),
            ));
        };
        if !self.is_mandated(key) {
            return Err(Halt::failed(
                codes::KEY_MISMATCH,
                format!(
                    "after StartStreamEncryption the stream reports key {key}, not the mandated key"
                ),
            ));
        }
        Ok(Poll::Done(Verdict(
            Outcome::Remediated,
            format!("was {was}; now encrypted with the mandated key"),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_ID: &str = "1111aaaa-22bb-33cc-44dd-555555eeeeee";

    fn at() -> Location {
        Location::new("123456789012", "us-east-1").unwrap()
    }

    fn key_arn(id: &str) -> String {
        format!("arn:aws:kms:us-east-1:123456789012:key/{id}")
    }

    /// The procedure for `alias/org-streams`, resolved to KEY_ID.
    fn procedure() -> Kinesis {
        let key = MandatedKey::parse("alias/org-streams").unwrap();
        let mandated = KeyInfo {
            arn: key_arn(KEY_ID),
            aws_managed: false,
        };
        Kinesis::new(&key, &at(), Some(mandated))
    }

    fn summary(status: StreamStatus, key: Option<&str>) -> StreamSummary {
        StreamSummary {
            status,
            key_id: key.map(str::to_owned),
            created: None,
        }
    }

    /// A step in words, to compare in a table.
    fn said(step: Step) -> String {
        match step {
            Step::Wait(state) => format!("wait {state}"),
            Step::Done(Verdict(outcome, reason)) => format!("{outcome}: {reason}"),
            Step::Confirm => "confirm".into(),
            Step::Apply { was, seen } => format!("apply, was {was}, seen {seen}"),
        }
    }

    #[test]
    fn each_read_is_a_wait_an_outcome_or_a_write() {
        let other = key_arn("9999ffff-88ee-77dd-66cc-444444bbbbbb");
        let table: Vec<(StreamSummary, bool, String)> = vec![
            (
                summary(StreamStatus::Creating, None),
                false,
                "wait CREATING".into(),
            ),
            (
                summary(StreamStatus::Updating, Some("alias/org-streams")),
                false,
                "wait UPDATING".into(),
            ),
            (
                summary(StreamStatus::Active, Some("alias/org-streams")),
                false,
                "already_compliant: encrypted with alias/org-streams".into(),
            ),
            (
                summary(StreamStatus::Active, Some(KEY_ID)),
                true,
                format!(
                    "already_compliant: encrypted with {KEY_ID}, the mandated key, put on by \
                     another caller while the enforcer waited"
                ),
            ),
            (
                summary(StreamStatus::Active, Some(&key_arn(KEY_ID))),
                false,
                format!("already_compliant: encrypted with {}", key_arn(KEY_ID)),
            ),
            // Another alias on the same key is not the mandated form.
            (
                summary(StreamStatus::Active, Some("alias/also-org")),
                false,
                "apply, was encrypted with alias/also-org, seen ACTIVE Some(\"alias/also-org\")"
                    .into(),
            ),
            (
                summary(StreamStatus::Active, Some(&other)),
                false,
                format!("apply, was encrypted with {other}, seen ACTIVE Some(\"{other}\")"),
            ),
            (
                summary(StreamStatus::Active, None),
                true,
                "apply, was unencrypted, seen ACTIVE None".into(),
            ),
        ];
        let procedure = procedure();
        for (read, waited, want) in table {
            let got = said(procedure.step(&read, waited));
            assert_eq!(got, want, "{read:?}, waited {waited}");
        }
    }

    #[test]
    fn after_the_write_only_an_active_stream_on_the_mandated_key_is_remediated() {
        let procedure = procedure();
        let judged = |status, key: Option<&str>| match procedure.confirmed(
            &summary(status, key),
            true,
            "unencrypted",
        ) {
            Ok(Poll::Done(Verdict(outcome, reason))) => format!("{outcome}: {reason}"),
            Ok(Poll::Pending(state)) => format!("pending {state}"),
            Err(Halt::Failed { code, reason }) => format!("{code}: {reason}"),
            Err(_) => "other halt".into(),
        };
        // While UPDATING the old key may still show.
        assert_eq!(
            judged(StreamStatus::Updating, Some("alias/other")),
            "pending UPDATING"
        );
        assert_eq!(
            judged(StreamStatus::Active, Some("alias/org-streams")),
            "remediated: was unencrypted; now encrypted with the mandated key"
        );
        assert_eq!(
            judged(StreamStatus::Active, None),
            "Enforcer.KeyMismatch: after StartStreamEncryption the stream is ACTIVE and not \
             encrypted"
        );
        assert_eq!(
            judged(StreamStatus::Active, Some("alias/other")),
            "Enforcer.KeyMismatch: after StartStreamEncryption the stream reports key \
             alias/other, not the mandated key"
        );
    }

    #[test]
    fn without_kms_only_a_provably_configured_key_is_compliant() {
        let key = MandatedKey::parse("alias/org-streams").unwrap();
        let why = || Halt::failed("ThrottlingException", "cannot resolve".into());
        let unresolved = |reported: Option<&str>| {
            Kinesis::unresolved(&key, &at(), &summary(StreamStatus::Active, reported), why())
                .map(|Verdict(outcome, _)| outcome)
                .map_err(|_| "halt")
        };
        let alias_arn = "arn:aws:kms:us-east-1:123456789012:alias/org-streams";
        assert_eq!(
            unresolved(Some("alias/org-streams")),
            Ok(Outcome::AlreadyCompliant)
        );
        assert_eq!(unresolved(Some(alias_arn)), Ok(Outcome::AlreadyCompliant));
        // The key's own id needs KMS to be recognised.
        assert_eq!(unresolved(Some(KEY_ID)), Err("halt"));
        assert_eq!(unresolved(None), Err("halt"));
    }
}
