//! Firehose: leave a non-DirectPut delivery stream alone, wait while it or its encryption is
//! changing, apply the mandated key (a key ARN, or the AWS owned key for an AWS managed
//! mandate) with one `StartDeliveryStreamEncryption`, and confirm it is `ENABLED`. The
//! judgements are pure; [`super::drive`] makes the calls.

use super::drive::{Poll, Procedure, Step};
use super::{Halt, Verdict, codes};
use crate::aws::Aws;
use crate::aws::error::AwsError;
use crate::aws::firehose::{
    DeliveryStatus, DeliverySummary, EncryptionStatus, FirehoseApi, FirehoseKey,
};
use crate::model::exemption::Tags;
use crate::model::key::{KeyInfo, MandatedKey};
use crate::model::outcome::{InitialState, Outcome};
use crate::model::resource::{Location, Resource};
use crate::policy::ratelimit::Operation;
use std::future::Future;

/// The Firehose procedure for one event: the key the delivery stream must be on.
pub(super) struct Firehose {
    wanted: FirehoseKey,
}

impl Procedure for Firehose {
    type Summary = DeliverySummary;
    const DESCRIBE: Operation = Operation::DescribeDeliveryStream;
    const LIST_TAGS: Operation = Operation::ListTagsForDeliveryStream;
    const START: Operation = Operation::StartDeliveryStreamEncryption;

    fn describe<A: Aws>(
        aws: &A,
        stream: &Resource,
    ) -> impl Future<Output = Result<DeliverySummary, AwsError>> + Send {
        aws.delivery_summary(stream)
    }

    fn tags<A: Aws>(
        aws: &A,
        stream: &Resource,
    ) -> impl Future<Output = Result<Tags, AwsError>> + Send {
        aws.delivery_stream_tags(stream)
    }

    fn start<A: Aws>(
        &self,
        aws: &A,
        stream: &Resource,
    ) -> impl Future<Output = Result<(), AwsError>> + Send {
        FirehoseApi::start_encryption(aws, stream, &self.wanted)
    }

