//! Models of the infrastructure-as-code tools that create and change the same streams as the
//! enforcer, and the feed that turns the calls a proxy saw into the CloudTrail events the
//! enforcer would get.
//!
//! Terraform's `aws_kinesis_stream` (hashicorp/terraform-provider-aws,
//! internal/service/kinesis/stream.go and wait.go):
//! - CreateStream, then `waitStreamCreated`: Pending [CREATING], Target [ACTIVE], Delay 10 s,
//!   MinTimeout 3 s. The SDK's state-change waiter polls after the delay, then at intervals that
//!   start at MinTimeout, double, and stop growing at 10 s (3, 6, 10, 10, ... s). Any status that
//!   is neither pending nor target fails the apply: "unexpected state 'UPDATING', wanted target
//!   'ACTIVE'".
//! - Then the post-create steps, each followed by `waitStreamUpdated` (Pending [UPDATING], the
//!   same timings): IncreaseStreamRetentionPeriod when retention_period is over 24,
//!   EnableEnhancedMonitoring, StartStreamEncryption when encryption_type = "KMS".
//! - No call retries ResourceInUseException.
//! - The next apply reads the stream and reverts drift: `encryption_type` defaults to "NONE", so
//!   a stream the enforcer encrypted gets StopStreamEncryption, then the update waiter.
//! - Its user agent: `APN/1.0 HashiCorp/1.0 Terraform/<v> (+https://www.terraform.io)
//!   terraform-provider-aws/<v> (+https://registry.terraform.io/providers/hashicorp/aws)
//!   aws-sdk-go-v2/<v> ...`.
//!
//! CloudFormation's `AWS::Kinesis::Stream` creates the stream, stabilises until ACTIVE, then
//! applies `StreamEncryption` and the tags. Its handler's source is not published where this
//! project could read it, so the model polls every 5 s (the resource providers' usual callback
//! delay) and fails on ResourceInUseException like every handler that does not catch it. Its
//! calls carry `cloudformation.amazonaws.com` as `userAgent` and `userIdentity.invokedBy`.

use super::{Invocation, Proxy, event, invoke, sdk_config};
use aws_sdk_kinesis::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_kinesis::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_kinesis::types::{EncryptionType, StreamStatus};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const TERRAFORM_USER_AGENT: &str = "APN/1.0 HashiCorp/1.0 Terraform/1.11.4 \
    (+https://www.terraform.io) terraform-provider-aws/5.100.0 \
    (+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.36.3 ua/2.1 \
    os/linux lang/go#1.24.2 md/GOOS#linux md/GOARCH#amd64 api/kinesis#1.35.0";
pub const CLOUDFORMATION_USER_AGENT: &str = "cloudformation.amazonaws.com";

/// Sends a fixed `User-Agent`, as the tool's own SDK would (CloudTrail records it as sent).
#[derive(Debug)]
struct UserAgent(&'static str);

impl Intercept for UserAgent {
    fn name(&self) -> &'static str {
        "UserAgent"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _config: &mut ConfigBag,
    ) -> Result<(), aws_sdk_kinesis::error::BoxError> {
        context
            .request_mut()
            .headers_mut()
            .insert("user-agent", self.0);
        Ok(())
    }
}

/// What the tool's definition of a stream declares.
#[derive(Debug, Clone)]
pub struct Declared {
    pub name: String,
    /// `kms_key_id` with `encryption_type = "KMS"` (Terraform), `StreamEncryption.KeyId`
    /// (CloudFormation); `None` for no encryption, the tools' default.
    pub key: Option<String>,
    /// `retention_period` in hours; Terraform calls IncreaseStreamRetentionPeriod above 24.
    pub retention_hours: i32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Terraform,
    CloudFormation,
}

/// One tool, as its waiters and steps behave, with its own Kinesis client.
pub struct Tool {
    pub kind: Kind,
    kinesis: aws_sdk_kinesis::Client,
}

impl Tool {
    pub fn new(kind: Kind, endpoint: &str) -> Self {
        let agent = match kind {
            Kind::Terraform => TERRAFORM_USER_AGENT,
            Kind::CloudFormation => CLOUDFORMATION_USER_AGENT,
        };
        let config = aws_sdk_kinesis::config::Builder::from(&sdk_config(endpoint))
            .interceptor(UserAgent(agent))
            .build();
        Self {
            kind,
            kinesis: aws_sdk_kinesis::Client::from_conf(config),
        }
    }

    /// The waits between the tool's polls: before the first, then between each.
    fn poll_delays(&self) -> (Duration, impl FnMut() -> Duration) {
        let secs = Duration::from_secs;
        match self.kind {
            Kind::Terraform => {
                let mut next = secs(3);
                (
                    secs(10),
                    Box::new(move || {
                        let wait = next;
                        next = (next * 2).min(secs(10));
                        wait
                    }) as Box<dyn FnMut() -> Duration + Send>,
                )
            }
            Kind::CloudFormation => (secs(5), Box::new(move || secs(5)) as Box<_>),
        }
    }

    /// Waits from `pending` to ACTIVE as the tool's waiter does; any other status fails.
    async fn wait(&self, name: &str, pending: StreamStatus, what: &str) -> Result<(), String> {
        let (first, mut next) = self.poll_delays();
        tokio::time::sleep(first).await;
        let started = std::time::Instant::now();
        loop {
            let status = self
                .kinesis
                .describe_stream_summary()
                .stream_name(name)
                .send()
                .await
                .map_err(|e| format!("{what}: {}", aws_sdk_kinesis::error::DisplayErrorContext(e)))?
                .stream_description_summary
                .map(|s| s.stream_status)
                .ok_or("no summary")?;
            if status == StreamStatus::Active {
                return Ok(());
            }
            if status != pending {
                return Err(format!(
                    "waiting for Kinesis Stream ({name}) {what}: unexpected state '{}', wanted target 'ACTIVE'",
                    status.as_str()
                ));
            }
            if started.elapsed() > Duration::from_secs(300) {
                return Err(format!(
                    "waiting for Kinesis Stream ({name}) {what}: timeout"
                ));
            }
            tokio::time::sleep(next()).await;
        }
    }

