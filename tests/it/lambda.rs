//! The real Lambda binary (`bootstrap`) served events by a local Lambda Runtime API, acting on
//! kinesis-mock and moto: what Lambda would see returned, and the JSON log lines.

use crate::support::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_returns_outcomes_and_fails_with_a_diagnostic_so_lambda_retries() {
    let emu = Emulators::start(Duration::from_secs(2), Duration::from_millis(500)).await;
    let key_arn = emu.create_key("alias/org-streams").await;
    emu.create_stream("orders").await;
    emu.create_stream("audit").await;
    emu.wait_active("audit").await;
    emu.kinesis_proxy.inject(
        "StartStreamEncryption",
        1,
        Fault::error(
            "KMSAccessDeniedException",
            "The caller is not authorized to use the key",
        ),
    );

    let api = RuntimeApi::start().await;
    // Order matters: the injected fault meets the first Start, which is the audit stream's.
    api.push(
        "req-1",
        event("kinesis-create-stream", "audit"),
        Duration::from_secs(60),
    );
    api.push(
        "req-2",
        event("kinesis-create-stream", "orders"),
        Duration::from_secs(60),
    );
    api.push("req-3", json!({"not": "an event"}), Duration::from_secs(60));
    api.push(
        "req-4",
        event("kinesis-delete-stream", "orders"),
        Duration::from_secs(60),
    );
    let lambda = start_bootstrap(&api, &emu.env("alias/org-streams"));
    let results = api.results(4, Duration::from_secs(90)).await;
    let logs = lambda.stop_and_read_stdout();

    let by_id = |id: &str| {
        results
            .iter()
            .find(|r| r.request_id == id)
            .unwrap_or_else(|| panic!("{id}: {results:?}"))
    };
    let failed = by_id("req-1");
    assert_eq!(failed.kind, "error", "{failed:?}");
    let message = failed.error_message("RemediationFailed");
    assert!(
        message.contains("KMSAccessDeniedException") && message.contains("stream/audit"),
        "{message}"
    );

    let remediated = by_id("req-2");
    assert_eq!(remediated.kind, "response", "{remediated:?}");
    assert_eq!(remediated.body["outcome"], json!("remediated"));
    assert_eq!(remediated.body["key"], json!(key_arn));

    let invalid = by_id("req-3");
    assert_eq!(invalid.kind, "error");
    assert_eq!(invalid.body["errorType"], json!("InvalidEvent"));

    let ignored = by_id("req-4");
    assert_eq!(
        (ignored.kind.as_str(), &ignored.body["outcome"]),
        ("response", &json!("ignored"))
    );

    // One JSON log line per outcome, with the fields an operator filters on.
    let outcomes: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == json!("outcome"))
        .collect();
    assert_eq!(outcomes.len(), 3, "{logs}");
    assert_eq!(outcomes[0]["outcome"], json!("failed"));
    assert_eq!(outcomes[0]["error_code"], json!("KMSAccessDeniedException"));
    assert_eq!(outcomes[1]["outcome"], json!("remediated"));
    assert_eq!(
        outcomes[1]["resource"],
        json!(format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/orders"))
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("invalid event") && l.contains("req-3")),
        "{logs}"
    );
    // One embedded-metric-format line per outcome, in the default namespace.
    let metrics: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l.get("_aws").is_some())
        .collect();
    let counted: Vec<(&str, &str)> = metrics
        .iter()
        .map(|m| {
            (
                m["service"].as_str().unwrap(),
                m["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counted,
        [
            ("kinesis", "failed"),
            ("kinesis", "remediated"),
            ("kinesis", "ignored")
        ]
    );
    assert_eq!(
        metrics[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        json!("StreamEncryptionEnforcer")
    );
    assert_eq!(metrics[1]["WriteCalls"], remediated.body["attempts"]);
    // The mandated key was resolved once for the container, not per event.
    assert_eq!(emu.moto_proxy.calls("DescribeKey"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_configuration_fails_every_event_with_the_variable_named() {
    let api = RuntimeApi::start().await;
    let env = vec![
        ("AWS_REGION".to_owned(), REGION.to_owned()),
        ("MANDATED_KMS_KEY".to_owned(), "not-a-key".to_owned()),
    ];
    api.push(
        "req-1",
        event("kinesis-create-stream", "orders"),
        Duration::from_secs(60),
    );
    let lambda = start_bootstrap(&api, &env);
    let results = api.results(1, Duration::from_secs(30)).await;
    drop(lambda);
    assert_eq!(results[0].kind, "error", "{results:?}");
    assert_eq!(results[0].body["errorType"], json!("InvalidConfiguration"));
    assert!(
        results[0].body["errorMessage"]
            .as_str()
            .unwrap_or("")
            .starts_with("MANDATED_KMS_KEY:"),
        "{results:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_event_sweeps_the_functions_own_account_and_region() {
    let emu = Emulators::start(Duration::from_millis(200), Duration::from_millis(300)).await;
    let key_arn = emu.create_key("alias/org-streams").await;
    for name in ["before-the-stack", "missed-event"] {
        emu.create_stream(name).await;
        emu.wait_active(name).await;
    }
    emu.create_delivery_stream("clickstream", None).await;
    let scheduled: serde_json::Value =
        serde_json::from_str(include_str!("../../events/scheduled-sweep.json")).unwrap();

    // The first sweep cannot encrypt one stream: the sweep is an error that names it, so
    // Lambda retries it; the retry finds the rest compliant and finishes the job.
    emu.kinesis_proxy.inject_for(
        "StartStreamEncryption",
        "stream/missed-event",
        1,
        Fault::error(
            "KMSAccessDeniedException",
            "The caller is not authorized to use the key",
        ),
    );
    let api = RuntimeApi::start().await;
    api.push("sweep-1", scheduled.clone(), Duration::from_secs(120));
    api.push("sweep-2", scheduled, Duration::from_secs(120));
    let lambda = start_bootstrap(&api, &emu.env("alias/org-streams"));
    let results = api.results(2, Duration::from_secs(120)).await;
    let logs = lambda.stop_and_read_stdout();

    let first = &results[0];
    assert_eq!(
        (first.kind.as_str(), &first.body["errorType"]),
        ("error", &json!("SweepIncomplete")),
        "{first:?}"
    );
    let message = first.body["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("1 failed") && message.contains("stream/missed-event"),
        "{message}"
    );
    let sweep = &results[1];
    assert_eq!(sweep.kind, "response", "{sweep:?}");
    assert_eq!(
        sweep.body["counts"],
        json!({"already_compliant": 2, "remediated": 1}),
        "{sweep:?}"
    );
    assert_eq!(sweep.body["unreached"], json!([]));
    for name in ["before-the-stack", "missed-event"] {
        let key = emu.stream(name).await.key_id.unwrap();
        assert_eq!(emu.key_arn(&key).await, key_arn);
    }
    let firehose = emu.delivery_encryption("clickstream").await.unwrap();
    assert_eq!(firehose.key_arn.as_deref(), Some(key_arn.as_str()));
    // One outcome line and one metrics line per resource per sweep, and the summaries.
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["message"] == json!("outcome"))
            .count(),
        6
    );
    assert_eq!(lines.iter().filter(|l| l.get("_aws").is_some()).count(), 6);
    assert!(
        lines.iter().any(|l| l["message"] == json!("sweep summary")),
        "{logs}"
    );
}

/// An event about a stream in another account or region: same-named streams exist here, and
/// acting would change the wrong one. It is refused, with no AWS call, as an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_for_another_account_or_region_is_refused_without_a_call() {
    let emu = Emulators::start(Duration::from_millis(200), Duration::from_millis(200)).await;
    emu.create_key("alias/org-streams").await;
    emu.create_stream("orders").await;
    emu.wait_active("orders").await;
    let mut elsewhere = event("kinesis-create-stream", "orders");
    elsewhere["account"] = json!("210987654321");
    elsewhere["detail"]["recipientAccountId"] = json!("210987654321");
    let mut other_region = event("kinesis-create-stream", "orders");
    other_region["region"] = json!("eu-west-1");
    other_region["detail"]["awsRegion"] = json!("eu-west-1");

    let api = RuntimeApi::start().await;
    api.push("req-account", elsewhere.clone(), Duration::from_secs(60));
    api.push("req-region", other_region, Duration::from_secs(60));
    let lambda = start_bootstrap(&api, &emu.env("alias/org-streams"));
    let results = api.results(2, Duration::from_secs(60)).await;
    let logs = lambda.stop_and_read_stdout();
    for (result, differs) in results.iter().zip(["account", "region"]) {
        assert_eq!(result.kind, "error", "{result:?}");
        let message = result.error_message("EventRefused");
        assert!(
            message.contains(&format!("the {differs} differs")),
            "{message}"
        );
    }
    let refused = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == json!("outcome") && l["outcome"] == json!("refused"))
        .count();
    assert_eq!(refused, 2, "{logs}");
    assert_eq!(emu.kinesis_proxy.total_calls(), 0);
    assert_eq!(emu.moto_proxy.calls("DescribeKey"), 0);
    assert!(emu.stream("orders").await.key_id.is_none());

    // A local runtime's placeholder ARN (cargo lambda watch): the home is the credentials'
    // account (sts:GetCallerIdentity, once) and region; the account's own events are acted on.
    let api = RuntimeApi::start().await;
    api.set_function_arn("function-arn");
    api.push("req-other", elsewhere.clone(), Duration::from_secs(60));
    api.push(
        "req-own-1",
        event("kinesis-create-stream", "orders"),
        Duration::from_secs(60),
    );
    api.push(
        "req-own-2",
        event("kinesis-create-stream", "orders"),
        Duration::from_secs(60),
    );
    let lambda = start_bootstrap(&api, &emu.env("alias/org-streams"));
    let results = api.results(3, Duration::from_secs(60)).await;
    drop(lambda);
    let kinds: Vec<(&str, &serde_json::Value)> = results
        .iter()
        .map(|r| {
            (
                r.request_id.as_str(),
                r.body.get("outcome").unwrap_or(&r.body["errorType"]),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("req-other", &json!("EventRefused")),
            ("req-own-1", &json!("remediated")),
            ("req-own-2", &json!("already_compliant"))
        ]
    );
    assert_eq!(emu.moto_proxy.calls("GetCallerIdentity"), 1);
    let before = emu.kinesis_proxy.total_calls();

    // `enforcer invoke` refuses it too (exit 2), with the report on stdout.
    let inv = invoke(&emu.env("alias/org-streams"), &elsewhere, &[]).await;
    assert_eq!(inv.code, Some(2), "{inv:?}");
    assert_eq!(inv.report["outcome"], json!("refused"), "{inv:?}");
    assert_eq!(emu.kinesis_proxy.total_calls(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_endpoint_still_gets_one_outcome_before_the_deadline() {
    let emu = Emulators::start(Duration::from_millis(300), Duration::from_millis(300)).await;
    emu.create_key("alias/org-streams").await;
    emu.create_stream("orders").await;
    emu.wait_active("orders").await;
    // The endpoint takes the connection and never answers: one attempt alone (10 s) would
    // outlast the whole 5 s budget.
    emu.kinesis_proxy
        .inject("DescribeStreamSummary", 1000, Fault::Hang);
    let api = RuntimeApi::start().await;
    let lambda = start_bootstrap(&api, &emu.env("alias/org-streams"));
    let budget = Duration::from_secs(5);
    let pushed = std::time::Instant::now();
    api.push("hung", event("kinesis-create-stream", "orders"), budget);
    let results = api.results(1, Duration::from_secs(30)).await;
    let answered = pushed.elapsed();
    eprintln!("answered in {answered:?}");
    let logs = lambda.stop_and_read_stdout();
    let result = &results[0];
    assert!(
        answered < budget,
        "answered after {answered:?}, past the {budget:?} deadline"
    );
    assert_eq!(result.kind, "error", "{result:?}");
    let message = result.error_message("RemediationFailed");
    assert!(message.contains("Enforcer.DeadlineExceeded"), "{message}");
    let outcomes = logs
        .lines()
        .filter(|l| l.contains(r#""message":"outcome""#))
        .count();
    assert_eq!(outcomes, 1, "exactly one outcome line: {logs}");
}

/// An endpoint that answers, but slowly: each DescribeStreamSummary takes 2.5 s, in a 7 s budget
/// (5 s of it to act, 2 s kept to report). The first read and the write fit, with 2.5 s to spare
/// for the emulator's own answers; the confirm read cannot, and is cut off at the deadline
/// instead of running on to its 10 s attempt timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_gets_one_outcome_before_the_deadline_naming_the_unanswered_call() {
    let emu = Emulators::start(Duration::from_millis(300), Duration::from_millis(300)).await;
    emu.create_key("alias/org-streams").await;
    emu.create_stream("orders").await;
    emu.wait_active("orders").await;
    emu.kinesis_proxy.inject(
        "DescribeStreamSummary",
        1000,
        Fault::Slow(Duration::from_millis(2500)),
    );
    let api = RuntimeApi::start().await;
    let lambda = start_bootstrap(&api, &emu.env("alias/org-streams"));
    let budget = Duration::from_secs(7);
    let pushed = std::time::Instant::now();
    api.push("slow", event("kinesis-create-stream", "orders"), budget);
    let results = api.results(1, Duration::from_secs(30)).await;
    let answered = pushed.elapsed();
    eprintln!("answered in {answered:?}");
    let logs = lambda.stop_and_read_stdout();
    assert!(
        answered < budget,
        "answered after {answered:?}, past the {budget:?} deadline"
    );
    let result = &results[0];
    let message = result.error_message("RemediationFailed");
    assert!(
        message.contains("Enforcer.DeadlineExceeded")
            && message.contains(
                "DescribeStreamSummary was still unanswered when the invocation's deadline came"
            ),
        "{message}"
    );
    // The write went out in time; the event's retry confirms it.
    assert_eq!(emu.kinesis_proxy.calls("StartStreamEncryption"), 1);
    let outcomes = outcome_lines(&logs);
    assert_eq!(outcomes.len(), 1, "exactly one outcome line: {logs}");
    assert_eq!(
        outcomes[0]["error_code"],
        json!("Enforcer.DeadlineExceeded")
    );
}

/// A rate limiter whose next turn is after the deadline refuses at once, with no call, rather
/// than waiting until no time is left. At RATE_SHARE 0.002, DescribeStreamSummary (20/s) gets a
/// turn every 25 s: the first event takes it, the second's is after its 10 s budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_rate_limiter_fails_the_event_at_once_without_a_call() {
    let emu = Emulators::start(Duration::from_millis(200), Duration::from_millis(200)).await;
    let key = emu.create_key("alias/org-streams").await;
    for name in ["orders", "audit"] {
        emu.create_stream(name).await;
        emu.wait_active(name).await;
    }
    encrypt_stream_on(&emu.kinesis, "orders", &key).await;
    emu.wait_active("orders").await;
    let mut env = emu.env("alias/org-streams");
    env.push(("RATE_SHARE".into(), "0.002".into()));
    let api = RuntimeApi::start().await;
    let budget = Duration::from_secs(10);
    api.push("first", event("kinesis-create-stream", "orders"), budget);
    let lambda = start_bootstrap(&api, &env);
    let first = api.results(1, Duration::from_secs(30)).await;
    assert_eq!(
        first[0].body["outcome"],
        json!("already_compliant"),
        "{first:?}"
    );
    let pushed = std::time::Instant::now();
    api.push("second", event("kinesis-create-stream", "audit"), budget);
    let results = api.results(2, Duration::from_secs(30)).await;
    let answered = pushed.elapsed();
    eprintln!("answered in {answered:?}");
    let logs = lambda.stop_and_read_stdout();
    assert!(
        answered < budget,
        "answered after {answered:?}, past the {budget:?} deadline"
    );
    let second = &results[1];
    let message = second.error_message("RemediationFailed");
    assert!(
        message.contains("DescribeStreamSummary's next turn under the rate limiter is in")
            && message.contains("after the invocation's deadline")
            && message.contains("no call was made"),
        "{message}"
    );
    assert_eq!(
        emu.kinesis_proxy
            .calls_for("DescribeStreamSummary", "audit"),
        0
    );
    assert_eq!(emu.kinesis_proxy.calls("DescribeStreamSummary"), 1);
    let outcomes = outcome_lines(&logs);
    assert_eq!(outcomes.len(), 2, "one outcome line per event: {logs}");
    assert_eq!(
        outcomes[1]["attempts"],
        json!(0),
        "no write was made: {logs}"
    );
}

/// Re-pointing the mandated alias takes effect in a warm container once its resolution is
/// KEY_CACHE_SECONDS old: a delivery stream on the key the alias named before is given the new
/// one, and a new delivery stream gets the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repointed_mandated_alias_takes_effect_in_a_warm_container_after_its_ttl() {
    let emu = Emulators::start(Duration::from_millis(200), Duration::from_millis(200)).await;
    let before = emu.create_key("alias/org-streams").await;
    let after = emu.create_key("alias/next-streams-key").await;
    emu.create_delivery_stream("clicks", None).await;
    emu.create_delivery_stream("views", None).await;
    let mut env = emu.env("alias/org-streams");
    env.push(("KEY_CACHE_SECONDS".into(), "3".into()));
    let api = RuntimeApi::start().await;
    let minute = Duration::from_secs(60);
    api.push(
        "first",
        event("firehose-create-delivery-stream", "clicks"),
        minute,
    );
    api.push(
        "within-ttl",
        event("firehose-create-delivery-stream", "clicks"),
        minute,
    );
    let lambda = start_bootstrap(&api, &env);
    let results = api.results(2, minute).await;
    assert_eq!(
        results[0].body["outcome"],
        json!("remediated"),
        "{results:?}"
    );
    assert_eq!(results[0].body["key"], json!(before));
    assert_eq!(results[1].body["outcome"], json!("already_compliant"));
    assert_eq!(
        emu.moto_proxy.calls("DescribeKey"),
        1,
        "resolved once within the TTL"
    );

    emu.kms
        .update_alias()
        .alias_name("alias/org-streams")
        .target_key_id(&after)
        .send()
        .await
        .expect("UpdateAlias");
    tokio::time::sleep(Duration::from_millis(3200)).await;
    api.push(
        "after-ttl",
        event("firehose-create-delivery-stream", "clicks"),
        minute,
    );
    api.push(
        "new-stream",
        event("firehose-create-delivery-stream", "views"),
        minute,
    );
    let results = api.results(4, minute).await;
    let logs = lambda.stop_and_read_stdout();
    for result in &results[2..] {
        assert_eq!(result.body["outcome"], json!("remediated"), "{results:?}");
        assert_eq!(result.body["key"], json!(after));
    }
    // The event that found the alias moved says from which key, and counts MandatedKeyChanged
    // (its alarm); the next one, on the same resolution, does not.
    assert_eq!(results[2].body["key_changed_from"], json!(before));
    assert!(results[3].body.get("key_changed_from").is_none());
    let changed: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l.get("_aws").is_some() && l.get("MandatedKeyChanged").is_some())
        .collect();
    assert_eq!(changed.len(), 1, "{logs}");
    assert_eq!(changed[0]["MandatedKeyChanged"], json!(1));
    assert_eq!(emu.moto_proxy.calls("DescribeKey"), 2);
    for name in ["clicks", "views"] {
        let encryption = emu.delivery_encryption(name).await.expect("encryption");
        assert_eq!(
            encryption.key_arn.as_deref(),
            Some(after.as_str()),
            "{name}"
        );
    }
}

/// MANDATED_KMS_KEY and MANDATED_KMS_KEY_ARN are set separately (the template scopes the
/// function's KMS permissions to the ARN). At cold start the key is resolved in the function's
/// region: when it names another key, every event fails as InvalidConfiguration naming both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mandated_key_arn_that_the_key_does_not_name_fails_every_event_naming_both() {
    let emu = Emulators::start(Duration::from_millis(200), Duration::from_millis(200)).await;
    let mandated = emu.create_key("alias/org-streams").await;
    let other = emu.create_key("alias/something-else").await;
    emu.create_stream("orders").await;
    emu.wait_active("orders").await;
    let minute = Duration::from_secs(60);
    let with_arn = |arn: &str| {
        let mut env = emu.env("alias/org-streams");
        env.push(("MANDATED_KMS_KEY_ARN".into(), arn.to_owned()));
        env
    };

    let api = RuntimeApi::start().await;
    api.push("mismatch", event("kinesis-create-stream", "orders"), minute);
    let lambda = start_bootstrap(&api, &with_arn(&other));
    let results = api.results(1, minute).await;
    drop(lambda);
    let message = results[0].error_message("InvalidConfiguration");
    assert!(
        message.contains(&format!(
            "MANDATED_KMS_KEY alias/org-streams names the key {mandated}"
        )) && message.contains(&format!("MANDATED_KMS_KEY_ARN is {other}")),
        "{message}"
    );
    assert_eq!(emu.kinesis_proxy.total_calls(), 0, "no stream call");
    assert!(emu.stream("orders").await.key_id.is_none());

    // A key ARN of another region than the function's cannot be it either.
    let elsewhere = mandated.replace(REGION, "eu-west-1");
    let inv = invoke(
        &with_arn(&elsewhere),
        &event("kinesis-create-stream", "orders"),
        &[],
    )
    .await;
    assert_eq!(inv.code, Some(2), "{inv:?}");
    assert!(
        inv.stderr
            .contains("is a key in eu-west-1, but the function runs in us-east-1"),
        "{inv:?}"
    );

    // When they agree, events are enforced, and the key is described once: the cold start's
    // resolution is the first event's too.
    emu.moto_proxy.reset_counts();
    let api = RuntimeApi::start().await;
    api.push("agree", event("kinesis-create-stream", "orders"), minute);
    let lambda = start_bootstrap(&api, &with_arn(&mandated));
    let results = api.results(1, minute).await;
    drop(lambda);
    assert_eq!(
        results[0].body["outcome"],
        json!("remediated"),
        "{results:?}"
    );
    assert_eq!(results[0].body["key"], json!(mandated));
    assert_eq!(emu.moto_proxy.calls("DescribeKey"), 1);
}
