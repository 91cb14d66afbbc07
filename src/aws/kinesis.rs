//! What the enforcer needs from Kinesis Data Streams, and its adapter for the SDK client.

use crate::aws::SdkAws;
use crate::aws::error::AwsError;
use crate::model::exemption::Tags;
use crate::model::resource::Resource;
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
    /// `StreamCreationTimestamp`, in seconds since the Unix epoch.
    pub created: Option<i64>,
}

/// Stream names per ListStreams page (the API's default; its maximum is 10,000).
const LIST_PAGE: i32 = 100;

/// Where the next ListStreams page starts. AWS returns a `NextToken`; the legacy form it still
/// serves (and the only one moto implements) pages by `HasMoreStreams` and the last name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListCursor {
    /// Continue with this `NextToken`.
    Token(String),
    /// Continue after this stream name (`ExclusiveStartStreamName`).
    After(String),
}

/// One page of stream names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPage {
    /// The names on this page.
    pub names: Vec<String>,
    /// Where the next page starts, if there is one.
    pub next: Option<ListCursor>,
}

/// The Kinesis calls the enforcer makes.
pub trait KinesisApi: Send + Sync {
    /// DescribeStreamSummary: status and encryption.
    fn stream_summary(
        &self,
        stream: &Resource,
    ) -> impl Future<Output = Result<StreamSummary, AwsError>> + Send;
    /// One page of ListStreams.
    fn list_streams(
        &self,
        from: Option<ListCursor>,
    ) -> impl Future<Output = Result<StreamPage, AwsError>> + Send;
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

impl KinesisApi for SdkAws {
    async fn stream_summary(&self, stream: &Resource) -> Result<StreamSummary, AwsError> {
        let out = self
            .kinesis
            .describe_stream_summary()
            .stream_arn(stream.arn())
            .send()
            .await
            .map_err(AwsError::from_sdk)?;
        let summary = out.stream_description_summary().ok_or_else(|| {
            AwsError::new(
                crate::aws::error::transport::RESPONSE_ERROR,
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
        // A required field; the SDK fills a missing one with 0 (its client-side error
        // correction), which is not a time.
        let created = Some(summary.stream_creation_timestamp().secs()).filter(|s| *s > 0);
        Ok(StreamSummary {
            status,
            key_id,
            created,
        })
    }

    async fn list_streams(&self, from: Option<ListCursor>) -> Result<StreamPage, AwsError> {
        let request = match from {
            Some(ListCursor::Token(token)) => self.kinesis.list_streams().next_token(token),
            Some(ListCursor::After(name)) => self
                .kinesis
                .list_streams()
                .exclusive_start_stream_name(name)
                .limit(LIST_PAGE),
            None => self.kinesis.list_streams().limit(LIST_PAGE),
        };
        let page = request.send().await.map_err(AwsError::from_sdk)?;
        let names = page.stream_names().to_vec();
        let next = match (page.next_token(), names.last()) {
            (Some(token), _) if page.has_more_streams() || !token.is_empty() => {
                Some(ListCursor::Token(token.to_owned()))
            }
            (None, Some(last)) if page.has_more_streams() => Some(ListCursor::After(last.clone())),
            _ => None,
        };
        Ok(StreamPage { names, next })
    }

    async fn stream_tags(&self, stream: &Resource) -> Result<Tags, AwsError> {
        crate::aws::tags::every_tag_page(|after| async move {
            let page = self
                .kinesis
                .list_tags_for_stream()
                .stream_arn(stream.arn())
                .limit(50)
                .set_exclusive_start_tag_key(after)
                .send()
                .await
                .map_err(AwsError::from_sdk)?;
            let tags = page.tags().iter();
            let tags = tags.map(|t| (t.key().to_owned(), t.value().map(str::to_owned)));
            Ok((tags.collect(), page.has_more_tags()))
        })
        .await
    }

    async fn start_encryption(&self, stream: &Resource, key_id: &str) -> Result<(), AwsError> {
        self.kinesis
            .start_stream_encryption()
            .stream_arn(stream.arn())
            .encryption_type(EncryptionType::Kms)
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| start_error(AwsError::from_sdk(e)))?;
        Ok(())
    }
}

/// StartStreamEncryption's `LimitExceededException` is rate throttling or the quota of 25 new
/// keys per stream per rolling 24 hours; the quota gets a name of its own.
pub(crate) fn start_error(error: AwsError) -> AwsError {
    if crate::aws::error::quota::is_quota(&error) {
        return error.renamed(crate::aws::error::quota::KINESIS_KEY_CHANGES);
    }
    error
}
