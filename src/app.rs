//! Start-up, written once for the Lambda and every CLI command: the configuration, the SDK
//! clients, the cold-start check of the mandated key, and the fleet built from them.

use crate::aws::clients::{AwsClients, SdkConnector};
use crate::aws::kms::check_mandated_key_arn;
use crate::aws::queue::QueueKind;
use crate::config::{Config, Mode};
use crate::fleet::Fleet;
use crate::lambda::Home;
use crate::model::key::KeyInfo;
use crate::model::resource::Location;
use std::time::Duration;

/// How long the cold-start check of the mandated key may take: Lambda's init phase has 10 s.
const KEY_CHECK_TIME: Duration = Duration::from_secs(5);

/// A configured enforcer and its clients, ready to build the fleet that handles events.
pub struct App {
    config: Config,
    clients: AwsClients,
    /// The mandated key as the start-up check resolved it in the clients' region.
    home_key: Option<KeyInfo>,
}

impl App {
    /// Builds the clients from the environment and checks that `MANDATED_KMS_KEY` names
    /// `MANDATED_KMS_KEY_ARN` in the clients' region. `Err` is a configuration error, in words.
    pub async fn new(config: Config) -> Result<Self, String> {
        let clients = AwsClients::from_env().await;
        let mut home_key = None;
        if let Some(region) = clients.region() {
            let deadline = tokio::time::Instant::now() + KEY_CHECK_TIME;
            home_key = check_mandated_key_arn(&config, &clients.kms, &region, deadline).await?;
        }
        Ok(Self {
            config,
            clients,
            home_key,
        })
    }

    /// The app in `mode` (report mode: `--dry-run`).
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.config.mode = mode;
        self
    }

    /// The app that sends sweeps to the queue at `url` instead of `SWEEP_QUEUE_URL`'s.
    pub fn with_sweep_queue(mut self, url: &str) -> Result<Self, String> {
        crate::config::queue_url("--queue", url).map_err(|e| e.to_string())?;
        self.config.sweep_queue_url = Some(url.to_owned());
        Ok(self)
    }

    /// The app that handles every event itself, never routing it to the events queue
    /// (`enforcer invoke` and `enforcer replay` run the event they are given).
    pub fn handling_here(mut self) -> Self {
        self.config.events_queue_url = None;
        self
    }

    /// The app of `enforcer replay`: it handles every event itself, gives no settle period (a
    /// replayed event is old, and its user agent is the message's word only), and fails an event
    /// whose ledger cannot be read (`LEDGER_TABLE` set), rather than writing without the
    /// flapping check.
    pub fn replaying(self) -> Self {
        let mut app = self.handling_here();
        app.config.settle = Duration::ZERO;
        app.config.ledger_required = app.config.ledger_table.is_some();
        app
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The shared SDK configuration, for a client of another service (`enforcer replay`'s SQS).
    pub fn sdk_config(&self) -> &aws_config::SdkConfig {
        self.clients.sdk_config()
    }

    /// The account (sts:GetCallerIdentity) and region the credentials act in.
    pub async fn home(&self) -> Result<Location, String> {
        self.clients.home().await
    }

    /// The Lambda's lookup of its own account and region, from each invocation's function ARN.
    pub fn home_lookup(&self) -> Home {
        Home::new(self.clients.clone())
    }

    /// The fleet that handles events: every place's enforcer, the ledger, and the key the
    /// start-up check resolved, so the own place does not describe it again.
    pub fn fleet(self) -> Fleet<SdkConnector> {
        let region = self.clients.region().unwrap_or_default();
        let ledger = self.clients.ledger(self.config.ledger_table.as_deref());
        let connector = SdkConnector::new(self.clients, self.config.central.as_ref())
            .with_ledger(ledger)
            .with_queue(QueueKind::Sweep, self.config.sweep_queue_url.as_deref())
            .with_queue(QueueKind::Events, self.config.events_queue_url.as_deref())
            .with_queue(
                QueueKind::Failed,
                self.config.failed_events_queue_url.as_deref(),
            )
            .with_queue(QueueKind::Recheck, self.config.recheck_queue_url.as_deref());
        Fleet::new(connector, &self.config).with_home_key(&region, self.home_key)
    }
}
