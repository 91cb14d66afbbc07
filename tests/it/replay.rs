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
    assert_eq!(replay_policy.len(), 4, "{replay_policy:?}");
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

/// A role in moto's IAM (its Lambda takes only a role that exists), with one query-protocol
/// call: the tests have no IAM client. moto routes a request by its credential scope, and does
/// not check the signature.
async fn create_role_on_moto(moto_url: &str, name: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = moto_url.trim_start_matches("http://");
    let trust = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
    let body = format!(
        "Action=CreateRole&Version=2010-05-08&RoleName={name}&AssumeRolePolicyDocument={trust}"
    );
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {address}\r\nAuthorization: AWS4-HMAC-SHA256 \
         Credential={ACCOUNT}/20261203/{REGION}/iam/aws4_request, SignedHeaders=host, Signature=0\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("moto");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "CreateRole: {answer}");
    format!("arn:aws:iam::{ACCOUNT}:role/{name}")
}

/// `--function`: the configuration comes from the deployed function (moto's Lambda, as
/// lambda:GetFunctionConfiguration answers), keeping only the product's variables. A function
/// environment that also holds shell hooks and an endpoint pointing nowhere changes nothing: the
/// audit lists the stream through the operator's endpoints, and names what it left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_takes_only_the_products_variables_from_the_deployed_function() {
    let emu = Emulators::start(Duration::from_millis(300), Duration::from_millis(300)).await;
    emu.create_key(ALIAS).await;
    emu.create_stream("orders").await;
    emu.wait_active("orders").await;
    let role = create_role_on_moto(&emu.moto_url, "enforcer-function-role").await;
    let lambda = aws_sdk_lambda::Client::new(&sdk_config(&emu.moto_url));
    let create = |name: &'static str, variables: &[(&str, &str)]| {
        let environment = aws_sdk_lambda::types::Environment::builder()
            .set_variables(Some(
                variables
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ))
            .build();
        lambda
            .create_function()
            .function_name(name)
            .role(&role)
            .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
            .handler("bootstrap")
            .code(
                aws_sdk_lambda::types::FunctionCode::builder()
                    .zip_file(aws_sdk_lambda::primitives::Blob::new(
                        b"PK\x05\x06".to_vec(),
                    ))
                    .build(),
            )
            .environment(environment)
            .send()
    };
    create(
        "streams-enforcer",
        &[
            ("MANDATED_KMS_KEY", ALIAS),
            ("ENFORCEMENT_MODE", "report"),
            ("PROMPT_COMMAND", "touch /tmp/pwned"),
            ("AWS_ENDPOINT_URL_KINESIS", "http://127.0.0.1:9"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ],
    )
    .await
    .expect("CreateFunction");
    create("broken-enforcer", &[("MANDATED_KMS_KEY", "not a key")])
        .await
        .expect("CreateFunction");

    // The operator's environment: endpoints and credentials, and no configuration at all.
    let mut env: Vec<(String, String)> = emu
        .env(ALIAS)
        .into_iter()
        .filter(|(k, _)| k != "MANDATED_KMS_KEY")
        .collect();
    env.push(("AWS_ENDPOINT_URL_LAMBDA".into(), emu.moto_url.clone()));

    let audit = enforcer(
        &env,
        &[
            "--function",
            "streams-enforcer",
            "audit",
            "--output",
            "json",
        ],
    )
    .await;
    // Not compliant (exit 3), and listed: the function's AWS_ENDPOINT_URL* were not taken.
    assert_eq!(audit.code, Some(3), "{audit:?}");
    assert!(audit.stdout.contains("stream/orders"), "{audit:?}");
    assert!(
        audit.stderr.contains(
            "ignored the variables the product does not define: AWS_ENDPOINT_URL, \
             AWS_ENDPOINT_URL_KINESIS, PROMPT_COMMAND"
        ),
        "{}",
        audit.stderr
    );
    // ENFORCEMENT_MODE=report came from the function: a sweep is a dry run.
    let sweep = enforcer(&env, &["--function", "streams-enforcer", "sweep"]).await;
    assert!(
        sweep.stderr.contains("ENFORCEMENT_MODE=report"),
        "{sweep:?}"
    );
    assert_eq!(emu.kinesis_proxy.calls("StartStreamEncryption"), 0);

    // A bad value is the function's configuration error; a missing function says so.
    let broken = enforcer(&env, &["--function", "broken-enforcer", "audit"]).await;
    assert_eq!(broken.code, Some(2), "{broken:?}");
    assert!(
        broken.stderr.contains("invalid configuration")
            && broken.stderr.contains("MANDATED_KMS_KEY"),
        "{}",
        broken.stderr
    );
    let missing = enforcer(&env, &["--function", "no-such-enforcer", "audit"]).await;
    assert_eq!(missing.code, Some(2), "{missing:?}");
    assert!(
        missing.stderr.contains("lambda:GetFunctionConfiguration")
            && missing.stderr.contains("ResourceNotFound"),
        "{}",
        missing.stderr
    );
}

/// A replay trusts only what it needs to: a planted Terraform user agent gets no settle period
/// (the enforcer would otherwise wait IAC_SETTLE_SECONDS per message), and with LEDGER_TABLE set
/// but unreadable the event fails and stays, with no write, instead of skipping the flapping
/// check (security review, finding 9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_gives_no_settle_period_and_fails_on_an_unreadable_ledger() {
    let emu = Emulators::start(Duration::from_millis(300), Duration::from_millis(300)).await;
    emu.create_key(ALIAS).await;
    emu.create_stream("by-terraform").await;
    emu.wait_active("by-terraform").await;
    let queue = Queue::create(&emu.moto_url, "failed-events").await;
    let mut planted = on_failure(event("kinesis-create-stream", "by-terraform"));
    planted["requestPayload"]["detail"]["userAgent"] =
        json!("APN/1.0 HashiCorp/1.0 Terraform/1.9.8 terraform-provider-aws/5.80.0");
    queue.send(&planted.to_string(), None).await;
    let mut env = emu.env(ALIAS);
    env.extend(
        [
            ("AWS_ENDPOINT_URL_SQS", emu.moto_proxy.url.as_str()),
            ("AWS_ENDPOINT_URL_DYNAMODB", emu.moto_proxy.url.as_str()),
            ("IAC_SETTLE_SECONDS", "600"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let args = ["replay", "--queue", queue.url.as_str(), "--output", "json"];

    // The ledger's table does not exist: failed, kept, nothing written.
    let mut with_ledger = env.clone();
    with_ledger.push(("LEDGER_TABLE".into(), "no-such-ledger".into()));
    let first = enforcer(&with_ledger, &args).await;
    assert_eq!(first.code, Some(1), "{first:?}");
    let row = &rows(&first.report)["by-terraform"];
    assert_eq!(
        (&row["outcome"], &row["action"]),
        (&json!("failed"), &json!("kept")),
        "{row}"
    );
    assert!(
        row["reason"]
            .as_str()
            .is_some_and(|r| r.contains("ledger could not be read")),
        "{row}"
    );
    assert_eq!(emu.kinesis_proxy.calls("StartStreamEncryption"), 0);

    // Without a ledger: remediated at once, though the record says Terraform and the settle
    // period is 600 s.
    let started = std::time::Instant::now();
    let second = enforcer(&env, &args).await;
    assert_eq!(second.code, Some(0), "{second:?}");
    let row = &rows(&second.report)["by-terraform"];
    assert_eq!(row["outcome"], json!("remediated"), "{row}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(emu.stream("by-terraform").await.key_id(), Some(ALIAS));
}
