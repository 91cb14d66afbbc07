//! The SDK adapters and the enforcer's decisions with the real SDK clients, answered by
//! aws-smithy-mocks: error classification, retry sequences and call counts. Time is paused, so
//! retry delays and deadlines are exact and cost nothing.

use crate::support::mocks::*;

use crate::support::own_account::OwnAccount;
use aws_sdk_kinesis::operation::describe_stream_summary::DescribeStreamSummaryError;
use aws_sdk_kinesis::operation::start_stream_encryption::{
    StartStreamEncryptionError, StartStreamEncryptionOutput,
};
use aws_sdk_kinesis::types::StreamStatus;
use aws_sdk_kms::operation::describe_key::DescribeKeyError;
use aws_smithy_mocks::{Rule, mock};
use std::time::Duration;
use stream_encryption_enforcer::aws::SdkAws;
use stream_encryption_enforcer::aws::kinesis::KinesisApi;
use stream_encryption_enforcer::config::Config;
use stream_encryption_enforcer::fleet::Fleet;
use stream_encryption_enforcer::model::outcome::{Outcome, Report};
use stream_encryption_enforcer::model::resource::{Location, Resource, Service};
use tokio::time::Instant;

fn in_use() -> StartStreamEncryptionError {
    StartStreamEncryptionError::ResourceInUseException(
        aws_sdk_kinesis::types::error::ResourceInUseException::builder()
            .message("Stream orders is not currently ACTIVE.")
            .meta(meta("ResourceInUseException"))
            .build(),
    )
}

fn config(policy: Option<&str>) -> Config {
    Config::from_lookup(|name| match name {
        "MANDATED_KMS_KEY" => Some("alias/org-streams".into()),
        "RETRY_POLICY" => policy.map(str::to_owned),
        _ => None,
    })
    .unwrap()
}

fn event() -> serde_json::Value {
    serde_json::from_str(include_str!("../../events/kinesis-create-stream.json")).unwrap()
}

