//! `enforcer`: the operator's CLI over the same library the Lambda runs.

use clap::{Parser, Subcommand, ValueEnum};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use stream_encryption_enforcer::clients::AwsClients;
use stream_encryption_enforcer::config::{Config, Mode};
use stream_encryption_enforcer::enforcer::Enforcer;
use stream_encryption_enforcer::event::{MAX_EVENT_BYTES, Parsed, is_scheduled, parse};
use stream_encryption_enforcer::handler::{HandlerError, Output, init_tracing, run_event};
use stream_encryption_enforcer::outcome::Outcome;
use stream_encryption_enforcer::sweep::{SweepSummary, sweep, verdict};
use tokio::time::Instant;

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
    /// Exit code 0 for every outcome except `failed` (1) and `refused` (2: the event's resource
    /// is not in the account and region the credentials act in); 2 also when the event or the
    /// configuration cannot be used. Configuration comes from the same environment variables as the Lambda.
    Invoke {
        /// The EventBridge event, as JSON; `-` reads standard input.
        #[arg(long, value_name = "FILE")]
        event: PathBuf,
        /// Seconds the handler may take, as the Lambda's timeout would allow.
        #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=900))]
        timeout: u64,
    },
    /// Lists every stream and delivery stream of the account and region with its encryption and
    /// a verdict; changes nothing. Exit code 0 when all are compliant, 3 when any is not.
    Audit {
        /// `table` for people, `json` for machines.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Audits, then puts every stream that is not compliant on the mandated key, with the same
    /// retry policy and rate limits as the Lambda. Exit code 0 when all ended compliant, 1 when
    /// any failed, 3 with `--dry-run` when any would be changed.
    Sweep {
        /// Decide and report, change nothing (outcome `noncompliant`).
        #[arg(long)]
        dry_run: bool,
        /// `table` for people, `json` for machines.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

const EXIT_FAILED: u8 = 1;
const EXIT_UNUSABLE: u8 = 2;
const EXIT_NOT_COMPLIANT: u8 = 3;
/// The inventory commands are not bound by a Lambda timeout; this only keeps a hung run finite.
const SWEEP_BUDGET: Duration = Duration::from_secs(24 * 3600);
/// Below this many resources a progress bar is noise.
const PROGRESS_THRESHOLD: usize = 20;

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
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => return unusable(format!("invalid configuration: {e}")),
    };
    init_tracing(config.log_level, false, true);
    let clients = AwsClients::from_env().await;
    match cli.command {
        Command::Invoke { event, timeout } => invoke(&config, clients, &event, timeout).await,
        Command::Audit { output } => inventory(&config, clients, Mode::Report, output, true).await,
        Command::Sweep { dry_run, output } => {
            let mode = if dry_run { Mode::Report } else { Mode::Enforce };
            inventory(&config, clients, mode, output, false).await
        }
    }
}