    fn deleting(summary: &DeliverySummary) -> Option<&'static str> {
        (summary.status == DeliveryStatus::Deleting)
            .then_some("the delivery stream is being deleted")
    }

    fn found(summary: &DeliverySummary) -> InitialState {
        InitialState {
            status: summary.status.name().to_owned(),
            encryption: summary
                .encryption
                .as_ref()
                .map_or("NONE".to_owned(), |e| match &e.key {
                    Some(FirehoseKey::AwsOwned) => format!("{} AWS_OWNED_CMK", e.status.name()),
                    Some(FirehoseKey::CustomerManaged(_)) => {
                        format!("{} CUSTOMER_MANAGED_CMK", e.status.name())
                    }
                    None => e.status.name().to_owned(),
                }),
            key: summary.encryption.as_ref().and_then(|e| match &e.key {
                Some(FirehoseKey::CustomerManaged(arn)) => Some(arn.clone()),
                _ => None,
            }),
            created: summary.created,
        }
    }

    fn before_key(summary: &DeliverySummary) -> Option<Verdict> {
        (!summary.is_direct_put()).then(|| {
            Verdict(
                Outcome::NotApplicable,
                format!(
                    "source is {}: only DirectPut delivery streams can have server-side encryption; the data is protected by its source's encryption",
                    summary.source_type
                ),
            )
        })
    }

    fn unresolved(
        _: &MandatedKey,
        _: &Location,
        _: &DeliverySummary,
        why: Halt,
    ) -> Result<Verdict, Halt> {
        Err(why)
    }

    fn new(_: &MandatedKey, _: &Location, mandated: Option<KeyInfo>) -> Self {
        // Firehose needs a key ARN; an AWS managed mandated key means the AWS owned key there.
        let wanted = match mandated {
            Some(info) if !info.aws_managed => FirehoseKey::CustomerManaged(info.arn),
            _ => FirehoseKey::AwsOwned,
        };
        Self { wanted }
    }

    fn step(&self, now: &DeliverySummary, waited: bool) -> Step {
        if now.status == DeliveryStatus::CreatingFailed {
            return Step::Done(Verdict(
                Outcome::NotApplicable,
                "the delivery stream's creation failed (CREATING_FAILED): there is nothing to encrypt".into(),
            ));
        }
        let encryption = now.encryption.as_ref();
        let on_wanted = encryption.is_some_and(|e| e.key.as_ref() == Some(&self.wanted));
        // Not ready: the stream is not ACTIVE, or encryption is changing to another key or off.
        match (&now.status, encryption.map(|e| &e.status)) {
            // Someone (or an earlier delivery of this event) already asked for the mandated
            // key: only confirm.
            (DeliveryStatus::Active, Some(EncryptionStatus::Enabling)) if on_wanted => {
                return Step::Confirm;
            }
            (
                DeliveryStatus::Active,
                Some(status @ (EncryptionStatus::Enabling | EncryptionStatus::Disabling)),
            ) => return Step::Wait(format!("encryption {}", status.name())),
            (DeliveryStatus::Active, _) => {}
            (status, _) => return Step::Wait(status.name().to_owned()),
        }
        if on_wanted && encryption.is_some_and(|e| e.status == EncryptionStatus::Enabled) {
            let by = if waited {
                ", put on by another caller while the enforcer waited"
            } else {
                ""
            };
            return Step::Done(Verdict(
                Outcome::AlreadyCompliant,
                format!("server-side encryption is ENABLED with the mandated key{by}"),
            ));
        }
        Step::Apply {
            was: encryption.map_or("unencrypted".to_owned(), |e| e.to_string()),
            seen: format!("{} {:?}", now.status.name(), encryption),
        }
    }

    fn confirmed(&self, now: &DeliverySummary, took: bool, _was: &str) -> Result<Poll, Halt> {
        let Some(enc) = &now.encryption else {
            return Err(Halt::failed(
                codes::KEY_MISMATCH,
                "no encryption configuration after StartDeliveryStreamEncryption".into(),
            ));
        };
        match (&enc.status, enc.key.as_ref() == Some(&self.wanted)) {
            (EncryptionStatus::Enabled, true) => {
                let outcome = if took {
                    Outcome::Remediated
                } else {
                    Outcome::AlreadyCompliant
                };
                Ok(Poll::Done(Verdict(
                    outcome,
                    "server-side encryption is ENABLED with the mandated key".into(),
                )))
            }
            (EncryptionStatus::Enabling, _) => Ok(Poll::Pending("ENABLING".into())),
            (EncryptionStatus::EnablingFailed, _) => {
                let failure = enc
                    .failure
                    .clone()
                    .unwrap_or_else(|| "no failure description".into());
                let code = failure
                    .split(':')
                    .next()
                    .unwrap_or(codes::ENABLING_FAILED)
                    .to_owned();
                Err(Halt::Failed {
                    code,
                    reason: format!("encryption ENABLING_FAILED: {failure}"),
                })
            }
            _ => Err(Halt::failed(
                codes::KEY_MISMATCH,
                format!("after StartDeliveryStreamEncryption the stream reports {enc}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::firehose::DeliveryEncryption;

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1111aaaa-22bb-33cc-44dd-555555eeeeee";
    const OTHER: &str =
        "arn:aws:kms:us-east-1:123456789012:key/9999ffff-88ee-77dd-66cc-444444bbbbbb";

    fn procedure(aws_managed: bool) -> Firehose {
        let key = MandatedKey::parse("alias/org-streams").unwrap();
        let at = Location::new("123456789012", "us-east-1").unwrap();
        let mandated = KeyInfo {
            arn: KEY.into(),
            aws_managed,
        };
        Firehose::new(&key, &at, Some(mandated))
    }

    fn summary(
        status: DeliveryStatus,
        encryption: Option<(EncryptionStatus, Option<&str>)>,
    ) -> DeliverySummary {
        DeliverySummary {
            status,
            source_type: "DirectPut".into(),
            encryption: encryption.map(|(status, key)| DeliveryEncryption {
                status,
                key: key.map(|k| match k {
                    "owned" => FirehoseKey::AwsOwned,
                    arn => FirehoseKey::CustomerManaged(arn.into()),
                }),
                failure: None,
            }),
            created: None,
        }
    }

    /// A step in words, to compare in a table.
    fn said(step: Step) -> String {
        match step {
            Step::Wait(state) => format!("wait {state}"),
            Step::Done(Verdict(outcome, _)) => outcome.to_string(),
            Step::Confirm => "confirm".into(),
            Step::Apply { .. } => "apply".into(),
        }
    }

    #[test]
    fn each_read_is_a_wait_an_outcome_a_confirm_or_a_write() {
        use DeliveryStatus as D;
        use EncryptionStatus as E;
        let table = [
            (D::Creating, None, "wait CREATING"),
            (D::CreatingFailed, None, "not_applicable"),
            (D::Active, None, "apply"),
            (D::Active, Some((E::Disabled, None)), "apply"),
            (
                D::Active,
                Some((E::Enabled, Some(KEY))),
                "already_compliant",
            ),
            (D::Active, Some((E::Enabling, Some(KEY))), "confirm"),
            (D::Active, Some((E::Enabled, Some(OTHER))), "apply"),
            (D::Active, Some((E::Enabled, Some("owned"))), "apply"),
            (
                D::Active,
                Some((E::Enabling, Some(OTHER))),
                "wait encryption ENABLING",
            ),
            (
                D::Active,
                Some((E::Disabling, Some(KEY))),
                "wait encryption DISABLING",
            ),
            (D::Active, Some((E::EnablingFailed, Some(KEY))), "apply"),
            (D::Active, Some((E::DisablingFailed, Some(OTHER))), "apply"),
        ];
        let customer_managed = procedure(false);
        for (status, encryption, want) in table {
            let read = summary(status, encryption);
            assert_eq!(said(customer_managed.step(&read, false)), want, "{read:?}");
        }
        // An AWS managed mandate means the AWS owned key.
        let managed = procedure(true);
        let owned = summary(D::Active, Some((E::Enabled, Some("owned"))));
        assert_eq!(said(managed.step(&owned, false)), "already_compliant");
        let on_key = summary(D::Active, Some((E::Enabled, Some(KEY))));
        assert_eq!(said(managed.step(&on_key, false)), "apply");
    }

    #[test]
    fn after_the_write_only_enabled_on_the_wanted_key_is_a_positive_outcome() {
        use DeliveryStatus as D;
        use EncryptionStatus as E;
        let procedure = procedure(false);
        let judged =
            |encryption, took| match procedure.confirmed(&summary(D::Active, encryption), took, "")
            {
                Ok(Poll::Done(Verdict(outcome, _))) => outcome.to_string(),
                Ok(Poll::Pending(state)) => format!("pending {state}"),
                Err(Halt::Failed { code, .. }) => code,
                Err(_) => "other halt".into(),
            };
        assert_eq!(judged(Some((E::Enabled, Some(KEY))), true), "remediated");
        assert_eq!(
            judged(Some((E::Enabled, Some(KEY))), false),
            "already_compliant"
        );
        assert_eq!(
            judged(Some((E::Enabling, Some(KEY))), true),
            "pending ENABLING"
        );
        assert_eq!(
            judged(Some((E::Enabled, Some(OTHER))), true),
            "Enforcer.KeyMismatch"
        );
        assert_eq!(judged(None, true), "Enforcer.KeyMismatch");
        assert_eq!(
            judged(Some((E::EnablingFailed, Some(KEY))), true),
            "no failure description"
        );
        let mut failed = summary(D::Active, Some((E::EnablingFailed, Some(KEY))));
        if let Some(e) = failed.encryption.as_mut() {
            e.failure = Some("KMS_ACCESS_DENIED: the key policy denies Firehose".into());
        }
        match procedure.confirmed(&failed, true, "") {
            Err(Halt::Failed { code, reason }) => {
                assert_eq!(code, "KMS_ACCESS_DENIED");
                assert!(
                    reason.starts_with("encryption ENABLING_FAILED: "),
                    "{reason}"
                );
            }
            _ => panic!("an ENABLING_FAILED stream fails the event"),
        }
    }

    #[test]
    fn only_a_direct_put_delivery_stream_is_decided_after_the_key() {
        let mut read = summary(DeliveryStatus::Active, None);
        assert!(Firehose::before_key(&read).is_none());
        read.source_type = "KinesisStreamAsSource".into();
        assert!(matches!(
            Firehose::before_key(&read),
            Some(Verdict(Outcome::NotApplicable, _))
        ));
    }
}
