//! Cold start: exec to the first `/next` of the Runtime API, against Cloud Custodian's
//! import and init of its handler.

use crate::*;
use serde_json::json;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the bootstrap against a one-shot runtime API: the time from exec to its first request
/// for the next event.
pub(crate) fn first_next_request(vars: &[(String, String)]) -> Duration {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let mut command = Command::new(bootstrap());
    lambda_env(&mut command, vars, &address);
    command.stdout(Stdio::null()).stderr(Stdio::null());
    let start = Instant::now();
    let mut child = command.spawn().expect("run bootstrap");
    let (mut socket, _) = listener.accept().expect("the bootstrap connects");
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let elapsed = start.elapsed();
    let text = String::from_utf8_lossy(&head);
    assert!(
        text.starts_with("GET /2018-06-01/runtime/invocation/next"),
        "unexpected first request: {text}"
    );
    let _ = child.kill();
    let _ = child.wait();
    elapsed
}

/// Runs c7n's handler initialisation: the time from exec to its "ready" line.
pub(crate) fn c7n_init(vars: &[(String, String)]) -> Duration {
    let mut command = Command::new(c7n_python());
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .arg(c7n_peer())
        .args(["init", KEY_ALIAS])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let start = Instant::now();
    let mut child = command.spawn().expect("run python");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    let elapsed = start.elapsed();
    assert!(line.contains("\"ready\""), "c7n init: {line}");
    let _ = child.wait();
    elapsed
}

pub(crate) fn cold_start(results: &mut Results) {
    println!("== cold start");
    let vars = offline_vars();
    // The same start with the system trust store read from its one bundle file only (rustls-native-certs
    // otherwise also reads every file of the certificate directory: 292 on Debian).
    let bundle = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists());
    let mut bundle_vars = vars.clone();
    if let Some(file) = bundle {
        bundle_vars.push(("SSL_CERT_FILE".into(), file.into()));
    }
    // Warm the page cache for both, then alternate so drift hits both alike.
    first_next_request(&vars);
    c7n_init(&vars);
    let (mut ours, mut ours_bundle, mut peer) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..30 {
        ours.push(first_next_request(&vars).as_secs_f64() * 1000.0);
        peer.push(c7n_init(&vars).as_secs_f64() * 1000.0);
        ours_bundle.push(first_next_request(&bundle_vars).as_secs_f64() * 1000.0);
    }
    let (ours, ours_bundle, peer) = (stats(ours), stats(ours_bundle), stats(peer));
    let ratio = peer.median / ours.median;
    let ratio_bundle = peer.median / ours_bundle.median;
    results.row(
        "cold start",
        "exec to first `/next` (c7n: import + init of its handler)",
        ours.show("ms", 2),
        peer.show("ms", 0),
        "< 20 ms",
        Some(ours.median < 20.0),
    );
    results.row(
        "cold start",
        "ratio c7n / enforcer (medians)",
        format!("{ratio:.0}x faster"),
        "",
        ">= 50x",
        Some(ratio >= 50.0),
    );
    results.row(
        "cold start",
        format!(
            "same, trust store read from its bundle only (`SSL_CERT_FILE={}`)",
            bundle.unwrap_or("-")
        ),
        format!("{} = {ratio_bundle:.0}x", ours_bundle.show("ms", 2)),
        "",
        "",
        None,
    );
    results.record(
        "cold_start_ms",
        json!({"enforcer": ours.json(), "enforcer_bundle_only": ours_bundle.json(),
               "bundle": bundle, "c7n": peer.json(), "ratio": ratio, "ratio_bundle_only": ratio_bundle}),
    );
}
