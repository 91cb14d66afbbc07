//! Running the real binaries: `enforcer` as a command, and `bootstrap` under a minimal Lambda
//! Runtime API served here.

use super::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The result of one `enforcer invoke` run.
#[derive(Debug)]
pub struct Invocation {
    pub code: Option<i32>,
    pub report: serde_json::Value,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the real `enforcer invoke` on an event, with `env` (and nothing from this process's AWS
/// environment), off the async runtime so the proxies keep serving.
pub async fn invoke(
    env: &[(String, String)],
    event: &serde_json::Value,
    extra_args: &[&str],
) -> Invocation {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("event.json");
    std::fs::write(&path, event.to_string()).expect("write event");
    let mut command = Command::new(env!("CARGO_BIN_EXE_enforcer"));
    command
        .args(["invoke", "--event"])
        .arg(&path)
        .args(extra_args);
    run_command(command, env).await
}

/// Gives a binary exactly `env` of the variables it reads: nothing of this process's AWS
/// configuration or credentials leaks into a test.
pub(crate) fn isolate_env(command: &mut Command, env: &[(String, String)]) {
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_")
            || key == "MANDATED_KMS_KEY"
            || key == "RETRY_POLICY"
            || key == "LOG_LEVEL"
        {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
}

/// Runs the real `enforcer` with these arguments.
pub async fn enforcer(env: &[(String, String)], args: &[&str]) -> Invocation {
    let mut command = Command::new(env!("CARGO_BIN_EXE_enforcer"));
    command.args(args);
    run_command(command, env).await
}

pub async fn run_command(mut command: Command, env: &[(String, String)]) -> Invocation {
    isolate_env(&mut command, env);
    let output = tokio::task::spawn_blocking(move || command.output().expect("run the binary"))
        .await
        .expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let report = serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
    Invocation {
        code: output.status.code(),
        report,
        stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// What the function sent back for one invocation.
#[derive(Debug, Clone)]
pub struct RuntimeResult {
    pub request_id: String,
    /// `response` or `error`.
    pub kind: String,
    pub body: serde_json::Value,
}

impl RuntimeResult {
    /// The `errorMessage` of a result the function returned as the error `error_type`; fails
    /// the test, showing the result, when it is anything else.
    pub fn error_message(&self, error_type: &str) -> &str {
        assert_eq!(
            self.body["errorType"],
            serde_json::json!(error_type),
            "{self:?}"
        );
        self.body["errorMessage"]
            .as_str()
            .unwrap_or_else(|| panic!("no errorMessage: {self:?}"))
    }
}

/// The outcome lines (`"message":"outcome"`) among a bootstrap's log lines.
pub fn outcome_lines(logs: &str) -> Vec<serde_json::Value> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == serde_json::json!("outcome"))
        .collect()
}

#[derive(Default)]
pub(crate) struct RuntimeState {
    pending: std::collections::VecDeque<(String, serde_json::Value, Duration)>,
    results: Vec<RuntimeResult>,
    /// Sent as the invoked function's ARN instead of a real one (as local runtimes do).
    function_arn: Option<String>,
}

/// A minimal Lambda Runtime API (the 2018-06-01 interface the real `bootstrap` polls), enough to
/// run the real Lambda binary locally: it hands out queued events and records the responses.
pub struct RuntimeApi {
    pub address: String,
    state: Arc<Mutex<RuntimeState>>,
    task: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(RuntimeState::default()));
        let (addr, task) = serve(state.clone(), runtime_handle).await;
        let address = addr.to_string();
        Self {
            address,
            state,
            task,
        }
    }

    /// Queues an event with `timeout` until its deadline.
    pub fn push(&self, request_id: &str, event: serde_json::Value, timeout: Duration) {
        self.state
            .lock()
            .unwrap()
            .pending
            .push_back((request_id.into(), event, timeout));
    }

    /// Sends `arn` as the invoked function's ARN from now on (`cargo lambda watch` sends
    /// `function-arn`).
    pub fn set_function_arn(&self, arn: &str) {
        self.state.lock().unwrap().function_arn = Some(arn.to_owned());
    }

    /// Waits for the result of `request_id` (or panics after `limit`).
    pub async fn result_of(&self, request_id: &str, limit: Duration) -> RuntimeResult {
        let start = Instant::now();
        loop {
            let found = self
                .state
                .lock()
                .unwrap()
                .results
                .iter()
                .find(|r| r.request_id == request_id)
                .cloned();
            if let Some(result) = found {
                return result;
            }
            assert!(
                start.elapsed() < limit,
                "no result for {request_id} within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `n` results have come back (or panics after `limit`).
    pub async fn results(&self, n: usize, limit: Duration) -> Vec<RuntimeResult> {
        let start = Instant::now();
        loop {
            let results = self.state.lock().unwrap().results.clone();
            if results.len() >= n {
                return results;
            }
            assert!(
                start.elapsed() < limit,
                "only {} of {n} results within {limit:?}: {results:?}",
                results.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) async fn runtime_handle(
    req: Request<Incoming>,
    state: Arc<Mutex<RuntimeState>>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let path = req.uri().path().to_owned();
    if path == "/2018-06-01/runtime/invocation/next" {
        // Long poll, as Lambda does, until an event is queued.
        loop {
            let (next, arn) = {
                let mut state = state.lock().unwrap();
                (state.pending.pop_front(), state.function_arn.clone())
            };
            if let Some((id, event, timeout)) = next {
                let arn = arn.unwrap_or_else(|| {
                    format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:stream-encryption-enforcer")
                });
                let deadline = std::time::SystemTime::now() + timeout;
                let ms = deadline
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis();
                let mut response = Response::new(Full::new(Bytes::from(event.to_string())));
                let h = response.headers_mut();
                h.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
                h.insert(
                    "lambda-runtime-deadline-ms",
                    ms.to_string().parse().unwrap(),
                );
                h.insert("lambda-runtime-invoked-function-arn", arn.parse().unwrap());
                h.insert(
                    "lambda-runtime-trace-id",
                    "Root=1-00000000-000000000000000000000000".parse().unwrap(),
                );
                return Ok(response);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let parts: Vec<&str> = path
        .trim_start_matches("/2018-06-01/runtime/")
        .split('/')
        .collect();
    let body = req.into_body().collect().await?.to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let (request_id, kind) = match parts[..] {
        ["invocation", id, kind] => (id.to_owned(), kind.to_owned()),
        ["init", "error"] => ("init".to_owned(), "init-error".to_owned()),
        _ => return Ok(full(404, "unknown path")),
    };
    state.lock().unwrap().results.push(RuntimeResult {
        request_id,
        kind,
        body,
    });
    Ok(full(202, "{}"))
}

/// The real Lambda binary (`bootstrap`) polling `api`, with `env`; killed on drop.
pub fn start_bootstrap(api: &RuntimeApi, env: &[(String, String)]) -> Process {
    start_bootstrap_as(Command::new(env!("CARGO_BIN_EXE_bootstrap")), api, env)
}

/// As [`start_bootstrap`], running `command` (another build of the binary, or an emulator
/// running one) instead of this build's `bootstrap`.
pub fn start_bootstrap_as(
    mut command: Command,
    api: &RuntimeApi,
    env: &[(String, String)],
) -> Process {
    isolate_env(&mut command, env);
    command
        .env("AWS_LAMBDA_RUNTIME_API", &api.address)
        .env("AWS_LAMBDA_FUNCTION_NAME", "stream-encryption-enforcer")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = command.spawn().expect("run bootstrap");
    // Drained as it is written: a process that logs more than a pipe holds (64 KiB) would
    // otherwise block on its next log line until the test reads it.
    let drain = child.stdout.take().map(|mut stdout| {
        std::thread::spawn(move || {
            use std::io::Read;
            let mut output = Vec::new();
            let _ = stdout.read_to_end(&mut output);
            output
        })
    });
    Process(child, drain)
}
