//! Shared aws-smithy-mocks helpers: SDK clients with the SDK's own retries off (as in
//! production), and real-shaped outputs and errors.

use aws_sdk_kinesis::error::ErrorMetadata;
use aws_sdk_kinesis::operation::describe_stream_summary::DescribeStreamSummaryOutput;
use aws_sdk_kinesis::types::{EncryptionType, StreamDescriptionSummary, StreamStatus};
use aws_sdk_kms::operation::describe_key::DescribeKeyOutput;
use aws_sdk_kms::types::{KeyManagerType, KeyMetadata};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

/// The mandated key's ARN in these tests.
pub const KEY_ARN: &str =
    "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

/// Error metadata carrying an AWS error code (without it a mocked error has no code).
pub fn meta(code: &str) -> ErrorMetadata {
    ErrorMetadata::builder()
        .code(code)
        .message("injected by the test")
        .build()
}

/// A DescribeStreamSummary answer for the stream `orders`.
pub fn stream_summary(status: StreamStatus, key: Option<&str>) -> DescribeStreamSummaryOutput {
    let b = StreamDescriptionSummary::builder()
        .stream_name("orders")
        .stream_arn("arn:aws:kinesis:us-east-1:123456789012:stream/orders")
        .stream_status(status)
        .retention_period_hours(24)
        .stream_creation_timestamp(aws_sdk_kinesis::primitives::DateTime::from_secs(0))
        .set_enhanced_monitoring(Some(vec![]))
        .open_shard_count(1);
    let b = match key {
        Some(k) => b.encryption_type(EncryptionType::Kms).key_id(k),
        None => b.encryption_type(EncryptionType::None),
    };
    DescribeStreamSummaryOutput::builder()
        .stream_description_summary(b.build().unwrap())
        .build()
}

/// kms:DescribeKey resolving anything to [`KEY_ARN`], a customer managed key.
pub fn key_rule() -> Rule {
    mock!(aws_sdk_kms::Client::describe_key).then_output(|| {
        DescribeKeyOutput::builder()
            .key_metadata(
                KeyMetadata::builder()
                    .key_id("1234abcd-12ab-34cd-56ef-1234567890ab")
                    .arn(KEY_ARN)
                    .key_manager(KeyManagerType::Customer)
                    .build()
                    .unwrap(),
            )
            .build()
    })
}

pub fn kinesis_client(rules: &[&Rule]) -> aws_sdk_kinesis::Client {
    mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, rules, |c| {
        c.retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled())
    })
}

pub fn firehose_client(rules: &[&Rule]) -> aws_sdk_firehose::Client {
    mock_client!(aws_sdk_firehose, RuleMode::MatchAny, rules, |c| c
        .retry_config(
            aws_sdk_firehose::config::retry::RetryConfig::disabled()
        ))
}

pub fn kms_client(rules: &[&Rule]) -> aws_sdk_kms::Client {
    mock_client!(aws_sdk_kms, RuleMode::MatchAny, rules, |c| c
        .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled()))
}

/// The account and region of the events/ fixtures: the home the tests' function serves.
pub fn fixture_home() -> stream_encryption_enforcer::model::resource::Location {
    stream_encryption_enforcer::model::resource::Location::new("123456789012", "us-east-1").unwrap()
}
