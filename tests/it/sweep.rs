//! `enforcer audit` and `enforcer sweep` as processes against the emulators: the exact audit
//! rows of a seeded mix, report mode writing nothing, the sweep's outcomes, and 1,000 streams in
//! moto swept inside the per-account request rates (measured at the recording proxy).

use crate::support::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const ALIAS: &str = "alias/org-streams";

fn by_name(rows: &Value, field: &str) -> BTreeMap<String, String> {
    rows.as_array()
        .unwrap_or_else(|| panic!("not a list: {rows}"))
        .iter()
        .map(|r| {
            let arn = r["resource"].as_str().unwrap();
            let name = arn.rsplit('/').next().unwrap().to_owned();
            (name, r[field].as_str().unwrap().to_owned())
        })
        .collect()
}

fn expect(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lists_every_resource_with_its_verdict_and_sweep_fixes_what_is_not_compliant() {
    let emu = Emulators::start(Duration::from_millis(500), Duration::from_millis(500)).await;
    let key_arn = emu.create_key(ALIAS).await;
    let foreign = emu.create_key("alias/someone-elses").await;
    for name in ["good", "plain", "wrong", "legacy", "doomed"] {
        emu.create_stream(name).await;
        emu.wait_active(name).await;
    }
    encrypt_stream_on(&emu.kinesis, "good", &key_arn).await;
    encrypt_stream_on(&emu.kinesis, "wrong", &foreign).await;
    emu.kinesis
        .add_tags_to_stream()
        .stream_name("legacy")
        .tags("compliance", "exempt")
        .send()
        .await
        .unwrap();
    emu.wait_active("good").await;
    emu.wait_active("wrong").await;
    emu.create_delivery_stream("clicks", None).await;
    emu.create_delivery_stream(
        "archive",
        Some(&format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/plain")),
    )
    .await;
    // "doomed" is deleted between the listing and its inspection, in the audit, the dry run and
    // the sweep: the proxy answers its Describe as AWS does for a deleted stream.
    emu.kinesis_proxy.inject_for(
        "DescribeStreamSummary",
        "stream/doomed",
        4,
        Fault::error(
            "ResourceNotFoundException",
            "Stream doomed under account 123456789012 not found.",
        ),
    );
    let mut env = emu.env(ALIAS);
    env.push(("EXEMPT_TAG".into(), "compliance=exempt".into()));

    let audit = enforcer(&env, &["audit", "--output", "json"]).await;
    assert_eq!(audit.code, Some(3), "{audit:?}");
    assert_eq!(
        by_name(&audit.report, "verdict"),
        expect(&[
            ("archive", "not applicable"),
            ("clicks", "unencrypted"),
            ("doomed", "gone"),
            ("good", "compliant"),
            ("legacy", "exempt"),
            ("plain", "unencrypted"),
            ("wrong", "wrong key"),
        ])
    );
    let wrong = audit
        .report
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"].as_str().unwrap().ends_with("/wrong"))
        .unwrap();
    assert_eq!(
        (&wrong["status"], &wrong["encryption"], &wrong["key"]),
        (&json!("ACTIVE"), &json!("KMS"), &json!(foreign))
    );

    // The same audit as CSV (RFC 4180), read back with a CSV reader: every field comes back whole
    // (the quoting of commas, quotes and line breaks is output.rs's unit test).
    let csv_audit = enforcer(&env, &["audit", "--output", "csv"]).await;
    assert_eq!(csv_audit.code, Some(3), "{csv_audit:?}");
    assert!(csv_audit.stdout.ends_with("\r\n"), "{csv_audit:?}");
    let mut reader = csv::Reader::from_reader(csv_audit.stdout.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "account", "region", "service", "name", "arn", "outcome", "key", "reason"
        ]
    );
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    let outcomes: std::collections::BTreeMap<String, String> = records
        .iter()
        .map(|r| (r[3].to_owned(), r[5].to_owned()))
        .collect();
    assert_eq!(
        outcomes,
        expect(&[
            ("archive", "not_applicable"),
            ("clicks", "noncompliant"),
            ("doomed", "gone"),
            ("good", "already_compliant"),
            ("legacy", "exempt"),
            ("plain", "noncompliant"),
            ("wrong", "noncompliant"),
        ])
    );
    let wrong_record = records.iter().find(|r| &r[3] == "wrong").unwrap();
    assert_eq!(
        (&wrong_record[0], &wrong_record[1], &wrong_record[2]),
        (ACCOUNT, REGION, "kinesis")
    );
    assert_eq!(&wrong_record[4], wrong["resource"].as_str().unwrap());
    assert_eq!(&wrong_record[6], foreign.as_str());
    assert_eq!(Some(&wrong_record[7]), wrong["reason"].as_str());

    let dry = enforcer(&env, &["sweep", "--dry-run", "--output", "json"]).await;
    assert_eq!(dry.code, Some(3), "{dry:?}");
    assert_eq!(dry.report["counts"]["noncompliant"], json!(3), "{dry:?}");
    assert_eq!(
        emu.kinesis_proxy.calls("StartStreamEncryption")
            + emu.moto_proxy.calls("StartDeliveryStreamEncryption"),
        0
    );

    let sweep = enforcer(&env, &["sweep", "--output", "json"]).await;
    assert_eq!(sweep.code, Some(0), "{sweep:?}");
    assert_eq!(
        by_name(&sweep.report["reports"], "outcome"),
        expect(&[
            ("archive", "not_applicable"),
            ("clicks", "remediated"),
            ("doomed", "gone"),
            ("good", "already_compliant"),
            ("legacy", "exempt"),
            ("plain", "remediated"),
            ("wrong", "remediated"),
        ])
    );
    assert_eq!(emu.kinesis_proxy.calls("StartStreamEncryption"), 2);
    assert_eq!(emu.moto_proxy.calls("StartDeliveryStreamEncryption"), 1);

    // Once the doomed stream is really gone, the account is clean.
    emu.kinesis
        .delete_stream()
        .stream_name("doomed")
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = enforcer(&env, &["audit"]).await;
    assert_eq!(after.code, Some(0), "{after:?}");
    assert!(after.stdout.contains("6 resources"), "{}", after.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_of_1000_streams_in_moto_ends_compliant_inside_the_rate_limits() {
    let emu = Emulators::start(Duration::ZERO, Duration::ZERO).await;
    let key_arn = emu.create_key(ALIAS).await;
    // Kinesis from moto this time: it holds 1,000 streams cheaply. Seed them directly.
    let moto_kinesis = aws_sdk_kinesis::Client::new(&sdk_config(&emu.moto_url));
    for i in 0..1000 {
        let name = format!("stream-{i:04}");
        moto_kinesis
            .create_stream()
            .stream_name(&name)
            .shard_count(1)
            .send()
            .await
            .unwrap();
        // Four in five already on the mandated key.
        if i % 5 != 0 {
            encrypt_stream_on(&moto_kinesis, &name, &key_arn).await;
        }
    }
    let mut env = emu.env(ALIAS);
    for (k, v) in env.iter_mut() {
        if k == "AWS_ENDPOINT_URL_KINESIS" {
            *v = emu.moto_proxy.url.clone();
        }
    }
    let started = Instant::now();
    let sweep = enforcer(&env, &["sweep", "--output", "json"]).await;
    let took = started.elapsed();
    assert_eq!(sweep.code, Some(0), "{}", sweep.stderr);
    assert_eq!(
        sweep.report["counts"],
        json!({"already_compliant": 800, "remediated": 200})
    );
    // Every stream ends on the mandated key, by moto's own account.
    let mut on_key = 0;
    for i in 0..1000 {
        let summary = moto_kinesis
            .describe_stream_summary()
            .stream_name(format!("stream-{i:04}"))
            .send()
            .await
            .unwrap()
            .stream_description_summary
            .unwrap();
        if summary.key_id.as_deref() == Some(key_arn.as_str())
            || summary.key_id.as_deref() == Some(ALIAS)
        {
            on_key += 1;
        }
    }
    assert_eq!(on_key, 1000);
    let proxy = &emu.moto_proxy;
    let (describe, start, list) = (
        proxy.peak_per_second(&["DescribeStreamSummary"]),
        proxy.peak_per_second(&["StartStreamEncryption"]),
        proxy.peak_per_second(&["ListStreams"]),
    );
    eprintln!(
        "sweep of 1000 streams: {:.1} s; calls: ListStreams {}, DescribeStreamSummary {}, StartStreamEncryption {}; \
         peak per second: Describe {describe}, Start {start}, List {list}",
        took.as_secs_f64(),
        proxy.calls("ListStreams"),
        proxy.calls("DescribeStreamSummary"),
        proxy.calls("StartStreamEncryption"),
    );
    assert!(
        proxy.calls("ListStreams") >= 10,
        "1,000 names come in pages of 100"
    );
    assert_eq!(
        proxy.calls("StartStreamEncryption"),
        200,
        "never a Start on a compliant stream"
    );
    assert!(
        describe <= 20,
        "DescribeStreamSummary peaked at {describe}/s"
    );
    assert!(start <= 5, "StartStreamEncryption peaked at {start}/s");
    assert!(list <= 5, "ListStreams peaked at {list}/s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_report_mode_the_cli_sweep_is_a_dry_run_and_writes_nothing() {
    let emu = Emulators::start(Duration::from_millis(300), Duration::from_millis(300)).await;
    emu.create_key(ALIAS).await;
    for name in ["plain-a", "plain-b"] {
        emu.create_stream(name).await;
        emu.wait_active(name).await;
    }
    emu.create_delivery_stream("clicks", None).await;
    let mut env = emu.env(ALIAS);
    env.push(("ENFORCEMENT_MODE".into(), "report".into()));
    let sweep = enforcer(&env, &["sweep", "--output", "json"]).await;
    assert_eq!(
        sweep.code,
        Some(3),
        "noncompliant, nothing changed: {sweep:?}"
    );
    assert!(
        sweep.stderr.contains("as with --dry-run"),
        "{}",
        sweep.stderr
    );
    assert_eq!(
        (
            emu.kinesis_proxy.calls("StartStreamEncryption"),
            emu.moto_proxy.calls("StartDeliveryStreamEncryption")
        ),
        (0, 0),
        "report mode makes no write"
    );
    assert_eq!(
        sweep.report["counts"]["noncompliant"],
        json!(3),
        "{}",
        sweep.report
    );
    for name in ["plain-a", "plain-b"] {
        assert_eq!(emu.stream(name).await.key_id, None);
    }
}
