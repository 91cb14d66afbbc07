//! The benchmark suite behind `make bench` (docs/performance.md). Not part of the test command:
//! it measures, it does not assert. Every figure is a median over repeated runs with min and max
//! beside it, and every comparison with the peer (Cloud Custodian, `bench/c7n_peer.py`) is a
//! ratio taken in the same run.
//!
//! `cargo bench --bench bench -- --bench [SECTION ...]` runs the sections named (default: all):
//! `cold-start`, `memory`, `size`, `calls`, `time-to-compliance`, `burst`, `sweep`,
//! `organisation`. The results go
//! to `target/bench/results.md` and `target/bench/results.json`. `cargo test --all-targets`
//! builds this file but runs nothing (no `--bench` argument).

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{ACCOUNT, Emulators, Proxy, REGION, RuntimeApi};

/// The alias of the mandated key in moto.
const KEY_ALIAS: &str = "org-streams";
/// The default policy before this benchmark (kept to show what the current one buys).
const PREVIOUS_POLICY: &str = r#"[{"ErrorEquals":["ResourceInUseException"],"IntervalSeconds":1,"BackoffRate":1.1,"MaxDelaySeconds":3,"MaxAttempts":85},{"ErrorEquals":["LimitExceededException","ThrottlingException","KMSThrottlingException","ServiceUnavailableException","InternalFailure","ServiceUnavailable","KMSInternalException","DependencyTimeoutException","Enforcer.ConnectionError","Enforcer.Timeout","Enforcer.ResponseError","Enforcer.ServerError"],"IntervalSeconds":1,"BackoffRate":2.0,"MaxDelaySeconds":20,"MaxAttempts":6,"JitterStrategy":"FULL"}]"#;
/// Every operation the enforcer calls, as the proxies name them.
const OPERATIONS: [&str; 10] = [
    "DescribeStreamSummary",
    "StartStreamEncryption",
    "ListStreams",
    "ListTagsForStream",
    "DescribeDeliveryStream",
    "StartDeliveryStreamEncryption",
    "ListDeliveryStreams",
    "ListTagsForDeliveryStream",
    "DescribeKey",
    "GetCallerIdentity",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bootstrap() -> &'static str {
    env!("CARGO_BIN_EXE_bootstrap")
}

fn enforcer_bin() -> &'static str {
    env!("CARGO_BIN_EXE_enforcer")
}

/// The Python that has c7n (`scripts/setup-tools bench`).
fn c7n_python() -> PathBuf {
    support::tools_dir().join("bench/bin/python")
}

fn c7n_peer() -> PathBuf {
    root().join("bench/c7n_peer.py")
}

/// Median, p95, min and max of a sample.
#[derive(Debug, Clone, Copy)]
struct Stats {
    n: usize,
    median: f64,
    p95: f64,
    min: f64,
    max: f64,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return Stats {
            n,
            median: f64::NAN,
            p95: f64::NAN,
            min: f64::NAN,
            max: f64::NAN,
        };
    }
    let at = |q: f64| v[((q * (n - 1) as f64).round() as usize).min(n - 1)];
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Stats {
        n,
        median,
        p95: at(0.95),
        min: v[0],
        max: v[n - 1],
    }
}

impl Stats {
    fn show(&self, unit: &str, digits: usize) -> String {
        format!(
            "{:.d$} {unit} (min {:.d$}, max {:.d$}, n={})",
            self.median,
            self.min,
            self.max,
            self.n,
            d = digits
        )
    }

    fn json(&self) -> Value {
        json!({"n": self.n, "median": self.median, "p95": self.p95, "min": self.min, "max": self.max})
    }
}

/// One line of the results table.
struct Row {
    section: &'static str,
    metric: String,
    ours: String,
    peer: String,
    target: String,
    verdict: String,
}

#[derive(Default)]
struct Results {
    rows: Vec<Row>,
    json: serde_json::Map<String, Value>,
}

impl Results {
    fn row(
        &mut self,
        section: &'static str,
        metric: impl Into<String>,
        ours: impl Into<String>,
        peer: impl Into<String>,
        target: impl Into<String>,
        met: Option<bool>,
    ) {
        let row = Row {
            section,
            metric: metric.into(),
            ours: ours.into(),
            peer: peer.into(),
            target: target.into(),
            verdict: match met {
                Some(true) => "met".into(),
                Some(false) => "**missed**".into(),
                None => String::new(),
            },
        };
        println!(
            "  {:<22} {:<44} ours: {}  peer: {}  {} {}",
            row.section, row.metric, row.ours, row.peer, row.target, row.verdict
        );
        self.rows.push(row);
    }

