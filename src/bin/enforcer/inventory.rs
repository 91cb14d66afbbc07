//! `enforcer audit` and `enforcer sweep`: every resource of the chosen accounts and regions,
//! reported (audit) or put through the configured decision (sweep).

use crate::Scope;
use crate::output::{
    EXIT_FAILED, EXIT_NOT_COMPLIANT, Format, counts_line, csv_record, print_json, progress, table,
    unusable,
};
use std::process::ExitCode;
use std::time::Duration;
use stream_encryption_enforcer::App;
use stream_encryption_enforcer::aws::connector::Connector;
use stream_encryption_enforcer::fleet::Fleet;
use stream_encryption_enforcer::model::outcome::Outcome;
use stream_encryption_enforcer::model::resource::Location;
use stream_encryption_enforcer::sweep::plan::new_sweep_id;
use stream_encryption_enforcer::sweep::{SweepSummary, verdict};
use tokio::time::Instant;

/// The inventory commands are not bound by a Lambda timeout; this only keeps a hung run finite.
const SWEEP_BUDGET: Duration = Duration::from_secs(24 * 3600);

/// How `audit` and `sweep` print their result.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Print {
    Table,
    Json,
    /// `audit --output csv`.
    Csv,
}

impl From<Format> for Print {
    fn from(format: Format) -> Self {
        match format {
            Format::Table => Self::Table,
            Format::Json => Self::Json,
        }
    }
}

/// `audit` (report mode, verdict table) and `sweep` (the configured decision on every resource).
pub async fn inventory(app: App, output: Print, audit: bool, scope: &Scope) -> ExitCode {
    let home = match app.home().await {
        Ok(home) => home,
        Err(e) => return unusable(e),
    };
    let fleet = app.fleet();
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
    let progress = progress(None, "{spinner} {pos} resources, {per_sec} {msg}");
    let summary = fleet
        .sweep(&home, locations, deadline, |report| {
            progress.set_message(report.resource.clone().unwrap_or_default());
            progress.inc(1);
        })
        .await;
    progress.finish_and_clear();
    match output {
        Print::Json if audit => print_json(&audit_rows(&summary)),
        Print::Json => print_json(&summary),
        Print::Table => print_table(&summary, audit),
        Print::Csv => print!("{}", csv(&summary)),
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

/// `sweep --enqueue`: one message per account and region of `scope` on the sweep queue.
pub async fn enqueue(app: App, output: Format, scope: &Scope) -> ExitCode {
    if app.config().sweep_queue_url.is_none() {
        return unusable(
            "sweep --enqueue needs the sweep queue: give --queue (the stack's SweepQueueUrl \
             output) or set SWEEP_QUEUE_URL"
                .to_owned(),
        );
    }
    let home = match app.home().await {
        Ok(home) => home,
        Err(e) => return unusable(e),
    };
    let fleet = app.fleet();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut random = fastrand::Rng::new();
    if let Err(e) = fleet.refresh_accounts(deadline, &mut random).await {
        eprintln!("enforcer: {e}");
        return ExitCode::from(EXIT_FAILED);
    }
    let locations = match locations(&fleet, &home, scope) {
        Ok(locations) => locations,
        Err(e) => return unusable(e),
    };
    let sweep_id = new_sweep_id("operator");
    match fleet
        .send_plan(&sweep_id, &locations, deadline, &mut random)
        .await
    {
        Ok(places) => {
            match output {
                Format::Json => print_json(&serde_json::json!({
                    "sweep_id": sweep_id,
                    "places": places,
                })),
                Format::Table => println!(
                    "sweep {sweep_id}: {places} account(s) and region(s) sent to the sweep \
                     queue; each one's result is the function's log line \"sweep place\" \
                     with this sweep_id"
                ),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("enforcer: sweep {sweep_id}: {e}");
            ExitCode::from(EXIT_FAILED)
        }
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

/// The CSV of `audit --output csv`: a header, then one record per resource (its account, region,
/// service and name from its ARN; its outcome; the key it was found on; the reason), and one per
/// account and region that could not be listed (outcome `not_listed`).
fn csv(summary: &SweepSummary) -> String {
    let mut text = csv_record(&[
        "account", "region", "service", "name", "arn", "outcome", "key", "reason",
    ]);
    for r in &summary.reports {
        let arn = r.resource.as_deref().unwrap_or("");
        // arn:<partition>:<service>:<region>:<account>:<type>/<name>
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let part = |i: usize| parts.get(i).copied().unwrap_or("");
        let name = part(5).split_once('/').map_or("", |(_, name)| name);
        text.push_str(&csv_record(&[
            part(4),
            part(3),
            &r.service.map(|s| s.to_string()).unwrap_or_default(),
            name,
            arn,
            r.outcome.as_str(),
            r.found
                .as_ref()
                .and_then(|f| f.key.as_deref())
                .unwrap_or(""),
            r.reason.as_deref().unwrap_or(""),
        ]));
    }
    for u in &summary.unlisted {
        text.push_str(&csv_record(&[
            u.account.as_str(),
            u.region.as_str(),
            "",
            "",
            "",
            "not_listed",
            "",
            u.reason.as_str(),
        ]));
    }
    text
}

fn print_table(summary: &SweepSummary, audit: bool) {
    if audit {
        let mut table = table(["resource", "status", "encryption", "key", "verdict"]);
        for row in audit_rows(summary) {
            table.add_row([
                row.resource.as_ref(),
                row.status,
                row.encryption,
                row.key.unwrap_or("-"),
                row.verdict,
            ]);
        }
        println!("{table}");
    } else {
        let mut table = table(["resource", "outcome", "writes", "reason"]);
        for r in &summary.reports {
            table.add_row([
                r.resource.clone().unwrap_or_default(),
                r.outcome.to_string(),
                r.attempts.to_string(),
                r.reason.clone().unwrap_or_default(),
            ]);
        }
        println!("{table}");
    }
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
