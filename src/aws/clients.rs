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
/// connections to AWS endpoints `ring` does the same job (see docs/performance.md).
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

    /// The shared SDK configuration, for a client of another service with these settings
    /// (`enforcer replay`'s SQS client).
    pub fn sdk_config(&self) -> &aws_config::SdkConfig {
        &self.shared
    }

    /// The region the clients act in, when one is configured.
    pub fn region(&self) -> Option<String> {
        self.shared.region().map(|r| r.to_string())
    }

    /// The re-application ledger in `table`, with these clients' credentials (its client is built
    /// only when a table is configured).
    pub fn ledger(&self, table: Option<&str>) -> Option<crate::aws::ledger::Ledger> {
        table.map(|t| {
            crate::aws::ledger::Ledger::new(aws_sdk_dynamodb::Client::new(&self.shared), t)
        })
    }

    /// The account (sts:GetCallerIdentity) and region the clients act in. Only the CLI's sweep
    /// commands ask, so the STS client is built here and never on the Lambda's cold start.
    pub async fn home(&self) -> Result<crate::model::resource::Location, String> {
        let region = self
            .shared
            .region()
            .map(|r| r.to_string())
            .ok_or("no AWS region is configured (set AWS_REGION)")?;
        let sts = aws_sdk_sts::Client::new(&self.shared);
        let identity = sts.get_caller_identity().send().await.map_err(|e| {
            format!(
                "sts:GetCallerIdentity: {}",
                crate::aws::error::AwsError::from_sdk(e)
            )
        })?;
        let account = identity
            .account()
            .ok_or("sts:GetCallerIdentity returned no account")?;
        crate::model::resource::Location::new(account, &region).map_err(|e| e.to_string())
    }
}

/// The session name the enforcer's sessions carry in member accounts' CloudTrail.
pub const SESSION_NAME: &str = "stream-encryption-enforcer";
/// Cached credentials of an assumed role are renewed when they have less than this left, so
/// that no call of an event starts with credentials about to expire.
pub const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

/// The target role of one member account, with its session credentials cached until
/// [`RENEW_BEFORE_EXPIRY`] before they expire. Concurrent events of the account wait for one
/// sts:AssumeRole instead of each making their own.
#[derive(Debug)]
pub struct AssumedRole {
    sts: aws_sdk_sts::Client,
    arn: String,
    external_id: Option<String>,
    cached: tokio::sync::Mutex<Option<aws_credential_types::Credentials>>,
}

impl AssumedRole {
    /// The role `arn`, assumed through `sts` with `external_id` when the trust policy asks for one.
    pub fn new(sts: aws_sdk_sts::Client, arn: String, external_id: Option<String>) -> Self {
        Self {
            sts,
            arn,
            external_id,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// The cached credentials, or new ones from sts:AssumeRole when there are none or they
    /// expire within [`RENEW_BEFORE_EXPIRY`].
    pub async fn credentials(
        &self,
    ) -> Result<aws_credential_types::Credentials, crate::aws::error::AwsError> {
        use crate::aws::error::{AwsError, transport};
        let mut cached = self.cached.lock().await;
        let renew_at = std::time::SystemTime::now() + RENEW_BEFORE_EXPIRY;
        if let Some(credentials) = cached
            .as_ref()
            .filter(|c| c.expiry().is_none_or(|expiry| expiry > renew_at))
        {
            return Ok(credentials.clone());
        }
        let out = self
            .sts
            .assume_role()
            .role_arn(&self.arn)
            .role_session_name(SESSION_NAME)
            .set_external_id(self.external_id.clone())
            .send()
            .await
            .map_err(AwsError::from_sdk)?;
        let given = out.credentials().ok_or_else(|| {
            AwsError::new(
                transport::RESPONSE_ERROR,
                "AssumeRole returned no credentials",
            )
        })?;
        let expiry = std::time::SystemTime::try_from(*given.expiration()).map_err(|e| {
            AwsError::new(
                transport::RESPONSE_ERROR,
                format!("AssumeRole returned an expiration that is not a time: {e}"),
            )
        })?;
        let credentials = aws_credential_types::Credentials::new(
            given.access_key_id(),
            given.secret_access_key(),
            Some(given.session_token().to_owned()),
            Some(expiry),
            "StreamEncryptionEnforcerTargetRole",
        );
        tracing::info!(role = %self.arn, expires_in_s = expiry
            .duration_since(std::time::SystemTime::now())
            .map_or(0, |d| d.as_secs()), "assumed the target role");
        *cached = Some(credentials.clone());
        Ok(credentials)
    }
}

/// An [`AssumedRole`] as the SDK's credentials provider, shared by the clients of every region
/// of its account.
#[derive(Debug)]
struct RoleCredentials(std::sync::Arc<AssumedRole>);

impl aws_credential_types::provider::ProvideCredentials for RoleCredentials {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::new(async move {
            self.0.credentials().await.map_err(|e| {
                aws_credential_types::provider::error::CredentialsError::provider_error(e)
            })
        })
    }
}

/// Clients for any account and region: the function's own credentials in its own account, the
/// target role's (one [`AssumedRole`] per account, shared by all its regions) in the others.
#[derive(Debug)]
pub struct SdkConnector {
    own: AwsClients,
    /// Central mode (the role to assume in each account, and its external id).
    target: Option<crate::config::Central>,
    sts: Option<aws_sdk_sts::Client>,
    roles:
        std::sync::Mutex<std::collections::HashMap<(String, String), std::sync::Arc<AssumedRole>>>,
    /// The re-application ledger, with the own clients' credentials: every place's port
    /// counts in the one table.
    ledger: Option<crate::aws::ledger::Ledger>,
    /// The product's queues, with the function's own credentials.
    queues: std::collections::HashMap<crate::aws::queue::QueueKind, crate::aws::queue::Queue>,
}

impl SdkConnector {
    /// A connector over the function's own clients; `central` names the role to assume in
    /// other accounts (none: other accounts cannot be reached).
    pub fn new(own: AwsClients, central: Option<&crate::config::Central>) -> Self {
        let sts = central.map(|_| aws_sdk_sts::Client::new(&own.shared));
        Self {
            target: central.cloned(),
            sts,
            own,
            roles: std::sync::Mutex::new(std::collections::HashMap::new()),
            ledger: None,
            queues: std::collections::HashMap::new(),
        }
    }

