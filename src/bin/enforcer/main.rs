//! `enforcer`: the operator's CLI over the same library the Lambda runs. `main` parses the
//! arguments and sends each command to its module; exit codes are in `output`.

use clap::{Parser, Subcommand};
use output::{AuditFormat, Format, unusable};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use stream_encryption_enforcer::App;
use stream_encryption_enforcer::config::{Config, Mode};
use stream_encryption_enforcer::lambda::init_tracing;

mod function;
mod inventory;
mod invoke;
mod output;
mod replay;

/// Keeps Kinesis data streams and Firehose delivery streams on the mandated KMS key.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Take the configuration from this deployed function (its name, `<stack>-enforcer`, or
    /// ARN) with lambda:GetFunctionConfiguration, instead of the environment: only the
    /// variables the product defines are used, never AWS_* or anything else the function's
    /// environment holds. Replay then also keeps every on-failure record of another function.
    #[arg(long, global = true, value_name = "NAME")]
    function: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the Lambda's handler once on one event and prints the outcome as JSON.
    ///
    /// Exit code 0 for every outcome except `failed` (1) and `refused` (2: the event's resource
    /// is not in the account and region the credentials act in, nor in central mode in an allowed
    /// account and region); 2 also when the event or the configuration cannot be used.
    /// Configuration comes from the same environment variables as the Lambda.
    Invoke {
        /// The EventBridge event, as JSON; `-` reads standard input.
        #[arg(long, value_name = "FILE")]
        event: PathBuf,
        /// Seconds the handler may take, as the Lambda's timeout would allow.
        #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=900))]
        timeout: u64,
    },
    /// Lists every stream and delivery stream with its encryption and a verdict; changes
    /// nothing. Covers the account and region of the credentials; in central mode
    /// (TARGET_ROLE_NAME) also every allowed account in every allowed region, or those given.
    /// Exit code 0 when all are compliant, 3 when any is not or could not be listed.
    Audit {
        /// `table` for people, `json` for machines, `csv` for a spreadsheet (RFC 4180: account,
        /// region, service, name, arn, outcome, key, reason).
        #[arg(long, value_enum, default_value_t = AuditFormat::Table)]
        output: AuditFormat,
        #[command(flatten)]
        scope: Scope,
    },
    /// Audits, then puts every stream that is not compliant on the mandated key, with the same
    /// retry policy and rate limits as the Lambda. Exit code 0 when all ended compliant, 1 when
    /// any failed, 3 with `--dry-run` (or `ENFORCEMENT_MODE=report`, which makes the sweep a dry
    /// run) when any would be changed. With `--enqueue`, sends one message per account and
    /// region to the sweep queue instead, for the function to sweep inside its own pacing: exit
    /// code 0 when all were sent, 1 when not.
    Sweep {
        /// Decide and report, change nothing (outcome `noncompliant`).
        #[arg(long, conflicts_with = "enqueue")]
        dry_run: bool,
        /// Hand the places to the function's sweep queue instead of sweeping here.
        #[arg(long)]
        enqueue: bool,
        /// The sweep queue's URL (the stack's SweepQueueUrl output; default SWEEP_QUEUE_URL).
        #[arg(long, value_name = "URL", requires = "enqueue")]
        queue: Option<String>,
        /// `table` for people, `json` for machines.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        output: Format,
        #[command(flatten)]
        scope: Scope,
    },
    /// Replays the failed-events queue: each message's event (Lambda's on-failure record, or a
    /// bare event as in the dead-letter queue) through the same handler as `invoke`. A message
    /// is deleted only after an outcome that is not a failure; the others stay, visible again,
    /// with the reason logged. Exit code 0 when every message handled was deleted (with
    /// `--dry-run`: would be), 1 when any stays, 2 when the queue cannot be read.
    Replay {
        /// The queue's URL (the stack's FailedEventsQueueUrl or EventsDeadLetterQueueUrl output).
        #[arg(long, value_name = "URL")]
        queue: String,
        /// Run every event in report mode and delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Handle at most this many messages.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        max: Option<u64>,
        /// Seconds each event may take, as the Lambda's timeout would allow.
        #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=900))]
        timeout: u64,
        /// `table` for people, `json` for machines.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

/// Which accounts and regions `audit` and `sweep` cover.
#[derive(clap::Args)]
pub struct Scope {
    /// Accounts to cover, comma-separated (default: the credentials' own, and in central mode
    /// every account of ALLOWED_ACCOUNTS). Each must be one the configuration allows.
    #[arg(long, value_delimiter = ',', value_name = "ACCOUNT,...")]
    pub accounts: Vec<String>,
    /// Regions to cover, comma-separated (default: the configured region, and in central
    /// mode every region of ALLOWED_REGIONS).
    #[arg(long, value_delimiter = ',', value_name = "REGION,...")]
    pub regions: Vec<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let (config, function_arn) = match &cli.function {
        None => (Config::from_env(), None),
        Some(name) => match function::read(name).await {
            Ok(read) => {
                if !read.ignored.is_empty() {
                    eprintln!(
                        "enforcer: --function {name}: ignored the variables the product does not \
                         define: {}",
                        read.ignored.join(", ")
                    );
                }
                let variables = read.variables;
                (
                    Config::from_lookup(|v| variables.get(v).cloned()),
                    Some(read.arn),
                )
            }
            Err(e) => return unusable(e),
        },
    };
    let config = match config {
        Ok(config) => config,
        Err(e) => return unusable(format!("invalid configuration: {e}")),
    };
    init_tracing(config.log_level, false, true);
    let app = match App::new(config).await {
        Ok(app) => app,
        Err(reason) => return unusable(format!("invalid configuration: {reason}")),
    };
    match cli.command {
        Command::Invoke { event, timeout } => {
            invoke::invoke(app.handling_here(), &event, timeout).await
        }
        Command::Audit { output, scope } => {
            let output = match output {
                AuditFormat::Table => inventory::Print::Table,
                AuditFormat::Json => inventory::Print::Json,
                AuditFormat::Csv => inventory::Print::Csv,
            };
            inventory::inventory(app.with_mode(Mode::Report), output, true, &scope).await
        }
        Command::Sweep {
            enqueue: true,
            queue,
            output,
            scope,
            ..
        } => {
            let app = match queue {
                Some(url) => match app.with_sweep_queue(&url) {
                    Ok(app) => app,
                    Err(e) => return unusable(e),
                },
                None => app,
            };
            inventory::enqueue(app, output, &scope).await
        }
        Command::Sweep {
            dry_run,
            output,
            scope,
            ..
        } => {
            let mode = if dry_run_in_report_mode(app.config(), dry_run, "the sweep changes nothing")
            {
                Mode::Report
            } else {
                Mode::Enforce
            };
            inventory::inventory(app.with_mode(mode), output.into(), false, &scope).await
        }
        Command::Replay {
            queue,
            dry_run,
            max,
            timeout,
            output,
        } => {
            let options = replay::Options {
                dry_run: dry_run_in_report_mode(
                    app.config(),
                    dry_run,
                    "the replay deletes nothing",
                ),
                max: max.map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
                function_arn,
                // A batch's events run concurrently, each within the timeout, then at most one
                // sweep, within it too; the margin covers the calls around them.
                visibility: Duration::from_secs(2 * timeout + 60),
            };
            replay::replay_queue(app.replaying(), &queue, options, timeout, output).await
        }
    }
}

/// Report mode promises no write anywhere: a command that writes honours it as `--dry-run`, and
/// says so. Whether the command runs dry.
fn dry_run_in_report_mode(config: &Config, dry_run: bool, what: &str) -> bool {
    let report = config.mode == Mode::Report;
    if report && !dry_run {
        eprintln!("enforcer: ENFORCEMENT_MODE=report: {what}, as with --dry-run");
    }
    dry_run || report
}
