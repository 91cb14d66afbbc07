//! The arm64 `bootstrap`, the architecture the template deploys by default, through the Lambda
//! scenarios under the test Runtime API: on an x86_64 machine it runs under qemu-user
//! (`qemu-aarch64-static`), against kinesis-mock and moto as the host's own build does.
//!
//! `scripts/test` builds it first (`scripts/build-lambda arm64`) and names it in
//! `ARM64_BOOTSTRAP`, and `ARM64_RUNNER` the emulator (empty on an arm64 host). A `cargo test`
//! without them has no arm64 binary to run, and says so.

use crate::support::*;
use serde_json::json;
use std::process::Command;
use std::time::Duration;

/// The command that runs the arm64 bootstrap, or `None` when the test command did not build one.
fn arm64_bootstrap() -> Option<Command> {
    let path = std::env::var_os("ARM64_BOOTSTRAP")?;
    assert!(
        std::path::Path::new(&path).is_file(),
        "ARM64_BOOTSTRAP names {path:?}, which is not a file"
    );
    let runner = std::env::var("ARM64_RUNNER").unwrap_or_else(|_| "qemu-aarch64-static".into());
    Some(if runner.is_empty() {
        Command::new(path)
    } else {
        let mut command = Command::new(runner);
        command.arg(path);
        command
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_arm64_bootstrap_remediates_answers_compliant_with_one_call_and_fails_as_an_error() {
    let Some(bootstrap) = arm64_bootstrap() else {
        eprintln!(
            "no arm64 bootstrap: ARM64_BOOTSTRAP is not set (scripts/test builds and sets it)"
        );
        return;
    };
    let emu = Emulators::start(Duration::from_secs(1), Duration::from_millis(500)).await;
    let key = emu.create_key("alias/org-streams").await;
    for name in ["audit", "denied"] {
        emu.create_stream(name).await;
        emu.wait_active(name).await;
    }
    // On the mandated key in the configured form: compliant by form, with no KMS call.
    encrypt_stream_on(&emu.kinesis, "audit", "alias/org-streams").await;
    emu.wait_active("audit").await;
    emu.create_stream("orders").await;
    emu.kinesis_proxy.inject_for(
        "StartStreamEncryption",
        "stream/denied",
        1,
        Fault::error(
            "KMSAccessDeniedException",
            "The caller is not authorized to use the key",
        ),
    );
    let api = RuntimeApi::start().await;
    let minute = Duration::from_secs(120);
    api.push("creating", event("kinesis-create-stream", "orders"), minute);
    let lambda = start_bootstrap_as(bootstrap, &api, &emu.env("alias/org-streams"));
    let results = api.results(1, Duration::from_secs(180)).await;
    let creating = &results[0];
    assert_eq!(creating.kind, "response", "{creating:?}");
    assert_eq!(creating.body["outcome"], json!("remediated"));
    assert_eq!(creating.body["key"], json!(key));
    assert_eq!(
        emu.stream("orders").await.key_id(),
        Some("alias/org-streams")
    );

    // In the warm container (the key resolved): one call in all, the Describe.
    let proxies = [&emu.kinesis_proxy, &emu.moto_proxy];
    let before: Vec<usize> = proxies.iter().map(|p| p.trail(0).len()).collect();
    api.push("compliant", event("kinesis-create-stream", "audit"), minute);
    let results = api.results(2, Duration::from_secs(180)).await;
    assert_eq!(results[1].kind, "response", "{results:?}");
    assert_eq!(results[1].body["outcome"], json!("already_compliant"));
    assert_eq!(results[1].body["attempts"], json!(0));
    let calls: Vec<String> = proxies
        .iter()
        .zip(&before)
        .flat_map(|(p, from)| p.trail(*from))
        .map(|r| r.operation)
        .collect();
    assert_eq!(calls, ["DescribeStreamSummary"]);

    api.push("failure", event("kinesis-create-stream", "denied"), minute);
    let results = api.results(3, Duration::from_secs(180)).await;
    let logs = lambda.stop_and_read_stdout();
    let failure = &results[2];
    assert_eq!(failure.kind, "error", "{failure:?}");
    assert_eq!(failure.body["errorType"], json!("RemediationFailed"));
    assert!(
        failure.body["errorMessage"]
            .as_str()
            .unwrap()
            .contains("KMSAccessDeniedException"),
        "{failure:?}"
    );
    let outcomes = logs
        .lines()
        .filter(|l| l.contains(r#""message":"outcome""#))
        .count();
    assert_eq!(outcomes, 3, "{logs}");
}
