//! What the enforcer needs from KMS (resolving a key reference to its key ARN), and its adapter.

use crate::aws_error::{AwsError, transport};
use crate::key::KeyInfo;
use aws_sdk_kms::types::KeyManagerType;
use std::future::Future;

/// The KMS calls the enforcer makes.
pub trait KmsApi: Send + Sync {
    /// kms:DescribeKey on a key id, key ARN, alias name or alias ARN.
    fn describe_key(&self, key: &str) -> impl Future<Output = Result<KeyInfo, AwsError>> + Send;
}

impl KmsApi for aws_sdk_kms::Client {
    async fn describe_key(&self, key: &str) -> Result<KeyInfo, AwsError> {
        let out = self
            .describe_key()
            .key_id(key)
            .send()
            .await
            .map_err(AwsError::from_sdk)?;
        let meta = out.key_metadata().ok_or_else(|| {
            AwsError::new(
                transport::RESPONSE_ERROR,
                "DescribeKey returned no key metadata",
            )
        })?;
        let arn = meta.arn().ok_or_else(|| {
            AwsError::new(transport::RESPONSE_ERROR, "DescribeKey returned no key ARN")
        })?;
        Ok(KeyInfo {
            arn: arn.to_owned(),
            aws_managed: meta.key_manager() == Some(&KeyManagerType::Aws),
        })
    }
}
