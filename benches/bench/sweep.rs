//! Sweeps: the achieved rate against the ceiling in moto, and the race with `custodian run`
//! under AWS's limits.

use crate::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{Emulators, Proxy, REGION};

pub(crate) async fn create_in_moto(kinesis: &aws_sdk_kinesis::Client, names: &[String]) {
    for chunk in names.chunks(32) {
        futures_util::future::join_all(chunk.iter().map(|name| {
            kinesis
                .create_stream()
                .stream_name(name)
                .shard_count(1)
                .send()
        }))
        .await
        .into_iter()
        .for_each(|r| {
            r.expect("CreateStream in moto");
        });
    }
}

pub(crate) async fn stop_in_moto(kinesis: &aws_sdk_kinesis::Client, names: &[String], key: &str) {
    for chunk in names.chunks(32) {
        futures_util::future::join_all(chunk.iter().map(|name| {
            kinesis
                .stop_stream_encryption()
                .stream_name(name)
                .encryption_type(aws_sdk_kinesis::types::EncryptionType::Kms)
                .key_id(key)
                .send()
        }))
        .await;
    }
}

/// Runs `enforcer sweep` with `vars` under `measure`; returns its measurement, the calls it made
/// at `proxy` and how many of `names` ended on the key.
pub(crate) async fn our_sweep(
    vars: &[(String, String)],
    proxy: &Proxy,
    kinesis: &aws_sdk_kinesis::Client,
    names: &[String],
    key: &str,
) -> (Value, BTreeMap<&'static str, usize>, usize) {
    proxy.reset_counts();
    let ours = measured(
        Path::new(enforcer_bin()),
        &["sweep", "--output", "json"],
        vars,
    );
    let calls = snapshot(&[proxy]);
    (ours, calls, count_on_key(kinesis, names, key).await)
}

pub(crate) fn sweep_vars(
    emu: &Emulators,
    key: &str,
    kinesis_url: &str,
    share: &str,
) -> Vec<(String, String)> {
    let mut vars = emu.env(key);
    for (k, v) in vars.iter_mut() {
        if k == "AWS_ENDPOINT_URL_KINESIS" {
            *v = kinesis_url.to_owned();
        }
    }
    vars.push(("RATE_SHARE".into(), share.into()));
    vars.push(("LOG_LEVEL".into(), "warn".into()));
    vars.push(("HOME".into(), "/nonexistent".into()));
    vars
}

pub(crate) async fn sweep(results: &mut Results, share: &str) {
    println!("== sweep");
    let emu = Emulators::start(Duration::ZERO, Duration::ZERO).await;
    let key = emu.create_key(&format!("alias/{KEY_ALIAS}")).await;

    // 1. The rate against the configured ceiling, in moto (which has no limits of its own).
    let moto_kinesis = aws_sdk_kinesis::Client::new(&support::sdk_config(&emu.moto_url));
    let proxy = &emu.moto_proxy;
    let share_value: f64 = share.parse().expect("share");
    let ceiling_start = 5.0 * share_value;
    let ceiling_describe = 20.0 * share_value;
    let vars = sweep_vars(&emu, &key, &proxy.url, share);
    let mut json_out = Vec::new();
    let mut created = 0;
    let sizes: Vec<usize> = std::env::var("BENCH_SWEEP_STREAMS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    for n in sizes {
        let names: Vec<String> = (created..n).map(|i| format!("sweep-{i:05}")).collect();
        create_in_moto(&moto_kinesis, &names).await;
        created = created.max(n);
        let all: Vec<String> = (0..n).map(|i| format!("sweep-{i:05}")).collect();
        let (ours, calls, encrypted) = our_sweep(&vars, proxy, &moto_kinesis, &all, &key).await;
        let seconds = ours["seconds"].as_f64().unwrap_or(f64::NAN);
        let start_rate = calls["StartStreamEncryption"] as f64 / seconds;
        let describe_rate = calls["DescribeStreamSummary"] as f64 / seconds;
        let peak_start = proxy.peak_per_second(&["StartStreamEncryption"]);
        let fraction = start_rate / ceiling_start;
        results.row(
            "sweep",
            format!("{n} unencrypted streams in moto, RATE_SHARE={share}"),
            format!(
                "{seconds:.1} s, {:.0} MB peak RSS, {encrypted} encrypted",
                ours["peak_rss_kb"].as_f64().unwrap_or(f64::NAN) / 1024.0
            ),
            "",
            "",
            None,
        );
        results.row(
            "sweep",
            format!("{n}: achieved rate vs ceiling (Start {ceiling_start:.0}/s), whole run"),
            format!(
                "Start {start_rate:.1}/s = {:.0}% (peak {peak_start} in 1 s); Describe {describe_rate:.1}/s of {ceiling_describe:.0}/s",
                fraction * 100.0
            ),
            "",
            ">= 90%",
            Some(fraction >= 0.9),
        );
        json_out.push(
            json!({"emulator": "moto", "streams": n, "rate_share": share,
                             "enforcer": ours, "encrypted": encrypted, "calls": calls,
                             "start_rate": start_rate, "describe_rate": describe_rate,
                             "ceiling_start": ceiling_start}),
        );
        stop_in_moto(&moto_kinesis, &all, &key).await;
    }

    results.record("sweep", Value::Array(json_out));
}

