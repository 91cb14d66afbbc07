//! Kinesis Data Streams: inspect a stream, wait while it is not `ACTIVE`, apply the mandated
//! key in the configured form with one `StartStreamEncryption`, and confirm it took.

use super::{Enforcer, Halt, Handling, Verdict, codes};
use crate::aws::Aws;
use crate::aws::kinesis::{KinesisApi, StreamStatus, StreamSummary};
use crate::model::exemption::Tags;
use crate::model::key::KeyInfo;
use crate::model::outcome::{InitialState, Outcome};
use crate::model::resource::Resource;
use crate::policy::ratelimit::Operation;

impl<A: Aws> Enforcer<A> {
    async fn describe_stream(
        &self,
        stream: &Resource,
        run: &mut Handling<'_>,
    ) -> Result<StreamSummary, Halt> {
        let summary = self
            .read(run, Operation::DescribeStreamSummary, || {
                self.aws.stream_summary(stream)
            })
            .await?;
        if summary.status == StreamStatus::Deleting {
            return Err(Halt::Gone {
                reason: "the stream is being deleted".into(),
                code: "DELETING".into(),
            });
        }
        Ok(summary)
    }

    pub(super) async fn enforce_stream(
        &self,
        stream: &Resource,
        record_tags: Option<&Tags>,
        run: &mut Handling<'_>,
    ) -> Result<Verdict, Halt> {
        let mut now = self.describe_stream(stream, run).await?;
        run.found = Some(InitialState {
            status: now.status.name().to_owned(),
            encryption: if now.key_id.is_some() { "KMS" } else { "NONE" }.to_owned(),
            key: now.key_id.clone(),
        });
        let mandated = match self.mandated_key(run).await {
            Ok(mandated) => mandated,
            // Without KMS only the forms provably equal to the configured key can be trusted;
            // everything else is left to the retry of the event.
            Err(stop) => match &now.key_id {
                Some(key) if self.provably_configured(key, &stream.location) => {
                    tracing::warn!(stream_key = %key, "mandated key not resolved; the stream names it in an equal form");
                    return Ok(Verdict(
                        Outcome::AlreadyCompliant,
                        format!(
                            "encrypted with {key}, provably the configured key (KMS did not resolve it)"
                        ),
                    ));
                }
                _ => return Err(stop),
            },
        };
        // Inspect before every write and wait with reads: AWS refuses any write on a stream that
        // is not ACTIVE, and a write while its creator is between two steps breaks the creator.
        loop {
            if now.status != StreamStatus::Active {
                self.wait_until_ready(run, now.status.name()).await?;
                now = self.describe_stream(stream, run).await?;
                continue;
            }
            if let Some(key) = &now.key_id
                && self.is_mandated(key, &stream.location, mandated.as_ref())
            {
                let by = if run.waited() {
                    ", the mandated key, put on by another caller while the enforcer waited"
                } else {
                    ""
                };
                return Ok(Verdict(
                    Outcome::AlreadyCompliant,
                    format!("encrypted with {key}{by}"),
                ));
            }
            let seen = format!("{} {:?}", now.status.name(), now.key_id);
            if !self.settled(run, seen).await? {
                now = self.describe_stream(stream, run).await?;
                continue;
            }
            let was = now
                .key_id
                .as_deref()
                .map_or("unencrypted".to_owned(), |k| format!("encrypted with {k}"));
            if let Some(done) = self
                .exempt_or_reported(record_tags, run, &was, Operation::ListTagsForStream, || {
                    self.aws.stream_tags(stream)
                })
                .await?
            {
                return Ok(done);
            }
            // Kinesis takes the key in the configured form.
            if self
                .write(stream, run, Operation::StartStreamEncryption, || {
                    KinesisApi::start_encryption(&self.aws, stream, self.key.configured())
                })
                .await?
            {
                return self
                    .confirm_stream(stream, mandated.as_ref(), run, was)
                    .await;
            }
            // Someone else is changing the stream right now: inspect again before anything else.
            self.wait_until_ready(run, "being changed by another caller (StartStreamEncryption answered ResourceInUseException)")
                .await?;
            now = self.describe_stream(stream, run).await?;
        }
    }

    /// After a Start that took: polls until the stream is ACTIVE and judges its key.
    async fn confirm_stream(
        &self,
        stream: &Resource,
        mandated: Option<&KeyInfo>,
        run: &mut Handling<'_>,
        was: String,
    ) -> Result<Verdict, Halt> {
        let mut delay = self.polling.first;
        loop {
            let now = self.describe_stream(stream, run).await?;
            // While UPDATING the stream may still report its old key: judge only once ACTIVE.
            if now.status != StreamStatus::Active {
                self.wait_to_confirm(&mut delay, run, now.status.name())
                    .await?;
                continue;
            }
            let Some(key) = &now.key_id else {
                return Err(Halt::failed(
                    codes::KEY_MISMATCH,
                    "after StartStreamEncryption the stream is ACTIVE and not encrypted".into(),
                ));
            };
            if !self.is_mandated(key, &stream.location, mandated) {
                return Err(Halt::failed(
                    codes::KEY_MISMATCH,
                    format!(
                        "after StartStreamEncryption the stream reports key {key}, not the mandated key"
                    ),
                ));
            }
            return Ok(Verdict(
                Outcome::Remediated,
                format!("was {was}; now encrypted with the mandated key"),
            ));
        }
    }
}
