//! Memory: one container over 1,000 invocations, RSS sampled, beside Cloud Custodian's
//! handler doing the same events.

use crate::*;
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{Emulators, RuntimeApi};

pub(crate) async fn memory(results: &mut Results) {
    println!("== memory");
    let emu = Emulators::start(Duration::ZERO, Duration::ZERO).await;
    let key = emu.create_key(&format!("alias/{KEY_ALIAS}")).await;
    let events = 1000;
    let mut prepared = Vec::new();
    for who in ["ours", "c7n"] {
        let compliant = seed_streams(&emu, &format!("{who}-ok"), 100, Some(&key)).await;
        let fresh = seed_streams(&emu, &format!("{who}-new"), 100, None).await;
        // Every 10th event names a stream not yet on the key; the others, compliant ones.
        let list: Vec<Value> = (0..events)
            .map(|i| {
                if i % 10 == 5 {
                    create_event(&fresh[i / 10])
                } else {
                    create_event(&compliant[i % 100])
                }
            })
            .collect();
        prepared.push(list);
    }
    let proxies = [&emu.kinesis_proxy, &emu.moto_proxy];

    // Ours: one container, 1,000 invocations.
    let api = RuntimeApi::start().await;
    let vars = emu.env(&format!("alias/{KEY_ALIAS}"));
    let before = snapshot(&proxies);
    let process = start_container(&api, &vars);
    for (i, event) in prepared[0].iter().enumerate() {
        api.push(&format!("mem-{i}"), event.clone(), Duration::from_secs(60));
    }
    let started = Instant::now();
    let mut samples = Vec::new();
    for n in (100..=events).step_by(100) {
        api.results(n, Duration::from_secs(1200)).await;
        samples.push((n, rss(process.id()).0));
    }
    let done = api.results(events, Duration::from_secs(1200)).await;
    let at_100 = samples[0];
    let (at_1000, peak) = rss(process.id());
    println!("  RSS (kB) after n invocations: {samples:?}");
    let seconds = started.elapsed().as_secs_f64();
    let calls = diff(&before, &snapshot(&proxies));
    let outcomes = count_outcomes(&done);
    drop(process);
    let growth = at_1000 as i64 - at_100.1 as i64;
    // After the allocator's warm-up, a leak shows as steady growth: compare the second half.
    let at_500 = samples
        .iter()
        .find(|(n, _)| *n == events / 2)
        .map_or(0, |s| s.1);
    let late_growth = at_1000 as i64 - at_500 as i64;

    // c7n: the same events on its own streams, in one Python process (a warm container).
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), Value::Array(prepared[1].clone()).to_string()).expect("write");
    let before_peer = snapshot(&proxies);
    let output = Command::new(c7n_python())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(offline_vars())
        .env("AWS_ENDPOINT_URL", emu.moto_proxy.url.as_str())
        .env("AWS_ENDPOINT_URL_KINESIS", emu.kinesis_proxy.url.as_str())
        .arg(c7n_peer())
        .args(["invoke", KEY_ALIAS])
        .arg(file.path())
        .stderr(Stdio::null())
        .output()
        .expect("run c7n");
    let peer: Value =
        serde_json::from_slice(output.stdout.trim_ascii()).unwrap_or_else(|_| json!({}));
    let peer_calls = diff(&before_peer, &snapshot(&proxies));
    let peer_peak = peer["peak_rss_kb"].as_u64().unwrap_or(0);
    let peer_growth = peer["rss_kb"][events.to_string()].as_i64().unwrap_or(0)
        - peer["rss_kb"]["100"].as_i64().unwrap_or(0);
    let mb = |kb: u64| kb as f64 / 1024.0;
    results.row(
        "memory",
        format!("peak RSS over {events} invocations"),
        format!("{:.1} MB", mb(peak)),
        format!("{:.1} MB", mb(peer_peak)),
        "< 32 MB",
        Some(mb(peak) < 32.0),
    );
    results.row(
        "memory",
        "RSS growth, 100th to 1,000th invocation (500th to 1,000th)",
        format!("{growth:+} kB ({late_growth:+} kB)"),
        format!("{peer_growth:+} kB"),
        "no growth after warm-up",
        Some(late_growth <= 32),
    );
    let ours_total: usize = calls.values().sum();
    let peer_total: usize = peer_calls.values().sum();
    results.row(
        "memory",
        "same 1,000 events: wall time, AWS calls",
        format!("{seconds:.1} s, {ours_total} calls"),
        format!(
            "{:.1} s, {peer_total} calls, {} errors",
            peer["seconds"].as_f64().unwrap_or(f64::NAN),
            peer["errors"]
        ),
        "",
        None,
    );
    results.record(
        "memory",
        json!({
            "events": events,
            "enforcer": {"rss_kb_at_100": at_100.1, "rss_kb_at_1000": at_1000, "peak_rss_kb": peak,
                         "rss_kb_every_100": samples, "seconds": seconds, "calls": calls, "outcomes": outcomes},
            "c7n": {"result": peer, "calls": peer_calls},
        }),
    );
}
