//! The enforcer beside the tools that create the same streams: models of Terraform's and
//! CloudFormation's waiters (tests/it/support/iac.rs) drive kinesis-mock through a proxy that holds
//! every caller to AWS's rule (no write on a stream that is not ACTIVE), and the real `enforcer`
//! binary acts on the CloudTrail events of the calls the proxy saw, one second after each.
//! Timings are the issue's: CREATING 15 s, UPDATING 5 s.

use crate::support::iac::{Declared, EventFeed, Kind, Tool};
use crate::support::*;
use serde_json::json;
use std::time::Duration;

const ALIAS: &str = "alias/org-streams";

async fn emulators() -> Emulators {
    let emu = Emulators::start(Duration::from_secs(15), Duration::from_secs(5)).await;
    emu.kinesis_proxy.hold_writes_to_active_streams();
    emu
}

fn declared(name: &str, key: Option<&str>) -> Declared {
    Declared {
        name: name.into(),
        key: key.map(str::to_owned),
        retention_hours: 48,
    }
}

/// The stream's key as KMS resolves it, once the stream is ACTIVE with one (at most `limit`).
async fn key_once_active(emu: &Emulators, name: &str, limit: Duration) -> Option<String> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        let s = emu.stream(name).await;
        if s.stream_status == aws_sdk_kinesis::types::StreamStatus::Active
            && let Some(key) = s.key_id
        {
            return Some(emu.key_arn(&key).await);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

/// The feed's report of the event `label` (`CreateStream orders`), once it has finished.
async fn report(feed: &EventFeed, label: &str, limit: Duration) -> serde_json::Value {
    let start = std::time::Instant::now();
    loop {
        if let Some((_, report, code)) = feed.invocations().into_iter().find(|(l, ..)| l == label) {
            assert!(matches!(code, Some(0)), "{label}: exit {code:?}: {report}");
            return report;
        }
        assert!(
            start.elapsed() < limit,
            "no report for {label}: {:?}",
            feed.invocations()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Start calls the enforcer made on `name` (by name or ARN): all the proxy saw, less the
/// tool's own.
fn enforcer_starts(emu: &Emulators, name: &str, by_tool: usize) -> usize {
    let needle = format!("{name}\"");
    let seen = emu
        .kinesis_proxy
        .calls_for("StartStreamEncryption", &needle);
    seen.checked_sub(by_tool)
        .unwrap_or_else(|| panic!("{name}: {seen} Start calls, fewer than the tool's {by_tool}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terraform_applies_succeed_and_its_drift_revert_is_named() {
    let emu = emulators().await;
    let key_arn = emu.create_key(ALIAS).await;
    let feed = EventFeed::start(emu.kinesis_proxy.clone(), emu.env(ALIAS));
    let terraform = Tool::new(Kind::Terraform, &emu.kinesis_proxy.url);
    let plain = declared("tf-plain", None);
    let mandated = declared("tf-mandated", Some(ALIAS));

    // One apply of two resources, created in parallel as Terraform does.
    let (a, b) = tokio::join!(terraform.create(&plain), terraform.create(&mandated));
    a.expect("terraform apply of the stream without encryption");
    b.expect("terraform apply of the stream that declares the mandated key");

    // The declared key costs the enforcer no write; the plain stream is encrypted once
    // Terraform has finished.
    let declared_report = report(&feed, "CreateStream tf-mandated", Duration::from_secs(120)).await;
    assert_eq!(
        declared_report["outcome"],
        json!("already_compliant"),
        "{declared_report}"
    );
    assert_eq!(declared_report["attempts"], json!(0));
    assert_eq!(declared_report["creator"], json!("Terraform"));
    assert_eq!(enforcer_starts(&emu, "tf-mandated", 1), 0);
    let plain_report = report(&feed, "CreateStream tf-plain", Duration::from_secs(120)).await;
    assert_eq!(
        plain_report["outcome"],
        json!("remediated"),
        "{plain_report}"
    );
    assert_eq!(plain_report["attempts"], json!(1), "{plain_report}");
    assert_eq!(plain_report["settle_seconds"], json!(30));
    let reason = plain_report["reason"].as_str().unwrap();
    assert!(
        reason.contains("Terraform") && reason.contains("encryption_type = \"KMS\""),
        "{reason}"
    );
    assert_eq!(
        key_once_active(&emu, "tf-plain", Duration::from_secs(30)).await,
        Some(key_arn.clone())
    );

    // The next apply reverts the remediation (encryption_type defaults to NONE) and succeeds;
    // the enforcer re-applies once Terraform is done and says what to declare.
    let reverted = terraform
        .apply_again(&plain)
        .await
        .expect("the next terraform apply");
    assert_eq!(reverted, Some("StopStreamEncryption"));
    let again = report(
        &feed,
        "StopStreamEncryption tf-plain",
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(again["outcome"], json!("remediated"), "{again}");
    assert_eq!(again["creator"], json!("Terraform"));
    let reason = again["reason"].as_str().unwrap();
    assert!(
        reason.contains("Terraform turned encryption off") && reason.contains("ignore_changes"),
        "{reason}"
    );
    assert_eq!(
        enforcer_starts(&emu, "tf-plain", 0),
        2,
        "one Start per remediation"
    );
    assert_eq!(
        key_once_active(&emu, "tf-plain", Duration::from_secs(30)).await,
        Some(key_arn)
    );
    // The apply that declares the key changes nothing.
    assert_eq!(
        terraform.apply_again(&mandated).await.expect("no-op apply"),
        None
    );
    assert!(
        emu.kinesis_proxy
            .injected()
            .keys()
            .all(|k| !k.contains("not ACTIVE") || k.starts_with("StartStreamEncryption")),
        "no tool write was refused: {:?}",
        emu.kinesis_proxy.injected()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_settle_period_the_terraform_apply_fails_as_measured() {
    // The control: the same apply with IAC_SETTLE_SECONDS=0 breaks, as it did before.
    let emu = emulators().await;
    emu.create_key(ALIAS).await;
    let mut env = emu.env(ALIAS);
    env.push(("IAC_SETTLE_SECONDS".into(), "0".into()));
    let _feed = EventFeed::start(emu.kinesis_proxy.clone(), env);
    let terraform = Tool::new(Kind::Terraform, &emu.kinesis_proxy.url);
    let error = terraform
        .create(&declared("tf-raced", None))
        .await
        .expect_err("the enforcer writes while Terraform waits");
    assert!(
        error.contains("unexpected state 'UPDATING', wanted target 'ACTIVE'")
            || error.contains("ResourceInUseException"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cloudformation_stacks_succeed_and_a_declared_key_costs_no_write() {
    let emu = emulators().await;
    let key_arn = emu.create_key(ALIAS).await;
    let feed = EventFeed::start(emu.kinesis_proxy.clone(), emu.env(ALIAS));
    let cloudformation = Tool::new(Kind::CloudFormation, &emu.kinesis_proxy.url);
    let plain = declared("cfn-plain", None);
    let mandated = declared("cfn-mandated", Some(ALIAS));
    let (a, b) = tokio::join!(
        cloudformation.create(&plain),
        cloudformation.create(&mandated)
    );
    a.expect("stack with a stream without StreamEncryption");
    b.expect("stack with a stream that declares the mandated key");

    let declared_report =
        report(&feed, "CreateStream cfn-mandated", Duration::from_secs(120)).await;
    assert_eq!(
        declared_report["outcome"],
        json!("already_compliant"),
        "{declared_report}"
    );
    assert_eq!(declared_report["creator"], json!("CloudFormation"));
    assert_eq!(enforcer_starts(&emu, "cfn-mandated", 1), 0);
    let plain_report = report(&feed, "CreateStream cfn-plain", Duration::from_secs(120)).await;
    assert_eq!(
        plain_report["outcome"],
        json!("remediated"),
        "{plain_report}"
    );
    assert!(
        plain_report["reason"]
            .as_str()
            .unwrap()
            .contains("StreamEncryption"),
        "{plain_report}"
    );
    assert_eq!(enforcer_starts(&emu, "cfn-plain", 0), 1);
    assert_eq!(
        key_once_active(&emu, "cfn-plain", Duration::from_secs(30)).await,
        Some(key_arn.clone())
    );

    // The next stack update of a template without StreamEncryption turns it off; the update
    // succeeds, and the enforcer re-applies once CloudFormation is done.
    let reverted = cloudformation
        .apply_again(&plain)
        .await
        .expect("the stack update");
    assert_eq!(reverted, Some("StopStreamEncryption"));
    let again = report(
        &feed,
        "StopStreamEncryption cfn-plain",
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(again["outcome"], json!("remediated"), "{again}");
    let reason = again["reason"].as_str().unwrap();
    assert!(
        reason.contains("CloudFormation turned encryption off") && reason.contains("CDK"),
        "{reason}"
    );
    assert_eq!(enforcer_starts(&emu, "cfn-plain", 0), 2);
    assert_eq!(
        key_once_active(&emu, "cfn-plain", Duration::from_secs(30)).await,
        Some(key_arn)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_copies_of_one_event_at_the_same_moment_make_one_write_and_both_succeed() {
    let emu = Emulators::start(Duration::from_secs(3), Duration::from_secs(2)).await;
    emu.kinesis_proxy.hold_writes_to_active_streams();
    let key_arn = emu.create_key(ALIAS).await;
    let env = emu.env(ALIAS);
    for name in ["twin-creating", "twin-active"] {
        emu.create_stream(name).await;
    }
    emu.wait_active("twin-active").await;
    for name in ["twin-creating", "twin-active"] {
        let event = event("kinesis-create-stream", name);
        let (first, second) = tokio::join!(invoke(&env, &event, &[]), invoke(&env, &event, &[]));
        let mut outcomes = [
            first.report["outcome"].clone(),
            second.report["outcome"].clone(),
        ];
        outcomes.sort_by_key(|o| o.to_string());
        assert_eq!(
            (first.code, second.code),
            (Some(0), Some(0)),
            "{first:?} {second:?}"
        );
        assert_eq!(
            outcomes,
            [json!("already_compliant"), json!("remediated")],
            "{name}: {first:?} {second:?}"
        );
        let needle = format!("{name}\"");
        let took = emu
            .kinesis_proxy
            .answered("StartStreamEncryption", &needle)
            .into_iter()
            .filter(|status| *status == 200)
            .count();
        assert_eq!(took, 1, "{name}: exactly one write took");
        assert!(
            emu.kinesis_proxy
                .calls_for("StartStreamEncryption", &needle)
                <= 2,
            "at most one Start per copy"
        );
        assert_eq!(
            key_once_active(&emu, name, Duration::from_secs(20)).await,
            Some(key_arn.clone())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_whose_encryption_keeps_being_reverted_is_flapping_past_the_threshold() {
    let emu = Emulators::start(Duration::from_millis(500), Duration::from_millis(500)).await;
    emu.create_key(ALIAS).await;
    create_ledger_table(&emu.moto_url, "enforcer-ledger").await;
    let mut env = emu.env(ALIAS);
    env.extend(
        [
            ("AWS_ENDPOINT_URL_DYNAMODB", emu.moto_proxy.url.as_str()),
            ("LEDGER_TABLE", "enforcer-ledger"),
            ("FLAP_THRESHOLD", "3"),
            ("IAC_SETTLE_SECONDS", "1"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    emu.create_stream("flapper").await;
    emu.wait_active("flapper").await;

    // Terraform reverts the key after every remediation (encryption_type = "NONE"); each
    // `enforcer invoke` is a new process, so the count lives only in the ledger.
    let terraform = Tool::new(Kind::Terraform, &emu.kinesis_proxy.url);
    let mut stop = event("kinesis-stop-stream-encryption", "flapper");
    stop["detail"]["userAgent"] = crate::support::iac::TERRAFORM_USER_AGENT.into();
    let mut outcomes = Vec::new();
    for round in 0..4 {
        if round > 0 {
            terraform
                .apply_again(&declared("flapper", None))
                .await
                .expect("terraform reverts the key");
        }
        let inv = invoke(&env, &stop, &[]).await;
        outcomes.push(inv.report["outcome"].as_str().unwrap_or("none").to_owned());
        if round == 3 {
            assert_eq!(
                inv.code,
                Some(1),
                "flapping is returned as a failure: {inv:?}"
            );
            assert_eq!(inv.report["error_code"], json!("Enforcer.Flapping"));
            let reason = inv.report["reason"].as_str().unwrap();
            assert!(
                reason.contains("applied 3 times")
                    && reason.contains(
                        "Terraform (arn:aws:iam::123456789012:role/DataPlatformDeployer) x3"
                    ),
                "{reason}"
            );
        }
    }
    assert_eq!(
        outcomes,
        ["remediated", "remediated", "remediated", "flapping"]
    );
    assert_eq!(emu.kinesis_proxy.calls("StartStreamEncryption"), 3);
    assert_eq!(emu.moto_proxy.calls("PutItem"), 3);
    // The flapping stream is left as the reverting tool set it.
    assert_eq!(emu.stream("flapper").await.key_id, None);
}

/// The real thing, where it is installed: `terraform` on the PATH and the hashicorp/aws provider
/// in a local mirror named by `TERRAFORM_PLUGIN_DIR` (the registry is not reachable from the test
/// machines). Elsewhere the test says so and checks nothing; the models above are what the test
/// command relies on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_terraform_where_installed() {
    let Some(plugins) = std::env::var_os("TERRAFORM_PLUGIN_DIR") else {
        eprintln!("real Terraform: not tried (set TERRAFORM_PLUGIN_DIR to a provider mirror)");
        return;
    };
    let emu = emulators().await;
    let key_arn = emu.create_key(ALIAS).await;
    let feed = EventFeed::start(emu.kinesis_proxy.clone(), emu.env(ALIAS));
    let dir = tempfile::tempdir().unwrap();
    let config = |declare: bool| {
        let encryption = if declare {
            format!("encryption_type = \"KMS\"\n  kms_key_id = \"{ALIAS}\"")
        } else {
            String::new()
        };
        format!(
            r#"provider "aws" {{
  region                      = "{REGION}"
  access_key                  = "{ACCOUNT}"
  secret_key                  = "test-secret"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  endpoints {{
    kinesis = "{url}"
  }}
}}
resource "aws_kinesis_stream" "plain" {{
  name             = "real-tf-plain"
  shard_count      = 1
  retention_period = 48
}}
resource "aws_kinesis_stream" "mandated" {{
  name        = "real-tf-mandated"
  shard_count = 1
  {encryption}
}}
"#,
            url = emu.kinesis_proxy.url
        )
    };
    std::fs::write(dir.path().join("main.tf"), config(true)).unwrap();
    let terraform = |args: &[&str]| {
        let output = std::process::Command::new("terraform")
            .args(args)
            .current_dir(dir.path())
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            .output()
            .expect("terraform runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let plugin_dir = format!("-plugin-dir={}", plugins.to_string_lossy());
    let (ok, log) =
        tokio::task::block_in_place(|| terraform(&["init", "-input=false", &plugin_dir]));
    assert!(ok, "terraform init: {log}");
    let (ok, log) =
        tokio::task::block_in_place(|| terraform(&["apply", "-auto-approve", "-input=false"]));
    assert!(ok, "terraform apply with the enforcer acting: {log}");
    let plain = report(
        &feed,
        "CreateStream real-tf-plain",
        Duration::from_secs(180),
    )
    .await;
    assert_eq!(plain["outcome"], json!("remediated"), "{plain}");
    assert_eq!(plain["creator"], json!("Terraform"), "{plain}");
    let mandated = report(
        &feed,
        "CreateStream real-tf-mandated",
        Duration::from_secs(180),
    )
    .await;
    assert_eq!(
        mandated["outcome"],
        json!("already_compliant"),
        "{mandated}"
    );
    assert_eq!(
        key_once_active(&emu, "real-tf-plain", Duration::from_secs(30)).await,
        Some(key_arn.clone())
    );
    // The next apply reverts the plain stream's key; it succeeds, and the enforcer re-applies.
    let (ok, log) =
        tokio::task::block_in_place(|| terraform(&["apply", "-auto-approve", "-input=false"]));
    assert!(ok, "the next terraform apply: {log}");
    let again = report(
        &feed,
        "StopStreamEncryption real-tf-plain",
        Duration::from_secs(180),
    )
    .await;
    assert_eq!(again["outcome"], json!("remediated"), "{again}");
    assert!(
        again["reason"]
            .as_str()
            .unwrap()
            .contains("encryption_type"),
        "{again}"
    );
    eprintln!(
        "real Terraform: both applies succeeded; the enforcer's reports: {plain} {mandated} {again}"
    );
}
