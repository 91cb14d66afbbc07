//! The fuzz targets' properties (tests/fuzz_properties/) on their seeds and on every regression saved
//! from a fuzz run (fuzz/regressions/), so the long runs of `make fuzz` leave a fast test behind.

mod fuzz_properties;

use fuzz_properties as fuzzing;
use std::path::Path;

fn files(dir: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("entry").path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).expect("read")))
        .collect();
    out.sort();
    out
}

#[test]
fn the_event_seeds_and_regressions_hold_the_properties() {
    let seeds = files("events");
    assert!(seeds.len() >= 10, "{}", seeds.len());
    for (name, bytes) in seeds.iter().chain(&files("fuzz/regressions/event")) {
        println!("{name}");
        fuzzing::event(bytes);
    }
}

#[test]
fn the_retry_policy_seeds_and_regressions_hold_the_properties() {
    let seeds = files("fuzz/seeds/retry_policy");
    assert!(seeds.len() >= 6, "{}", seeds.len());
    for (name, bytes) in seeds.iter().chain(&files("fuzz/regressions/retry_policy")) {
        println!("{name}");
        fuzzing::retry_policy(bytes);
    }
    // The default policy itself.
    fuzzing::retry_policy(stream_encryption_enforcer::retry::DEFAULT_POLICY_JSON.as_bytes());
}
