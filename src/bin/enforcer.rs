//! `enforcer`: the operator's CLI over the same library the Lambda runs.

use clap::{Parser, Subcommand};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use stream_encryption_enforcer::clients::AwsClients;
use stream_encryption_enforcer::config::Config;
use stream_encryption_enforcer::enforcer::Enforcer;
use stream_encryption_enforcer::event::MAX_EVENT_BYTES;
use stream_encryption_enforcer::handler::{HandlerError, init_tracing, run_event};

/// Keeps Kinesis data streams and Firehose delivery streams on the mandated KMS key.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the Lambda's handler once on one event and prints the outcome as JSON.
    ///
    /// Exit code 0 for every outcome except `failed` (1); 2 when the event or the configuration
    /// cannot be used. Configuration comes from the same environment variables as the Lambda.
    Invoke {
        /// The EventBridge event, as JSON; `-` reads standard input.
        #[arg(long, value_name = "FILE")]
        event: PathBuf,
        /// Seconds the handler may take, as the Lambda's timeout would allow.
        #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=900))]
        timeout: u64,
    },
}

const EXIT_FAILED: u8 = 1;
const EXIT_UNUSABLE: u8 = 2;

fn unusable(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("enforcer: {message}");
    ExitCode::from(EXIT_UNUSABLE)
}

fn read_event(path: &PathBuf) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    // One byte over the limit is enough to reject an oversized event without reading all of it.
    let limit = MAX_EVENT_BYTES as u64 + 1;
    if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut bytes)?;
    } else {
        std::fs::File::open(path)?
            .take(limit)
            .read_to_end(&mut bytes)?;
    }
    Ok(bytes)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Invoke { event, timeout } = cli.command;
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => return unusable(format!("invalid configuration: {e}")),
    };
    init_tracing(config.log_level, false, true);
    let bytes = match read_event(&event) {
        Ok(bytes) => bytes,
        Err(e) => return unusable(format!("cannot read {}: {e}", event.display())),
    };
    if bytes.len() > MAX_EVENT_BYTES {
        return unusable(format!(
            "invalid event: larger than {MAX_EVENT_BYTES} bytes"
        ));
    }
    let value: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(value) => value,
        Err(e) => return unusable(format!("invalid event: not JSON: {e}")),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let clients = AwsClients::from_env().await;
    let enforcer = Enforcer::new(clients.kinesis, clients.firehose, clients.kms, &config);
    match run_event(&enforcer, value, deadline).await {
        Ok(report) => {
            println!("{}", report.to_json());
            ExitCode::SUCCESS
        }
        Err(HandlerError::Failed(report)) => {
            println!("{}", report.to_json());
            ExitCode::from(EXIT_FAILED)
        }
        Err(HandlerError::InvalidEvent(e)) => unusable(format!("invalid event: {e}")),
    }
}