    fn fail<E: std::error::Error + Send + Sync + 'static>(
        what: &str,
        e: aws_sdk_kinesis::error::SdkError<E, aws_sdk_kinesis::config::http::HttpResponse>,
    ) -> String {
        format!("{what}: {}", aws_sdk_kinesis::error::DisplayErrorContext(e))
    }

    /// The tool's first run: creates the stream and applies what it declares.
    pub async fn create(&self, stream: &Declared) -> Result<(), String> {
        let name = stream.name.as_str();
        self.kinesis
            .create_stream()
            .stream_name(name)
            .shard_count(1)
            .send()
            .await
            .map_err(|e| Self::fail("creating Kinesis Stream", e))?;
        self.wait(name, StreamStatus::Creating, "create").await?;
        if self.kind == Kind::Terraform && stream.retention_hours > 24 {
            self.kinesis
                .increase_stream_retention_period()
                .stream_name(name)
                .retention_period_hours(stream.retention_hours)
                .send()
                .await
                .map_err(|e| Self::fail("updating Kinesis Stream retention period", e))?;
            self.wait(name, StreamStatus::Updating, "update").await?;
        }
        if let Some(key) = &stream.key {
            self.start(name, key).await?;
        }
        if self.kind == Kind::CloudFormation {
            self.kinesis
                .add_tags_to_stream()
                .stream_name(name)
                .tags("stack", "streams")
                .send()
                .await
                .map_err(|e| Self::fail("AddTagsToStream", e))?;
        }
        Ok(())
    }

    async fn start(&self, name: &str, key: &str) -> Result<(), String> {
        self.kinesis
            .start_stream_encryption()
            .stream_name(name)
            .encryption_type(EncryptionType::Kms)
            .key_id(key)
            .send()
            .await
            .map_err(|e| Self::fail("starting Kinesis Stream encryption", e))?;
        self.wait(name, StreamStatus::Updating, "update").await
    }

    /// The tool's next run: reads the stream and reverts any drift of its encryption from the
    /// declaration. Returns the write it made, if any.
    pub async fn apply_again(&self, stream: &Declared) -> Result<Option<&'static str>, String> {
        let name = stream.name.as_str();
        let summary = self
            .kinesis
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .map_err(|e| Self::fail("reading Kinesis Stream", e))?
            .stream_description_summary
            .ok_or("no summary")?;
        let actual = match summary.encryption_type {
            Some(EncryptionType::Kms) => summary.key_id,
            _ => None,
        };
        match (&stream.key, actual) {
            (None, Some(key)) => {
                self.kinesis
                    .stop_stream_encryption()
                    .stream_name(name)
                    .encryption_type(EncryptionType::Kms)
                    .key_id(key)
                    .send()
                    .await
                    .map_err(|e| Self::fail("stopping Kinesis Stream encryption", e))?;
                self.wait(name, StreamStatus::Updating, "update").await?;
                Ok(Some("StopStreamEncryption"))
            }
            (Some(want), actual) if actual.as_deref() != Some(want.as_str()) => {
                self.start(name, want).await?;
                Ok(Some("StartStreamEncryption"))
            }
            _ => Ok(None),
        }
    }
}

/// The CloudTrail events of the calls a Kinesis proxy answered with success, each handed to the
/// real `enforcer invoke` one second after the call, as EventBridge would deliver them.
pub struct EventFeed {
    invocations: Arc<Mutex<Vec<(String, Invocation)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl EventFeed {
    pub fn start(proxy: Proxy, env: Vec<(String, String)>) -> Self {
        let invocations = Arc::new(Mutex::new(Vec::new()));
        let collected = invocations.clone();
        let task = tokio::spawn(async move {
            let mut seen = 0;
            loop {
                let calls = proxy.trail(seen);
                seen += calls.len();
                for call in calls {
                    let fixture = match call.operation.as_str() {
                        "CreateStream" => "kinesis-create-stream",
                        "StartStreamEncryption" => "kinesis-start-stream-encryption-foreign-key",
                        "StopStreamEncryption" => "kinesis-stop-stream-encryption",
                        _ => continue,
                    };
                    let Some(name) = call.body["StreamName"].as_str() else {
                        continue;
                    };
                    if call.status != 200 {
                        continue;
                    }
                    let mut record = event(fixture, name);
                    record["detail"]["userAgent"] = call.user_agent.clone().into();
                    if call.user_agent.contains("cloudformation.amazonaws.com") {
                        record["detail"]["userIdentity"]["invokedBy"] =
                            "cloudformation.amazonaws.com".into();
                    }
                    let env = env.clone();
                    let collected = collected.clone();
                    let label = format!("{} {name}", call.operation);
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        let inv = invoke(&env, &record, &[]).await;
                        collected.lock().unwrap().push((label, inv));
                    });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Self { invocations, task }
    }

    /// The invocations finished so far, labelled `Operation stream`.
    pub fn invocations(&self) -> Vec<(String, serde_json::Value, Option<i32>)> {
        self.invocations
            .lock()
            .unwrap()
            .iter()
            .map(|(label, inv)| (label.clone(), inv.report.clone(), inv.code))
            .collect()
    }
}

impl Drop for EventFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}
