//! The Lambda function: configuration and clients once per container, then one event at a time.

use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use stream_encryption_enforcer::aws::clients::{AwsClients, SdkConnector};
use stream_encryption_enforcer::aws::kms::check_mandated_key_arn;
use stream_encryption_enforcer::config::Config;
use stream_encryption_enforcer::fleet::Fleet;
use stream_encryption_enforcer::lambda::{Home, init_tracing, lambda_handler};

// One event at a time needs no worker threads: a current-thread runtime. The only other
// threads are the blocking pool's, which a DNS lookup starts on first use (an endpoint given as
// an IP address needs none). That is also what runs under qemu-user, where creating an OS
// thread hangs on the test machines, so the arm64 bootstrap is tested there.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let config = Config::from_env();
    init_tracing(
        config
            .as_ref()
            .map_or(tracing::Level::INFO, |c| c.log_level),
        true,
        false,
    );
    let config = match config {
        Ok(config) => config,
        Err(e) => return refuse_every_event(e.to_string()).await,
    };
    let clients = AwsClients::from_env().await;
    let region = clients.region().unwrap_or_default();
    let mut home_key = None;
    if !region.is_empty() {
        // The cold start has up to 10 s before Lambda's init timeout matters; 5 s is plenty.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        match check_mandated_key_arn(&config, &clients.kms, &region, deadline).await {
            // The check's resolution is the own place's first: the key is not described twice.
            Ok(resolved) => home_key = resolved,
            Err(reason) => return refuse_every_event(reason).await,
        }
    }
    let home = Home::new(clients.clone());
    let ledger = clients.ledger(config.ledger_table.as_deref());
    let connector = SdkConnector::new(clients, config.central.as_ref()).with_ledger(ledger);
    let fleet = Fleet::new(connector, &config).with_home_key(&region, home_key);
    let namespace = config.metrics_namespace.as_str();
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        lambda_handler(&fleet, namespace, &home, event)
    }))
    .await
}

/// Answers every event with `InvalidConfiguration` and `reason`. Exiting would only show
/// Runtime.ExitError; answering every event with the reason puts it in the on-failure
/// destination's record, next to the event it kept.
async fn refuse_every_event(reason: String) -> Result<(), Error> {
    tracing::error!(error = %reason, "invalid configuration");
    lambda_runtime::run(service_fn(|_: LambdaEvent<serde_json::Value>| {
        let diagnostic = Diagnostic {
            error_type: "InvalidConfiguration".into(),
            error_message: reason.clone(),
        };
        async move { Err::<(), _>(diagnostic) }
    }))
    .await
}
