//! Firehose: inspect a delivery stream, leave a non-DirectPut one alone, wait while it or its
//! encryption is changing, apply the mandated key (a key ARN, or the AWS owned key for an AWS
//! managed mandate) with one `StartDeliveryStreamEncryption`, and confirm it is `ENABLED`.

use super::{Enforcer, Halt, Handling, Verdict, codes};
use crate::aws::Aws;
use crate::aws::firehose::{
    DeliveryStatus, DeliverySummary, EncryptionStatus, FirehoseApi, FirehoseKey,
};
use crate::model::exemption::Tags;
use crate::model::outcome::{InitialState, Outcome};
use crate::model::resource::Resource;
use crate::policy::ratelimit::Operation;

impl<A: Aws> Enforcer<A> {
    async fn describe_delivery_stream(
        &self,
        stream: &Resource,
        run: &mut Handling<'_>,
    ) -> Result<DeliverySummary, Halt> {
        let summary = self
            .read(run, Operation::DescribeDeliveryStream, || {
                self.aws.delivery_summary(stream)
            })
            .await?;
        if summary.status == DeliveryStatus::Deleting {
            return Err(Halt::Gone {
                reason: "the delivery stream is being deleted".into(),
                code: "DELETING".into(),
            });
        }
        Ok(summary)
    }

    pub(super) async fn enforce_delivery_stream(
        &self,
        stream: &Resource,
        record_tags: Option<&Tags>,
        run: &mut Handling<'_>,
    ) -> Result<Verdict, Halt> {
        let mut now = self.describe_delivery_stream(stream, run).await?;
        run.found = Some(InitialState {
            status: now.status.name().to_owned(),
            encryption: now
                .encryption
                .as_ref()
                .map_or("NONE".to_owned(), |e| match &e.key {
                    Some(FirehoseKey::AwsOwned) => format!("{} AWS_OWNED_CMK", e.status.name()),
                    Some(FirehoseKey::CustomerManaged(_)) => {
                        format!("{} CUSTOMER_MANAGED_CMK", e.status.name())
                    }
                    None => e.status.name().to_owned(),
                }),
            key: now.encryption.as_ref().and_then(|e| match &e.key {
                Some(FirehoseKey::CustomerManaged(arn)) => Some(arn.clone()),
                _ => None,
            }),
        });
        if !now.is_direct_put() {
            return Ok(Verdict(
                Outcome::NotApplicable,
                format!(
                    "source is {}: only DirectPut delivery streams can have server-side encryption; the data is protected by its source's encryption",
                    now.source_type
                ),
            ));
        }
        // Firehose needs a key ARN; an AWS managed mandated key means the AWS owned key there.
        let wanted = match self.mandated_key(run).await? {
            Some(info) if !info.aws_managed => FirehoseKey::CustomerManaged(info.arn),
            _ => FirehoseKey::AwsOwned,
        };
        loop {
            if now.status == DeliveryStatus::CreatingFailed {
                return Ok(Verdict(
                    Outcome::NotApplicable,
                    "the delivery stream's creation failed (CREATING_FAILED): there is nothing to encrypt".into(),
                ));
            }
            let encryption = now.encryption.as_ref();
            let on_wanted = encryption.is_some_and(|e| e.key.as_ref() == Some(&wanted));
            // Not ready: the stream is not ACTIVE, or encryption is changing to another key or off.
            let busy = match (&now.status, encryption.map(|e| &e.status)) {
                (DeliveryStatus::Active, Some(EncryptionStatus::Enabling)) if on_wanted => {
                    // Someone (or an earlier delivery of this event) already asked for the
                    // mandated key: only confirm.
                    return self.confirm_delivery_stream(stream, &wanted, run).await;
                }
                (
                    DeliveryStatus::Active,
                    Some(status @ (EncryptionStatus::Enabling | EncryptionStatus::Disabling)),
                ) => Some(format!("encryption {}", status.name())),
                (DeliveryStatus::Active, _) => None,
                (status, _) => Some(status.name().to_owned()),
            };
            if let Some(state) = busy {
                self.wait_until_ready(run, &state).await?;
                now = self.describe_delivery_stream(stream, run).await?;
                continue;
            }
            if on_wanted && encryption.is_some_and(|e| e.status == EncryptionStatus::Enabled) {
                let by = if run.waited() {
                    ", put on by another caller while the enforcer waited"
                } else {
                    ""
                };
                return Ok(Verdict(
                    Outcome::AlreadyCompliant,
                    format!("server-side encryption is ENABLED with the mandated key{by}"),
                ));
            }
            let seen = format!("{} {:?}", now.status.name(), encryption);
            if !self.settled(run, seen).await? {
                now = self.describe_delivery_stream(stream, run).await?;
                continue;
            }
            let was = encryption.map_or("unencrypted".to_owned(), |e| e.to_string());
            if let Some(done) = self
                .exempt_or_reported(
                    record_tags,
                    run,
                    &was,
                    Operation::ListTagsForDeliveryStream,
                    || self.aws.delivery_stream_tags(stream),
                )
                .await?
            {
                return Ok(done);
            }
            if self
                .write(
                    stream,
                    run,
                    Operation::StartDeliveryStreamEncryption,
                    || FirehoseApi::start_encryption(&self.aws, stream, &wanted),
                )
                .await?
            {
                return self.confirm_delivery_stream(stream, &wanted, run).await;
            }
            // Someone else is changing the stream right now: inspect again before anything else.
            self.wait_until_ready(run, "being changed by another caller (StartDeliveryStreamEncryption answered ResourceInUseException)")
                .await?;
            now = self.describe_delivery_stream(stream, run).await?;
        }
    }

    /// After a Start (ours, or one already ENABLING with the mandated key): polls until
    /// encryption is ENABLED with the mandated key, or has failed.
    async fn confirm_delivery_stream(
        &self,
        stream: &Resource,
        wanted: &FirehoseKey,
        run: &mut Handling<'_>,
    ) -> Result<Verdict, Halt> {
        let mut delay = self.polling.first;
        loop {
            let now = self.describe_delivery_stream(stream, run).await?;
            let Some(enc) = &now.encryption else {
                return Err(Halt::failed(
                    codes::KEY_MISMATCH,
                    "no encryption configuration after StartDeliveryStreamEncryption".into(),
                ));
            };
            match (&enc.status, enc.key.as_ref() == Some(wanted)) {
                (EncryptionStatus::Enabled, true) => {
                    let outcome = if run.took {
                        Outcome::Remediated
                    } else {
                        Outcome::AlreadyCompliant
                    };
                    return Ok(Verdict(
                        outcome,
                        "server-side encryption is ENABLED with the mandated key".into(),
                    ));
                }
                (EncryptionStatus::Enabling, _) => {
                    self.wait_to_confirm(&mut delay, run, "ENABLING").await?
                }
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
                    return Err(Halt::Failed {
                        code,
                        reason: format!("encryption ENABLING_FAILED: {failure}"),
                    });
                }
                _ => {
                    return Err(Halt::failed(
                        codes::KEY_MISMATCH,
                        format!("after StartDeliveryStreamEncryption the stream reports {enc}"),
                    ));
                }
            }
        }
    }
}