    fn record(&mut self, section: &str, value: Value) {
        self.json.insert(section.to_owned(), value);
    }

    fn markdown(&self, machine: &Value) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "Machine: {} ({} cores, {}), {}; date {}; commit {}; command `make bench`.\n\n",
            machine["cpu"].as_str().unwrap_or("?"),
            machine["cores"],
            machine["memory"].as_str().unwrap_or("?"),
            machine["os"].as_str().unwrap_or("?"),
            machine["date"].as_str().unwrap_or("?"),
            machine["commit"].as_str().unwrap_or("?"),
        ));
        out.push_str("| Section | Metric | Enforcer | Cloud Custodian | Target | |\n");
        out.push_str("|---|---|---|---|---|---|\n");
        for r in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                r.section, r.metric, r.ours, r.peer, r.target, r.verdict
            ));
        }
        out
    }
}

fn sh(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| format!("{} GiB", kb / 1024 / 1024))
        .unwrap_or_default();
    json!({
        "cpu": cpu,
        "arch": std::env::consts::ARCH,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "memory": memory,
        "os": sh("uname", &["-sr"]),
        "rustc": sh("rustc", &["--version"]),
        "date": sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        "commit": sh("git", &["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "--short", "HEAD"]),
    })
}

/// The environment of a Lambda container, with nothing of this process's.
fn lambda_env(command: &mut Command, vars: &[(String, String)], runtime_api: &str) {
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "stream-encryption-enforcer")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            "/aws/lambda/stream-encryption-enforcer",
        );
}

/// The real Lambda binary polling `api`, with its log discarded (a long run would fill a pipe).
fn start_container(api: &RuntimeApi, vars: &[(String, String)]) -> support::Process {
    let mut command = Command::new(bootstrap());
    lambda_env(&mut command, vars, &api.address);
    command.stdout(Stdio::null()).stderr(Stdio::null());
    support::Process::from(command.spawn().expect("run bootstrap"))
}

