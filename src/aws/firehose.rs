//! What the enforcer needs from Amazon Data Firehose, and its adapter for the SDK client.

use crate::aws::SdkAws;
use crate::aws::error::{AwsError, transport};
use crate::model::exemption::Tags;
use crate::model::resource::Resource;
use aws_sdk_firehose::types::{
    DeliveryStreamEncryptionConfigurationInput, DeliveryStreamEncryptionStatus as SdkEncStatus,
    DeliveryStreamStatus as SdkStatus, DeliveryStreamType, KeyType,
};
use std::fmt;
use std::future::Future;

/// `DeliveryStreamStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Being created.
    Creating,
    /// Creation failed; the stream will never become active.
    CreatingFailed,
    /// Being deleted, or deletion failed.
    Deleting,
    /// Ready.
    Active,
    /// A status this version does not know.
    Other(String),
}

/// Server-side encryption `Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncryptionStatus {
    /// Encryption is on.
    Enabled,
    /// Encryption is being turned on.
    Enabling,
    /// Turning it on failed (see the failure description).
    EnablingFailed,
    /// Encryption is off.
    Disabled,
    /// Encryption is being turned off.
    Disabling,
    /// Turning it off failed.
    DisablingFailed,
    /// A status this version does not know.
    Other(String),
}

/// The key a delivery stream is (to be) encrypted with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirehoseKey {
    /// `AWS_OWNED_CMK`: the key Firehose owns; what an AWS managed mandated key maps to.
    AwsOwned,
    /// `CUSTOMER_MANAGED_CMK` with this key ARN.
    CustomerManaged(String),
}

/// The encryption part of DescribeDeliveryStream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryEncryption {
    /// Where encryption stands.
    pub status: EncryptionStatus,
    /// The key type and ARN, when reported.
    pub key: Option<FirehoseKey>,
    /// `FailureDescription` as `TYPE: details`, when there is one.
    pub failure: Option<String>,
}

impl DeliveryStatus {
    /// The status as AWS spells it.
    pub fn name(&self) -> &str {
        match self {
            Self::Creating => "CREATING",
            Self::CreatingFailed => "CREATING_FAILED",
            Self::Deleting => "DELETING",
            Self::Active => "ACTIVE",
            Self::Other(other) => other,
        }
    }
}

impl EncryptionStatus {
    /// The status as AWS spells it.
    pub fn name(&self) -> &str {
        match self {
            Self::Enabled => "ENABLED",
            Self::Enabling => "ENABLING",
            Self::EnablingFailed => "ENABLING_FAILED",
            Self::Disabled => "DISABLED",
            Self::Disabling => "DISABLING",
            Self::DisablingFailed => "DISABLING_FAILED",
            Self::Other(other) => other,
        }
    }
}

impl fmt::Display for FirehoseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AwsOwned => f.write_str("AWS_OWNED_CMK"),
            Self::CustomerManaged(arn) => write!(f, "CUSTOMER_MANAGED_CMK {arn}"),
        }
    }
}

impl fmt::Display for DeliveryEncryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "encryption {} with {key}", self.status.name()),
            None => write!(f, "encryption {}", self.status.name()),
        }
    }
}

/// What DescribeDeliveryStream says that the enforcer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySummary {
    /// The stream's status.
    pub status: DeliveryStatus,
    /// `DeliveryStreamType`: only `DirectPut` streams can have server-side encryption.
    pub source_type: String,
    /// The encryption configuration, absent when never configured.
    pub encryption: Option<DeliveryEncryption>,
    /// `CreateTimestamp`, in seconds since the Unix epoch.
    pub created: Option<i64>,
}

impl DeliverySummary {
    /// Whether the stream takes records directly (the only kind that can have SSE).
    pub fn is_direct_put(&self) -> bool {
        self.source_type == DeliveryStreamType::DirectPut.as_str()
    }
}

