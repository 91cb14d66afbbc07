//! `enforcer replay`: drains the failed-events queue through the same handler as `enforcer
//! invoke`, deleting a message only once its event has an outcome that is not a failure.
//!
//! The queue holds one of two kinds of message, told apart by their shape:
//! - **Lambda's on-failure record** (the stack's `FailedEventsQueue`): a JSON object with
//!   `requestContext` (`condition`, `approximateInvokeCount`, ...), `requestPayload` (the
//!   event), `responseContext` and `responsePayload`, as
//!   <https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html> shows.
//! - **A bare event** (the rules' `EventsDeadLetterQueue`): EventBridge puts the event itself in
//!   the body and says why in message attributes (`ERROR_CODE`, `ERROR_MESSAGE`, ...), as
//!   <https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-dlq.html> shows.
//!
//! How the queue is walked: messages are received ten at a time (SQS's maximum) with long polling,
//! which asks every SQS server and so does not answer "empty" while messages wait, each hidden
//! for the handler's timeout plus a margin while its batch runs. A message is deleted only after
//! the handler returned an outcome that is not a failure; every other message (failed, refused,
//! unusable, or any message of a dry run) is made visible again when the walk ends, so the next
//! replay, after the cause is fixed, finds it at once. A message that comes back during the walk
//! (its visibility ran out, or SQS delivered a copy) is not handled twice. The walk ends when a
//! receive brings nothing (or, after [`MAX_SEEN_RECEIVES`](walk::MAX_SEEN_RECEIVES) receives in a row that bring only
//! messages already handled), or after `--max` messages.
//!
//! Two kinds of event are not simply run:
//! - **A scheduled sweep** covers every stream, so one is enough: sweeps run one at a time, after
//!   the other events of their batch, and once one has completed in this replay every later sweep
//!   message is deleted as superseded (kept, unrun, when it did not complete).
//! - **An event from another source** than the product's rules match (`aws.kinesis`,
//!   `aws.firehose`, `aws.events`) would only be `ignored`; it is kept instead, so that a replay
//!   pointed at the wrong queue deletes nothing of someone else's.

mod sqs;
mod walk;

use crate::output::{
    EXIT_FAILED, EXIT_UNUSABLE, Format, counts_line, on_terminal, print_json, progress, table,
    unusable,
};
use sqs::Sqs;
use std::process::ExitCode;
use std::time::Duration;
use stream_encryption_enforcer::App;
use stream_encryption_enforcer::config::Mode;
use stream_encryption_enforcer::lambda::run_event;
use stream_encryption_enforcer::model::resource::Location;
use tokio::time::Instant;
pub use walk::Options;
use walk::{Action, Queue, ReplaySummary, replay};

