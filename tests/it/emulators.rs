//! The real `enforcer` binary against kinesis-mock and moto server, through recording proxies.

use crate::support::*;
use serde_json::json;
use std::time::Duration;

const ALIAS: &str = "alias/org-streams";

fn outcome(inv: &Invocation) -> &str {
    inv.report["outcome"]
        .as_str()
        .unwrap_or_else(|| panic!("no report: {inv:?}"))
}

async fn emulators() -> Emulators {
    // A real CREATING phase, so the first Start gets ResourceInUseException.
    Emulators::start(Duration::from_secs(3), Duration::from_secs(1)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_stream_still_creating_is_remediated_and_a_second_delivery_costs_no_write() {
    let emu = emulators().await;
    let key_arn = emu.create_key(ALIAS).await;
    emu.create_stream("orders").await;
    let env = emu.env(ALIAS);
    let event = event("kinesis-create-stream", "orders");

    let first = invoke(&env, &event, &[]).await;
    assert_eq!(first.code, Some(0), "{first:?}");
    assert_eq!(outcome(&first), "remediated", "{first:?}");
    assert_eq!(first.report["key"], json!(key_arn));
    assert_eq!(first.report["service"], json!("kinesis"));
    assert_eq!(
        first.report["resource"],
        json!(format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/orders"))
    );
    // The stream was CREATING: the enforcer waited with reads, then wrote exactly once.
    assert_eq!(
        first.report["found"]["status"],
        json!("CREATING"),
        "{first:?}"
    );
    assert_eq!(first.report["attempts"], json!(1), "{first:?}");
    assert_eq!(emu.kinesis_proxy.calls("StartStreamEncryption"), 1);
    assert!(
        emu.kinesis_proxy.calls("DescribeStreamSummary") >= 3,
        "CREATING, then ACTIVE, then the confirm: {first:?}"
    );
    let stream = emu.stream("orders").await;
    assert_eq!(
        stream.stream_status,
        aws_sdk_kinesis::types::StreamStatus::Active
    );
    assert_eq!(
        emu.key_arn(stream.key_id.as_deref().unwrap()).await,
        key_arn
    );

    emu.kinesis_proxy.reset_counts();
    let again = invoke(&env, &event, &[]).await;
    assert_eq!(outcome(&again), "already_compliant", "{again:?}");
    assert_eq!(again.report["attempts"], json!(0));
    assert_eq!(emu.kinesis_proxy.calls("StartStreamEncryption"), 0);
    assert_eq!(emu.kinesis_proxy.calls("DescribeStreamSummary"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mandated_keys_own_arn_is_compliant_and_another_alias_of_it_is_not() {
    let emu = emulators().await;
    let key_arn = emu.create_key(ALIAS).await;
    emu.create_stream("orders").await;
    emu.wait_active("orders").await;
    // Applied by key ARN, mandated by alias: different strings, same key.
    emu.kinesis
        .start_stream_encryption()
        .stream_name("orders")
        .encryption_type(aws_sdk_kinesis::types::EncryptionType::Kms)
        .key_id(&key_arn)
        .send()
        .await
        .unwrap();
    emu.wait_active("orders").await;
    let inv = invoke(
        &emu.env(ALIAS),
        &event("kinesis-create-stream", "orders"),
        &[],
    )
    .await;
    assert_eq!(outcome(&inv), "already_compliant", "{inv:?}");
    assert_eq!(emu.kinesis_proxy.calls("StartStreamEncryption"), 0);

    // A second alias of the same key is not compliant: it can be re-pointed at any time, and
    // no stream event would fire. The key is re-applied in the mandated form.
    emu.kms
        .create_alias()
        .alias_name("alias/legacy-name")
        .target_key_id(&key_arn)
        .send()
        .await
        .unwrap();
    emu.create_stream("payments").await;
    emu.wait_active("payments").await;
    emu.kinesis
        .start_stream_encryption()
        .stream_name("payments")
        .encryption_type(aws_sdk_kinesis::types::EncryptionType::Kms)
        .key_id("alias/legacy-name")
        .send()
        .await
        .unwrap();
    emu.wait_active("payments").await;
    emu.moto_proxy.reset_counts();
    let inv = invoke(
        &emu.env(ALIAS),
        &event("kinesis-create-stream", "payments"),
        &[],
    )
    .await;
    assert_eq!(outcome(&inv), "remediated", "{inv:?}");
    assert_eq!(emu.kinesis_proxy.calls("StartStreamEncryption"), 1);
    assert_eq!(emu.stream("payments").await.key_id.as_deref(), Some(ALIAS));
    // One DescribeKey, for the mandated key; the stream's alias needs none.
    assert_eq!(emu.moto_proxy.calls("DescribeKey"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_encryption_and_a_foreign_key_are_drift_and_remediated() {
    let emu = emulators().await;
    let key_arn = emu.create_key(ALIAS).await;
    let foreign = emu.create_key("alias/someone-elses").await;
    emu.create_stream("orders").await;
    emu.create_stream("payments").await;
    emu.wait_active("orders").await;
    emu.wait_active("payments").await;
    let env = emu.env(ALIAS);

    // StopStreamEncryption: the stream was on the mandated key and is now unencrypted.
    let inv = invoke(
        &env,
        &event("kinesis-stop-stream-encryption", "orders"),
        &[],
    )
    .await;
    assert_eq!(outcome(&inv), "remediated", "{inv:?}");
    assert!(
        inv.report["reason"]
            .as_str()
            .unwrap()
            .contains("unencrypted"),
        "{inv:?}"
    );

    // StartStreamEncryption with another key.
    emu.kinesis
        .start_stream_encryption()
        .stream_name("payments")
        .encryption_type(aws_sdk_kinesis::types::EncryptionType::Kms)
        .key_id(&foreign)
        .send()
        .await
        .unwrap();
    emu.wait_active("payments").await;
    let inv = invoke(
        &env,
        &event("kinesis-start-stream-encryption-foreign-key", "payments"),
        &[],
    )
    .await;
    assert_eq!(outcome(&inv), "remediated", "{inv:?}");
    assert_eq!(inv.report["attempts"], json!(1));
    assert_eq!(
        emu.key_arn(emu.stream("payments").await.key_id.as_deref().unwrap())
            .await,
        key_arn
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firehose_direct_put_gets_the_customer_managed_key_and_other_sources_are_not_applicable() {
    let emu = emulators().await;
    let key_arn = emu.create_key(ALIAS).await;
    emu.create_delivery_stream("clickstream", None).await;
    emu.create_delivery_stream(
        "orders-archive",
        Some(&format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/orders")),
    )
    .await;
    let env = emu.env(ALIAS);

    let inv = invoke(
        &env,
        &event("firehose-create-delivery-stream", "clickstream"),
        &[],
    )
    .await;
    assert_eq!(outcome(&inv), "remediated", "{inv:?}");
    assert_eq!(inv.report["service"], json!("firehose"));
    let enc = emu
        .delivery_encryption("clickstream")
        .await
        .expect("encryption configured");
    assert_eq!(
        enc.key_type,
        Some(aws_sdk_firehose::types::KeyType::CustomerManagedCmk)
    );
    assert_eq!(enc.key_arn.as_deref(), Some(key_arn.as_str()));
    assert_eq!(
        enc.status,
        Some(aws_sdk_firehose::types::DeliveryStreamEncryptionStatus::Enabled)
    );

    let inv = invoke(
        &env,
        &event("firehose-start-delivery-stream-encryption", "clickstream"),
        &[],
    )
    .await;
    assert_eq!(outcome(&inv), "already_compliant", "{inv:?}");

    emu.moto_proxy.reset_counts();
    let inv = invoke(
        &env,
        &event(
            "firehose-create-delivery-stream-kinesis-source",
            "orders-archive",
        ),
        &[],
    )
    .await;
    assert_eq!(outcome(&inv), "not_applicable", "{inv:?}");
    assert!(
        inv.report["reason"]
            .as_str()
            .unwrap()
            .contains("KinesisStreamAsSource")
    );
    assert_eq!(emu.moto_proxy.calls("StartDeliveryStreamEncryption"), 0);
    assert!(emu.delivery_encryption("orders-archive").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_call_is_ignored_without_any_aws_call_and_a_deleted_stream_is_gone() {
    let emu = emulators().await;
    emu.create_key(ALIAS).await;
    let env = emu.env(ALIAS);
    let inv = invoke(&env, &event("kinesis-create-stream-failed", "orders"), &[]).await;
    assert_eq!((inv.code, outcome(&inv)), (Some(0), "ignored"), "{inv:?}");
    assert_eq!(
        emu.kinesis_proxy.total_calls() + emu.moto_proxy.total_calls(),
        0
    );

    let inv = invoke(&env, &event("kinesis-create-stream", "never-existed"), &[]).await;
    assert_eq!((inv.code, outcome(&inv)), (Some(0), "gone"), "{inv:?}");
    assert_eq!(inv.report["error_code"], json!("ResourceNotFoundException"));
    let inv = invoke(
        &env,
        &event("firehose-stop-delivery-stream-encryption", "never-existed"),
        &[],
    )
    .await;
    assert_eq!(outcome(&inv), "gone", "{inv:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_under_the_policy_and_access_denied_fails_with_its_code() {
    let emu = emulators().await;
    emu.create_key(ALIAS).await;
    emu.create_stream("orders").await;
    emu.create_stream("audit").await;
    emu.wait_active("orders").await;
    emu.wait_active("audit").await;
    let env = emu.env(ALIAS);

    emu.kinesis_proxy.inject(
        "StartStreamEncryption",
        2,
        Fault::error(
            "LimitExceededException",
            "Rate exceeded for stream orders under account 123456789012.",
        ),
    );
    emu.kinesis_proxy.inject(
        "DescribeStreamSummary",
        1,
        Fault::Raw {
            status: 503,
            body: String::new(),
        },
    );
    let inv = invoke(&env, &event("kinesis-create-stream", "orders"), &[]).await;
    assert_eq!(outcome(&inv), "remediated", "{inv:?}");
    assert_eq!(inv.report["attempts"], json!(3));
    assert!(
        inv.stderr.contains("LimitExceededException"),
        "retries are logged: {}",
        inv.stderr
    );

    emu.kinesis_proxy.inject(
        "StartStreamEncryption",
        1,
        Fault::error(
            "AccessDeniedException",
            "User is not authorized to perform: kinesis:StartStreamEncryption",
        ),
    );
    let inv = invoke(&env, &event("kinesis-create-stream", "audit"), &[]).await;
    assert_eq!(inv.code, Some(1), "{inv:?}");
    assert_eq!(outcome(&inv), "failed");
    assert_eq!(inv.report["error_code"], json!("AccessDeniedException"));
    assert_eq!(inv.report["attempts"], json!(1));
    assert!(
        emu.stream("audit").await.key_id.is_none(),
        "nothing was applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firehose_enabling_failed_is_a_failure_with_its_description() {
    let emu = emulators().await;
    let key_arn = emu.create_key(ALIAS).await;
    emu.create_delivery_stream("clickstream", None).await;
    // moto has no ENABLING phase: the proxy answers the confirm step as AWS would after a
    // failed grant.
    let described = json!({"DeliveryStreamDescription": {
        "DeliveryStreamName": "clickstream",
        "DeliveryStreamARN": format!("arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/clickstream"),
        "DeliveryStreamStatus": "ACTIVE",
        "DeliveryStreamType": "DirectPut",
        "VersionId": "2",
        "Destinations": [],
        "HasMoreDestinations": false,
        "DeliveryStreamEncryptionConfiguration": {
            "KeyARN": key_arn,
            "KeyType": "CUSTOMER_MANAGED_CMK",
            "Status": "ENABLING_FAILED",
            "FailureDescription": {"Type": "CREATE_KMS_GRANT_FAILED", "Details": "Access denied creating a grant on the key"}
        }
    }});
    let env = emu.env(ALIAS);
    // The first Describe passes through (unencrypted); once it has, every later Describe (the
    // confirm step) answers ENABLING_FAILED.
    let created = event("firehose-create-delivery-stream", "clickstream");
    let first = invoke(&env, &created, &["--timeout", "30"]);
    let injector = async {
        while emu.moto_proxy.calls("DescribeDeliveryStream") == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        emu.moto_proxy.inject(
            "DescribeDeliveryStream",
            10,
            Fault::Raw {
                status: 200,
                body: described.to_string(),
            },
        );
    };
    let (inv, ()) = tokio::join!(first, injector);
    assert_eq!(inv.code, Some(1), "{inv:?}");
    assert_eq!(outcome(&inv), "failed");
    assert_eq!(inv.report["error_code"], json!("CREATE_KMS_GRANT_FAILED"));
    assert!(
        inv.report["reason"]
            .as_str()
            .unwrap()
            .contains("ENABLING_FAILED"),
        "{inv:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_exits_2_on_an_unusable_event_or_configuration() {
    let emu = emulators().await;
    let env = emu.env(ALIAS);
    let inv = invoke(&env, &json!({"hello": "world"}), &[]).await;
    assert_eq!(inv.code, Some(2), "{inv:?}");
    assert!(inv.stdout.is_empty());
    assert!(inv.stderr.contains("invalid event"), "{}", inv.stderr);
    assert_eq!(
        inv.stderr.trim().lines().count(),
        1,
        "one-line reason: {}",
        inv.stderr
    );

    let mut bad = event("kinesis-create-stream", "orders");
    bad["detail"]["requestParameters"]["streamName"] = json!("orders; rm -rf /");
    let inv = invoke(&env, &bad, &[]).await;
    assert_eq!(inv.code, Some(2), "{inv:?}");
    assert!(inv.stderr.contains("streamName"), "{}", inv.stderr);

    let mut env_bad = env.clone();
    env_bad.push((
        "RETRY_POLICY".into(),
        r#"[{"ErrorEquals":["States.ALL"]},{"ErrorEquals":["X"]}]"#.into(),
    ));
    let inv = invoke(&env_bad, &event("kinesis-create-stream", "orders"), &[]).await;
    assert_eq!(inv.code, Some(2), "{inv:?}");
    assert!(
        inv.stderr.contains("RETRY_POLICY") && inv.stderr.contains("last Retrier"),
        "{}",
        inv.stderr
    );
    assert_eq!(
        emu.kinesis_proxy.total_calls() + emu.moto_proxy.total_calls(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exempt_streams_are_left_alone_and_report_mode_writes_nothing() {
    let emu = emulators().await;
    emu.create_key(ALIAS).await;
    for name in ["legacy", "orders", "payments"] {
        emu.create_stream(name).await;
        emu.wait_active(name).await;
    }
    emu.kinesis
        .add_tags_to_stream()
        .stream_name("legacy")
        .tags("compliance", "exempt")
        .send()
        .await
        .unwrap();
    emu.create_delivery_stream("clickstream", None).await;
    emu.firehose
        .tag_delivery_stream()
        .delivery_stream_name("clickstream")
        .tags(
            aws_sdk_firehose::types::Tag::builder()
                .key("compliance")
                .value("exempt")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let mut env = emu.env(ALIAS);
    env.push(("EXEMPT_TAG".into(), "compliance=exempt".into()));

    // Tagged after creation: found by ListTagsForStream.
    let inv = invoke(&env, &event("kinesis-create-stream", "legacy"), &[]).await;
    assert_eq!(outcome(&inv), "exempt", "{inv:?}");
    assert!(
        inv.report["reason"]
            .as_str()
            .unwrap()
            .contains("compliance=exempt")
    );
    assert_eq!(emu.kinesis_proxy.calls("ListTagsForStream"), 1);
    assert!(emu.stream("legacy").await.key_id.is_none());

    // Tagged in the create call itself: the record says so, no ListTags call.
    let mut tagged = event("kinesis-create-stream", "orders");
    tagged["detail"]["requestParameters"]["tags"] = json!({"compliance": "exempt"});
    let inv = invoke(&env, &tagged, &[]).await;
    assert_eq!(outcome(&inv), "exempt", "{inv:?}");
    assert_eq!(emu.kinesis_proxy.calls("ListTagsForStream"), 1);

    let inv = invoke(
        &env,
        &event("firehose-create-delivery-stream", "clickstream"),
        &[],
    )
    .await;
    assert_eq!(outcome(&inv), "exempt", "{inv:?}");
    assert_eq!(emu.moto_proxy.calls("ListTagsForDeliveryStream"), 1);
    assert!(emu.delivery_encryption("clickstream").await.is_none());

    // Report mode: decided and reported, never written.
    env.push(("ENFORCEMENT_MODE".into(), "report".into()));
    let inv = invoke(&env, &event("kinesis-create-stream", "payments"), &[]).await;
    assert_eq!(
        (inv.code, outcome(&inv)),
        (Some(0), "noncompliant"),
        "{inv:?}"
    );
    assert_eq!(inv.report["attempts"], json!(0));
    assert_eq!(emu.kinesis_proxy.calls("StartStreamEncryption"), 0);
    assert_eq!(emu.moto_proxy.calls("StartDeliveryStreamEncryption"), 0);
    assert!(emu.stream("payments").await.key_id.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn even_trace_logs_carry_no_credentials_or_signatures() {
    let emu = emulators().await;
    emu.create_key(ALIAS).await;
    emu.create_stream("orders").await;
    emu.wait_active("orders").await;
    let mut env = emu.env(ALIAS);
    env.push(("LOG_LEVEL".into(), "trace".into()));
    let inv = invoke(&env, &event("kinesis-create-stream", "orders"), &[]).await;
    assert_eq!(outcome(&inv), "remediated", "{inv:?}");
    assert!(
        inv.stderr.len() > 1000,
        "trace logging is on: {} bytes",
        inv.stderr.len()
    );
    for secret in [
        "test-secret",
        "Signature=",
        "Credential=",
        "X-Amz-Security-Token",
    ] {
        assert!(!inv.stderr.contains(secret), "the log contains {secret:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_connection_and_a_reset_are_transport_errors_the_policy_retries() {
    let emu = emulators().await;
    emu.create_key(ALIAS).await;
    emu.create_stream("orders").await;
    emu.wait_active("orders").await;
    // The first Describe never gets an answer: the 10 s attempt timeout ends it. The first Start
    // has its connection closed under it.
    emu.kinesis_proxy
        .inject("DescribeStreamSummary", 1, Fault::Hang);
    emu.kinesis_proxy
        .inject("StartStreamEncryption", 1, Fault::Reset);
    let started = std::time::Instant::now();
    let inv = invoke(
        &emu.env(ALIAS),
        &event("kinesis-create-stream", "orders"),
        &["--timeout", "60"],
    )
    .await;
    assert_eq!(outcome(&inv), "remediated", "{inv:?}");
    assert_eq!(inv.report["attempts"], json!(2));
    assert!(inv.stderr.contains("Enforcer.Timeout"), "{}", inv.stderr);
    assert!(
        inv.stderr.contains("Enforcer.ConnectionError")
            || inv.stderr.contains("Enforcer.ResponseError"),
        "{}",
        inv.stderr
    );
    assert!(
        started.elapsed() >= Duration::from_secs(10),
        "the hang lasted until the attempt timeout"
    );
}
