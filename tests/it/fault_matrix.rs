//! The fault table in docs/errors.md, row by row, against the real Lambda binary (`bootstrap`) acting
//! on the real emulators through the recording, fault-injecting proxy.
//!
//! Every row runs as "it persists" (the fault on every call of that kind for the row's stream):
//! the table's outcome and error code, exactly `retries + 1` calls, an error returned to Lambda
//! for `failed`, and the stream left as it was. A retried row also runs as "it clears" (the
//! fault on the first two calls): both retries logged by name, then `remediated` with the stream
//! on the mandated key. Rows run concurrently, each on a stream (and, for KMS rows, a key) of its
//! own, so the faults of one cannot reach another.

use crate::support::documents;

use crate::support::*;
use futures_util::stream::{self, StreamExt};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;
use stream_encryption_enforcer::policy::retry::{DEFAULT_POLICY_JSON, RetryPolicy};

const SHARED_ALIAS: &str = "alias/org-streams";
/// Cases run at once: enough to overlap the hung-connection rows' timeouts.
const CONCURRENCY: usize = 8;

/// The error codes the API references list for the two write calls.
const START_STREAM_CODES: [&str; 12] = [
    "InvalidArgumentException",
    "LimitExceededException",
    "LimitExceededException (quota)",
    "ResourceInUseException",
    "ResourceNotFoundException",
    "KMSDisabledException",
    "KMSInvalidStateException",
    "KMSAccessDeniedException",
    "KMSNotFoundException",
    "KMSOptInRequired",
    "KMSThrottlingException",
    "AccessDeniedException",
];
const START_DELIVERY_CODES: [&str; 7] = [
    "ResourceNotFoundException",
    "ResourceInUseException",
    "LimitExceededException",
    "LimitExceededException (quota)",
    "LimitExceededException (500 streams)",
    "InvalidArgumentException",
    "InvalidKMSResourceException",
];
const TRANSPORT: [&str; 4] = [
    "HTTP 500",
    "HTTP 503",
    "connection reset",
    "hung connection",
];

#[derive(Debug)]
struct Row {
    call: String,
    fault: String,
    /// Retries of the default policy; 0 when not retried.
    retries: usize,
    outcome: String,
}

fn table() -> Vec<Row> {
    documents::table("docs/errors.md", "fault-table")
        .into_iter()
        .map(|cells| {
            let retries = match cells[2].as_str() {
                "no" => 0,
                other => other
                    .strip_prefix("yes, ")
                    .and_then(|r| r.split(' ').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("cannot read the retry cell of {cells:?}")),
            };
            Row {
                call: cells[0].clone(),
                fault: cells[1].clone(),
                retries,
                outcome: cells[3].clone(),
            }
        })
        .collect()
}

/// The default policy with its retriers' `ErrorEquals` and `MaxAttempts` as they are and every
/// delay at most 1 s (full jitter), so that the counts are the default policy's and the 240
/// retries of a persisting `ResourceInUseException` take two minutes, not four.
fn fast_default_policy() -> String {
    let mut policy: Value = serde_json::from_str(DEFAULT_POLICY_JSON).unwrap();
    for retrier in policy.as_array_mut().unwrap() {
        retrier["IntervalSeconds"] = json!(1);
        retrier["BackoffRate"] = json!(1.0);
        retrier["MaxDelaySeconds"] = json!(1);
        retrier["JitterStrategy"] = json!("FULL");
    }
    let text = policy.to_string();
    let fast = RetryPolicy::parse(&text).unwrap();
    let default = RetryPolicy::default_policy();
    for (f, d) in fast.retriers().iter().zip(default.retriers()) {
        assert_eq!(
            (&f.error_equals, f.max_attempts),
            (&d.error_equals, d.max_attempts)
        );
    }
    text
}

fn fault(name: &str) -> Fault {
    match name {
        "HTTP 500" => Fault::Raw {
            status: 500,
            body: String::new(),
        },
        "HTTP 503" => Fault::Raw {
            status: 503,
            body: String::new(),
        },
        "connection reset" => Fault::Reset,
        "hung connection" => Fault::Hang,
        // AWS's throttling says "Rate exceeded"; it documents no message for the quotas, so
        // these are stand-ins that say what the quota is, as any message but "Rate exceeded".
        "LimitExceededException" => Fault::error(
            "LimitExceededException",
            "Rate exceeded for stream under account 123456789012.",
        ),
        "LimitExceededException (quota)" => Fault::error(
            "LimitExceededException",
            "The limit of key changes for this resource in 24 hours has been reached.",
        ),
        "LimitExceededException (500 streams)" => Fault::error(
            "LimitExceededException",
            "The KMS key is already used by 500 delivery streams.",
        ),
        code => Fault::error(code, "injected by the fault matrix"),
    }
}

