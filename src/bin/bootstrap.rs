//! The Lambda function: configuration and clients once per container, then one event at a time.

use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use stream_encryption_enforcer::App;
use stream_encryption_enforcer::config::Config;
use stream_encryption_enforcer::lambda::{init_tracing, lambda_handler};

// One event at a time needs no worker threads: a current-thread runtime. Creating OS threads
// also hangs under qemu-user on some machines, where the arm64 bootstrap is tested.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let config = Config::from_env();
    let level = config
        .as_ref()
        .map_or(tracing::Level::INFO, |c| c.log_level);
    init_tracing(level, true, false);
    let app = match config {
        Ok(config) => App::new(config).await,
        Err(e) => Err(e.to_string()),
    };
    let app = match app {
        Ok(app) => app,
        Err(reason) => return refuse_every_event(reason).await,
    };
    let namespace = app.config().metrics_namespace.clone();
    let home = app.home_lookup();
    let fleet = app.fleet();
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        lambda_handler(&fleet, &namespace, &home, event)
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