/// Runs the bootstrap against a one-shot runtime API: the time from exec to its first request
/// for the next event.
fn first_next_request(vars: &[(String, String)]) -> Duration {
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
fn c7n_init(vars: &[(String, String)]) -> Duration {
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

fn offline_vars() -> Vec<(String, String)> {
    [
        ("AWS_REGION", REGION),
        ("AWS_DEFAULT_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", ACCOUNT),
        ("AWS_SECRET_ACCESS_KEY", "bench-secret"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("MANDATED_KMS_KEY", "alias/org-streams"),
        ("HOME", "/nonexistent"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn cold_start(results: &mut Results) {
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

/// VmRSS and VmHWM of a process, in kB.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Calls of each operation at both proxies.
fn snapshot(proxies: &[&Proxy]) -> BTreeMap<&'static str, usize> {
    OPERATIONS
        .iter()
        .map(|op| (*op, proxies.iter().map(|p| p.calls(op)).sum()))
        .collect()
}

fn diff(
    before: &BTreeMap<&'static str, usize>,
    after: &BTreeMap<&'static str, usize>,
) -> BTreeMap<&'static str, usize> {
    after
        .iter()
        .map(|(op, n)| (*op, n - before.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn show_calls(calls: &BTreeMap<&'static str, usize>) -> String {
    let total: usize = calls.values().sum();
    let parts: Vec<String> = calls.iter().map(|(op, n)| format!("{op} {n}")).collect();
    format!("{total} ({})", parts.join(", "))
}

/// Creates `n` streams named `{prefix}-{i}` and waits for them; with `key`, puts them on it.
async fn seed_streams(emu: &Emulators, prefix: &str, n: usize, key: Option<&str>) -> Vec<String> {
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    for chunk in names.chunks(5) {
        for name in chunk {
            support::create_stream_on(&emu.kinesis, name).await;
        }
        for name in chunk {
            support::wait_active_on(&emu.kinesis, name).await;
        }
    }
    if let Some(key) = key {
        for name in &names {
            support::encrypt_stream_on(&emu.kinesis, name, key).await;
        }
        for name in &names {
            support::wait_active_on(&emu.kinesis, name).await;
        }
    }
    names
}

/// The CreateStream event of `name`.
fn create_event(name: &str) -> Value {
    support::event("kinesis-create-stream", name)
}

fn outcome_of(result: &support::RuntimeResult) -> String {
    if result.kind == "response" {
        result.body["outcome"].as_str().unwrap_or("?").to_owned()
    } else {
        format!(
            "error {}",
            result.body["errorType"].as_str().unwrap_or("?").to_owned()
        )
    }
}

fn count_outcomes(results: &[support::RuntimeResult]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in results {
        *counts.entry(outcome_of(r)).or_default() += 1;
    }
    counts
}

async fn memory(results: &mut Results) {
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

/// Bytes of `binary` zipped as the deployment package is (deflated, named `bootstrap`).
fn zip_size(binary: &Path) -> u64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let zip = dir.path().join("bootstrap.zip");
    let status = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED) as z: z.write(sys.argv[1], 'bootstrap')",
        ])
        .arg(binary)
        .arg(&zip)
        .status()
        .expect("python3 zips");
    assert!(status.success(), "zip failed");
    std::fs::metadata(&zip).map(|m| m.len()).unwrap_or(0)
}

fn size(results: &mut Results) {
    println!("== size");
    let mb = |b: u64| b as f64 / 1_000_000.0;
    let binary = Path::new(bootstrap());
    let bytes = std::fs::metadata(binary).map(|m| m.len()).unwrap_or(0);
    let zipped = zip_size(binary);
    results.row(
        "size",
        format!(
            "x86_64 stripped `bootstrap` / zip ({})",
            std::env::consts::ARCH
        ),
        format!("{:.2} MB / {:.2} MB", mb(bytes), mb(zipped)),
        "",
        "",
        None,
    );
    // The arm64 build the template deploys by default: `scripts/build-lambda arm64` (rustup's
    // aarch64 target with zig, or Debian's rustc-web on an x86_64 machine without it).
    let mut arm_json = json!({"not_built": "scripts/build-lambda arm64 failed"});
    let status = Command::new(root().join("scripts/build-lambda"))
        .arg("arm64")
        .status();
    let built = root().join("target/sam/arm64/EnforcerFunction/bootstrap");
    if status.map(|s| s.success()).unwrap_or(false) && built.exists() {
        let bytes = std::fs::metadata(&built).map(|m| m.len()).unwrap_or(0);
        let zipped = zip_size(&built);
        results.row(
            "size",
            "arm64 stripped `bootstrap` / zip",
            format!("{:.2} MB / {:.2} MB", mb(bytes), mb(zipped)),
            "",
            "< 8 MB",
            Some(mb(bytes) < 8.0),
        );
        arm_json = json!({"bytes": bytes, "zip_bytes": zipped});
    } else {
        results.row(
            "size",
            "arm64 stripped `bootstrap`",
            "not measured: scripts/build-lambda arm64 failed",
            "",
            "< 8 MB",
            Some(false),
        );
    }
    results.record(
        "size",
        json!({"x86_64": {"bytes": bytes, "zip_bytes": zipped}, "arm64": arm_json}),
    );
}

/// `[profile.release]` of `dir`/Cargo.toml: each `key = value` line, the value as written.
fn release_profile(dir: &Path) -> Vec<(String, String)> {
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
    manifest
        .lines()
        .skip_while(|l| l.trim() != "[profile.release]")
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// What each release-profile choice buys: the package (of a copy of the source taken when the
/// section starts) built cold once as `Cargo.toml` has it
/// and once per setting with only that setting turned back to the alternative (cargo's
/// `CARGO_PROFILE_RELEASE_*` overrides), each in its own target directory, for every
/// architecture in `BENCH_PROFILE_ARCHS` (default arm64, the template's default). A cold build
/// takes minutes, so this section runs only when named: `scripts/bench profile`.
fn profile(results: &mut Results) {
    println!("== profile");
    // The alternative of each setting: cargo's own release default, and for `strip` keeping
    // the symbols.
    const ALTERNATIVES: [(&str, &str); 5] = [
        ("opt-level", "3"),
        ("lto", "false"),
        ("panic", "unwind"),
        ("codegen-units", "16"),
        ("strip", "false"),
    ];
    /// One cold build of the package.
    #[derive(Clone, Copy)]
    struct Build {
        bytes: u64,
        zip_bytes: u64,
        seconds: f64,
    }
    impl Build {
        fn json(&self) -> Value {
            json!({"bytes": self.bytes, "zip_bytes": self.zip_bytes, "build_seconds": self.seconds})
        }
    }
    // The builds take half an hour: they build a copy of the source as it is now, so that an
    // edit meanwhile cannot make the variants differ in more than their setting.
    let source = root().join("target/bench/profile/source");
    let _ = std::fs::remove_dir_all(&source);
    std::fs::create_dir_all(&source).expect("snapshot dir");
    let copied = Command::new("sh")
        .arg("-c")
        .arg(
            "tar -c --exclude=./target --exclude=./.tools --exclude=./.aws-sam --exclude=./.git \
             --exclude=./fuzz/target -f - . | tar -x -C \"$0\" && ln -s \"$1/.tools\" \"$0/.tools\"",
        )
        .arg(&source)
        .arg(root())
        .current_dir(root())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(copied, "could not copy the source to {}", source.display());
    // `scripts/build-lambda ARCH` of the copy in a fresh target directory, with one setting
    // overridden.
    let build = |arch: &str, scratch: &Path, setting: Option<(&str, &str)>| -> Option<Build> {
        let name = setting.map_or("chosen", |(k, _)| k);
        let target_dir = scratch.join(format!("target-{name}"));
        let out = scratch.join(format!("package-{name}"));
        let _ = std::fs::remove_dir_all(&target_dir);
        let mut command = Command::new(source.join("scripts/build-lambda"));
        command
            .arg(arch)
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("BUILD_LAMBDA_OUT", &out);
        if let Some((key, alternative)) = setting {
            let var = format!(
                "CARGO_PROFILE_RELEASE_{}",
                key.replace('-', "_").to_uppercase()
            );
            command.env(var, alternative);
        }
        println!("  {arch} {name}: cold build");
        let started = Instant::now();
        let ok = command.status().map(|s| s.success()).unwrap_or(false);
        let seconds = started.elapsed().as_secs_f64();
        let binary = out.join("EnforcerFunction/bootstrap");
        let built = (ok && binary.exists()).then(|| Build {
            bytes: std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0),
            zip_bytes: zip_size(&binary),
            seconds,
        });
        // A release target directory is about a gigabyte: keep only the package.
        let _ = std::fs::remove_dir_all(&target_dir);
        built
    };
    let chosen = release_profile(&source);
    let archs = std::env::var("BENCH_PROFILE_ARCHS").unwrap_or_else(|_| "arm64".into());
    let mut record = serde_json::Map::new();
    for arch in archs.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let scratch = root().join("target/bench/profile").join(arch);
        let base = build(arch, &scratch, None);
        results.row(
            "profile",
            format!("{arch}: `[profile.release]` as in Cargo.toml"),
            base.map_or("build failed".to_owned(), |b| {
                format!(
                    "{} bytes, zip {} bytes, cold build {:.0} s",
                    b.bytes, b.zip_bytes, b.seconds
                )
            }),
            "",
            "",
            None,
        );
        let mut rows = Vec::new();
        for (key, alternative) in ALTERNATIVES {
            let now = chosen
                .iter()
                .find(|(k, _)| k == key)
                .map_or("(cargo's default)", |(_, v)| v.as_str());
            let other = build(arch, &scratch, Some((key, alternative)));
            let bought = match (base, other) {
                (Some(b), Some(o)) => format!(
                    "{} bytes with `{alternative}`: `{now}` saves {} bytes ({} zipped); cold build {:.0} s against {:.0} s",
                    o.bytes,
                    o.bytes as i64 - b.bytes as i64,
                    o.zip_bytes as i64 - b.zip_bytes as i64,
                    b.seconds,
                    o.seconds
                ),
                _ => "not measured: a build failed".to_owned(),
            };
            results.row(
                "profile",
                format!("{arch}: `{key} = {now}`"),
                bought,
                "",
                "",
                None,
            );
            rows.push(
                json!({"setting": key, "chosen": now, "alternative": alternative,
                             "with_alternative": other.map(|o| o.json())}),
            );
        }
        record.insert(
            arch.to_owned(),
            json!({"chosen": base.map(|b| b.json()), "alternatives": rows}),
        );
    }
    results.record("profile", Value::Object(record));
}

/// One Lambda container: its runtime API and the bootstrap polling it.
struct Container {
    api: RuntimeApi,
    _process: support::Process,
    invoked: usize,
}

impl Container {
    async fn start(vars: &[(String, String)]) -> Self {
        let api = RuntimeApi::start().await;
        let process = start_container(&api, vars);
        Self {
            api,
            _process: process,
            invoked: 0,
        }
    }

    /// Invokes one event and waits for its result.
    async fn invoke(&mut self, event: Value) -> support::RuntimeResult {
        self.invoked += 1;
        let id = format!("req-{}", self.invoked);
        self.api.push(&id, event, Duration::from_secs(300));
        let all = self
            .api
            .results(self.invoked, Duration::from_secs(400))
            .await;
        all.into_iter()
            .find(|r| r.request_id == id)
            .expect("the result of this request")
    }
}

async fn calls(results: &mut Results) {
    println!("== calls per event");
    let emu = Emulators::start(Duration::from_secs(10), Duration::from_secs(3)).await;
    let key = emu.create_key(&format!("alias/{KEY_ALIAS}")).await;
    let compliant = seed_streams(&emu, "calls-ok", 2, Some(&key)).await;
    let unencrypted = seed_streams(&emu, "calls-plain", 1, None).await;
    emu.create_delivery_stream("calls-delivery", None).await;
    let proxies = [&emu.kinesis_proxy, &emu.moto_proxy];
    let mut container = Container::start(&emu.env(&format!("alias/{KEY_ALIAS}"))).await;
    let mut json_rows = Vec::new();
    let mut measure = async |what: &str, event: Value, before_event: Option<&str>| {
        if let Some(name) = before_event {
            support::create_stream_on(&emu.kinesis, name).await;
        }
        let before = snapshot(&proxies);
        let result = container.invoke(event).await;
        let calls = diff(&before, &snapshot(&proxies));
        json_rows.push(json!({"case": what, "outcome": outcome_of(&result), "calls": calls}));
        (calls, outcome_of(&result))
    };
    let (first, o1) = measure(
        "already compliant, container's first event",
        create_event(&compliant[0]),
        None,
    )
    .await;
    let (warm, o2) = measure(
        "already compliant (warm)",
        create_event(&compliant[1]),
        None,
    )
    .await;
    let (fix, o3) = measure("unencrypted ACTIVE", create_event(&unencrypted[0]), None).await;
    let (repeat, o4) = measure(
        "repeated delivery of that event",
        create_event(&unencrypted[0]),
        None,
    )
    .await;
    let (creating, o5) = measure(
        "still CREATING (10 s), then UPDATING (3 s)",
        create_event("calls-new"),
        Some("calls-new"),
    )
    .await;
    let (delivery, o6) = measure(
        "Firehose DirectPut",
        support::event("firehose-create-delivery-stream", "calls-delivery"),
        None,
    )
    .await;
    let total = |c: &BTreeMap<&str, usize>| c.values().sum::<usize>();
    let exact_one = total(&warm) == 1 && total(&repeat) == 1;
    for (what, calls, outcome, target, met) in [
        (
            "already compliant, first event of a container",
            &first,
            o1,
            "",
            None,
        ),
        (
            "already compliant (warm container)",
            &warm,
            o2,
            "exactly 1",
            Some(total(&warm) == 1),
        ),
        (
            "unencrypted ACTIVE",
            &fix,
            o3,
            "Describe, Start, confirm polls",
            Some(
                fix.get("StartStreamEncryption") == Some(&1)
                    && fix
                        .keys()
                        .all(|op| ["DescribeStreamSummary", "StartStreamEncryption"].contains(op)),
            ),
        ),
        (
            "repeated delivery",
            &repeat,
            o4,
            "exactly 1",
            Some(total(&repeat) == 1),
        ),
        (
            "still CREATING 10 s, UPDATING 3 s",
            &creating,
            o5,
            "Describe, Starts, confirm polls",
            None,
        ),
        (
            "Firehose DirectPut",
            &delivery,
            o6,
            "Describe, Start, confirm polls",
            Some(
                delivery.get("StartDeliveryStreamEncryption") == Some(&1)
                    && delivery.keys().all(|op| {
                        ["DescribeDeliveryStream", "StartDeliveryStreamEncryption"].contains(op)
                    }),
            ),
        ),
    ] {
        results.row(
            "calls per event",
            format!("{what}: {outcome}"),
            show_calls(calls),
            "",
            target,
            met,
        );
    }
    results.record(
        "calls_per_event",
        json!({"cases": json_rows, "compliant_costs_one": exact_one}),
    );
}

/// What one time-to-compliance run measured, per stream.
struct Compliance {
    /// Seconds from CreateStream to ACTIVE on the key, less the emulator's CREATING + UPDATING.
    overheads: Vec<f64>,
    /// Seconds from compliance to the outcome reaching the runtime API.
    lags: Vec<f64>,
    /// StartStreamEncryption calls per stream, at the proxy.
    starts: Vec<f64>,
    outcomes: BTreeMap<String, usize>,
}

/// Creates streams and measures, per stream, the time from CreateStream to ACTIVE on the key,
/// the outcome's lag behind it and the Start calls made, `runs` times with `containers`
/// containers in parallel.
async fn time_to_compliance_runs(
    emu: &Arc<Emulators>,
    key_arn: &str,
    vars: &[(String, String)],
    label: &str,
    runs: usize,
    containers: usize,
    emulator_time: Duration,
) -> Compliance {
    let mut tasks = Vec::new();
    for c in 0..containers {
        let (emu, vars, key_arn, label) = (
            emu.clone(),
            vars.to_vec(),
            key_arn.to_owned(),
            label.to_owned(),
        );
        let mine: Vec<usize> = (0..runs).filter(|i| i % containers == c).collect();
        tasks.push(tokio::spawn(async move {
            let mut container = Container::start(&vars).await;
            let mut out = Vec::new();
            for i in mine {
                let name = format!("ttc-{label}-{i}");
                let start = Instant::now();
                support::create_stream_on(&emu.kinesis, &name).await;
                container.invoked += 1;
                let id = format!("req-{}", container.invoked);
                container
                    .api
                    .push(&id, create_event(&name), Duration::from_secs(300));
                // Watch the stream itself, straight at the emulator, every 50 ms.
                let compliant_after = loop {
                    let s = emu.stream(&name).await;
                    let on_key = s.key_id().is_some_and(|k| k == key_arn);
                    if on_key && s.stream_status() == &aws_sdk_kinesis::types::StreamStatus::Active
                    {
                        break start.elapsed();
                    }
                    assert!(
                        start.elapsed() < Duration::from_secs(300),
                        "{name} not compliant"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                };
                let result = container
                    .api
                    .results(container.invoked, Duration::from_secs(300))
                    .await
                    .into_iter()
                    .find(|r| r.request_id == id)
                    .expect("result");
                let reported_after = start.elapsed();
                let starts = emu
                    .kinesis_proxy
                    .calls_for("StartStreamEncryption", &format!("{name}\""));
                out.push((
                    (compliant_after.as_secs_f64() - emulator_time.as_secs_f64()),
                    (reported_after - compliant_after).as_secs_f64(),
                    starts as f64,
                    outcome_of(&result),
                ));
            }
            out
        }));
    }
    let mut measured = Compliance {
        overheads: Vec::new(),
        lags: Vec::new(),
        starts: Vec::new(),
        outcomes: BTreeMap::new(),
    };
    for task in tasks {
        for (overhead, lag, starts, outcome) in task.await.expect("run") {
            measured.overheads.push(overhead);
            measured.lags.push(lag);
            measured.starts.push(starts);
            *measured.outcomes.entry(outcome).or_default() += 1;
        }
    }
    measured
}

async fn time_to_compliance(results: &mut Results) {
    println!("== time to compliance");
    let (create, update) = (Duration::from_secs(10), Duration::from_secs(3));
    let emu = Arc::new(Emulators::start(create, update).await);
    // AWS refuses a write on a stream that is not ACTIVE; kinesis-mock only while CREATING.
    emu.kinesis_proxy.hold_writes_to_active_streams();
    let key = emu.create_key(&format!("alias/{KEY_ALIAS}")).await;
    // The configured form is what Kinesis reports back: configure the key ARN so the watcher
    // can compare strings.
    let vars = emu.env(&key);
    let current =
        time_to_compliance_runs(&emu, &key, &vars, "default", 20, 4, create + update).await;
    let mut previous_vars = vars.clone();
    previous_vars.push(("RETRY_POLICY".into(), PREVIOUS_POLICY.into()));
    let previous = time_to_compliance_runs(
        &emu,
        &key,
        &previous_vars,
        "previous",
        8,
        4,
        create + update,
    )
    .await;
    let (now, before) = (stats(current.overheads), stats(previous.overheads));
    let (lag, starts) = (stats(current.lags), stats(current.starts));
    results.row(
        "time to compliance",
        "overhead beyond CREATING 10 s + UPDATING 3 s, default policy",
        format!("{} (p95 {:.2} s)", now.show("s", 2), now.p95),
        "not comparable: its `encrypt` skips a stream not ACTIVE; only a fixed `delay` before it waits",
        "median <= 0.75 s",
        Some(now.median <= 0.75),
    );
    results.row(
        "time to compliance",
        "outcome reported after compliance",
        format!("{} (p95 {:.2} s)", lag.show("s", 2), lag.p95),
        "",
        "median <= 0.5 s",
        Some(lag.median <= 0.5),
    );
    results.row(
        "time to compliance",
        "StartStreamEncryption calls per remediation (default policy)",
        format!("median {:.0}, max {:.0}", starts.median, starts.max),
        "",
        "1",
        Some(starts.max <= 1.0),
    );
    results.row(
        "time to compliance",
        "same, the previous default policy (1 s x1.1, cap 3 s)",
        format!("{} (p95 {:.2} s)", before.show("s", 2), before.p95),
        "",
        "",
        None,
    );
    results.record(
        "time_to_compliance_s",
        json!({"creating_s": create.as_secs(), "updating_s": update.as_secs(),
               "default_policy": now.json(), "default_outcomes": current.outcomes,
               "outcome_lag_s": lag.json(), "starts_per_remediation": starts.json(),
               "previous_policy": before.json(), "previous_outcomes": previous.outcomes}),
    );
}

/// The documented per-account limits the proxy enforces in the burst, as (operations, per
/// second, code).
const LIMITS: [(&[&str], usize, &str); 4] = [
    (&["DescribeStreamSummary"], 20, "LimitExceededException"),
    (&["StartStreamEncryption"], 5, "LimitExceededException"),
    (&["ListTagsForStream"], 5, "LimitExceededException"),
    (&["DescribeKey"], 50, "ThrottlingException"),
];

async fn burst(results: &mut Results) {
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

/// Runs a command under `bench/c7n_peer.py measure`: wall time and peak RSS of the process tree.
fn measured(program: &Path, args: &[&str], vars: &[(String, String)]) -> Value {
    let output = Command::new("python3")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .arg(c7n_peer())
        .arg("measure")
        .arg(program)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("run the measured command");
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or_else(|| json!({"error": text.to_string()}))
}

/// Streams on the mandated key, counted straight at moto.
async fn count_on_key(kinesis: &aws_sdk_kinesis::Client, names: &[String], key: &str) -> usize {
    let mut n = 0;
    for chunk in names.chunks(32) {
        let answers = futures_util::future::join_all(
            chunk
                .iter()
                .map(|name| kinesis.describe_stream_summary().stream_name(name).send()),
        )
        .await;
        n += answers
            .into_iter()
            .filter_map(Result::ok)
            .filter(|a| {
                a.stream_description_summary()
                    .and_then(|s| s.key_id())
                    .is_some_and(|k| key.ends_with(k) || k == key)
            })
            .count();
    }
    n
}

async fn create_in_moto(kinesis: &aws_sdk_kinesis::Client, names: &[String]) {
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

async fn stop_in_moto(kinesis: &aws_sdk_kinesis::Client, names: &[String], key: &str) {
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
async fn our_sweep(
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

fn sweep_vars(emu: &Emulators, key: &str, kinesis_url: &str, share: &str) -> Vec<(String, String)> {
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

async fn sweep(results: &mut Results, share: &str) {
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
const RACE_LIMITS: [(&[&str], usize, &str); 7] = [
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
fn throttled_since(
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
async fn race(results: &mut Results) {
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
        "calls answered by the emulator, per stream; calls throttled at the proxy",
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

/// Central mode: one container serving 150 accounts in 4 regions (600 places, each with its own
/// key under the mandated alias and one new stream), twice over. Memory must stay bounded (the
/// container keeps at most `CACHED_PLACES` enforcers), and each account costs one AssumeRole.
async fn organisation(results: &mut Results) {
    println!("== organisation");
    const ACCOUNTS: usize = 150;
    const REGIONS: [&str; 4] = ["us-east-1", "eu-west-1", "ap-south-1", "us-west-2"];
    let (_moto, moto_url) = support::start_moto();
    let proxy = Proxy::start(&moto_url).await;
    let accounts: Vec<String> = (0..ACCOUNTS)
        .map(|i| format!("{:012}", 200_000_000_000u64 + i as u64))
        .collect();
    let mut places = Vec::new();
    for account in &accounts {
        for region in REGIONS {
            let config = support::sdk_config_in(&moto_url, account, region).await;
            let (kinesis, kms) = (
                aws_sdk_kinesis::Client::new(&config),
                aws_sdk_kms::Client::new(&config),
            );
            support::create_key_on(&kms, &format!("alias/{KEY_ALIAS}")).await;
            support::create_stream_on(&kinesis, "orders").await;
            places.push((account.clone(), region));
        }
    }
    let event_at = |account: &str, region: &str| {
        let text = create_event("orders")
            .to_string()
            .replace(ACCOUNT, account)
            .replace(REGION, region);
        serde_json::from_str::<Value>(&text).expect("JSON")
    };
    let vars: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", proxy.url.as_str()),
        ("AWS_ACCESS_KEY_ID", ACCOUNT),
        ("AWS_SECRET_ACCESS_KEY", "test-secret"),
        ("AWS_REGION", REGION),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("MANDATED_KMS_KEY", &format!("alias/{KEY_ALIAS}")),
        ("TARGET_ROLE_NAME", "StreamEncryptionEnforcerMember"),
        ("ALLOWED_ACCOUNTS", &accounts.join(",")),
        ("ALLOWED_REGIONS", &REGIONS.join(",")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let api = RuntimeApi::start().await;
    let process = start_container(&api, &vars);
    let mut rounds = Vec::new();
    for round in 0..2 {
        let started = Instant::now();
        for (i, (account, region)) in places.iter().enumerate() {
            api.push(
                &format!("org-{round}-{i}"),
                event_at(account, region),
                Duration::from_secs(120),
            );
        }
        let done = api
            .results((round + 1) * places.len(), Duration::from_secs(1800))
            .await;
        let (now, _) = rss(process.id());
        rounds.push((
            started.elapsed().as_secs_f64(),
            now,
            count_outcomes(&done[round * places.len()..]),
        ));
    }
    let (_, peak) = rss(process.id());
    drop(process);
    let assumed = proxy.calls("AssumeRole");
    let mb = |kb: u64| kb as f64 / 1024.0;
    for (round, (seconds, now, outcomes)) in rounds.iter().enumerate() {
        results.row(
            "organisation",
            format!(
                "{} events, one per place ({ACCOUNTS} accounts x {} regions), {}",
                places.len(),
                REGIONS.len(),
                if round == 0 { "new streams" } else { "again" }
            ),
            format!(
                "{seconds:.1} s ({:.1} ms per event), RSS {:.1} MB, {}",
                seconds * 1000.0 / places.len() as f64,
                mb(*now),
                serde_json::to_string(outcomes).unwrap_or_default()
            ),
            "",
            "",
            None,
        );
    }
    results.row(
        "organisation",
        "peak RSS of the container; sts:AssumeRole calls",
        format!(
            "{:.1} MB; {assumed} AssumeRole for {ACCOUNTS} accounts",
            mb(peak)
        ),
        "",
        "< 32 MB; one per account",
        Some(mb(peak) < 32.0 && assumed == ACCOUNTS),
    );
    results.record(
        "organisation",
        json!({
            "places": places.len(),
            "rounds": rounds.iter().map(|(s, rss, o)| json!({"seconds": s, "rss_kb": rss, "outcomes": o})).collect::<Vec<_>>(),
            "peak_rss_kb": peak,
            "assume_role_calls": assumed,
        }),
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets` builds and runs bench targets without `--bench`.
        println!("benches/bench.rs: run with `make bench` (cargo bench --bench bench)");
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
        "race",
        "profile",
    ];
    let wanted: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| all.contains(a))
        .collect();
    // `profile` makes six cold release builds per architecture: only when named.
    let run =
        |section: &str| (wanted.is_empty() && section != "profile") || wanted.contains(&section);
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
