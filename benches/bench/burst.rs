//! Burst: 200 streams created at once, 4 containers, AWS's per-account limits enforced at
//! the proxies.

use crate::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{Emulators, RuntimeApi};

/// The documented per-account limits the proxy enforces in the burst, as (operations, per
/// second, code).
pub(crate) const LIMITS: [(&[&str], usize, &str); 4] = [
    (&["DescribeStreamSummary"], 20, "LimitExceededException"),
    (&["StartStreamEncryption"], 5, "LimitExceededException"),
    (&["ListTagsForStream"], 5, "LimitExceededException"),
    (&["DescribeKey"], 50, "ThrottlingException"),
];

pub(crate) async fn burst(results: &mut Results) {
    println!("== burst");
    let streams = 200;
    // The stack's default ReservedConcurrency.
    let containers = 4;
    let emu = Arc::new(Emulators::start(Duration::from_secs(1), Duration::from_secs(1)).await);
    let key = emu.create_key(&format!("alias/{KEY_ALIAS}")).await;
    for (ops, per_second, code) in LIMITS {
        emu.kinesis_proxy.set_limit(ops, per_second, code);
        emu.moto_proxy.set_limit(ops, per_second, code);
    }
    let mut vars = emu.env(&key);
    vars.push(("RESERVED_CONCURRENCY".into(), containers.to_string()));
    // Containers share one queue, as Lambda's do; each handles one event at a time.
    let api = RuntimeApi::start().await;
    let processes: Vec<_> = (0..containers)
        .map(|_| start_container(&api, &vars))
        .collect();
    let start = Instant::now();
    let names: Vec<String> = (0..streams).map(|i| format!("burst-{i}")).collect();
    for name in &names {
        // As fast as the account allows new streams (kinesis-mock: a few CREATING at once).
        support::create_stream_on(&emu.kinesis, name).await;
        api.push(name, create_event(name), Duration::from_secs(600));
    }
    let created = start.elapsed().as_secs_f64();
    let done = api.results(streams, Duration::from_secs(1800)).await;
    let wall = start.elapsed().as_secs_f64();
    drop(processes);
    let outcomes = count_outcomes(&done);
    let throttled_outcomes = done
        .iter()
        .filter(|r| {
            let text = r.body.to_string();
            text.contains("LimitExceeded") || text.contains("Throttling")
        })
        .count();
    let mut compliant = 0;
    for name in &names {
        let s = emu.stream(name).await;
        if s.key_id() == Some(key.as_str())
            && s.stream_status() == &aws_sdk_kinesis::types::StreamStatus::Active
        {
            compliant += 1;
        }
    }
    let mut peaks = BTreeMap::new();
    let mut within = true;
    for (ops, per_second, _) in LIMITS {
        let peak = emu.kinesis_proxy.peak_per_second(ops) + emu.moto_proxy.peak_per_second(ops);
        within &= peak <= per_second;
        peaks.insert(ops.join("+"), json!({"peak": peak, "limit": per_second}));
    }
    let mut injected = emu.kinesis_proxy.injected();
    injected.extend(emu.moto_proxy.injected());
    let throttled_calls: usize = injected.values().sum();
    results.row(
        "burst",
        format!("{streams} streams created at once, {containers} containers"),
        format!(
            "{compliant}/{streams} compliant in {wall:.0} s (creation took {created:.0} s); outcomes {outcomes:?}"
        ),
        "",
        "all compliant, no throttling in an outcome",
        Some(compliant == streams && throttled_outcomes == 0),
    );
    let peak_text: Vec<String> = peaks
        .iter()
        .map(|(op, v)| format!("{op} {}/{} per s", v["peak"], v["limit"]))
        .collect();
    results.row(
        "burst",
        "peak calls in any one second (limit enforced at the proxy)",
        format!(
            "{}; {throttled_calls} calls throttled",
            peak_text.join(", ")
        ),
        "",
        "within the per-account limits",
        Some(within),
    );
    results.record(
        "burst",
        json!({"streams": streams, "containers": containers, "wall_s": wall, "creation_s": created,
               "compliant": compliant, "outcomes": outcomes, "throttled_outcomes": throttled_outcomes,
               "peaks": peaks, "throttled_calls": injected}),
    );
}
