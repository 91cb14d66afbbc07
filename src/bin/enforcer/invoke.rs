//! `enforcer invoke`: the Lambda's handler once, on one event, with the outcome printed.

use crate::output::{EXIT_FAILED, EXIT_UNUSABLE, print_json, unusable};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use stream_encryption_enforcer::App;
use stream_encryption_enforcer::lambda::{HandlerError, Output, run_event};
use stream_encryption_enforcer::model::event::{MAX_EVENT_BYTES, Parsed, is_scheduled, parse};
use tokio::time::Instant;

/// `invoke`: the handler once on the event in `path` (`-`: standard input).
pub async fn invoke(app: App, path: &PathBuf, timeout: u64) -> ExitCode {
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
    let acts = is_scheduled(&value)
        || stream_encryption_enforcer::lambda::sqs::is_sqs(&value)
        || matches!(parse(value.clone()), Ok(Parsed::Trigger(_)));
    let home = if acts {
        match app.home().await {
            Ok(home) => Some(home),
            Err(e) => return unusable(e),
        }
    } else {
        None
    };
    let fleet = app.fleet();
    match run_event(&fleet, value, deadline, home.as_ref(), |_| {}).await {
        Ok(Output::Event(report)) => {
            print_json(&report);
            ExitCode::SUCCESS
        }
        Ok(Output::Sweep(summary)) => {
            print_json(&summary);
            ExitCode::SUCCESS
        }
        Ok(Output::Plan(plan)) => {
            print_json(&plan);
            ExitCode::SUCCESS
        }
        Ok(Output::Batch(answer)) => {
            print_json(&answer);
            if answer.batch_item_failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_FAILED)
            }
        }
        Err(HandlerError::PlanNotSent(e)) => {
            eprintln!("enforcer: sweep plan: {e}");
            ExitCode::from(EXIT_FAILED)
        }
        // `invoke` handles every event itself: routing is the function's.
        Ok(Output::Routed(routed)) => {
            print_json(&routed);
            ExitCode::SUCCESS
        }
        Err(HandlerError::NotRouted(e)) => {
            eprintln!("enforcer: {e}");
            ExitCode::from(EXIT_FAILED)
        }
        Err(HandlerError::Failed(report)) => {
            print_json(report.as_ref());
            ExitCode::from(EXIT_FAILED)
        }
        Err(HandlerError::Refused(report)) => {
            print_json(report.as_ref());
            ExitCode::from(EXIT_UNUSABLE)
        }
        Err(HandlerError::SweepIncomplete(summary)) => {
            print_json(summary.as_ref());
            ExitCode::from(EXIT_FAILED)
        }
        Err(HandlerError::Accounts(e)) => {
            eprintln!("enforcer: {e}");
            ExitCode::from(EXIT_FAILED)
        }
        Err(HandlerError::InvalidEvent(e)) => unusable(format!("invalid event: {e}")),
    }
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
