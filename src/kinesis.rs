//! What the enforcer needs from Kinesis Data Streams, and its adapter for the SDK client.

use crate::aws_error::AwsError;
use crate::exemption::Tags;
use crate::resource::Resource;
use aws_sdk_kinesis::types::{EncryptionType, StreamStatus as SdkStatus};
use std::future::Future;

/// `StreamStatus` of a data stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamStatus {
    /// Being created; Start* answers ResourceInUseException.
    Creating,
    /// Being deleted.
    Deleting,
    /// Ready.
    Active,
    /// Changing (e.g. encryption being applied).
    Updating,
    /// A status this version does not know.
    Other(String),
}

impl StreamStatus {
    /// The status as AWS spells it.
    pub fn name(&self) -> &str {
        match self {
            Self::Creating => "CREATING",
            Self::Deleting => "DELETING",
            Self::Active => "ACTIVE",
            Self::Updating => "UPDATING",
            Self::Other(other) => other,
        }
    }
}

/// What DescribeStreamSummary says about encryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    /// The stream's status.
    pub status: StreamStatus,
    /// The `KeyId` when `EncryptionType` is KMS, in whatever form it was applied; `None` when
    /// the stream is not encrypted.
    pub key_id: Option<String>,
}

/// The Kinesis calls the enforcer makes.
pub trait KinesisApi: Send + Sync {
    /// DescribeStreamSummary: status and encryption.
    fn stream_summary(
        &self,
        stream: &Resource,
    ) -> impl Future<Output = Result<StreamSummary, AwsError>> + Send;
    /// ListTagsForStream, every page.
    fn stream_tags(&self, stream: &Resource)
    -> impl Future<Output = Result<Tags, AwsError>> + Send;
    /// StartStreamEncryption with `EncryptionType: KMS` and this key id.
    fn start_encryption(
        &self,
        stream: &Resource,
        key_id: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

impl KinesisApi for aws_sdk_kinesis::Client {
    async fn stream_summary(&self, stream: &Resource) -> Result<StreamSummary, AwsError> {
        let out = self
            .describe_stream_summary()
            .stream_arn(stream.arn())
            .send()
            .await
            .map_err(AwsError::from_sdk)?;
        let summary = out.stream_description_summary().ok_or_else(|| {
            AwsError::new(
                crate::aws_error::transport::RESPONSE_ERROR,
                "DescribeStreamSummary returned no summary",
            )
        })?;
        let status = match summary.stream_status() {
            SdkStatus::Creating => StreamStatus::Creating,
            SdkStatus::Deleting => StreamStatus::Deleting,
            SdkStatus::Active => StreamStatus::Active,
            SdkStatus::Updating => StreamStatus::Updating,
            other => StreamStatus::Other(other.as_str().to_owned()),
        };
        let key_id = match summary.encryption_type() {
            Some(EncryptionType::Kms) => summary.key_id().map(str::to_owned),
            _ => None,
        };
        Ok(StreamSummary { status, key_id })
    }

    async fn stream_tags(&self, stream: &Resource) -> Result<Tags, AwsError> {
        let mut tags = Tags::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .list_tags_for_stream()
                .stream_arn(stream.arn())
                .set_exclusive_start_tag_key(after.take())
                .send()
                .await
                .map_err(AwsError::from_sdk)?;
            tags.extend(
                page.tags()
                    .iter()
                    .map(|t| (t.key().to_owned(), t.value().map(str::to_owned))),
            );
            match tags.last() {
                Some((last, _)) if page.has_more_tags() => after = Some(last.clone()),
                _ => return Ok(tags),
            }
        }
    }

    async fn start_encryption(&self, stream: &Resource, key_id: &str) -> Result<(), AwsError> {
        self.start_stream_encryption()
            .stream_arn(stream.arn())
            .encryption_type(EncryptionType::Kms)
            .key_id(key_id)
            .send()
            .await
            .map_err(AwsError::from_sdk)?;
        Ok(())
    }
}
