//! `enforcer`: the operator's CLI over the same library the Lambda runs.

use clap::{Parser, Subcommand, ValueEnum};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use stream_encryption_enforcer::aws::clients::{AwsClients, SdkConnector};
use stream_encryption_enforcer::aws::connector::Connector;
use stream_encryption_enforcer::config::{Config, Mode};
use stream_encryption_enforcer::fleet::Fleet;
use stream_encryption_enforcer::lambda::{HandlerError, Output, init_tracing, run_event};
use stream_encryption_enforcer::model::event::{MAX_EVENT_BYTES, Parsed, is_scheduled, parse};
use stream_encryption_enforcer::model::outcome::Outcome;
use stream_encryption_enforcer::model::resource::Location;
use stream_encryption_enforcer::sweep::{SweepSummary, verdict};
use tokio::time::Instant;

mod replay;

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
        /// `table` for people, `json` for machines.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        output: Format,
        #[command(flatten)]
        scope: Scope,
    },
    /// Audits, then puts every stream that is not compliant on the mandated key, with the same
    /// retry policy and rate limits as the Lambda. Exit code 0 when all ended compliant, 1 when
    /// any failed, 3 with `--dry-run` (or `ENFORCEMENT_MODE=report`, which makes the sweep a dry
    /// run) when any would be changed.
    Sweep {
        /// Decide and report, change nothing (outcome `noncompliant`).
        #[arg(long)]
        dry_run: bool,
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
struct Scope {
    /// Accounts to cover, comma-separated (default: the credentials' own, and in central mode
    /// every account of ALLOWED_ACCOUNTS). Each must be one the configuration allows.
    #[arg(long, value_delimiter = ',', value_name = "ACCOUNT,...")]
    accounts: Vec<String>,
    /// Regions to cover, comma-separated (default: the configured region, and in central
    /// mode every region of ALLOWED_REGIONS).
    #[arg(long, value_delimiter = ',', value_name = "REGION,...")]
    regions: Vec<String>,
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
    if let Some(region) = clients.region() {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        let checked = stream_encryption_enforcer::aws::kms::check_mandated_key_arn(
            &config,
            &clients.kms,
            &region,
            deadline,
        )
        .await;
        if let Err(reason) = checked {
            return unusable(format!("invalid configuration: {reason}"));
        }
    }
    match cli.command {
        Command::Invoke { event, timeout } => invoke(&config, clients, &event, timeout).await,
        Command::Audit { output, scope } => {
            inventory(&config, clients, Mode::Report, output, true, &scope).await
        }
        Command::Sweep {
            dry_run,
            output,
            scope,
        } => {
            let mode = if dry_run_in_report_mode(&config, dry_run, "the sweep changes nothing") {
                Mode::Report
            } else {
                Mode::Enforce
            };
            inventory(&config, clients, mode, output, false, &scope).await
        }
        Command::Replay {
            queue,
            dry_run,
            max,
            timeout,
            output,
        } => {
            let options = replay::Options {
                dry_run: dry_run_in_report_mode(&config, dry_run, "the replay deletes nothing"),
                max: max.map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
                // A batch's events run concurrently, each within the timeout, then at most one
                // sweep, within it too; the margin covers the calls around them.
                visibility: Duration::from_secs(2 * timeout + 60),
            };
            replay_queue(&config, clients, &queue, options, timeout, output).await
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

/// `replay`: the failed-events queue through the handler, with a summary at the end.
async fn replay_queue(
    config: &Config,
    clients: AwsClients,
    url: &str,
    options: replay::Options,
    timeout: u64,
    output: Format,
) -> ExitCode {
    let endpoint_set = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
    if !(url.starts_with("https://") || (endpoint_set && url.starts_with("http://"))) {
        return unusable(format!(
            "--queue {url:?} is not a queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>; \
             http:// only with AWS_ENDPOINT_URL_SQS set)"
        ));
    }
    let home = match clients.home().await {
        Ok(home) => home,
        Err(e) => return unusable(e),
    };
    // The events are judged in the account and region of the credentials, and the SQS client
    // calls AWS_REGION's endpoint: both must be the queue's, or every event would be refused.
    match replay::queue_location(url) {
        (_, None) => {
            return unusable(format!(
                "--queue {url:?}: its path does not start with the queue's 12-digit account"
            ));
        }
        (_, Some(account)) if account != home.account => {
            return unusable(format!(
                "the queue is in account {account}, but the credentials act in account {}: use \
                 credentials of the function's account",
                home.account
            ));
        }
        (Some(region), _) if region != home.region => {
            return unusable(format!(
                "the queue is in region {region}, but AWS_REGION is {}: set AWS_REGION={region}",
                home.region
            ));
        }
        (None, _) if !endpoint_set => {
            return unusable(format!(
                "--queue {url:?}: its host names no region; use \
                 https://sqs.<region>.amazonaws.com/<account>/<name>, or set AWS_ENDPOINT_URL_SQS \
                 for a VPC endpoint"
            ));
        }
        _ => {}
    }
    if config.ledger_table.is_none() {
        eprintln!(
            "enforcer: LEDGER_TABLE is not set: replayed events are not counted against \
             FLAP_THRESHOLD; run with the function's environment (docs/operations.md)"
        );
    }
    let queue = replay::Sqs::new(aws_sdk_sqs::Client::new(clients.sdk_config()), url);
    let mut config = config.clone();
    if options.dry_run {
        config.mode = Mode::Report;
    }
    let ledger = clients.ledger(config.ledger_table.as_deref());
    let connector = SdkConnector::new(clients, config.central.as_ref()).with_ledger(ledger);
    let fleet = Fleet::new(connector, &config);
    let progress = if std::io::stderr().is_terminal() {
        let length = replay::Queue::approximate_len(&queue).await;
        let length = match (length, options.max) {
            (Some(n), Some(max)) => Some(n.min(max as u64)),
            (n, _) => n,
        };
        let bar = ProgressBar::with_draw_target(length, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} messages, {per_sec} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let fleet = &fleet;
    let home = &home;
    let summary = replay::replay(
        &queue,
        options,
        |event| {
            let deadline = Instant::now() + Duration::from_secs(timeout);
            run_event(fleet, event, deadline, Some(home), |_| {})
        },
        |row| {
            progress.set_message(row.resource.clone().unwrap_or_default());
            progress.inc(1);
        },
    )
    .await;
    progress.finish_and_clear();
    match output {
        Format::Json => println!("{}", erased::Json::json(&summary)),
        Format::Table => print_replay(&summary),
    }
    for e in &summary.errors {
        eprintln!("enforcer: {e}");
    }
    if summary.messages.is_empty() && !summary.errors.is_empty() {
        ExitCode::from(EXIT_UNUSABLE)
    } else if summary.complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

fn print_replay(summary: &replay::ReplaySummary) {
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    table.set_header(["message", "resource", "outcome", "action", "reason"]);
    for row in &summary.messages {
        table.add_row([
            row.message_id.as_str(),
            row.resource.as_deref().unwrap_or("-"),
            row.outcome.as_str(),
            match row.action {
                replay::Action::Deleted => "deleted",
                replay::Action::WouldDelete => "would delete",
                replay::Action::Kept => "kept",
            },
            row.reason.as_deref().unwrap_or(""),
        ]);
    }
    if !summary.messages.is_empty() {
        println!("{table}");
    }
    let counts = counts_line(&summary.counts);
    println!(
        "{} message(s); {} deleted, {} kept{}{counts}",
        summary.messages.len(),
        summary.deleted,
        summary.kept,
        if counts.is_empty() { "" } else { "; " },
    );
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
    let ledger = clients.ledger(config.ledger_table.as_deref());
    let connector = SdkConnector::new(clients, config.central.as_ref()).with_ledger(ledger);
    let fleet = Fleet::new(connector, config);
    let print = |output: &dyn erased::Json| println!("{}", output.json());
    match run_event(&fleet, value, deadline, home.as_ref(), |_| {}).await {
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
        Err(HandlerError::Accounts(e)) => {
            eprintln!("enforcer: {e}");
            ExitCode::from(EXIT_FAILED)
        }
        Err(HandlerError::InvalidEvent(e)) => unusable(format!("invalid event: {e}")),
    }
}

/// The accounts and regions `scope` names, every one of them checked against the
/// configuration; the configured ones when it names none.
fn locations<C: Connector>(
    fleet: &Fleet<C>,
    home: &Location,
    scope: &Scope,
) -> Result<Vec<Location>, String> {
    let defaults = fleet.sweep_locations(home);
    let pick = |given: &[String], default: Vec<String>| {
        let mut list: Vec<String> = if given.is_empty() {
            default
        } else {
            given.iter().map(|s| s.trim().to_owned()).collect()
        };
        list.sort();
        list.dedup();
        list
    };
    let accounts = pick(
        &scope.accounts,
        defaults.iter().map(|l| l.account.clone()).collect(),
    );
    let regions = pick(
        &scope.regions,
        defaults.iter().map(|l| l.region.clone()).collect(),
    );
    let mut out = Vec::new();
    for account in &accounts {
        for region in &regions {
            let at = Location::new(account, region).map_err(|e| e.to_string())?;
            if let Some(reason) = fleet.refusal(&at, Some(home)) {
                return Err(format!("cannot cover {at}: {reason}"));
            }
            out.push(at);
        }
    }
    Ok(out)
}

/// `audit` (report mode, verdict table) and `sweep` (the configured decision on every resource).
async fn inventory(
    config: &Config,
    clients: AwsClients,
    mode: Mode,
    output: Format,
    audit: bool,
    scope: &Scope,
) -> ExitCode {
    let home = match clients.home().await {
        Ok(home) => home,
        Err(e) => return unusable(e),
    };
    let mut config = config.clone();
    config.mode = mode;
    let ledger = clients.ledger(config.ledger_table.as_deref());
    let connector = SdkConnector::new(clients, config.central.as_ref()).with_ledger(ledger);
    let fleet = Fleet::new(connector, &config);
    let deadline = Instant::now() + SWEEP_BUDGET;
    if let Err(e) = fleet
        .refresh_accounts(deadline, &mut fastrand::Rng::new())
        .await
    {
        eprintln!("enforcer: {e}");
        return ExitCode::from(EXIT_FAILED);
    }
    let locations = match locations(&fleet, &home, scope) {
        Ok(locations) => locations,
        Err(e) => return unusable(e),
    };
    let progress = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template("{spinner} {pos} resources, {per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let summary = fleet
        .sweep(&home, locations, deadline, |report| {
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
    let incomplete = !summary.unreached.is_empty() || !summary.unlisted.is_empty();
    if summary.reports.iter().any(|r| r.outcome.is_failure()) || incomplete {
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

/// One audit row per resource, and one per account and region that could not be listed
/// (`resource` is then `<account>/<region>`, `verdict` is `not listed`).
#[derive(serde::Serialize)]
struct AuditRow<'a> {
    resource: std::borrow::Cow<'a, str>,
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
            resource: r.resource.as_deref().unwrap_or("-").into(),
            service: r.service.map(|s| s.to_string()).unwrap_or_default(),
            status: r.found.as_ref().map_or("-", |f| f.status.as_str()),
            encryption: r.found.as_ref().map_or("-", |f| f.encryption.as_str()),
            key: r.found.as_ref().and_then(|f| f.key.as_deref()),
            verdict: verdict(r),
            reason: r.reason.as_deref(),
        })
        .chain(summary.unlisted.iter().map(|u| AuditRow {
            resource: format!("{}/{}", u.account, u.region).into(),
            service: String::new(),
            status: "-",
            encryption: "-",
            key: None,
            verdict: "not listed",
            reason: Some(&u.reason),
        }))
        .collect()
}

fn print_table(summary: &SweepSummary, audit: bool) {
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    if audit {
        table.set_header(["resource", "status", "encryption", "key", "verdict"]);
        for row in audit_rows(summary) {
            table.add_row([
                row.resource.as_ref(),
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
    println!(
        "{} resources; {}",
        summary.reports.len(),
        counts_line(&summary.counts)
    );
    for arn in &summary.unreached {
        println!("not reached: {arn}");
    }
    for u in &summary.unlisted {
        println!(
            "not listed: account {} in {}: {}",
            u.account, u.region, u.reason
        );
    }
}

/// `outcome: n, ...` of a summary's counts.
fn counts_line<K: std::fmt::Display>(counts: &std::collections::BTreeMap<K, usize>) -> String {
    counts
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
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
