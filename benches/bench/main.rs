//! The benchmark suite behind `scripts/bench` (docs/performance.md). Not part of the test command:
//! it measures, it does not assert. Every figure is a median over repeated runs with min and max
//! beside it, and every comparison with the peer (Cloud Custodian, `benches/peer/c7n_peer.py`) is a
//! ratio taken in the same run.
//!
//! `cargo bench --bench bench -- --bench [SECTION ...]` runs the sections named (default: all
//! but `profile`): `cold-start`, `memory`, `size`, `calls`, `time-to-compliance`, `burst`,
//! `sweep`, `organisation` (with the organisation-wide burst; `org-burst` runs the burst alone),
//! `race`, `profile`; each is a module of this folder. The results go
//! to `target/bench/results.md` and `target/bench/results.json`. `cargo test --all-targets`
//! builds this file but runs nothing (no `--bench` argument).

#[path = "../../tests/it/support/mod.rs"]
#[allow(dead_code)] // the benchmark uses a part of the tests' harness
mod support;

mod burst;
mod calls;
mod cold_start;
mod common;
mod compliance;
mod memory;
mod org_burst;
mod organisation;
mod report;
mod size;
mod sweep;

pub(crate) use burst::*;
pub(crate) use calls::*;
pub(crate) use cold_start::*;
pub(crate) use common::*;
pub(crate) use compliance::*;
pub(crate) use memory::*;
pub(crate) use org_burst::*;
pub(crate) use organisation::*;
pub(crate) use report::*;
pub(crate) use size::*;
pub(crate) use sweep::*;

use serde_json::Value;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets` builds and runs bench targets without `--bench`.
        println!(
            "benches/bench: run with scripts/bench (cargo bench --features cli --bench bench -- --bench)"
        );
        return;
    }
    let all = [
        "cold-start",
        "memory",
        "size",
        "calls",
        "time-to-compliance",
        "burst",
        "sweep",
        "organisation",
        "org-burst",
        "race",
        "profile",
    ];
    let wanted: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| all.contains(a))
        .collect();
    // `profile` makes six cold release builds per architecture: only when named.
    let run = |section: &str| {
        (wanted.is_empty() && section != "profile" && section != "org-burst")
            || wanted.contains(&section)
    };
    let share = std::env::var("BENCH_SWEEP_RATE_SHARE").unwrap_or_else(|_| "10".into());
    let machine = machine();
    println!("machine: {machine}");
    let mut results = Results::default();
    if run("cold-start") {
        cold_start(&mut results);
    }
    if run("memory") {
        memory(&mut results).await;
    }
    if run("size") {
        size(&mut results);
    }
    if run("calls") {
        calls(&mut results).await;
    }
    if run("time-to-compliance") {
        time_to_compliance(&mut results).await;
    }
    if run("burst") {
        burst(&mut results).await;
    }
    if run("sweep") {
        sweep(&mut results, &share).await;
    }
    if run("organisation") {
        organisation(&mut results).await;
    }
    if run("organisation") || wanted.contains(&"org-burst") {
        org_burst(&mut results).await;
    }
    if run("race") {
        race(&mut results).await;
    }
    if run("profile") {
        profile(&mut results);
    }
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    let markdown = results.markdown(&machine);
    std::fs::write(dir.join("results.md"), &markdown).expect("results.md");
    let mut json = results.json;
    json.insert("machine".into(), machine);
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&Value::Object(json)).expect("json"),
    )
    .expect("results.json");
    println!("\n{markdown}");
    println!("written: target/bench/results.md, target/bench/results.json");
}
