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

/// The HTTPS client: hyper with rustls on the `ring` provider. The SDK's default client uses
/// rustls on `aws-lc-rs`, which is larger and slower to build; for a handful of TLS 1.2/1.3
/// connections to AWS endpoints `ring` does the same job (see README, Performance).
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// The settings every client of the enforcer has: the HTTPS client above, the SDK's own retries
/// off (the retry policy is the one place where retrying is decided, else the two multiply) and
/// the timeouts above.
pub fn lambda_settings(loader: aws_config::ConfigLoader) -> aws_config::ConfigLoader {
    loader
        .http_client(https_client())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        )
}

/// One client per service the enforcer calls.
#[derive(Debug, Clone)]
pub struct AwsClients {
    /// Kinesis Data Streams.
    pub kinesis: aws_sdk_kinesis::Client,
    /// Amazon Data Firehose.
    pub firehose: aws_sdk_firehose::Client,
    /// KMS.
    pub kms: aws_sdk_kms::Client,
    /// The shared configuration, kept for the clients only some commands need.
    shared: aws_config::SdkConfig,
}

impl AwsClients {
    /// Loads region, credentials and endpoints from the environment, with [`lambda_settings`].
    pub async fn from_env() -> Self {
        let shared = lambda_settings(aws_config::defaults(BehaviorVersion::latest()))
            .load()
            .await;
        Self {
            kinesis: aws_sdk_kinesis::Client::new(&shared),
            firehose: aws_sdk_firehose::Client::new(&shared),
            kms: aws_sdk_kms::Client::new(&shared),
            shared,
        }
    }

    /// The account (sts:GetCallerIdentity) and region the clients act in. Only the CLI's sweep
    /// commands ask, so the STS client is built here and never on the Lambda's cold start.
    pub async fn home(&self) -> Result<crate::resource::Location, String> {
        let region = self
            .shared
            .region()
            .map(|r| r.to_string())
            .ok_or("no AWS region is configured (set AWS_REGION)")?;
        let sts = aws_sdk_sts::Client::new(&self.shared);
        let identity = sts.get_caller_identity().send().await.map_err(|e| {
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