async fn handle(
    kinesis: aws_sdk_kinesis::Client,
    kms: aws_sdk_kms::Client,
    policy: Option<&str>,
    budget: Duration,
) -> Report {
    let firehose = firehose_client(&[]);
    let enforcer = Fleet::new(OwnAccount::sdk(kinesis, firehose, kms), &config(policy));
    let mut random = fastrand::Rng::with_seed(3);
    enforcer
        .handle(
            event(),
            Some(&fixture_home()),
            Instant::now() + budget,
            &mut random,
        )
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_creating_stream_is_waited_out_with_reads_then_written_once() {
    let describe = mock!(aws_sdk_kinesis::Client::describe_stream_summary)
        .sequence()
        .output(|| stream_summary(StreamStatus::Creating, None))
        .times(2)
        .output(|| stream_summary(StreamStatus::Active, None))
        .output(|| stream_summary(StreamStatus::Updating, None))
        .output(|| stream_summary(StreamStatus::Active, Some("alias/org-streams")))
        .build();
    let start = mock!(aws_sdk_kinesis::Client::start_stream_encryption)
        .then_output(|| StartStreamEncryptionOutput::builder().build());
    let key = key_rule();
    let began = Instant::now();
    let report = handle(
        kinesis_client(&[&describe, &start]),
        kms_client(&[&key]),
        None,
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(report.outcome, Outcome::Remediated, "{report:?}");
    assert_eq!(report.attempts, 1);
    assert_eq!(report.key.as_deref(), Some(KEY_ARN));
    assert_eq!(
        (start.num_calls(), describe.num_calls(), key.num_calls()),
        (1, 5, 1)
    );
    // The default ResourceInUseException retrier's waits (1 s, 1 s) between the reads while
    // CREATING, then one confirm poll of 0.25 s while UPDATING; the read right after the write
    // also waits for its slot under the 18/s pace of DescribeStreamSummary (55.6 ms).
    let took = Instant::now() - began;
    assert!(
        took >= Duration::from_millis(2_250) && took < Duration::from_millis(2_310),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_write_refused_as_in_use_is_followed_by_an_inspection_not_a_second_write() {
    // Another caller (a second delivery of the event) started encryption between our read and
    // our write: ours is refused, and the next reads find the mandated key on.
    let describe = mock!(aws_sdk_kinesis::Client::describe_stream_summary)
        .sequence()
        .output(|| stream_summary(StreamStatus::Active, None))
        .output(|| stream_summary(StreamStatus::Updating, None))
        .output(|| stream_summary(StreamStatus::Active, Some("alias/org-streams")))
        .build();
    let start = mock!(aws_sdk_kinesis::Client::start_stream_encryption)
        .sequence()
        .error(in_use)
        .repeatedly()
        .build();
    let key = key_rule();
    let report = handle(
        kinesis_client(&[&describe, &start]),
        kms_client(&[&key]),
        None,
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(report.outcome, Outcome::AlreadyCompliant, "{report:?}");
    assert!(
        report.reason.as_deref().unwrap().contains("another caller"),
        "{report:?}"
    );
    assert_eq!((start.num_calls(), report.attempts), (1, 1));
    assert_eq!(describe.num_calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_short_deadline_stops_the_wait_with_a_failure_that_names_it() {
    let describe = mock!(aws_sdk_kinesis::Client::describe_stream_summary)
        .then_output(|| stream_summary(StreamStatus::Creating, None));
    let start = mock!(aws_sdk_kinesis::Client::start_stream_encryption)
        .then_output(|| StartStreamEncryptionOutput::builder().build());
    let key = key_rule();
    let began = Instant::now();
    let budget = Duration::from_millis(11_500);
    let report = handle(
        kinesis_client(&[&describe, &start]),
        kms_client(&[&key]),
        None,
        budget,
    )
    .await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    assert_eq!(report.error_code.as_deref(), Some("ResourceInUseException"));
    let reason = report.reason.as_deref().unwrap();
    assert!(
        reason.contains("deadline") && reason.contains("CREATING"),
        "{reason}"
    );
    // Waits of 1 s fit eleven times in 11.5 s; the twelfth would not. No write was made.
    assert_eq!((describe.num_calls(), start.num_calls()), (12, 0));
    assert_eq!(report.attempts, 0);
    assert!(Instant::now() - began <= budget);
}

#[tokio::test(start_paused = true)]
async fn an_unresolvable_mandated_key_fails_without_a_write() {
    let describe = mock!(aws_sdk_kinesis::Client::describe_stream_summary).then_output(|| {
        stream_summary(
            StreamStatus::Active,
            Some("arn:aws:kms:us-east-1:123456789012:alias/other"),
        )
    });
    let start = mock!(aws_sdk_kinesis::Client::start_stream_encryption)
        .then_output(|| StartStreamEncryptionOutput::builder().build());
    let key = mock!(aws_sdk_kms::Client::describe_key)
        .sequence()
        .error(|| DescribeKeyError::generic(meta("ThrottlingException")))
        .repeatedly()
        .build();
    let report = handle(
        kinesis_client(&[&describe, &start]),
        kms_client(&[&key]),
        None,
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    assert_eq!(report.error_code.as_deref(), Some("ThrottlingException"));
    assert!(
        report
            .reason
            .as_deref()
            .unwrap()
            .contains("cannot resolve the mandated key")
    );
    // The throttling retrier of the default policy: 1 call + 6 retries.
    assert_eq!(key.num_calls(), 7);
    assert_eq!((start.num_calls(), report.attempts), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_policy_without_a_matching_retrier_does_not_wait_for_a_creating_stream() {
    let describe = mock!(aws_sdk_kinesis::Client::describe_stream_summary)
        .then_output(|| stream_summary(StreamStatus::Creating, None));
    let start = mock!(aws_sdk_kinesis::Client::start_stream_encryption)
        .then_output(|| StartStreamEncryptionOutput::builder().build());
    let key = key_rule();
    let policy = r#"[{"ErrorEquals":["LimitExceededException"]}]"#;
    let report = handle(
        kinesis_client(&[&describe, &start]),
        kms_client(&[&key]),
        Some(policy),
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(
        (report.outcome, report.attempts),
        (Outcome::Failed, 0),
        "{report:?}"
    );
    assert_eq!(report.error_code.as_deref(), Some("ResourceInUseException"));
    assert!(
        report
            .reason
            .as_deref()
            .unwrap()
            .contains("names no retrier")
    );
    assert_eq!((describe.num_calls(), start.num_calls()), (1, 0));
}

#[tokio::test]
async fn sdk_errors_are_classified_by_code_or_transport_name() {
    let stream = Resource::named(
        Service::Kinesis,
        Location::new("123456789012", "us-east-1").unwrap(),
        "orders",
    )
    .unwrap();
    let cases: Vec<(Rule, &str)> = vec![
        (
            mock!(aws_sdk_kinesis::Client::describe_stream_summary).then_error(|| {
                DescribeStreamSummaryError::LimitExceededException(
                    aws_sdk_kinesis::types::error::LimitExceededException::builder()
                        .meta(meta("LimitExceededException"))
                        .build(),
                )
            }),
            "LimitExceededException",
        ),
        (
            mock!(aws_sdk_kinesis::Client::describe_stream_summary)
                .then_error(|| DescribeStreamSummaryError::generic(meta("KMSThrottlingException"))),
            "KMSThrottlingException",
        ),
        (
            mock!(aws_sdk_kinesis::Client::describe_stream_summary)
                .sequence()
                .http_status(503, None)
                .build(),
            "Enforcer.ServerError",
        ),
        (
            mock!(aws_sdk_kinesis::Client::describe_stream_summary)
                .sequence()
                .http_status(404, Some("not json".into()))
                .build(),
            "Enforcer.ResponseError",
        ),
    ];
    for (rule, expected) in cases {
        let client = SdkAws::new(
            kinesis_client(&[&rule]),
            firehose_client(&[]),
            kms_client(&[]),
            None,
        );
        let err = client.stream_summary(&stream).await.unwrap_err();
        assert_eq!(err.code(), expected, "{err}");
        assert!(!err.message().is_empty());
        assert_eq!(rule.num_calls(), 1, "the SDK's own retries are off");
    }
}

#[tokio::test(start_paused = true)]
async fn a_stream_still_updating_at_the_deadline_fails_naming_it_after_one_write() {
    let describe = mock!(aws_sdk_kinesis::Client::describe_stream_summary)
        .sequence()
        .output(|| stream_summary(StreamStatus::Active, None))
        .output(|| stream_summary(StreamStatus::Updating, Some("alias/org-streams")))
        .repeatedly()
        .build();
    let start = mock!(aws_sdk_kinesis::Client::start_stream_encryption)
        .then_output(|| StartStreamEncryptionOutput::builder().build());
    let key = key_rule();
    let began = Instant::now();
    let budget = Duration::from_secs(10);
    let report = handle(
        kinesis_client(&[&describe, &start]),
        kms_client(&[&key]),
        None,
        budget,
    )
    .await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    assert_eq!(
        report.error_code.as_deref(),
        Some("Enforcer.DeadlineExceeded")
    );
    assert!(
        report.reason.as_deref().unwrap().contains("UPDATING"),
        "{report:?}"
    );
    assert_eq!((report.attempts, start.num_calls()), (1, 1));
    assert!(Instant::now() - began <= budget);
}

#[tokio::test(start_paused = true)]
async fn without_kms_a_stream_naming_the_configured_key_is_still_provably_compliant() {
    // The stream reports the alias ARN of the configured `alias/org-streams`: equal by form.
    let describe = mock!(aws_sdk_kinesis::Client::describe_stream_summary).then_output(|| {
        stream_summary(
            StreamStatus::Active,
            Some("arn:aws:kms:us-east-1:123456789012:alias/org-streams"),
        )
    });
    let start = mock!(aws_sdk_kinesis::Client::start_stream_encryption)
        .then_output(|| StartStreamEncryptionOutput::builder().build());
    let key = mock!(aws_sdk_kms::Client::describe_key)
        .sequence()
        .error(|| DescribeKeyError::generic(meta("ThrottlingException")))
        .repeatedly()
        .build();
    let report = handle(
        kinesis_client(&[&describe, &start]),
        kms_client(&[&key]),
        None,
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(report.outcome, Outcome::AlreadyCompliant, "{report:?}");
    assert!(
        report
            .reason
            .as_deref()
            .unwrap()
            .contains("KMS did not resolve")
    );
    assert_eq!(report.key.as_deref(), Some("alias/org-streams"));
    assert_eq!((start.num_calls(), report.attempts), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn another_alias_even_of_the_mandated_key_is_replaced_without_asking_kms() {
    // alias/team-key points at the mandated key today (key_rule resolves anything to it), but
    // any admin can re-point it tomorrow and no stream event would fire: not compliant.
    let describe = mock!(aws_sdk_kinesis::Client::describe_stream_summary)
        .sequence()
        .output(|| stream_summary(StreamStatus::Active, Some("alias/team-key")))
        .output(|| stream_summary(StreamStatus::Active, Some("alias/org-streams")))
        .build();
    let start = mock!(aws_sdk_kinesis::Client::start_stream_encryption)
        .then_output(|| StartStreamEncryptionOutput::builder().build());
    let key = key_rule();
    let report = handle(
        kinesis_client(&[&describe, &start]),
        kms_client(&[&key]),
        None,
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(report.outcome, Outcome::Remediated, "{report:?}");
    // One DescribeKey, for the mandated key; none for the stream's alias.
    assert_eq!((start.num_calls(), key.num_calls()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn an_event_outside_the_home_account_region_or_partition_is_refused_without_a_call() {
    let describe = mock!(aws_sdk_kinesis::Client::describe_stream_summary)
        .then_output(|| stream_summary(StreamStatus::Active, Some(KEY_ARN)));
    let key = key_rule();
    let kinesis = kinesis_client(&[&describe]);
    let kms = kms_client(&[&key]);
    let enforcer = Fleet::new(
        OwnAccount::sdk(kinesis, firehose_client(&[]), kms),
        &config(None),
    );
    let mut random = fastrand::Rng::with_seed(5);
    let deadline = Instant::now() + Duration::from_secs(60);
    let homes = [
        (
            Location::new("210987654321", "us-east-1").unwrap(),
            "account",
        ),
        (
            Location::new("123456789012", "eu-west-1").unwrap(),
            "region",
        ),
        (
            Location::new("123456789012", "cn-north-1").unwrap(),
            "partition",
        ),
    ];
    for (home, differs) in &homes {
        let report = enforcer
            .handle(event(), Some(home), deadline, &mut random)
            .await
            .unwrap();
        assert_eq!(report.outcome, Outcome::Refused, "{home:?}: {report:?}");
        let reason = report.reason.unwrap();
        assert!(
            reason.contains(&format!("the {differs} differs"))
                && reason.contains("account 123456789012 in us-east-1"),
            "{reason}"
        );
        assert_eq!(report.attempts, 0);
    }
    // Without a known home nothing can be checked, so nothing is acted on.
    let report = enforcer
        .handle(event(), None, deadline, &mut random)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Refused, "{report:?}");
    assert_eq!((describe.num_calls(), key.num_calls()), (0, 0));
    // The same event in its own account and region is acted on.
    let report = enforcer
        .handle(event(), Some(&fixture_home()), deadline, &mut random)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::AlreadyCompliant, "{report:?}");
    assert_eq!(describe.num_calls(), 1);
}

/// The Lambda's own path (`run_event`, as `lambda_handler` calls it): a deadline that ends the
/// waits is an error returned to Lambda, naming the deadline, and no sleep runs past it.
#[tokio::test(start_paused = true)]
async fn at_the_handler_a_deadline_failure_is_an_error_and_no_wait_runs_past_it() {
    use stream_encryption_enforcer::lambda::{HandlerError, run_event};
    let describe = mock!(aws_sdk_kinesis::Client::describe_stream_summary)
        .then_output(|| stream_summary(StreamStatus::Creating, None));
    let start = mock!(aws_sdk_kinesis::Client::start_stream_encryption)
        .sequence()
        .error(in_use)
        .repeatedly()
        .build();
    let key = key_rule();
    let enforcer = Fleet::new(
        OwnAccount::sdk(
            kinesis_client(&[&describe, &start]),
            firehose_client(&[]),
            kms_client(&[&key]),
        ),
        &config(None),
    );
    for budget in [1, 3, 7, 20] {
        let began = Instant::now();
        let deadline = began + Duration::from_secs(budget);
        let result = run_event(&enforcer, event(), deadline, Some(&fixture_home()), |_| {}).await;
        assert!(
            Instant::now() <= deadline,
            "{budget} s: slept past the deadline"
        );
        match result {
            Err(HandlerError::Failed(report)) => {
                assert!(
                    report.reason.as_deref().unwrap().contains("deadline"),
                    "{report:?}"
                );
                let diagnostic = lambda_runtime::Diagnostic::from(HandlerError::Failed(report));
                assert_eq!(diagnostic.error_type, "RemediationFailed");
            }
            Err(other) => panic!("{budget} s: {other}"),
            Ok(output) => panic!("{budget} s: not an error: {output:?}"),
        }
    }
}

/// An AssumeRole answer whose credentials expire `valid_for` from now.
fn assumed(valid_for: Duration) -> aws_sdk_sts::operation::assume_role::AssumeRoleOutput {
    let expiry = std::time::SystemTime::now() + valid_for;
    aws_sdk_sts::operation::assume_role::AssumeRoleOutput::builder()
        .credentials(
            aws_sdk_sts::types::Credentials::builder()
                .access_key_id("ASIAEXAMPLE")
                .secret_access_key("secret")
                .session_token("token")
                .expiration(aws_sdk_sts::primitives::DateTime::from(expiry))
                .build()
                .unwrap(),
        )
        .build()
}

fn sts_client(rules: &[&Rule]) -> aws_sdk_sts::Client {
    aws_smithy_mocks::mock_client!(
        aws_sdk_sts,
        aws_smithy_mocks::RuleMode::MatchAny,
        rules,
        |c| c.retry_config(aws_sdk_sts::config::retry::RetryConfig::disabled())
    )
}

/// A member account's role credentials are assumed once and reused until five minutes before
/// they expire; concurrent callers wait for the one AssumeRole instead of each making their own.
#[tokio::test]
async fn role_credentials_are_cached_until_shortly_before_they_expire() {
    use stream_encryption_enforcer::aws::clients::AssumedRole;
    const ROLE: &str = "arn:aws:iam::111111111111:role/StreamEncryptionEnforcerMember";

    let hour = mock!(aws_sdk_sts::Client::assume_role)
        .match_requests(|r| {
            r.role_arn() == Some(ROLE)
                && r.external_id() == Some("org-streams-enforcer")
                && r.role_session_name() == Some("stream-encryption-enforcer")
        })
        .then_output(|| assumed(Duration::from_secs(3600)));
    let role = AssumedRole::new(
        sts_client(&[&hour]),
        ROLE.into(),
        Some("org-streams-enforcer".into()),
    );
    let (a, b, c) = tokio::join!(role.credentials(), role.credentials(), role.credentials());
    for got in [a, b, c] {
        assert_eq!(got.unwrap().access_key_id(), "ASIAEXAMPLE");
    }
    role.credentials().await.unwrap();
    assert_eq!(hour.num_calls(), 1);

    // Four minutes left is inside the renewal margin: every use renews.
    let short =
        mock!(aws_sdk_sts::Client::assume_role).then_output(|| assumed(Duration::from_secs(240)));
    let role = AssumedRole::new(sts_client(&[&short]), ROLE.into(), None);
    role.credentials().await.unwrap();
    role.credentials().await.unwrap();
    assert_eq!(short.num_calls(), 2);

    // A denied AssumeRole is an error with its code, and nothing is cached.
    let denied = mock!(aws_sdk_sts::Client::assume_role).then_error(|| {
        aws_sdk_sts::operation::assume_role::AssumeRoleError::generic(
            aws_sdk_sts::error::ErrorMetadata::builder()
                .code("AccessDenied")
                .message("not authorized")
                .build(),
        )
    });
    let role = AssumedRole::new(sts_client(&[&denied]), ROLE.into(), None);
    for _ in 0..2 {
        let err = role.credentials().await.unwrap_err();
        assert_eq!(err.code(), "AccessDenied");
    }
    assert_eq!(denied.num_calls(), 2);
}

/// A DescribeDeliveryStream answer for the DirectPut stream `clickstream`.
fn delivery(
    status: aws_sdk_firehose::types::DeliveryStreamStatus,
    encryption: aws_sdk_firehose::types::DeliveryStreamEncryptionStatus,
    key: Option<&str>,
) -> aws_sdk_firehose::operation::describe_delivery_stream::DescribeDeliveryStreamOutput {
    use aws_sdk_firehose::types::*;
    let enc = DeliveryStreamEncryptionConfiguration::builder()
        .status(encryption)
        .set_key_type(key.map(|_| KeyType::CustomerManagedCmk))
        .set_key_arn(key.map(str::to_owned))
        .build();
    aws_sdk_firehose::operation::describe_delivery_stream::DescribeDeliveryStreamOutput::builder()
        .delivery_stream_description(
            DeliveryStreamDescription::builder()
                .delivery_stream_name("clickstream")
                .delivery_stream_arn(
                    "arn:aws:firehose:us-east-1:123456789012:deliverystream/clickstream",
                )
                .delivery_stream_status(status)
                .delivery_stream_type(DeliveryStreamType::DirectPut)
                .version_id("1")
                .set_destinations(Some(vec![]))
                .has_more_destinations(false)
                .delivery_stream_encryption_configuration(enc)
                .build()
                .unwrap(),
        )
        .build()
}

#[tokio::test(start_paused = true)]
async fn firehose_encryption_being_turned_off_is_waited_out_with_reads_then_started_once() {
    use aws_sdk_firehose::types::DeliveryStreamEncryptionStatus as Enc;
    use aws_sdk_firehose::types::DeliveryStreamStatus as Status;
    let describe = mock!(aws_sdk_firehose::Client::describe_delivery_stream)
        .sequence()
        .output(|| {
            delivery(
                Status::Active,
                Enc::Disabling,
                Some("arn:aws:kms:us-east-1:123456789012:key/other"),
            )
        })
        .output(|| delivery(Status::Active, Enc::Disabled, None))
        .output(|| delivery(Status::Active, Enc::Enabling, Some(KEY_ARN)))
        .output(|| delivery(Status::Active, Enc::Enabled, Some(KEY_ARN)))
        .build();
    let start = mock!(aws_sdk_firehose::Client::start_delivery_stream_encryption).then_output(
        || aws_sdk_firehose::operation::start_delivery_stream_encryption::StartDeliveryStreamEncryptionOutput::builder().build(),
    );
    let key = key_rule();
    let fleet = Fleet::new(
        OwnAccount::sdk(
            kinesis_client(&[]),
            firehose_client(&[&describe, &start]),
            kms_client(&[&key]),
        ),
        &config(None),
    );
    let event: serde_json::Value = serde_json::from_str(include_str!(
        "../../events/firehose-create-delivery-stream.json"
    ))
    .unwrap();
    let began = Instant::now();
    let report = fleet
        .handle(
            event,
            Some(&fixture_home()),
            Instant::now() + Duration::from_secs(300),
            &mut fastrand::Rng::with_seed(3),
        )
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Remediated, "{report:?}");
    assert_eq!((start.num_calls(), report.attempts), (1, 1));
    assert_eq!(describe.num_calls(), 4);
    // One wait of the ResourceInUseException retrier (1 s) while DISABLING; then the write and
    // two reads, each a slot of the Firehose pace (at most 4 calls in a second: 1/3 s apart).
    let took = Instant::now() - began;
    assert!(
        took >= Duration::from_millis(1_250) && took <= Duration::from_millis(2_000),
        "{took:?}"
    );
}

fn limit_exceeded(message: &'static str) -> impl Fn() -> StartStreamEncryptionError {
    move || {
        StartStreamEncryptionError::LimitExceededException(
            aws_sdk_kinesis::types::error::LimitExceededException::builder()
                .message(message)
                .meta(
                    aws_sdk_kinesis::error::ErrorMetadata::builder()
                        .code("LimitExceededException")
                        .message(message)
                        .build(),
                )
                .build(),
        )
    }
}

#[tokio::test(start_paused = true)]
async fn a_used_up_key_quota_is_not_retried_as_throttling_whatever_the_policy() {
    let describe = mock!(aws_sdk_kinesis::Client::describe_stream_summary)
        .then_output(|| stream_summary(StreamStatus::Active, None));
    let start = mock!(aws_sdk_kinesis::Client::start_stream_encryption)
        .sequence()
        .error(limit_exceeded(
            "The key of this stream was changed too many times today.",
        ))
        .repeatedly()
        .build();
    let key = key_rule();
    // Even States.ALL, which would retry any error, does not retry a quota.
    let policy = r#"[{"ErrorEquals":["States.ALL"],"MaxAttempts":5}]"#;
    let report = handle(
        kinesis_client(&[&describe, &start]),
        kms_client(&[&key]),
        Some(policy),
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    assert_eq!(
        report.error_code.as_deref(),
        Some("Enforcer.KeyChangeQuotaExceeded")
    );
    assert!(
        report
            .reason
            .as_deref()
            .unwrap()
            .contains("25 times in a rolling 24 hours")
    );
    assert_eq!((start.num_calls(), report.attempts), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn rate_throttling_of_the_write_is_retried_and_then_takes() {
    let describe = mock!(aws_sdk_kinesis::Client::describe_stream_summary)
        .sequence()
        .output(|| stream_summary(StreamStatus::Active, None))
        .output(|| stream_summary(StreamStatus::Active, Some("alias/org-streams")))
        .build();
    let start = mock!(aws_sdk_kinesis::Client::start_stream_encryption)
        .sequence()
        .error(limit_exceeded(
            "Rate exceeded for stream orders under account 123456789012.",
        ))
        .times(2)
        .output(|| StartStreamEncryptionOutput::builder().build())
        .build();
    let key = key_rule();
    let report = handle(
        kinesis_client(&[&describe, &start]),
        kms_client(&[&key]),
        None,
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(report.outcome, Outcome::Remediated, "{report:?}");
    assert_eq!((start.num_calls(), report.attempts), (3, 3));
}

#[tokio::test(start_paused = true)]
async fn reads_that_find_the_stream_busy_and_refused_writes_share_one_in_use_budget() {
    // CREATING once, then ACTIVE, and every write refused as in use: with two retries allowed,
    // the CREATING read takes one and the first refusal the other; the second refusal fails.
    let describe = mock!(aws_sdk_kinesis::Client::describe_stream_summary)
        .sequence()
        .output(|| stream_summary(StreamStatus::Creating, None))
        .output(|| stream_summary(StreamStatus::Active, None))
        .repeatedly()
        .build();
    let start = mock!(aws_sdk_kinesis::Client::start_stream_encryption)
        .sequence()
        .error(in_use)
        .repeatedly()
        .build();
    let key = key_rule();
    let policy = r#"[{"ErrorEquals":["ResourceInUseException"],"MaxAttempts":2,"BackoffRate":1}]"#;
    let report = handle(
        kinesis_client(&[&describe, &start]),
        kms_client(&[&key]),
        Some(policy),
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    assert_eq!(report.error_code.as_deref(), Some("ResourceInUseException"));
    assert!(
        report.reason.as_deref().unwrap().contains("exhausted"),
        "{report:?}"
    );
    assert_eq!(
        (describe.num_calls(), start.num_calls(), report.attempts),
        (3, 2, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn a_tools_change_between_reads_starts_the_settle_period_over() {
    // Terraform's stream: ACTIVE and unencrypted at 0 s and 2 s, then another key at 4 s (a step
    // of Terraform's that finished between two reads). The settle period (10 s here) counts
    // from 4 s, so the write comes at 14 s, not 10 s.
    let other = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000";
    let describe = mock!(aws_sdk_kinesis::Client::describe_stream_summary)
        .sequence()
        .output(|| stream_summary(StreamStatus::Active, None))
        .times(2)
        .output(move || stream_summary(StreamStatus::Active, Some(other)))
        .times(6)
        .output(|| stream_summary(StreamStatus::Active, Some("alias/org-streams")))
        .build();
    let start = mock!(aws_sdk_kinesis::Client::start_stream_encryption)
        .then_output(|| StartStreamEncryptionOutput::builder().build());
    let key = key_rule();
    let config = Config::from_lookup(|name| match name {
        "MANDATED_KMS_KEY" => Some("alias/org-streams".into()),
        "IAC_SETTLE_SECONDS" => Some("10".into()),
        _ => None,
    })
    .unwrap();
    let fleet = Fleet::new(
        OwnAccount::sdk(
            kinesis_client(&[&describe, &start]),
            firehose_client(&[]),
            kms_client(&[&key]),
        ),
        &config,
    );
    let mut terraform = event();
    terraform["detail"]["userAgent"] =
        "APN/1.0 HashiCorp/1.0 Terraform/1.11.4 terraform-provider-aws/5.100.0".into();
    let began = Instant::now();
    let report = fleet
        .handle(
            terraform,
            Some(&fixture_home()),
            Instant::now() + Duration::from_secs(300),
            &mut fastrand::Rng::with_seed(3),
        )
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Remediated, "{report:?}");
    assert_eq!(
        (report.creator.as_deref(), report.settle_seconds),
        (Some("Terraform"), Some(10))
    );
    assert_eq!(start.num_calls(), 1);
    let took = Instant::now() - began;
    assert!(
        took >= Duration::from_secs(14) && took < Duration::from_secs(15),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_policy_in_the_step_functions_sdk_spelling_waits_for_a_creating_stream() {
    let describe = mock!(aws_sdk_kinesis::Client::describe_stream_summary)
        .sequence()
        .output(|| stream_summary(StreamStatus::Creating, None))
        .times(3)
        .output(|| stream_summary(StreamStatus::Active, None))
        .output(|| stream_summary(StreamStatus::Active, Some("alias/org-streams")))
        .build();
    let start = mock!(aws_sdk_kinesis::Client::start_stream_encryption)
        .then_output(|| StartStreamEncryptionOutput::builder().build());
    let key = key_rule();
    // As copied from a state machine's Task on arn:aws:states:::aws-sdk:kinesis:..., with the
    // Comment Workflow Studio writes.
    let policy = r#"[{"Comment":"stream still CREATING","ErrorEquals":["Kinesis.ResourceInUseException"],"IntervalSeconds":2,"BackoffRate":1,"MaxAttempts":10}]"#;
    let began = Instant::now();
    let report = handle(
        kinesis_client(&[&describe, &start]),
        kms_client(&[&key]),
        Some(policy),
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(report.outcome, Outcome::Remediated, "{report:?}");
    assert_eq!((start.num_calls(), describe.num_calls()), (1, 5));
    assert!(Instant::now() - began >= Duration::from_secs(6));
}

/// After KEY_CACHE_SECONDS the mandated key is resolved again. A transient failure then
/// (throttling, retried until the policy gives up) keeps the last resolution; a lasting one (the
/// alias is gone) fails the event rather than act on a key that may no longer be mandated.
#[tokio::test(start_paused = true)]
async fn the_key_is_resolved_again_after_its_ttl_and_only_a_transient_failure_keeps_the_last() {
    let describe = mock!(aws_sdk_kinesis::Client::describe_stream_summary)
        .then_output(|| stream_summary(StreamStatus::Active, Some(KEY_ARN)));
    let key = mock!(aws_sdk_kms::Client::describe_key)
        .sequence()
        .output(|| {
            aws_sdk_kms::operation::describe_key::DescribeKeyOutput::builder()
                .key_metadata(
                    aws_sdk_kms::types::KeyMetadata::builder()
                        .key_id("1234abcd-12ab-34cd-56ef-1234567890ab")
                        .arn(KEY_ARN)
                        .key_manager(aws_sdk_kms::types::KeyManagerType::Customer)
                        .build()
                        .unwrap(),
                )
                .build()
        })
        .error(|| DescribeKeyError::generic(meta("ThrottlingException")))
        .times(7)
        .error(|| {
            DescribeKeyError::NotFoundException(
                aws_sdk_kms::types::error::NotFoundException::builder()
                    .message(
                        "Alias arn:aws:kms:us-east-1:123456789012:alias/org-streams is not found.",
                    )
                    .meta(meta("NotFoundException"))
                    .build(),
            )
        })
        .build();
    let config = Config::from_lookup(|name| match name {
        "MANDATED_KMS_KEY" => Some("alias/org-streams".into()),
        "KEY_CACHE_SECONDS" => Some("60".into()),
        _ => None,
    })
    .unwrap();
    let fleet = Fleet::new(
        OwnAccount::sdk(
            kinesis_client(&[&describe]),
            firehose_client(&[]),
            kms_client(&[&key]),
        ),
        &config,
    );
    let mut random = fastrand::Rng::with_seed(3);
    let mut next = async |fleet: &Fleet<_>| {
        fleet
            .handle(
                event(),
                Some(&fixture_home()),
                Instant::now() + Duration::from_secs(300),
                &mut random,
            )
            .await
            .unwrap()
    };
    let first = next(&fleet).await;
    assert_eq!(first.outcome, Outcome::AlreadyCompliant, "{first:?}");
    let within = next(&fleet).await;
    assert_eq!(within.outcome, Outcome::AlreadyCompliant);
    assert_eq!(
        key.num_calls(),
        1,
        "within the TTL the resolution is reused"
    );

    tokio::time::advance(Duration::from_secs(61)).await;
    let throttled = next(&fleet).await;
    assert_eq!(
        throttled.outcome,
        Outcome::AlreadyCompliant,
        "{throttled:?}"
    );
    assert_eq!(throttled.key.as_deref(), Some(KEY_ARN));
    assert_eq!(key.num_calls(), 8, "resolved again: 1 call + 6 retries");

    // The failed re-resolution did not renew the last one: the next event asks again.
    let gone = next(&fleet).await;
    assert_eq!(gone.outcome, Outcome::Failed, "{gone:?}");
    assert_eq!(gone.error_code.as_deref(), Some("NotFoundException"));
    assert!(
        gone.reason
            .as_deref()
            .unwrap()
            .contains("cannot resolve the mandated key alias/org-streams"),
        "{gone:?}"
    );
    assert_eq!(key.num_calls(), 9);
}

/// A multi-Region key's ARN names its replica in every region (same key id): a stream in
/// eu-west-1 is given the replica's ARN, never the us-east-1 primary's.
#[tokio::test(start_paused = true)]
async fn a_multi_region_key_is_applied_as_its_replica_in_the_streams_region() {
    const PRIMARY: &str =
        "arn:aws:kms:us-east-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab";
    const REPLICA: &str =
        "arn:aws:kms:eu-west-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab";
    let describe = mock!(aws_sdk_kinesis::Client::describe_stream_summary)
        .sequence()
        .output(|| stream_summary(StreamStatus::Active, None))
        .output(|| stream_summary(StreamStatus::Active, Some(REPLICA)))
        .build();
    // Only a Start with the replica's ARN is answered; any other key finds no rule and fails.
    let start = mock!(aws_sdk_kinesis::Client::start_stream_encryption)
        .match_requests(|r| r.key_id() == Some(REPLICA))
        .then_output(|| StartStreamEncryptionOutput::builder().build());
    let key = mock!(aws_sdk_kms::Client::describe_key)
        .match_requests(|r| r.key_id() == Some(REPLICA))
        .then_output(|| {
            aws_sdk_kms::operation::describe_key::DescribeKeyOutput::builder()
                .key_metadata(
                    aws_sdk_kms::types::KeyMetadata::builder()
                        .key_id("mrk-1234abcd12ab34cd56ef1234567890ab")
                        .arn(REPLICA)
                        .key_manager(aws_sdk_kms::types::KeyManagerType::Customer)
                        .build()
                        .unwrap(),
                )
                .build()
        });
    let config = Config::from_lookup(|name| match name {
        "MANDATED_KMS_KEY" => Some(PRIMARY.into()),
        _ => None,
    })
    .unwrap();
    let fleet = Fleet::new(
        OwnAccount::sdk(
            kinesis_client(&[&describe, &start]),
            firehose_client(&[]),
            kms_client(&[&key]),
        ),
        &config,
    );
    let event: serde_json::Value = serde_json::from_str(
        &include_str!("../../events/kinesis-create-stream.json").replace("us-east-1", "eu-west-1"),
    )
    .unwrap();
    let report = fleet
        .handle(
            event,
            // The function runs in eu-west-1; its key is configured as the primary's ARN.
            Some(&Location::new("123456789012", "eu-west-1").unwrap()),
            Instant::now() + Duration::from_secs(300),
            &mut fastrand::Rng::with_seed(3),
        )
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Remediated, "{report:?}");
    assert_eq!(report.key.as_deref(), Some(REPLICA));
    assert_eq!((start.num_calls(), key.num_calls()), (1, 1));
}

#[tokio::test]
async fn stream_tags_are_read_page_by_page_from_the_last_key_read() {
    use aws_sdk_kinesis::operation::list_tags_for_stream::ListTagsForStreamOutput;
    use aws_sdk_kinesis::types::Tag;
    let tag = |k: &str| Tag::builder().key(k).value("v").build().unwrap();
    let first = mock!(aws_sdk_kinesis::Client::list_tags_for_stream)
        .match_requests(|r| r.exclusive_start_tag_key().is_none())
        .then_output(move || {
            ListTagsForStreamOutput::builder()
                .tags(tag("a"))
                .tags(tag("b"))
                .has_more_tags(true)
                .build()
                .unwrap()
        });
    let second = mock!(aws_sdk_kinesis::Client::list_tags_for_stream)
        .match_requests(|r| r.exclusive_start_tag_key() == Some("b"))
        .then_output(move || {
            ListTagsForStreamOutput::builder()
                .tags(tag("compliance"))
                .has_more_tags(false)
                .build()
                .unwrap()
        });
    let client = SdkAws::new(
        kinesis_client(&[&first, &second]),
        firehose_client(&[]),
        kms_client(&[]),
        None,
    );
    let stream = Resource::named(Service::Kinesis, fixture_home(), "orders").unwrap();
    let tags = client.stream_tags(&stream).await.unwrap();
    let keys: Vec<&str> = tags.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a", "b", "compliance"]);
    assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
}

#[tokio::test]
async fn delivery_stream_tags_are_read_page_by_page_and_an_empty_page_that_says_more_is_an_error() {
    use aws_sdk_firehose::operation::list_tags_for_delivery_stream::ListTagsForDeliveryStreamOutput;
    use aws_sdk_firehose::types::Tag;
    use stream_encryption_enforcer::aws::firehose::FirehoseApi;
    let tag = |k: &str| Tag::builder().key(k).value("v").build().unwrap();
    let first = mock!(aws_sdk_firehose::Client::list_tags_for_delivery_stream)
        .match_requests(|r| r.exclusive_start_tag_key().is_none())
        .then_output(move || {
            ListTagsForDeliveryStreamOutput::builder()
                .tags(tag("a"))
                .has_more_tags(true)
                .build()
                .unwrap()
        });
    // A second page that says more follow but holds nothing: asking again from "a" would loop,
    // and stopping could miss the exemption tag, so it is a response error (retried from the
    // start by the policy, like any other).
    let empty = mock!(aws_sdk_firehose::Client::list_tags_for_delivery_stream)
        .match_requests(|r| r.exclusive_start_tag_key() == Some("a"))
        .then_output(|| {
            ListTagsForDeliveryStreamOutput::builder()
                .set_tags(Some(vec![]))
                .has_more_tags(true)
                .build()
                .unwrap()
        });
    let client = SdkAws::new(
        kinesis_client(&[]),
        firehose_client(&[&first, &empty]),
        kms_client(&[]),
        None,
    );
    let stream = Resource::named(Service::Firehose, fixture_home(), "clickstream").unwrap();
    let err = client.delivery_stream_tags(&stream).await.unwrap_err();
    assert_eq!(err.code(), "Enforcer.ResponseError", "{err}");
    assert_eq!((first.num_calls(), empty.num_calls()), (1, 1));
}
