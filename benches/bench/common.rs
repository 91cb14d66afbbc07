//! What the sections share: paths of the binaries and the peer, a Lambda container under the
//! bench's Runtime API, call counts at the proxies, seeding, and measuring a process.

use crate::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{ACCOUNT, Emulators, Proxy, REGION, RuntimeApi};

/// The alias of the mandated key in moto.
pub(crate) const KEY_ALIAS: &str = "org-streams";

/// The default policy before this benchmark (kept to show what the current one buys).
pub(crate) const PREVIOUS_POLICY: &str = r#"[{"ErrorEquals":["ResourceInUseException"],"IntervalSeconds":1,"BackoffRate":1.1,"MaxDelaySeconds":3,"MaxAttempts":85},{"ErrorEquals":["LimitExceededException","ThrottlingException","KMSThrottlingException","ServiceUnavailableException","InternalFailure","ServiceUnavailable","KMSInternalException","DependencyTimeoutException","Enforcer.ConnectionError","Enforcer.Timeout","Enforcer.ResponseError","Enforcer.ServerError"],"IntervalSeconds":1,"BackoffRate":2.0,"MaxDelaySeconds":20,"MaxAttempts":6,"JitterStrategy":"FULL"}]"#;

/// Every operation the enforcer calls, as the proxies name them.
pub(crate) const OPERATIONS: [&str; 10] = [
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

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn bootstrap() -> &'static str {
    env!("CARGO_BIN_EXE_bootstrap")
}

pub(crate) fn enforcer_bin() -> &'static str {
    env!("CARGO_BIN_EXE_enforcer")
}

/// The Python that has c7n (`scripts/setup-tools bench`).
pub(crate) fn c7n_python() -> PathBuf {
    support::tools_dir().join("bench/bin/python")
}

pub(crate) fn c7n_peer() -> PathBuf {
    root().join("benches/peer/c7n_peer.py")
}

/// The environment of a Lambda container, with nothing of this process's.
pub(crate) fn lambda_env(command: &mut Command, vars: &[(String, String)], runtime_api: &str) {
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
pub(crate) fn start_container(api: &RuntimeApi, vars: &[(String, String)]) -> support::Process {
    let mut command = Command::new(bootstrap());
    lambda_env(&mut command, vars, &api.address);
    command.stdout(Stdio::null()).stderr(Stdio::null());
    support::Process::from(command.spawn().expect("run bootstrap"))
}

pub(crate) fn offline_vars() -> Vec<(String, String)> {
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

/// VmRSS and VmHWM of a process, in kB.
pub(crate) fn rss(pid: u32) -> (u64, u64) {
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
pub(crate) fn snapshot(proxies: &[&Proxy]) -> BTreeMap<&'static str, usize> {
    OPERATIONS
        .iter()
        .map(|op| (*op, proxies.iter().map(|p| p.calls(op)).sum()))
        .collect()
}

pub(crate) fn diff(
    before: &BTreeMap<&'static str, usize>,
    after: &BTreeMap<&'static str, usize>,
) -> BTreeMap<&'static str, usize> {
    after
        .iter()
        .map(|(op, n)| (*op, n - before.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

pub(crate) fn show_calls(calls: &BTreeMap<&'static str, usize>) -> String {
    let total: usize = calls.values().sum();
    let parts: Vec<String> = calls.iter().map(|(op, n)| format!("{op} {n}")).collect();
    format!("{total} ({})", parts.join(", "))
}

/// Creates `n` streams named `{prefix}-{i}` and waits for them; with `key`, puts them on it.
pub(crate) async fn seed_streams(
    emu: &Emulators,
    prefix: &str,
    n: usize,
    key: Option<&str>,
) -> Vec<String> {
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
pub(crate) fn create_event(name: &str) -> Value {
    support::event("kinesis-create-stream", name)
}

pub(crate) fn outcome_of(result: &support::RuntimeResult) -> String {
    if result.kind == "response" {
        result.body["outcome"].as_str().unwrap_or("?").to_owned()
    } else {
        format!(
            "error {}",
            result.body["errorType"].as_str().unwrap_or("?").to_owned()
        )
    }
}

pub(crate) fn count_outcomes(results: &[support::RuntimeResult]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in results {
        *counts.entry(outcome_of(r)).or_default() += 1;
    }
    counts
}

/// One Lambda container: its runtime API and the bootstrap polling it.
pub(crate) struct Container {
    pub(crate) api: RuntimeApi,
    pub(crate) _process: support::Process,
    pub(crate) invoked: usize,
}

impl Container {
    pub(crate) async fn start(vars: &[(String, String)]) -> Self {
        let api = RuntimeApi::start().await;
        let process = start_container(&api, vars);
        Self {
            api,
            _process: process,
            invoked: 0,
        }
    }

    /// Invokes one event and waits for its result.
    pub(crate) async fn invoke(&mut self, event: Value) -> support::RuntimeResult {
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

/// Runs a command under `benches/peer/c7n_peer.py measure`: wall time and peak RSS of the process tree.
pub(crate) fn measured(program: &Path, args: &[&str], vars: &[(String, String)]) -> Value {
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
pub(crate) async fn count_on_key(
    kinesis: &aws_sdk_kinesis::Client,
    names: &[String],
    key: &str,
) -> usize {
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

/// Bytes of `binary` zipped as the deployment package is (deflated, named `bootstrap`).
pub(crate) fn zip_size(binary: &Path) -> u64 {
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