/// The Firehose calls the enforcer makes.
pub trait FirehoseApi: Send + Sync {
    /// DescribeDeliveryStream.
    fn delivery_summary(
        &self,
        stream: &Resource,
    ) -> impl Future<Output = Result<DeliverySummary, AwsError>> + Send;
    /// One page of ListDeliveryStreams (all source types): the names, and whether more follow.
    fn list_delivery_streams(
        &self,
        after: Option<String>,
    ) -> impl Future<Output = Result<(Vec<String>, bool), AwsError>> + Send;
    /// ListTagsForDeliveryStream, every page.
    fn delivery_stream_tags(
        &self,
        stream: &Resource,
    ) -> impl Future<Output = Result<Tags, AwsError>> + Send;
    /// StartDeliveryStreamEncryption.
    fn start_encryption(
        &self,
        stream: &Resource,
        key: &FirehoseKey,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

impl FirehoseApi for SdkAws {
    async fn delivery_summary(&self, stream: &Resource) -> Result<DeliverySummary, AwsError> {
        let out = self
            .firehose
            .describe_delivery_stream()
            .delivery_stream_name(&stream.name)
            .send()
            .await
            .map_err(AwsError::from_sdk)?;
        let desc = out.delivery_stream_description().ok_or_else(|| {
            AwsError::new(
                transport::RESPONSE_ERROR,
                "DescribeDeliveryStream returned no description",
            )
        })?;
        let status = match desc.delivery_stream_status() {
            SdkStatus::Creating => DeliveryStatus::Creating,
            SdkStatus::CreatingFailed => DeliveryStatus::CreatingFailed,
            SdkStatus::Deleting | SdkStatus::DeletingFailed => DeliveryStatus::Deleting,
            SdkStatus::Active => DeliveryStatus::Active,
            other => DeliveryStatus::Other(other.as_str().to_owned()),
        };
        let encryption =
            desc.delivery_stream_encryption_configuration()
                .map(|enc| DeliveryEncryption {
                    status: match enc.status() {
                        Some(SdkEncStatus::Enabled) => EncryptionStatus::Enabled,
                        Some(SdkEncStatus::Enabling) => EncryptionStatus::Enabling,
                        Some(SdkEncStatus::EnablingFailed) => EncryptionStatus::EnablingFailed,
                        Some(SdkEncStatus::Disabled) | None => EncryptionStatus::Disabled,
                        Some(SdkEncStatus::Disabling) => EncryptionStatus::Disabling,
                        Some(SdkEncStatus::DisablingFailed) => EncryptionStatus::DisablingFailed,
                        Some(other) => EncryptionStatus::Other(other.as_str().to_owned()),
                    },
                    key: match (enc.key_type(), enc.key_arn()) {
                        (Some(KeyType::AwsOwnedCmk), _) => Some(FirehoseKey::AwsOwned),
                        (Some(KeyType::CustomerManagedCmk), Some(arn)) => {
                            Some(FirehoseKey::CustomerManaged(arn.to_owned()))
                        }
                        _ => None,
                    },
                    failure: enc
                        .failure_description()
                        .map(|f| format!("{}: {}", f.r#type().as_str(), f.details())),
                });
        Ok(DeliverySummary {
            status,
            source_type: desc.delivery_stream_type().as_str().to_owned(),
            encryption,
            created: desc.create_timestamp().map(|t| t.secs()),
        })
    }

    async fn list_delivery_streams(
        &self,
        after: Option<String>,
    ) -> Result<(Vec<String>, bool), AwsError> {
        let page = self
            .firehose
            .list_delivery_streams()
            .set_exclusive_start_delivery_stream_name(after)
            .limit(100)
            .send()
            .await
            .map_err(AwsError::from_sdk)?;
        Ok((
            page.delivery_stream_names().to_vec(),
            page.has_more_delivery_streams(),
        ))
    }

    async fn delivery_stream_tags(&self, stream: &Resource) -> Result<Tags, AwsError> {
        crate::aws::tags::every_tag_page(|after| async move {
            let page = self
                .firehose
                .list_tags_for_delivery_stream()
                .delivery_stream_name(&stream.name)
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

    async fn start_encryption(&self, stream: &Resource, key: &FirehoseKey) -> Result<(), AwsError> {
        let input = match key {
            FirehoseKey::AwsOwned => {
                DeliveryStreamEncryptionConfigurationInput::builder().key_type(KeyType::AwsOwnedCmk)
            }
            FirehoseKey::CustomerManaged(arn) => {
                DeliveryStreamEncryptionConfigurationInput::builder()
                    .key_type(KeyType::CustomerManagedCmk)
                    .key_arn(arn)
            }
        }
        .build()
        .map_err(|e| AwsError::new(transport::REQUEST_ERROR, e.to_string()))?;
        self.firehose
            .start_delivery_stream_encryption()
            .delivery_stream_name(&stream.name)
            .delivery_stream_encryption_configuration_input(input)
            .send()
            .await
            .map_err(|e| start_error(AwsError::from_sdk(e)))?;
        Ok(())
    }
}

/// StartDeliveryStreamEncryption's `LimitExceededException` is rate throttling (5 calls per
/// second), the 500 delivery streams one customer managed key may encrypt, or the 25 Start and
/// Stop calls per delivery stream per 24 hours; each quota gets a name of its own.
pub(crate) fn start_error(error: AwsError) -> AwsError {
    use crate::aws::error::quota;
    if !quota::is_quota(&error) {
        return error;
    }
    // The 500 streams per key is the only one of the two whose number can appear in its message.
    if error.message().contains("500") {
        error.renamed(quota::FIREHOSE_STREAMS_PER_KEY)
    } else {
        error.renamed(quota::FIREHOSE_ENCRYPTION_CALLS)
    }
}