/// `replay`: the failed-events queue through the handler, with a summary at the end.
pub async fn replay_queue(
    app: App,
    url: &str,
    options: Options,
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
    let home = match app.home().await {
        Ok(home) => home,
        Err(e) => return unusable(e),
    };
    if let Err(why) = check_queue_url(url, &home, endpoint_set) {
        return unusable(why);
    }
    if app.config().ledger_table.is_none() {
        eprintln!(
            "enforcer: LEDGER_TABLE is not set: replayed events are not counted against \
             FLAP_THRESHOLD; run with the function's environment (docs/operations.md)"
        );
    }
    let queue = Sqs::new(aws_sdk_sqs::Client::new(app.sdk_config()), url);
    let app = if options.dry_run {
        app.with_mode(Mode::Report)
    } else {
        app
    };
    let fleet = app.fleet();
    // The queue's length is read only for a bar someone sees: it is one more SQS call.
    let length = if on_terminal() {
        match (queue.approximate_len().await, options.max) {
            (Some(n), Some(max)) => Some(n.min(max as u64)),
            (n, _) => n,
        }
    } else {
        None
    };
    let progress = progress(length, "{bar:30} {pos}/{len} messages, {per_sec} {msg}");
    let fleet = &fleet;
    let home = &home;
    let summary = replay(
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
        Format::Json => print_json(&summary),
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

fn print_replay(summary: &ReplaySummary) {
    let mut table = table(["message", "resource", "outcome", "action", "reason"]);
    for row in &summary.messages {
        table.add_row([
            row.message_id.as_str(),
            row.resource.as_deref().unwrap_or("-"),
            row.outcome.as_str(),
            match row.action {
                Action::Deleted => "deleted",
                Action::WouldDelete => "would delete",
                Action::Kept => "kept",
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

/// Whether a queue URL names a queue `enforcer replay` may walk with credentials acting in
/// `home`: SQS's own host must name `home`'s region (any host will do with an endpoint override),
/// and the path `home`'s account.
fn check_queue_url(url: &str, home: &Location, endpoint_set: bool) -> Result<(), String> {
    // The events are judged in the account and region of the credentials, and the SQS client
    // calls AWS_REGION's endpoint: both must be the queue's, or every event would be refused.
    match queue_location(url) {
        (_, None) => Err(format!(
            "--queue {url:?}: its path does not start with the queue's 12-digit account"
        )),
        (_, Some(account)) if account != home.account => Err(format!(
            "the queue is in account {account}, but the credentials act in account {}: use \
                 credentials of the function's account",
            home.account
        )),
        (Some(region), _) if region != home.region => Err(format!(
            "the queue is in region {region}, but AWS_REGION is {}: set AWS_REGION={region}",
            home.region
        )),
        (None, _) if !endpoint_set => Err(format!(
            "--queue {url:?}: its host names no region; use \
                 https://sqs.<region>.amazonaws.com/<account>/<name>, or set AWS_ENDPOINT_URL_SQS \
                 for a VPC endpoint"
        )),
        _ => Ok(()),
    }
}

/// Where a queue URL says its queue is: the account (the URL's first path segment, when it is 12
/// digits) and the region (from an SQS host: `sqs.<region>.amazonaws.com`, its `.com.cn`,
/// `sqs-fips.` and dual-stack `.api.aws` forms, or the legacy `<region>.queue.amazonaws.com` and
/// `queue.amazonaws.com`); `None` for what the URL does not say (an emulator's or a VPC
/// endpoint's host names no region).
pub fn queue_location(url: &str) -> (Option<String>, Option<String>) {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = host
        .rsplit_once(':')
        .map_or(host, |(h, _)| h)
        .to_ascii_lowercase();
    let account = path
        .split('/')
        .next()
        .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned);
    let region = [".amazonaws.com", ".amazonaws.com.cn", ".api.aws"]
        .iter()
        .find_map(|suffix| host.strip_suffix(suffix))
        .and_then(|name| match name {
            "queue" => Some("us-east-1"),
            _ => name
                .strip_prefix("sqs.")
                .or_else(|| name.strip_prefix("sqs-fips."))
                .or_else(|| name.strip_suffix(".queue")),
        })
        .filter(|r| {
            !r.is_empty()
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        .map(str::to_owned);
    (region, account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_url_names_its_region_and_account() {
        let account = Some("111122223333".to_owned());
        let at = |region: &str| (Some(region.to_owned()), account.clone());
        for (url, want) in [
            (
                "https://sqs.eu-west-1.amazonaws.com/111122223333/failed",
                at("eu-west-1"),
            ),
            (
                "https://SQS.EU-WEST-1.amazonaws.com:443/111122223333/f",
                at("eu-west-1"),
            ),
            (
                "https://sqs-fips.us-east-2.amazonaws.com/111122223333/f",
                at("us-east-2"),
            ),
            (
                "https://sqs.eu-west-1.api.aws/111122223333/f",
                at("eu-west-1"),
            ),
            (
                "https://sqs.cn-north-1.amazonaws.com.cn/111122223333/f",
                at("cn-north-1"),
            ),
            (
                "https://us-gov-west-1.queue.amazonaws.com/111122223333/f",
                at("us-gov-west-1"),
            ),
            (
                "https://queue.amazonaws.com/111122223333/f",
                at("us-east-1"),
            ),
            (
                "http://127.0.0.1:4566/111122223333/f",
                (None, account.clone()),
            ),
            (
                "https://vpce-1.sqs.eu-west-1.vpce.amazonaws.com/111122223333/f",
                (None, account.clone()),
            ),
            (
                "https://sqs.eu-west-1.amazonaws.com/not-an-account/f",
                (Some("eu-west-1".to_owned()), None),
            ),
            (
                "https://sqs.eu-west-1.amazonaws.com",
                (Some("eu-west-1".to_owned()), None),
            ),
            ("", (None, None)),
            ("https://", (None, None)),
        ] {
            assert_eq!(queue_location(url), want, "{url}");
        }
    }

    fn home() -> Location {
        Location::new("111122223333", "eu-west-1").unwrap()
    }

    #[test]
    fn a_queue_of_the_credentials_account_and_region_is_walked() {
        let url = "https://sqs.eu-west-1.amazonaws.com/111122223333/failed";
        assert_eq!(check_queue_url(url, &home(), false), Ok(()));
    }

    #[test]
    fn a_queue_of_another_account_is_refused() {
        let url = "https://sqs.eu-west-1.amazonaws.com/444455556666/failed";
        let why = check_queue_url(url, &home(), false).unwrap_err();
        assert!(why.contains("account 444455556666"), "{why}");
    }

    #[test]
    fn a_queue_of_another_region_is_refused() {
        let url = "https://sqs.us-east-1.amazonaws.com/111122223333/failed";
        let why = check_queue_url(url, &home(), false).unwrap_err();
        assert!(why.contains("AWS_REGION=us-east-1"), "{why}");
    }

    #[test]
    fn a_path_without_an_account_is_refused() {
        let url = "https://sqs.eu-west-1.amazonaws.com/failed";
        assert!(check_queue_url(url, &home(), false).is_err());
    }

    #[test]
    fn a_host_naming_no_region_needs_an_endpoint_override() {
        let url = "https://vpce-1.sqs.eu-west-1.vpce.amazonaws.com/111122223333/failed";
        assert!(check_queue_url(url, &home(), false).is_err());
        assert_eq!(check_queue_url(url, &home(), true), Ok(()));
    }
}