async fn invoke(config: &Config, clients: AwsClients, path: &PathBuf, timeout: u64) -> ExitCode {
    let bytes = match read_event(path) {
        Ok(bytes) => bytes,
        Err(e) => return unusable(format!("cannot read {}: {e}", path.display())),
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
    let deadline = Instant::now() + Duration::from_secs(timeout);
    // A resource is checked against the account and region the credentials act in; an event
    // that is unusable or needs no action costs no call, not even sts:GetCallerIdentity.
    let acts = is_scheduled(&value) || matches!(parse(value.clone()), Ok(Parsed::Trigger(_)));
    let home = if acts {
        match clients.home().await {
            Ok(home) => Some(home),
            Err(e) => return unusable(e),
        }
    } else {
        None
    };
    let enforcer = Enforcer::new(clients.kinesis, clients.firehose, clients.kms, config);
    let print = |output: &dyn erased::Json| println!("{}", output.json());
    match run_event(&enforcer, value, deadline, home.as_ref(), |_| {}).await {
        Ok(Output::Event(report)) => {
            print(&report);
            ExitCode::SUCCESS
        }
        Ok(Output::Sweep(summary)) => {
            print(&summary);
            ExitCode::SUCCESS
        }
        Err(HandlerError::Failed(report)) => {
            print(report.as_ref());
            ExitCode::from(EXIT_FAILED)
        }
        Err(HandlerError::Refused(report)) => {
            print(report.as_ref());
            ExitCode::from(EXIT_UNUSABLE)
        }
        Err(HandlerError::SweepIncomplete(summary)) => {
            print(summary.as_ref());
            ExitCode::from(EXIT_FAILED)
        }
        Err(HandlerError::Inventory(e)) => {
            eprintln!("enforcer: {e}");
            ExitCode::from(EXIT_FAILED)
        }
        Err(HandlerError::InvalidEvent(e)) => unusable(format!("invalid event: {e}")),
    }
}

/// `audit` (report mode, verdict table) and `sweep` (the configured decision on every resource).
async fn inventory(
    config: &Config,
    clients: AwsClients,
    mode: Mode,
    output: Format,
    audit: bool,
) -> ExitCode {
    let home = match clients.home().await {
        Ok(home) => home,
        Err(e) => return unusable(e),
    };
    let mut config = config.clone();
    config.mode = mode;
    let enforcer = Enforcer::new(clients.kinesis, clients.firehose, clients.kms, &config);
    let deadline = Instant::now() + SWEEP_BUDGET;
    let resources = match enforcer
        .list_resources(&home, deadline, &mut fastrand::Rng::new())
        .await
    {
        Ok(resources) => resources,
        Err(e) => {
            eprintln!("enforcer: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let progress = if std::io::stderr().is_terminal() && resources.len() >= PROGRESS_THRESHOLD {
        ProgressBar::with_draw_target(Some(resources.len() as u64), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let summary = sweep(&enforcer, resources, deadline, |report| {
        progress.set_message(report.resource.clone().unwrap_or_default());
        progress.inc(1);
    })
    .await;
    progress.finish_and_clear();
    match output {
        Format::Json if audit => println!("{}", erased::Json::json(&audit_rows(&summary))),
        Format::Json => println!("{}", erased::Json::json(&summary)),
        Format::Table => print_table(&summary, audit),
    }
    let any = |outcome: Outcome| summary.reports.iter().any(|r| r.outcome == outcome);
    if any(Outcome::Failed) || !summary.unreached.is_empty() {
        ExitCode::from(if audit {
            EXIT_NOT_COMPLIANT
        } else {
            EXIT_FAILED
        })
    } else if any(Outcome::Noncompliant) {
        ExitCode::from(EXIT_NOT_COMPLIANT)
    } else {
        ExitCode::SUCCESS
    }
}

/// One audit row per resource.
#[derive(serde::Serialize)]
struct AuditRow<'a> {
    resource: &'a str,
    service: String,
    status: &'a str,
    encryption: &'a str,
    key: Option<&'a str>,
    verdict: &'static str,
    reason: Option<&'a str>,
}

fn audit_rows(summary: &SweepSummary) -> Vec<AuditRow<'_>> {
    summary
        .reports
        .iter()
        .map(|r| AuditRow {
            resource: r.resource.as_deref().unwrap_or("-"),
            service: r.service.map(|s| s.to_string()).unwrap_or_default(),
            status: r.found.as_ref().map_or("-", |f| f.status.as_str()),
            encryption: r.found.as_ref().map_or("-", |f| f.encryption.as_str()),
            key: r.found.as_ref().and_then(|f| f.key.as_deref()),
            verdict: verdict(r),
            reason: r.reason.as_deref(),
        })
        .collect()
}

fn print_table(summary: &SweepSummary, audit: bool) {
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    if audit {
        table.set_header(["resource", "status", "encryption", "key", "verdict"]);
        for row in audit_rows(summary) {
            table.add_row([
                row.resource,
                row.status,
                row.encryption,
                row.key.unwrap_or("-"),
                row.verdict,
            ]);
        }
    } else {
        table.set_header(["resource", "outcome", "writes", "reason"]);
        for r in &summary.reports {
            table.add_row([
                r.resource.clone().unwrap_or_default(),
                r.outcome.to_string(),
                r.attempts.to_string(),
                r.reason.clone().unwrap_or_default(),
            ]);
        }
    }
    println!("{table}");
    let counts: Vec<String> = summary
        .counts
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    println!("{} resources; {}", summary.reports.len(), counts.join(", "));
    for arn in &summary.unreached {
        println!("not reached: {arn}");
    }
}

/// Printing either kind of result as one line of JSON.
mod erased {
    pub trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap_or_else(|e| format!(r#"{{"error":"{e}"}}"#))
        }
    }
}
