//! The fuzz targets' properties (tests/it/support/fuzz_properties.rs) on their seeds and on every saved
//! regression (fuzz/regressions/, whose README says what each pins), so the long runs of
//! `make fuzz` leave a fast test behind; each regression also keeps the verdict its file name
//! gives (accept, ignore or refuse).

use crate::support::fuzz_properties as fuzzing;
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
    fuzzing::retry_policy(
        stream_encryption_enforcer::policy::retry::DEFAULT_POLICY_JSON.as_bytes(),
    );
}

#[test]
fn each_regression_keeps_the_verdict_its_name_gives() {
    use stream_encryption_enforcer::model::event::{Parsed, parse_bytes};
    use stream_encryption_enforcer::policy::retry::RetryPolicy;
    let events = files("fuzz/regressions/event");
    let policies = files("fuzz/regressions/retry_policy");
    assert!(
        events.len() >= 6 && policies.len() >= 6,
        "{} event and {} policy regressions",
        events.len(),
        policies.len()
    );
    let verdict = |path: &str| {
        Path::new(path)
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split('-').next())
            .unwrap_or("")
            .to_owned()
    };
    for (name, bytes) in &events {
        let got = match parse_bytes(bytes) {
            Ok(Parsed::Trigger(_)) => "accept",
            Ok(Parsed::Ignored { .. }) => "ignore",
            Err(_) => "refuse",
        };
        assert_eq!(got, verdict(name), "{name}");
    }
    for (name, bytes) in &policies {
        let text = String::from_utf8_lossy(bytes);
        let got = match RetryPolicy::parse(&text) {
            Ok(_) => "accept",
            Err(_) => "refuse",
        };
        assert_eq!(got, verdict(name), "{name}");
    }
}