/// The error names the enforcer reports and logs for a fault of `call`.
fn names<'a>(call: &str, fault: &'a str) -> Vec<&'a str> {
    match fault {
        "LimitExceededException (quota)" if call == "StartStreamEncryption" => {
            vec!["Enforcer.KeyChangeQuotaExceeded"]
        }
        "LimitExceededException (quota)" => vec!["Enforcer.EncryptionCallQuotaExceeded"],
        "LimitExceededException (500 streams)" => vec!["Enforcer.StreamsPerKeyExceeded"],
        "HTTP 500" | "HTTP 503" => vec!["Enforcer.ServerError"],
        "connection reset" => vec!["Enforcer.ConnectionError", "Enforcer.ResponseError"],
        "hung connection" => vec!["Enforcer.Timeout"],
        code => vec![code],
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Stream,
    Delivery,
}

#[derive(Debug)]
struct Case<'a> {
    row: &'a Row,
    /// The fault persists (every call) or clears (the first two calls).
    persists: bool,
    /// The stream's name, unique to the case; also the needle the fault is injected for.
    name: String,
    kind: Kind,
    alias: String,
}

impl Case<'_> {
    fn operation(&self) -> &str {
        self.row.call.strip_prefix("kms:").unwrap_or(&self.row.call)
    }

    fn proxy<'e>(&self, emu: &'e Emulators) -> &'e Proxy {
        match self.row.call.as_str() {
            "StartStreamEncryption" | "DescribeStreamSummary" => &emu.kinesis_proxy,
            _ => &emu.moto_proxy,
        }
    }
}

/// The outcome line the Lambda logged.
fn outcome_line(logs: &str) -> Option<Value> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == json!("outcome"))
}