/// The documented per-account limits both tools meet in the race, as (operations, per second,
/// code): Kinesis's control plane (DescribeStream is what Cloud Custodian reads, 10/s) and KMS.
pub(crate) const RACE_LIMITS: [(&[&str], usize, &str); 7] = [
    (&["DescribeStreamSummary"], 20, "LimitExceededException"),
    (&["DescribeStream"], 10, "LimitExceededException"),
    (&["ListStreams"], 5, "LimitExceededException"),
    (&["ListTagsForStream"], 5, "LimitExceededException"),
    (&["StartStreamEncryption"], 5, "LimitExceededException"),
    (&["DescribeKey"], 50, "ThrottlingException"),
    (
        &["ListDeliveryStreams", "DescribeDeliveryStream"],
        5,
        "LimitExceededException",
    ),
];

/// Throttled answers per operation since `before`.
pub(crate) fn throttled_since(
    proxies: &[&Proxy],
    before: &BTreeMap<String, usize>,
) -> BTreeMap<String, usize> {
    let mut now: BTreeMap<String, usize> = BTreeMap::new();
    for proxy in proxies {
        for (op, n) in proxy.injected() {
            *now.entry(op).or_default() += n;
        }
    }
    now.into_iter()
        .map(|(op, n)| {
            let was = before.get(&op).copied().unwrap_or(0);
            (op, n - was)
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The sweep race: `custodian run` and `enforcer sweep` on the same unencrypted streams in
/// kinesis-mock, both held by the proxies to AWS's per-account limits ([`RACE_LIMITS`]), so that
/// neither wins by making fewer calls to an emulator with no limits. The enforcer runs at its
/// default share (90% of the limits); Cloud Custodian does not pace itself.
pub(crate) async fn race(results: &mut Results) {
    println!("== race");
    let n: usize = std::env::var("BENCH_RACE_STREAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let emu = Emulators::start(Duration::ZERO, Duration::ZERO).await;
    let key = emu.create_key(&format!("alias/{KEY_ALIAS}")).await;
    // moto's ListStreams never returns a NextToken, so c7n's paginator would see only the first
    // page; the proxy pages by token as AWS does.
    let names = seed_streams(&emu, "race", n, None).await;
    emu.kinesis_proxy.emulate_list_streams_tokens();
    for (ops, per_second, code) in RACE_LIMITS {
        emu.kinesis_proxy.set_limit(ops, per_second, code);
        emu.moto_proxy.set_limit(ops, per_second, code);
    }
    let proxies = [&emu.kinesis_proxy, &emu.moto_proxy];
    let mut peer_vars = offline_vars();
    peer_vars.push(("AWS_ENDPOINT_URL".into(), emu.moto_proxy.url.clone()));
    peer_vars.push((
        "AWS_ENDPOINT_URL_KINESIS".into(),
        emu.kinesis_proxy.url.clone(),
    ));
    let policy_dir = tempfile::tempdir().expect("temp dir");
    let policy_file = policy_dir.path().join("policy.yml");
    let wrote = Command::new(c7n_python())
        .arg(c7n_peer())
        .args(["policy", KEY_ALIAS])
        .arg(&policy_file)
        .output()
        .expect("write the policy");
    assert!(wrote.status.success(), "c7n policy: {wrote:?}");
    let out = policy_dir.path().join("out");
    for proxy in proxies {
        proxy.reset_counts();
    }
    let before = throttled_since(&proxies, &BTreeMap::new());
    let mut peer = measured(
        &support::tools_dir().join("bench/bin/custodian"),
        &[
            "run",
            "--cache-period",
            "0",
            "--region",
            REGION,
            "-s",
            out.to_str().unwrap_or("out"),
            policy_file.to_str().unwrap_or("policy.yml"),
        ],
        &peer_vars,
    );
    let peer_calls = snapshot(&proxies);
    let peer_total = emu.kinesis_proxy.total_calls() + emu.moto_proxy.total_calls();
    let peer_throttled = throttled_since(&proxies, &before);
    let peer_encrypted = count_on_key(&emu.kinesis, &names, &key).await;
    peer["encrypted"] = json!(peer_encrypted);
    // Back to unencrypted for the enforcer (the seeding client bypasses the proxies).
    for chunk in names.chunks(5) {
        for name in chunk {
            emu.kinesis
                .stop_stream_encryption()
                .stream_name(name)
                .encryption_type(aws_sdk_kinesis::types::EncryptionType::Kms)
                .key_id(&key)
                .send()
                .await
                .ok();
        }
        for name in chunk {
            support::wait_active_on(&emu.kinesis, name).await;
        }
    }
    let vars = sweep_vars(&emu, &key, &emu.kinesis_proxy.url, "0.9");
    for proxy in proxies {
        proxy.reset_counts();
    }
    let before = throttled_since(&proxies, &BTreeMap::new());
    let (ours, calls, encrypted) =
        our_sweep(&vars, &emu.kinesis_proxy, &emu.kinesis, &names, &key).await;
    let our_total = emu.kinesis_proxy.total_calls() + emu.moto_proxy.total_calls();
    let our_throttled = throttled_since(&proxies, &before);
    let seconds = ours["seconds"].as_f64().unwrap_or(f64::NAN);
    let peer_seconds = peer["seconds"].as_f64().unwrap_or(f64::NAN);
    let mb = |v: &Value| v["peak_rss_kb"].as_f64().unwrap_or(f64::NAN) / 1024.0;
    let sum = |m: &BTreeMap<String, usize>| m.values().sum::<usize>();
    results.row(
        "race",
        format!("{n} unencrypted streams in kinesis-mock, AWS's limits enforced for both: wall time, peak RSS"),
        format!("{seconds:.1} s, {:.0} MB", mb(&ours)),
        format!("{peer_seconds:.1} s, {:.0} MB", mb(&peer)),
        "",
        None,
    );
    results.row(
        "race",
        "streams encrypted",
        format!("{encrypted}/{n}"),
        format!("{peer_encrypted}/{n}"),
        "all",
        Some(encrypted == n),
    );
    results.row(
        "race",
        "calls made (at the proxy), per stream; of them throttled",
        format!(
            "{our_total} ({:.1} per stream); {} throttled {our_throttled:?}",
            our_total as f64 / n as f64,
            sum(&our_throttled)
        ),
        format!(
            "{peer_total} ({:.1} per stream); {} throttled {peer_throttled:?}",
            peer_total as f64 / n as f64,
            sum(&peer_throttled)
        ),
        "no throttling",
        Some(sum(&our_throttled) == 0),
    );
    results.record(
        "race",
        json!({"emulator": "kinesis-mock", "streams": n, "rate_share": "0.9",
               "limits": RACE_LIMITS.iter().map(|(ops, per_second, code)| json!({"operations": ops, "per_second": per_second, "code": code})).collect::<Vec<_>>(),
               "enforcer": ours, "encrypted": encrypted, "calls": calls, "throttled": our_throttled,
               "c7n": peer, "c7n_calls": peer_calls, "c7n_throttled": peer_throttled}),
    );
}
