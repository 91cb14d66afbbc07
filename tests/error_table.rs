//! The error-code table in README.md is the specification: every row is run here against the
//! real SDK clients (answered by aws-smithy-mocks) with the default retry policy, so the table
//! and the behaviour cannot drift apart.

mod mocks;
mod readme;

use mocks::*;

use aws_sdk_firehose::operation::describe_delivery_stream::DescribeDeliveryStreamOutput;
use aws_sdk_firehose::operation::start_delivery_stream_encryption::{
    StartDeliveryStreamEncryptionError, StartDeliveryStreamEncryptionOutput,
};
use aws_sdk_firehose::types::{
    DeliveryStreamDescription, DeliveryStreamEncryptionConfiguration,
    DeliveryStreamEncryptionStatus, DeliveryStreamStatus, DeliveryStreamType, KeyType,
};
use aws_sdk_kinesis::operation::start_stream_encryption::{
    StartStreamEncryptionError, StartStreamEncryptionOutput,
};
use aws_sdk_kinesis::types::StreamStatus;
use aws_smithy_mocks::mock;
use std::time::Duration;
use stream_encryption_enforcer::config::Config;
use stream_encryption_enforcer::enforcer::Enforcer;
use stream_encryption_enforcer::outcome::Report;
use tokio::time::Instant;

#[derive(Debug)]
struct Row {
    api: String,
    code: String,
    retries: u32,
    outcome: String,
}

/// The rows between the README's `error-table` markers.
fn table() -> Vec<Row> {
    readme::table("error-table")
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
                api: cells[0].clone(),
                code: cells[1].clone(),
                retries,
                outcome: cells[3].clone(),
            }
        })
        .collect()
}

fn delivery(encrypted: bool) -> DescribeDeliveryStreamOutput {
    let mut d = DeliveryStreamDescription::builder()
        .delivery_stream_name("clickstream")
        .delivery_stream_arn("arn:aws:firehose:us-east-1:123456789012:deliverystream/clickstream")
        .delivery_stream_status(DeliveryStreamStatus::Active)
        .delivery_stream_type(DeliveryStreamType::DirectPut)
        .version_id("1")
        .set_destinations(Some(vec![]))
        .has_more_destinations(false);
    if encrypted {
        d = d.delivery_stream_encryption_configuration(
            DeliveryStreamEncryptionConfiguration::builder()
                .key_arn(KEY_ARN)
                .key_type(KeyType::CustomerManagedCmk)
                .status(DeliveryStreamEncryptionStatus::Enabled)
                .build(),
        );
    }
    DescribeDeliveryStreamOutput::builder()
        .delivery_stream_description(d.build().unwrap())
        .build()
}

fn config() -> Config {
    Config::from_lookup(|name| (name == "MANDATED_KMS_KEY").then(|| KEY_ARN.to_owned())).unwrap()
}

/// Runs one event whose Start call fails with `code` `failures` times (then succeeds).
async fn run(api: &str, code: &str, failures: usize) -> (Report, usize) {
    let key = key_rule();
    let kms = kms_client(&[&key]);
    let code = code.to_owned();
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut random = fastrand::Rng::with_seed(11);
    match api {
        "StartStreamEncryption" => {
            let describe = mock!(aws_sdk_kinesis::Client::describe_stream_summary)
                .sequence()
                .output(|| stream_summary(StreamStatus::Active, None))
                .output(|| stream_summary(StreamStatus::Active, Some(KEY_ARN)))
                .repeatedly()
                .build();
            let start = mock!(aws_sdk_kinesis::Client::start_stream_encryption)
                .sequence()
                .error(move || StartStreamEncryptionError::generic(meta(&code)))
                .times(failures)
                .output(|| StartStreamEncryptionOutput::builder().build())
                .build();
            let kinesis = kinesis_client(&[&describe, &start]);
            let firehose = firehose_client(&[]);
            let enforcer = Enforcer::new(kinesis, firehose, kms, &config());
            let event =
                serde_json::from_str(include_str!("../events/kinesis-create-stream.json")).unwrap();
            let report = enforcer
                .handle(event, Some(&fixture_home()), deadline, &mut random)
                .await
                .unwrap();
            (report, start.num_calls())
        }
        "StartDeliveryStreamEncryption" => {
            let describe = mock!(aws_sdk_firehose::Client::describe_delivery_stream)
                .sequence()
                .output(|| delivery(false))
                .output(|| delivery(true))
                .repeatedly()
                .build();
            let start = mock!(aws_sdk_firehose::Client::start_delivery_stream_encryption)
                .sequence()
                .error(move || StartDeliveryStreamEncryptionError::generic(meta(&code)))
                .times(failures)
                .output(|| StartDeliveryStreamEncryptionOutput::builder().build())
                .build();
            let firehose = firehose_client(&[&describe, &start]);
            let kinesis = kinesis_client(&[]);
            let enforcer = Enforcer::new(kinesis, firehose, kms, &config());
            let event = serde_json::from_str(include_str!(
                "../events/firehose-create-delivery-stream.json"
            ))
            .unwrap();
            let report = enforcer
                .handle(event, Some(&fixture_home()), deadline, &mut random)
                .await
                .unwrap();
            (report, start.num_calls())
        }
        other => panic!("README table names an unknown API {other}"),
    }
}

#[tokio::test(start_paused = true)]
async fn every_documented_error_code_has_the_documented_outcome() {
    let rows = table();
    let per_api = |api: &str| rows.iter().filter(|r| r.api == api).count();
    // Every error code of both API references is in the table.
    assert_eq!(per_api("StartStreamEncryption"), 11, "{rows:?}");
    assert_eq!(per_api("StartDeliveryStreamEncryption"), 5, "{rows:?}");
    for row in &rows {
        // The error never clears: the outcome the table promises, after exactly its retries.
        let (report, calls) = run(&row.api, &row.code, 1000).await;
        assert_eq!(report.outcome.as_str(), row.outcome, "{row:?}: {report:?}");
        assert_eq!(calls as u32, row.retries + 1, "{row:?}: {report:?}");
        assert_eq!(report.attempts, row.retries + 1, "{row:?}");
        assert_eq!(
            report.error_code.as_deref(),
            Some(row.code.as_str()),
            "{row:?}"
        );
        if row.retries > 0 {
            // A retried error that clears ends in `remediated`.
            let (report, calls) = run(&row.api, &row.code, 2).await;
            assert_eq!(report.outcome.as_str(), "remediated", "{row:?}: {report:?}");
            assert_eq!(calls, 3, "{row:?}");
        }
    }
}

#[test]
fn the_readme_prints_the_default_policy_the_code_uses() {
    let text = include_str!("../README.md");
    let start = text
        .find("<!-- default-policy:start -->")
        .expect("start marker");
    let end = text
        .find("<!-- default-policy:end -->")
        .expect("end marker");
    let block = &text[start..end];
    let json = &block
        [block.find("```json").expect("json block") + 7..block.rfind("```").expect("end of block")];
    let printed = stream_encryption_enforcer::retry::RetryPolicy::parse(json)
        .expect("the README's policy parses");
    assert_eq!(
        printed,
        stream_encryption_enforcer::retry::RetryPolicy::default_policy()
    );
}