    /// The connector that sends to `queue` at `url` (none: it cannot send there).
    pub fn with_queue(mut self, queue: crate::aws::queue::QueueKind, url: Option<&str>) -> Self {
        if let Some(url) = url {
            let client = aws_sdk_sqs::Client::new(&self.own.shared);
            self.queues
                .insert(queue, crate::aws::queue::Queue::new(client, url));
        }
        self
    }

    /// The connector whose every place's writes are counted in `ledger` (written with the
    /// function's own credentials, whatever account the resource is in; none: nothing is
    /// counted).
    pub fn with_ledger(mut self, ledger: Option<crate::aws::ledger::Ledger>) -> Self {
        self.ledger = ledger;
        self
    }

    fn role(
        &self,
        at: &crate::model::resource::Location,
    ) -> Result<std::sync::Arc<AssumedRole>, crate::aws::error::AwsError> {
        let (Some(central), Some(sts)) = (&self.target, &self.sts) else {
            return Err(crate::aws::error::AwsError::new(
                "Enforcer.NoTargetRole",
                "TARGET_ROLE_NAME is not set, so no other account can be reached",
            ));
        };
        let mut roles = crate::sync::lock(&self.roles);
        let role = roles
            .entry((at.partition.clone(), at.account.clone()))
            .or_insert_with(|| {
                std::sync::Arc::new(AssumedRole::new(
                    sts.clone(),
                    central.role_arn(&at.partition, &at.account),
                    central.external_id.clone(),
                ))
            });
        Ok(role.clone())
    }
}

impl crate::aws::connector::Connector for SdkConnector {
    type Aws = crate::aws::SdkAws;

    fn connect(
        &self,
        at: &crate::model::resource::Location,
        own: bool,
    ) -> Result<crate::aws::SdkAws, crate::aws::error::AwsError> {
        let same_region = self.own.shared.region().map(|r| r.as_ref()) == Some(at.region.as_str());
        if own && same_region {
            return Ok(crate::aws::SdkAws::new(
                self.own.kinesis.clone(),
                self.own.firehose.clone(),
                self.own.kms.clone(),
                self.ledger.clone(),
            ));
        }
        let mut builder = self
            .own
            .shared
            .to_builder()
            .region(aws_config::Region::new(at.region.clone()));
        if !own {
            builder = builder
                .credentials_provider(
                    aws_credential_types::provider::SharedCredentialsProvider::new(
                        RoleCredentials(self.role(at)?),
                    ),
                )
                // The role caches its own credentials, with the renewal margin above.
                .identity_cache(aws_config::identity::IdentityCache::no_cache());
        }
        let shared = builder.build();
        Ok(crate::aws::SdkAws::new(
            aws_sdk_kinesis::Client::new(&shared),
            aws_sdk_firehose::Client::new(&shared),
            aws_sdk_kms::Client::new(&shared),
            self.ledger.clone(),
        ))
    }

    async fn organization(
        &self,
    ) -> Result<crate::aws::connector::Organization, crate::aws::error::AwsError> {
        use crate::aws::error::{AwsError, transport};
        use aws_sdk_organizations::types::{AccountState, AccountStatus};
        let organizations = aws_sdk_organizations::Client::new(&self.own.shared);
        let described = organizations
            .describe_organization()
            .send()
            .await
            .map_err(AwsError::from_sdk)?;
        let id = described
            .organization()
            .and_then(|o| o.id())
            .ok_or_else(|| {
                AwsError::new(
                    transport::RESPONSE_ERROR,
                    "DescribeOrganization returned no id",
                )
            })?
            .to_owned();
        let mut accounts = std::collections::BTreeSet::new();
        let mut next = None;
        loop {
            let page = organizations
                .list_accounts()
                .set_next_token(next.take())
                .send()
                .await
                .map_err(AwsError::from_sdk)?;
            for account in page.accounts() {
                let active = match account.state() {
                    Some(state) => *state == AccountState::Active,
                    None => account.status() == Some(&AccountStatus::Active),
                };
                if let (true, Some(id)) = (active, account.id()) {
                    accounts.insert(id.to_owned());
                }
            }
            match page.next_token() {
                Some(token) if !token.is_empty() => next = Some(token.to_owned()),
                _ => break,
            }
        }
        Ok(crate::aws::connector::Organization { id, accounts })
    }

    async fn assume(
        &self,
        at: &crate::model::resource::Location,
    ) -> Result<(), crate::aws::error::AwsError> {
        self.role(at)?.credentials().await.map(drop)
    }

    async fn enqueue(
        &self,
        queue: crate::aws::queue::QueueKind,
        messages: &[crate::aws::queue::Outgoing],
    ) -> Result<Vec<crate::aws::queue::Refused>, crate::aws::error::AwsError> {
        match self.queues.get(&queue) {
            Some(to) => to.send(messages).await,
            None => Err(crate::aws::connector::no_queue(queue)),
        }
    }
}
