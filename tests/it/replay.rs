//! `enforcer replay` against moto's SQS, kinesis-mock and moto's KMS, with the proxies holding
//! every call to IAM's rule for the operator's policy: the function role's statements (the
//! enforcer's own calls) plus template.yaml's `ReplayOperatorPolicy` (the queue's), as
//! docs/operations.md tells the operator to grant.
//!
//! The queue holds both kinds of message: Lambda's on-failure record (the event in
//! `requestPayload`) and a bare event as EventBridge puts it in a dead-letter queue, with its
//! `ERROR_CODE` attributes. One event fails on the first replay (the key is denied) and succeeds
//! on the third, after a dry run; one message is not JSON and stays through all of them.

use crate::support::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

const ALIAS: &str = "alias/org-streams";
const TABLE: &str = "enforcer-ledger";

/// Lambda's on-failure destination record for `event`, as
/// <https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html> shows it.
fn on_failure(event: Value) -> Value {
    json!({
        "version": "1.0",
        "timestamp": "2026-12-01T10:00:00.000Z",
        "requestContext": {
            "requestId": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
            "functionArn": format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:streams-enforcer:$LATEST"),
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorType": "RemediationFailed", "errorMessage": "failed: the key was denied"}
    })
}

struct Queue {
    sqs: aws_sdk_sqs::Client,
    url: String,
}

impl Queue {
    async fn create(moto_url: &str, name: &str) -> Self {
        let sqs = aws_sdk_sqs::Client::new(&sdk_config(moto_url));
        let url = sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .expect("CreateQueue")
            .queue_url
            .expect("queue URL");
        Self { sqs, url }
    }

    async fn send(&self, body: &str, error_code: Option<&str>) {
        let mut send = self
            .sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(body);
        if let Some(code) = error_code {
            // EventBridge's dead-letter attributes (eb-rule-dlq.html).
            let attribute = |v: &str| {
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(v)
                    .build()
                    .unwrap()
            };
            send = send
                .message_attributes("ERROR_CODE", attribute(code))
                .message_attributes("ERROR_MESSAGE", attribute("Lambda is throttling"))
                .message_attributes(
                    "RULE_ARN",
                    attribute(&format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/kinesis")),
                );
        }
        send.send().await.expect("SendMessage");
    }

    /// (visible, in flight) messages.
    async fn counts(&self) -> (u64, u64) {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let answer = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("GetQueueAttributes");
        let attributes = answer.attributes().expect("attributes");
        let count = |name: &A| attributes[name].parse().unwrap();
        (
            count(&A::ApproximateNumberOfMessages),
            count(&A::ApproximateNumberOfMessagesNotVisible),
        )
    }
}

/// The rows of a `--output json` summary, by the stream they name (`-` for none).
fn rows(summary: &Value) -> HashMap<String, Value> {
    summary["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no summary: {summary}"))
        .iter()
        .map(|row| {
            let name = row["resource"]
                .as_str()
                .and_then(|arn| arn.rsplit('/').next())
                .unwrap_or("-")
                .to_owned();
            (name, row.clone())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_deletes_what_succeeds_keeps_what_fails_and_a_retried_message_goes_once_fixed() {
    let emu = Emulators::start(Duration::from_millis(500), Duration::from_millis(300)).await;
    let key_arn = emu.create_key(ALIAS).await;
    create_ledger_table(&emu.moto_url, TABLE).await;
    for name in ["from-record", "from-dead-letter", "denied"] {
        emu.create_stream(name).await;
        emu.wait_active(name).await;
    }
    let queue = Queue::create(&emu.moto_url, "failed-events").await;
    let queue_arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:failed-events");
    queue
        .send(
            &on_failure(event("kinesis-create-stream", "from-record")).to_string(),
            None,
        )
        .await;
    queue
        .send(
            &event("kinesis-create-stream", "from-dead-letter").to_string(),
            Some("SDK_CLIENT_ERROR"),
        )
        .await;
    queue
        .send(
            &on_failure(event("kinesis-create-stream", "denied")).to_string(),
            None,
        )
        .await;
    queue.send("{\"truncated\": ", None).await;

    // The operator's credentials: what the function's role allows, and the replay policy.
    let table_arn = format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}");
    let values = [
        ("AWS::AccountId", ACCOUNT),
        ("AWS::Region", REGION),
        ("MandatedKmsKeyArn", key_arn.as_str()),
        ("ReapplicationLedger", table_arn.as_str()),
        ("FailedEventsQueue", queue_arn.as_str()),
        (
            "EventsDeadLetterQueue",
            "arn:aws:sqs:eu-west-1:000000000000:other",
        ),
        ("Condition:IsCentral", "false"),
    ];
    let function = role_policy("template.yaml", "EnforcerRole", &values);
    let replay_policy = role_policy("template.yaml", "ReplayOperatorPolicy", &values);
    assert_eq!(replay_policy.len(), 2, "{replay_policy:?}");
    let keys = key_names(&key_arn, ALIAS);
    let hold = |statements: Vec<PolicyStatement>| {
        for proxy in [&emu.kinesis_proxy, &emu.moto_proxy] {
            proxy.reset_counts();
            proxy.enforce_policy(IamPolicy {
                statements: statements.clone(),
                keys: keys.clone(),
                context: HashMap::new(),
            });
        }
    };
    let mut operator = function.clone();
    operator.extend(replay_policy);
    hold(operator.clone());
    let mut env = emu.env(ALIAS);
    env.extend(
        [
            ("AWS_ENDPOINT_URL_SQS", emu.moto_proxy.url.as_str()),
            ("AWS_ENDPOINT_URL_DYNAMODB", emu.moto_proxy.url.as_str()),
            ("LEDGER_TABLE", TABLE),
            ("MANDATED_KMS_KEY_ARN", key_arn.as_str()),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    emu.kinesis_proxy.inject_for(
        "StartStreamEncryption",
        "stream/denied",
        1,
        Fault::error(
            "KMSAccessDeniedException",
            "The caller is not authorized to use the key",
        ),
    );
    let denied = |emu: &Emulators| {
        let mut injected = emu.kinesis_proxy.injected();
        injected.extend(emu.moto_proxy.injected());
        injected
            .into_keys()
            .filter(|k| k.ends_with("AccessDenied"))
            .collect::<Vec<_>>()
    };
    let args = ["replay", "--queue", queue.url.as_str(), "--output", "json"];

    // 1. Both formats succeed and go; the denied key fails and the non-JSON body is unusable:
    // both stay, visible again at once.
    let first = enforcer(&env, &args).await;
    assert_eq!(first.code, Some(1), "{first:?}");
    assert!(denied(&emu).is_empty(), "denied: {:?}", denied(&emu));
    let summary = &first.report;
    assert_eq!(
        (summary["deleted"].as_u64(), summary["kept"].as_u64()),
        (Some(2), Some(2)),
        "{summary}"
    );
    let by_stream = rows(summary);
    for (name, source) in [("from-record", "on-failure"), ("from-dead-letter", "event")] {
        let row = &by_stream[name];
        assert_eq!(row["outcome"], json!("remediated"), "{row}");
        assert_eq!(row["action"], json!("deleted"), "{row}");
        assert_eq!(row["source"], json!(source), "{row}");
        assert_eq!(
            emu.stream(name).await.key_id(),
            Some(ALIAS),
            "{name} is on the key"
        );
    }
    let failed = &by_stream["denied"];
    assert_eq!(failed["outcome"], json!("failed"), "{failed}");
    assert_eq!(failed["action"], json!("kept"), "{failed}");
    assert!(
        failed["reason"]
            .as_str()
            .is_some_and(|r| r.contains("KMSAccessDeniedException")),
        "{failed}"
    );
    let unusable = &by_stream["-"];
    assert_eq!(unusable["outcome"], json!("unusable"), "{unusable}");
    assert_eq!(unusable["action"], json!("kept"), "{unusable}");
    assert!(
        unusable["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not JSON")),
        "{unusable}"
    );
    // Each kept message's reason is logged.
    assert!(
        first.stderr.contains("message stays in the queue")
            && first.stderr.contains("KMSAccessDeniedException"),
        "{}",
        first.stderr
    );
    assert_eq!(queue.counts().await, (2, 0));

    // 2. A dry run: the denied stream would be changed (report mode, no write); nothing goes.
    emu.moto_proxy.reset_counts();
    let starts = emu.kinesis_proxy.calls("StartStreamEncryption");
    let dry = enforcer(&env, &[&args[..], &["--dry-run"]].concat()).await;
    assert_eq!(dry.code, Some(1), "{dry:?}");
    let row = &rows(&dry.report)["denied"];
    assert_eq!(row["outcome"], json!("noncompliant"), "{row}");
    assert_eq!(row["action"], json!("would_delete"), "{row}");
    assert_eq!(dry.report["deleted"], json!(0));
    assert_eq!(emu.kinesis_proxy.calls("StartStreamEncryption"), starts);
    assert_eq!(emu.moto_proxy.calls("DeleteMessage"), 0);
    assert_eq!(queue.counts().await, (2, 0));

    // 3. The cause fixed, the retried message succeeds (its third receipt) and goes; the table
    // names every message, the last line sums them up.
    emu.kinesis_proxy.clear_faults();
    hold(operator.clone());
    let third = enforcer(&env, &["replay", "--queue", queue.url.as_str()]).await;
    assert_eq!(third.code, Some(1), "{third:?}");
    assert_eq!(
        emu.stream("denied").await.key_id(),
        Some(ALIAS),
        "{}",
        third.stderr
    );
    assert!(
        third
            .stdout
            .trim_end()
            .ends_with("2 message(s); 1 deleted, 1 kept; remediated: 1, unusable: 1"),
        "{}",
        third.stdout
    );
    assert!(
        third.stdout.lines().any(|l| l.contains("stream/denied")
            && l.contains("remediated")
            && l.contains("deleted")),
        "{}",
        third.stdout
    );
    assert_eq!(queue.counts().await, (1, 0));
    let json = enforcer(&env, &[&args[..], &["--dry-run"]].concat()).await;
    let left = &json.report["messages"][0];
    assert_eq!(left["outcome"], json!("unusable"), "{}", json.report);
    // Four receipts: the first replay, the dry run, the third, this one.
    assert_eq!(left["receive_count"], json!(4), "{}", json.report);

    // 4. Without the replay policy the queue cannot be read: exit 2, the denied call named.
    hold(function);
    let refused = enforcer(&env, &args).await;
    assert_eq!(refused.code, Some(2), "{refused:?}");
    assert!(
        refused.stderr.contains("sqs:ReceiveMessage") && refused.stderr.contains("AccessDenied"),
        "{}",
        refused.stderr
    );
    assert_eq!(denied(&emu), ["ReceiveMessage: AccessDenied"]);
    assert_eq!(queue.counts().await, (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_stops_at_max_and_refuses_what_is_not_a_queue() {
    let emu = Emulators::start(Duration::from_millis(300), Duration::from_millis(300)).await;
    emu.create_key(ALIAS).await;
    let queue = Queue::create(&emu.moto_url, "dead-letters").await;
    for i in 0..3 {
        let name = format!("gone-{i}");
        // Streams that do not exist: `gone`, which is not a failure, so the message goes.
        queue
            .send(
                &event("kinesis-create-stream", &name).to_string(),
                Some("SDK_CLIENT_ERROR"),
            )
            .await;
    }
    let mut env = emu.env(ALIAS);
    env.push((
        "AWS_ENDPOINT_URL_SQS".to_owned(),
        emu.moto_proxy.url.clone(),
    ));
    let out = enforcer(
        &env,
        &[
            "replay", "--queue", &queue.url, "--max", "2", "--output", "json",
        ],
    )
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.report["counts"], json!({"gone": 2}), "{}", out.report);
    assert_eq!(queue.counts().await, (1, 0));
    // Without the function's ledger, flapping cannot be counted: the replay says so.
    assert!(
        out.stderr.contains("LEDGER_TABLE is not set"),
        "{}",
        out.stderr
    );

    let other_region = format!("https://sqs.us-west-2.amazonaws.com/{ACCOUNT}/dead-letters");
    let other_account = format!("https://sqs.{REGION}.amazonaws.com/999999999999/dead-letters");
    let no_such = format!("{}/{ACCOUNT}/no-such-queue", emu.moto_proxy.url);
    for (queue_arg, says) in [
        ("not-a-url", "is not a queue URL"),
        (&no_such as &str, "sqs:ReceiveMessage"),
        (&other_region, "set AWS_REGION=us-west-2"),
        (&other_account, "the queue is in account 999999999999"),
    ] {
        let out = enforcer(&env, &["replay", "--queue", queue_arg]).await;
        assert_eq!(out.code, Some(2), "{queue_arg}: {out:?}");
        assert!(out.stderr.contains(says), "{queue_arg}: {}", out.stderr);
    }
    // A plain-HTTP URL only with an endpoint override, as for an emulator.
    let without_endpoint: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k != "AWS_ENDPOINT_URL_SQS")
        .cloned()
        .collect();
    let out = enforcer(&without_endpoint, &["replay", "--queue", &queue.url]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("http:// only with"), "{}", out.stderr);
    let out = enforcer(&env, &["replay", "--queue", &queue.url, "--max", "0"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert_eq!(queue.counts().await, (1, 0));
}
