//! The SDK clients, built once per container from the standard AWS configuration chain.
//!
//! Endpoints follow `AWS_ENDPOINT_URL_KINESIS`, `AWS_ENDPOINT_URL_FIREHOSE`, `AWS_ENDPOINT_URL_KMS`
//! (or `AWS_ENDPOINT_URL`), so the same binary runs against AWS or the local emulators.

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use std::time::Duration;

/// How long one attempt of one call may take before it fails as `Enforcer.Timeout`. Control-plane
/// calls answer in well under a second; a hung connection must not eat the invocation.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// One client per service the enforcer calls.
#[derive(Debug, Clone)]
pub struct AwsClients {
    /// Kinesis Data Streams.
    pub kinesis: aws_sdk_kinesis::Client,
    /// Amazon Data Firehose.
    pub firehose: aws_sdk_firehose::Client,
    /// KMS.
    pub kms: aws_sdk_kms::Client,
    /// STS, for the CLI's "which account am I in".
    pub sts: aws_sdk_sts::Client,
    /// The region the clients call.
    pub region: Option<String>,
}

impl AwsClients {
    /// Loads region, credentials and endpoints from the environment. The SDK's own retries are
    /// off: the retry policy is the one place where retrying is decided, else the two multiply.
    pub async fn from_env() -> Self {
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            )
            .load()
            .await;
        Self {
            kinesis: aws_sdk_kinesis::Client::new(&shared),
            firehose: aws_sdk_firehose::Client::new(&shared),
            kms: aws_sdk_kms::Client::new(&shared),
            sts: aws_sdk_sts::Client::new(&shared),
            region: shared.region().map(|r| r.to_string()),
        }
    }
}

impl AwsClients {
    /// The account (sts:GetCallerIdentity) and region the clients act in.
    pub async fn home(&self) -> Result<crate::resource::Location, String> {
        let region = self
            .region
            .clone()
            .ok_or("no AWS region is configured (set AWS_REGION)")?;
        let identity = self.sts.get_caller_identity().send().await.map_err(|e| {
            format!(
                "sts:GetCallerIdentity: {}",
                crate::aws_error::AwsError::from_sdk(e)
            )
        })?;
        let account = identity
            .account()
            .ok_or("sts:GetCallerIdentity returned no account")?;
        crate::resource::Location::new(account, &region).map_err(|e| e.to_string())
    }
}