/// Runs one case; `Err` says what did not hold.
async fn run(emu: &Emulators, policy: &str, case: &Case<'_>) -> Result<(), String> {
    let row = case.row;
    let proxy = case.proxy(emu);
    let times = if case.persists { 1000 } else { 2 };
    proxy.inject_for(case.operation(), &case.name, times, fault(&row.fault));

    let fixture = match case.kind {
        Kind::Stream => "kinesis-create-stream",
        Kind::Delivery => "firehose-create-delivery-stream",
    };
    let mut env = emu.env(&case.alias);
    env.push(("RETRY_POLICY".into(), policy.into()));
    // The emulators have no rate limits; without pacing, a persisting ResourceInUseException
    // (240 reads and 241 writes at up to 1 s apart) fits well inside the invocation, where the
    // Firehose pace of 4.5 calls per second would double it. The pacing has tests of its own.
    env.push(("RATE_SHARE".into(), "50".into()));
    let api = RuntimeApi::start().await;
    // A persisting ResourceInUseException is the longest case: 241 writes, each after a read
    // and a wait of up to 1 s, against a moto that serves every other case at the same time.
    api.push("req", event(fixture, &case.name), Duration::from_secs(600));
    let lambda = start_bootstrap(&api, &env);
    let started = std::time::Instant::now();
    let result = api.results(1, Duration::from_secs(590)).await.remove(0);
    println!(
        "{} / {} ({}): {:.1?}",
        row.call,
        row.fault,
        if case.persists { "persists" } else { "clears" },
        started.elapsed()
    );
    let logs = lambda.stop_and_read_stdout();
    let calls = proxy.calls_for(case.operation(), &case.name);
    let line = outcome_line(&logs).ok_or_else(|| format!("no outcome line in {logs}"))?;
    let ctx = || format!("{case:?}: result {result:?}, outcome {line}, {calls} calls");
    let key = match case.kind {
        Kind::Stream => emu.stream(&case.name).await.key_id,
        Kind::Delivery => emu
            .delivery_encryption(&case.name)
            .await
            .and_then(|e| e.key_arn),
    };
    let key = match key {
        Some(k) => Some(emu.key_arn(&k).await),
        None => None,
    };
    let mandated = emu.key_arn(&case.alias).await;

    if case.persists {
        if line["outcome"] != json!(row.outcome) {
            return Err(format!("outcome is not {}: {}", row.outcome, ctx()));
        }
        let code = line["error_code"].as_str().unwrap_or("");
        if !names(&row.call, &row.fault).contains(&code) {
            return Err(format!("error_code {code:?}: {}", ctx()));
        }
        if calls != row.retries + 1 {
            return Err(format!("expected {} calls: {}", row.retries + 1, ctx()));
        }
        if row.call.starts_with("Start") && line["attempts"] != json!(row.retries + 1) {
            return Err(format!("attempts: {}", ctx()));
        }
        match row.outcome.as_str() {
            "failed" => {
                if result.kind != "error" || result.body["errorType"] != json!("RemediationFailed")
                {
                    return Err(format!("Lambda was not given an error: {}", ctx()));
                }
                if key.as_deref() == Some(mandated.as_str()) {
                    return Err(format!("failed, yet the key is on: {}", ctx()));
                }
            }
            other => {
                if result.kind != "response" || result.body["outcome"] != json!(other) {
                    return Err(format!("Lambda response: {}", ctx()));
                }
            }
        }
    } else {
        if result.kind != "response" || result.body["outcome"] != json!("remediated") {
            return Err(format!("not remediated once the fault cleared: {}", ctx()));
        }
        let retried = logs
            .lines()
            .filter(|l| l.contains("retrying"))
            .filter(|l| names(&row.call, &row.fault).iter().any(|n| l.contains(n)))
            .count();
        if retried != 2 {
            return Err(format!("{retried} retries logged, not 2: {}", ctx()));
        }
        if calls < 3 {
            return Err(format!("fewer than 3 calls: {}", ctx()));
        }
        if key.as_deref() != Some(mandated.as_str()) {
            return Err(format!("remediated, yet key {key:?}: {}", ctx()));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_row_of_the_fault_table_holds() {
    let rows = table();
    // Every error code of the two write calls' API references, and every transport fault of
    // every call, is a row.
    let faults = |call: &str| -> BTreeSet<&str> {
        rows.iter()
            .filter(|r| r.call == call)
            .map(|r| r.fault.as_str())
            .collect()
    };
    let with_transport = |codes: &[&'static str]| -> BTreeSet<&'static str> {
        codes.iter().chain(TRANSPORT.iter()).copied().collect()
    };
    assert_eq!(
        faults("StartStreamEncryption"),
        with_transport(&START_STREAM_CODES)
    );
    assert_eq!(
        faults("StartDeliveryStreamEncryption"),
        with_transport(&START_DELIVERY_CODES)
    );
    for call in [
        "DescribeStreamSummary",
        "DescribeDeliveryStream",
        "kms:DescribeKey",
    ] {
        assert!(
            faults(call).is_superset(&with_transport(&[])),
            "{call}: {:?}",
            faults(call)
        );
    }

    let emu = Emulators::start(Duration::from_millis(300), Duration::from_millis(300)).await;
    emu.create_key(SHARED_ALIAS).await;
    let policy = fast_default_policy();
    let mut cases = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let kind = match row.call.as_str() {
            "StartDeliveryStreamEncryption" | "DescribeDeliveryStream" => Kind::Delivery,
            "StartStreamEncryption" | "DescribeStreamSummary" | "kms:DescribeKey" => Kind::Stream,
            other => panic!("the fault table names an unknown call {other}"),
        };
        let variants: &[bool] = if row.retries > 0 {
            &[true, false]
        } else {
            &[true]
        };
        for &persists in variants {
            let name = format!("fm-{i:02}-{}", if persists { "p" } else { "c" });
            let alias = if row.call == "kms:DescribeKey" {
                let alias = format!("alias/{name}");
                emu.create_key(&alias).await;
                alias
            } else {
                SHARED_ALIAS.to_owned()
            };
            match kind {
                Kind::Stream => emu.create_stream(&name).await,
                Kind::Delivery => emu.create_delivery_stream(&name, None).await,
            }
            cases.push(Case {
                row,
                persists,
                name,
                kind,
                alias,
            });
        }
    }
    for case in cases.iter().filter(|c| c.kind == Kind::Stream) {
        emu.wait_active(&case.name).await;
    }

    let started = std::time::Instant::now();
    let failures: Vec<String> = stream::iter(&cases)
        .map(|case| run(&emu, &policy, case))
        .buffer_unordered(CONCURRENCY)
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    println!(
        "{} rows, {} cases in {:.1?}",
        rows.len(),
        cases.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn the_docs_print_the_default_policy_the_code_uses() {
    let block = documents::block("docs/retry-policy.md", "default-policy");
    let json = &block
        [block.find("```json").expect("json block") + 7..block.rfind("```").expect("end of block")];
    let printed = RetryPolicy::parse(json).expect("the documented policy parses");
    assert_eq!(printed, RetryPolicy::default_policy());
}
