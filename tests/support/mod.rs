//! Test harness: the real emulators (kinesis-mock, moto server) on free loopback ports, a
//! recording and fault-injecting HTTP proxy in front of each, and helpers to run the real
//! binaries. Everything started here is stopped when its handle drops.

#![allow(dead_code)]

pub mod iac;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";

/// The folder `scripts/setup-tools` installs into.
pub fn tools_dir() -> PathBuf {
    let dir = std::env::var_os("ENFORCER_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools"));
    assert!(
        dir.join(".stamp-venv").exists() && dir.join(".stamp-node").exists(),
        "the emulators are not installed in {}: run scripts/setup-tools (scripts/test does)",
        dir.display()
    );
    dir
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on port {port} within 60 s");
}

/// A child process killed on drop.
pub struct Process(Child, Option<std::thread::JoinHandle<Vec<u8>>>);

impl From<Child> for Process {
    fn from(child: Child) -> Self {
        Self(child, None)
    }
}

impl Process {
    /// The process id.
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// kinesis-mock with a CREATING phase of `create` and an UPDATING phase of `update`.
pub fn start_kinesis_mock(create: Duration, update: Duration) -> (Process, String) {
    let port = free_port();
    let process = start_kinesis_mock_on(port, create, update, None);
    (process, format!("http://127.0.0.1:{port}"))
}

/// kinesis-mock on `port`; with `persist`, its state is saved there every 100 ms and loaded
/// at start (so that it can be killed and restarted with its streams).
pub fn start_kinesis_mock_on(
    port: u16,
    create: Duration,
    update: Duration,
    persist: Option<&Path>,
) -> Process {
    let pkg = tools_dir().join("node/node_modules/kinesis-local");
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let mut command = Command::new("node");
    // kinesis-mock 0.6.2 shifts the encryption durations by one variable: set all three alike.
    command
        .arg(pkg.join("main.js"))
        .env("KINESIS_MOCK_CERT_PATH", pkg.join("server.json"))
        .env("KINESIS_MOCK_PLAIN_PORT", port.to_string())
        .env("KINESIS_MOCK_TLS_PORT", free_port().to_string())
        .env("CREATE_STREAM_DURATION", ms(create))
        .env("DELETE_STREAM_DURATION", "0ms")
        .env("START_STREAM_ENCRYPTION_DURATION", ms(update))
        .env("STOP_STREAM_ENCRYPTION_DURATION", ms(update))
        .env("REGISTER_STREAM_CONSUMER_DURATION", ms(update))
        .env("SHARD_LIMIT", "1000")
        .env("LOG_LEVEL", "WARN")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(dir) = persist {
        command
            .env("SHOULD_PERSIST_DATA", "true")
            .env("PERSIST_PATH", dir)
            .env("PERSIST_INTERVAL", "100ms");
    }
    let mut child = command.spawn().expect("node runs kinesis-mock");
    wait_for_port(port, &mut child, "kinesis-mock");
    Process(child, None)
}

/// moto server on loopback.
pub fn start_moto() -> (Process, String) {
    let port = free_port();
    let mut child = Command::new(tools_dir().join("venv/bin/moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server runs");
    wait_for_port(port, &mut child, "moto server");
    (Process(child, None), format!("http://127.0.0.1:{port}"))
}

/// Serves HTTP/1.1 on a fresh loopback port with `handler`; returns the address and the task.
async fn serve<S, H, Fut, E>(
    state: Arc<Mutex<S>>,
    handler: H,
) -> (SocketAddr, tokio::task::JoinHandle<()>)
where
    S: Send + 'static,
    H: Fn(Request<Incoming>, Arc<Mutex<S>>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response<Full<Bytes>>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (state, handler) = (state.clone(), handler.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req| handler(req, state.clone()));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, task)
}

/// A canned answer the proxy gives instead of forwarding.
#[derive(Clone, Debug)]
pub enum Fault {
    /// An AWS JSON-protocol error: HTTP status and `__type`.
    AwsError {
        status: u16,
        code: String,
        message: String,
    },
    /// Any status and body.
    Raw { status: u16, body: String },
    /// Close the connection without an answer (a reset, as the client sees it).
    Reset,
    /// Never answer (the client's attempt timeout must end the wait).
    Hang,
    /// Forward the call, but only after this long (a slow endpoint, which does answer).
    Slow(Duration),
}

impl Fault {
    pub fn error(code: &str, message: &str) -> Self {
        Self::AwsError {
            status: 400,
            code: code.to_owned(),
            message: message.to_owned(),
        }
    }

    /// A short name: the AWS code, `HTTP 503`, `connection reset`, `hung connection`.
    pub fn label(&self) -> String {
        match self {
            Self::AwsError { code, .. } => code.clone(),
            Self::Raw { status, .. } => format!("HTTP {status}"),
            Self::Reset => "connection reset".into(),
            Self::Hang => "hung connection".into(),
            Self::Slow(delay) => format!("slow by {} ms", delay.as_millis()),
        }
    }
}

/// Faults at random: each call of one of `operations` is answered with probability `rate` by
/// one of `faults`, drawn from a seeded generator (same seed, same draws).
pub struct Chaos {
    pub rng: fastrand::Rng,
    pub rate: f64,
    pub faults: Vec<Fault>,
    pub operations: Vec<String>,
}

struct Rule {
    operation: String,
    /// Only requests whose body contains this (e.g. a stream name).
    body_contains: Option<String>,
    remaining: usize,
    fault: Fault,
}

/// A per-account API limit as AWS applies it: at most `per_second` of `operations` together in
/// any one second; the rest are answered `code` (throttled) without reaching the emulator.
struct Limit {
    operations: Vec<String>,
    per_second: usize,
    code: String,
    admitted: std::collections::VecDeque<Instant>,
}

/// The Kinesis calls that change a stream: AWS refuses each of them with ResourceInUseException
/// while the stream is not ACTIVE (CREATING, UPDATING); kinesis-mock refuses them only while
/// CREATING.
pub const KINESIS_WRITES: [&str; 12] = [
    "StartStreamEncryption",
    "StopStreamEncryption",
    "AddTagsToStream",
    "RemoveTagsFromStream",
    "IncreaseStreamRetentionPeriod",
    "DecreaseStreamRetentionPeriod",
    "EnableEnhancedMonitoring",
    "DisableEnhancedMonitoring",
    "UpdateShardCount",
    "UpdateStreamMode",
    "MergeShards",
    "SplitShard",
];

/// One call the upstream answered, as CloudTrail would record it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub operation: String,
    pub body: serde_json::Value,
    pub user_agent: String,
    pub status: u16,
}

#[derive(Default)]
struct ProxyState {
    /// Holds every caller to AWS's rule for Kinesis writes ([`KINESIS_WRITES`]): a write on a
    /// stream that is not ACTIVE is answered ResourceInUseException.
    writes_only_when_active: bool,
    /// Writes are checked and forwarded one at a time, so two at the same moment cannot both
    /// find the stream ACTIVE.
    write_lock: Arc<tokio::sync::Mutex<()>>,
    /// Every call the upstream answered, in order.
    trail: Vec<Recorded>,
    /// Adds the `NextToken` paging of AWS to an emulator's ListStreams that has only
    /// `HasMoreStreams` (clients that page by token, such as botocore's paginator, need it).
    list_streams_tokens: bool,
    rules: Vec<Rule>,
    chaos: Option<Chaos>,
    limits: Vec<Limit>,
    /// Faults answered, by `operation: label`.
    injected: std::collections::BTreeMap<String, usize>,
    /// The upstream's HTTP status for each forwarded request, with the request body, per
    /// operation.
    answered: HashMap<String, Vec<(String, u16)>>,
    /// When each request arrived and its body, per operation (`X-Amz-Target` after the dot, or
    /// the query protocol's `Action`), faults included.
    seen: HashMap<String, Vec<(Instant, String)>>,
    /// The identity policies every call is held to, when set ([`Proxy::enforce_policies`]).
    policies: Option<Arc<Policies>>,
    /// The role each access key from an answered sts:AssumeRole acts as.
    sessions: HashMap<String, String>,
}

/// The identity policies a proxy holds callers to: the function's own (its own credentials, in
/// [`ACCOUNT`]), and one per role it assumes (calls signed with that session's access key, in
/// the role's account).
pub struct Policies {
    pub own: IamPolicy,
    /// By role ARN.
    pub roles: HashMap<String, IamPolicy>,
}

/// One statement of an identity policy, as `tests/policies/cfn.py` resolves it from a template.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct PolicyStatement {
    #[serde(rename = "Sid", default)]
    pub sid: String,
    #[serde(rename = "Effect")]
    pub effect: String,
    #[serde(rename = "Action", deserialize_with = "one_or_many")]
    pub action: Vec<String>,
    #[serde(rename = "Resource", deserialize_with = "one_or_many")]
    pub resource: Vec<String>,
    #[serde(rename = "Condition", default)]
    pub condition: Option<serde_json::Value>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match serde::Deserialize::deserialize(d)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

/// An identity policy evaluated as IAM does for the calls the enforcer makes itself: a call is
/// allowed when, for every resource it names (a Kinesis StartStreamEncryption names the stream
/// and the key), an Allow statement matches the action and that resource, and no Deny does.
/// Conditions are evaluated on `context` (`aws:ResourceOrgID`, `kms:ResourceAliases`, ...) with
/// StringEquals, StringLike, ArnEquals, ArnLike, Bool and their ForAnyValue forms; a key the
/// context lacks fails the condition, so a statement that needs what the proxy cannot know
/// (kms:ViaService of a call AWS makes on the caller's behalf) fails closed.
/// sts:GetCallerIdentity is always allowed, as on AWS.
pub struct IamPolicy {
    pub statements: Vec<PolicyStatement>,
    /// The key ARN each key reference names, keyed by key id, key ARN or alias ARN (an alias
    /// name in a request is qualified with the caller's account and region): IAM authorizes a
    /// key named by alias against the key.
    pub keys: HashMap<String, String>,
    /// The request context the conditions are evaluated on.
    pub context: HashMap<String, String>,
}

fn glob(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == value;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !value.starts_with(first) || value.len() < first.len() + last.len() || !value.ends_with(last)
    {
        return false;
    }
    let mut rest = &value[first.len()..value.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

impl IamPolicy {
    /// The action (`kinesis:StartStreamEncryption`) and the resources of a JSON-protocol request
    /// made in `account` and `region`, from its `X-Amz-Target` and body.
    fn request(
        &self,
        target: &str,
        body: &serde_json::Value,
        account: &str,
        region: &str,
    ) -> Option<(String, Vec<String>)> {
        let (service, operation) = target.split_once('.')?;
        let field = |name: &str| body.get(name).and_then(|v| v.as_str());
        let key = |reference: &str| {
            let qualified = match reference.strip_prefix("alias/") {
                Some(_) => format!("arn:aws:kms:{region}:{account}:{reference}"),
                None => reference.to_owned(),
            };
            self.keys.get(&qualified).cloned().unwrap_or(qualified)
        };
        let (prefix, resources) = match service {
            "Kinesis_20131202" => {
                let stream = field("StreamARN").map(str::to_owned).or_else(|| {
                    field("StreamName")
                        .map(|n| format!("arn:aws:kinesis:{region}:{account}:stream/{n}"))
                });
                let mut resources: Vec<String> = stream.into_iter().collect();
                if operation == "StartStreamEncryption"
                    && let Some(k) = field("KeyId")
                {
                    resources.push(key(k));
                }
                ("kinesis", resources)
            }
            "Firehose_20150804" => (
                "firehose",
                field("DeliveryStreamName")
                    .map(|n| format!("arn:aws:firehose:{region}:{account}:deliverystream/{n}"))
                    .into_iter()
                    .collect(),
            ),
            "TrentService" => ("kms", field("KeyId").map(key).into_iter().collect()),
            "DynamoDB_20120810" => (
                "dynamodb",
                field("TableName")
                    .map(|t| format!("arn:aws:dynamodb:{region}:{account}:table/{t}"))
                    .into_iter()
                    .collect(),
            ),
            _ => return None,
        };
        let resources = if resources.is_empty() {
            vec!["*".to_owned()]
        } else {
            resources
        };
        Some((format!("{prefix}:{operation}"), resources))
    }

    /// Whether every condition of `condition` holds on the context.
    fn holds(&self, condition: &serde_json::Value) -> bool {
        let Some(operators) = condition.as_object() else {
            return false;
        };
        operators.iter().all(|(operator, keys)| {
            let Some(keys) = keys.as_object() else {
                return false;
            };
            let base = operator
                .strip_prefix("ForAnyValue:")
                .unwrap_or(operator.as_str());
            keys.iter().all(|(key, wanted)| {
                let Some(actual) = self.context.get(key) else {
                    return false;
                };
                let wanted: Vec<&str> = match wanted {
                    serde_json::Value::String(one) => vec![one.as_str()],
                    serde_json::Value::Array(many) => {
                        many.iter().filter_map(|v| v.as_str()).collect()
                    }
                    _ => return false,
                };
                wanted.iter().any(|w| match base {
                    "StringEquals" | "ArnEquals" | "Bool" => w == actual,
                    "StringLike" | "ArnLike" => glob(w, actual),
                    _ => false,
                })
            })
        })
    }

    /// `None` when the policy allows the call; else the resource it is denied on.
    fn denies(&self, action: &str, resources: &[String]) -> Option<String> {
        let matches = |s: &PolicyStatement, resource: &str| {
            s.condition.as_ref().is_none_or(|c| self.holds(c))
                && s.action
                    .iter()
                    .any(|a| glob(&a.to_ascii_lowercase(), &action.to_ascii_lowercase()))
                && s.resource.iter().any(|r| glob(r, resource))
        };
        resources
            .iter()
            .find(|resource| {
                let denied = self
                    .statements
                    .iter()
                    .any(|s| s.effect == "Deny" && matches(s, resource));
                let allowed = self
                    .statements
                    .iter()
                    .any(|s| s.effect == "Allow" && matches(s, resource));
                denied || !allowed
            })
            .cloned()
    }
}

/// A recording, fault-injecting proxy in front of one emulator.
#[derive(Clone)]
pub struct Proxy {
    pub url: String,
    state: Arc<Mutex<ProxyState>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    pub async fn start(upstream: &str) -> Self {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .parse()
            .expect("upstream address");
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let (addr, task) = serve(state.clone(), move |req, state| {
            handle(req, upstream, state)
        })
        .await;
        Self {
            url: format!("http://{addr}"),
            state,
            task: Arc::new(task),
        }
    }

    /// Answers the next `times` calls of `operation` (e.g. `StartStreamEncryption`) with `fault`.
    pub fn inject(&self, operation: &str, times: usize, fault: Fault) {
        self.state.lock().unwrap().rules.push(Rule {
            operation: operation.into(),
            body_contains: None,
            remaining: times,
            fault,
        });
    }

    /// As [`Proxy::inject`], only for requests whose body contains `needle`.
    pub fn inject_for(&self, operation: &str, needle: &str, times: usize, fault: Fault) {
        self.state.lock().unwrap().rules.push(Rule {
            operation: operation.into(),
            body_contains: Some(needle.into()),
            remaining: times,
            fault,
        });
    }

    /// How many calls of `operation` reached the proxy.
    pub fn calls(&self, operation: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .seen
            .get(operation)
            .map_or(0, Vec::len)
    }

    /// How many calls of `operation` whose body contains `needle` reached the proxy.
    pub fn calls_for(&self, operation: &str, needle: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .seen
            .get(operation)
            .map_or(0, |seen| {
                seen.iter()
                    .filter(|(_, body)| body.contains(needle))
                    .count()
            })
    }

    /// How many calls of any operation whose body contains `needle` reached the proxy.
    pub fn calls_anywhere(&self, needle: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .seen
            .values()
            .flatten()
            .filter(|(_, body)| body.contains(needle))
            .count()
    }

    /// How many calls of any operation reached the proxy.
    pub fn total_calls(&self) -> usize {
        self.state.lock().unwrap().seen.values().map(Vec::len).sum()
    }

    /// The most calls of `operations` together in one second (any window `[t, t + 1 s)`).
    pub fn peak_per_second(&self, operations: &[&str]) -> usize {
        self.peak_per_second_for(operations, "")
    }

    /// As [`Self::peak_per_second`], counting only requests whose body contains `needle`.
    pub fn peak_per_second_for(&self, operations: &[&str], needle: &str) -> usize {
        let state = self.state.lock().unwrap();
        let mut times: Vec<Instant> = operations
            .iter()
            .filter_map(|op| state.seen.get(*op))
            .flatten()
            .filter(|(_, body)| body.contains(needle))
            .map(|(at, _)| *at)
            .collect();
        times.sort();
        let mut peak = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end] - times[start] >= Duration::from_secs(1) {
                start += 1;
            }
            peak = peak.max(end - start + 1);
        }
        peak
    }

    /// Drops every fault still waiting to be answered (from `inject` and `inject_for`).
    /// Throttles as AWS does: more than `per_second` calls of `operations` together within one
    /// second are answered with `code` (counted in [`Self::injected`] as `operation: code`).
    pub fn set_limit(&self, operations: &[&str], per_second: usize, code: &str) {
        self.state.lock().unwrap().limits.push(Limit {
            operations: operations.iter().map(|o| o.to_string()).collect(),
            per_second,
            code: code.to_owned(),
            admitted: Default::default(),
        });
    }

    /// Refuses every Kinesis write on a stream that is not ACTIVE, as AWS does.
    pub fn hold_writes_to_active_streams(&self) {
        self.state.lock().unwrap().writes_only_when_active = true;
    }

    /// The calls the upstream answered so far, in order, from the `from`th on.
    pub fn trail(&self, from: usize) -> Vec<Recorded> {
        self.state.lock().unwrap().trail[from..].to_vec()
    }

    /// Pages ListStreams by `NextToken` as AWS does, over an emulator that does not.
    pub fn emulate_list_streams_tokens(&self) {
        self.state.lock().unwrap().list_streams_tokens = true;
    }

    /// Holds every call of the function's own credentials to `policy` from now on: a call it
    /// does not allow is answered `AccessDeniedException` (counted in [`Self::injected`] as
    /// `operation: AccessDenied`) and never reaches the emulator.
    pub fn enforce_policy(&self, policy: IamPolicy) {
        self.enforce_policies(Policies {
            own: policy,
            roles: HashMap::new(),
        });
    }

    /// As [`Self::enforce_policy`], each assumed role's calls held to its own policy.
    pub fn enforce_policies(&self, policies: Policies) {
        self.state.lock().unwrap().policies = Some(Arc::new(policies));
    }

    pub fn clear_faults(&self) {
        self.state.lock().unwrap().rules.clear();
    }

    /// Turns random faults on (or off with `None`).
    pub fn set_chaos(&self, chaos: Option<Chaos>) {
        self.state.lock().unwrap().chaos = chaos;
    }

    /// The faults answered so far, by `operation: label`.
    pub fn injected(&self) -> std::collections::BTreeMap<String, usize> {
        self.state.lock().unwrap().injected.clone()
    }

    /// The upstream's statuses for the forwarded calls of `operation` whose body contains
    /// `needle` (faults answered by the proxy are not in it).
    pub fn answered(&self, operation: &str, needle: &str) -> Vec<u16> {
        self.state
            .lock()
            .unwrap()
            .answered
            .get(operation)
            .map_or_else(Vec::new, |all| {
                all.iter()
                    .filter(|(body, _)| body.contains(needle))
                    .map(|(_, status)| *status)
                    .collect()
            })
    }

    pub fn reset_counts(&self) {
        self.state.lock().unwrap().seen.clear();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

fn full(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = StatusCode::from_u16(status).expect("status");
    response.headers_mut().insert(
        "content-type",
        "application/x-amz-json-1.1".parse().expect("header"),
    );
    response
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn handle(
    req: Request<Incoming>,
    upstream: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
) -> Result<Response<Full<Bytes>>, BoxError> {
    let target_header = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let target = target_header
        .as_deref()
        .and_then(|v| v.rsplit('.').next())
        .map(str::to_owned);
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    // JSON protocols name the operation in X-Amz-Target; the query protocol (STS) in `Action=`.
    let operation = target.unwrap_or_else(|| {
        String::from_utf8_lossy(&body)
            .split('&')
            .find_map(|pair| pair.strip_prefix("Action="))
            .unwrap_or("")
            .to_owned()
    });
    let fault = {
        let mut state = state.lock().unwrap();
        let text = String::from_utf8_lossy(&body);
        state
            .seen
            .entry(operation.clone())
            .or_default()
            .push((Instant::now(), text.to_string()));
        if let Some(policies) = state.policies.clone() {
            // The caller and region, from the signature's credential scope.
            let scope: Vec<String> = parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split("Credential=").nth(1))
                .map(|c| c.split('/').map(str::to_owned).collect())
                .unwrap_or_default();
            let access_key = scope.first().cloned().unwrap_or_default();
            let region = scope.get(2).cloned().unwrap_or_else(|| REGION.to_owned());
            let role = state.sessions.get(&access_key).cloned();
            let (policy, account, principal) = match &role {
                Some(arn) => (
                    policies.roles.get(arn),
                    arn.split(':').nth(4).unwrap_or("").to_owned(),
                    arn.clone(),
                ),
                None => (
                    Some(&policies.own),
                    ACCOUNT.to_owned(),
                    format!("arn:aws:sts::{ACCOUNT}:assumed-role/EnforcerRole/enforcer"),
                ),
            };
            let request: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let asked = match target_header.as_deref() {
                Some(target) => policy
                    .and_then(|p| p.request(target, &request, &account, &region))
                    .or_else(|| policy.is_none().then(|| (target.to_owned(), vec![]))),
                None if operation == "GetCallerIdentity" => None,
                None => Some((
                    format!("sts:{operation}"),
                    vec![query_param(&text, "RoleArn").unwrap_or_else(|| "*".to_owned())],
                )),
            };
            let denied = asked.and_then(|(action, resources)| match policy {
                Some(policy) => policy
                    .denies(&action, &resources)
                    .map(|resource| (action, resource)),
                // A role the test gave no policy: nothing is allowed.
                None => Some((action, resources.first().cloned().unwrap_or_default())),
            });
            if let Some((action, resource)) = denied {
                *state
                    .injected
                    .entry(format!("{operation}: AccessDenied"))
                    .or_default() += 1;
                let message = format!(
                    "User: {principal} is not authorized to perform: {action} on resource: \
                     {resource} because no identity-based policy allows the {action} action"
                );
                let body =
                    serde_json::json!({"__type": "AccessDeniedException", "message": message});
                return Ok(full(400, body.to_string()));
            }
        }
        let fault = state
            .rules
            .iter_mut()
            .find(|r| {
                r.operation == operation
                    && r.remaining > 0
                    && r.body_contains
                        .as_ref()
                        .is_none_or(|needle| text.contains(needle.as_str()))
            })
            .map(|r| {
                r.remaining -= 1;
                r.fault.clone()
            });
        let fault = fault.or_else(|| {
            let chaos = state.chaos.as_mut()?;
            if !chaos.operations.contains(&operation) || chaos.rng.f64() >= chaos.rate {
                return None;
            }
            let i = chaos.rng.usize(..chaos.faults.len());
            Some(chaos.faults[i].clone())
        });
        let fault = fault.or_else(|| {
            let now = Instant::now();
            let mut throttled = None;
            for limit in state.limits.iter_mut() {
                if !limit.operations.contains(&operation) {
                    continue;
                }
                while limit
                    .admitted
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
                {
                    limit.admitted.pop_front();
                }
                if limit.admitted.len() >= limit.per_second {
                    throttled = Some(Fault::error(&limit.code, "Rate exceeded"));
                } else {
                    limit.admitted.push_back(now);
                }
            }
            throttled
        });
        if let Some(fault) = &fault {
            *state
                .injected
                .entry(format!("{operation}: {}", fault.label()))
                .or_default() += 1;
        }
        fault
    };
    match fault {
        Some(Fault::AwsError {
            status,
            code,
            message,
        }) => {
            let body = serde_json::json!({"__type": code, "message": message}).to_string();
            return Ok(full(status, body));
        }
        Some(Fault::Raw { status, body }) => return Ok(full(status, body)),
        Some(Fault::Reset) => return Err("injected connection reset".into()),
        Some(Fault::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Err("hung for an hour".into());
        }
        Some(Fault::Slow(delay)) => tokio::time::sleep(delay).await,
        None => {}
    }
    let (hold, write_lock) = {
        let state = state.lock().unwrap();
        (
            state.writes_only_when_active && KINESIS_WRITES.contains(&operation.as_str()),
            state.write_lock.clone(),
        )
    };
    let _write_turn = if hold {
        let turn = write_lock.lock_owned().await;
        let status = upstream_stream_status(upstream, &parts, &body).await?;
        // A stream that does not exist is the upstream's to answer (ResourceNotFoundException).
        if status != "ACTIVE" && status != "NOT_FOUND" {
            let name = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|b| b.get("StreamName").or(b.get("StreamARN")).cloned())
                .unwrap_or_default();
            *state
                .lock()
                .unwrap()
                .injected
                .entry(format!("{operation}: not ACTIVE"))
                .or_default() += 1;
            let message = format!(
                "Stream {name} under account {ACCOUNT} not ACTIVE, instead in state {status}"
            );
            let body = serde_json::json!({"__type": "ResourceInUseException", "message": message});
            return Ok(full(400, body.to_string()));
        }
        Some(turn)
    } else {
        None
    };
    let user_agent = parts
        .headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let tokens = operation == "ListStreams" && state.lock().unwrap().list_streams_tokens;
    let body = if tokens {
        // A token is the last name of the page before: ask the emulator to start after it.
        let mut request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if let Some(token) = request.as_object_mut().and_then(|o| o.remove("NextToken")) {
            request["ExclusiveStartStreamName"] = token;
        }
        Bytes::from(request.to_string())
    } else {
        body
    };
    let mut parts = parts;
    if tokens {
        parts.headers.remove("content-length");
    }
    let request_body = String::from_utf8_lossy(&body).into_owned();
    let forwarded = Request::from_parts(parts, Full::new(body));
    // An upstream that is down (killed) closes the client's connection, as a dead host would.
    let stream = TcpStream::connect(upstream).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let response = sender.send_request(forwarded).await?;
    let (mut parts, body) = response.into_parts();
    let mut body = body.collect().await?.to_bytes();
    if operation == "AssumeRole" && parts.status.is_success() {
        let answer = String::from_utf8_lossy(&body);
        let access_key = answer
            .split("<AccessKeyId>")
            .nth(1)
            .and_then(|rest| rest.split("</AccessKeyId>").next());
        if let (Some(access_key), Some(role)) = (access_key, query_param(&request_body, "RoleArn"))
        {
            state
                .lock()
                .unwrap()
                .sessions
                .insert(access_key.to_owned(), role);
        }
    }
    if tokens && parts.status.is_success() {
        let mut page: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let last = page["StreamNames"]
            .as_array()
            .and_then(|names| names.last())
            .cloned();
        if page["HasMoreStreams"] == serde_json::json!(true)
            && page.get("NextToken").is_none()
            && let Some(last) = last
        {
            page["NextToken"] = last;
            body = Bytes::from(page.to_string());
            parts.headers.remove("content-length");
        }
    }
    {
        let mut state = state.lock().unwrap();
        state.trail.push(Recorded {
            operation: operation.clone(),
            body: serde_json::from_str(&request_body).unwrap_or_default(),
            user_agent,
            status: parts.status.as_u16(),
        });
        state
            .answered
            .entry(operation)
            .or_default()
            .push((request_body, parts.status.as_u16()));
    }
    Ok(Response::from_parts(parts, Full::new(body)))
}

/// A parameter of a query-protocol body (`Action=AssumeRole&RoleArn=...`), percent-decoded.
fn query_param(body: &str, name: &str) -> Option<String> {
    let raw = body
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))?;
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The status of the stream a Kinesis request names, read from the upstream with the request's
/// own headers (kinesis-mock reads the account from the credentials, not the signature).
async fn upstream_stream_status(
    upstream: SocketAddr,
    parts: &hyper::http::request::Parts,
    body: &Bytes,
) -> Result<String, BoxError> {
    let request: serde_json::Value = serde_json::from_slice(body)?;
    let mut query = serde_json::json!({});
    for field in ["StreamName", "StreamARN"] {
        if let Some(value) = request.get(field) {
            query[field] = value.clone();
        }
    }
    let mut builder = Request::builder().method("POST").uri(parts.uri.clone());
    for (name, value) in &parts.headers {
        if name != "content-length" && name != "x-amz-target" {
            builder = builder.header(name, value);
        }
    }
    let describe = builder
        .header("x-amz-target", "Kinesis_20131202.DescribeStreamSummary")
        .body(Full::new(Bytes::from(query.to_string())))?;
    let stream = TcpStream::connect(upstream).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let answer = sender
        .send_request(describe)
        .await?
        .into_body()
        .collect()
        .await?;
    let summary: serde_json::Value = serde_json::from_slice(&answer.to_bytes())?;
    Ok(summary["StreamDescriptionSummary"]["StreamStatus"]
        .as_str()
        .unwrap_or("NOT_FOUND")
        .to_owned())
}

/// The emulators, a proxy in front of each, and SDK clients for seeding and checking.
pub struct Emulators {
    /// moto server itself (seeding and checking that bypasses the proxies).
    pub moto_url: String,
    pub kinesis_proxy: Proxy,
    pub moto_proxy: Proxy,
    pub kinesis: aws_sdk_kinesis::Client,
    pub firehose: aws_sdk_firehose::Client,
    pub kms: aws_sdk_kms::Client,
    _kinesis_mock: Process,
    _moto: Process,
}

pub fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .http_client(stream_encryption_enforcer::clients::https_client())
        .credentials_provider(aws_sdk_kinesis::config::SharedCredentialsProvider::new(
            aws_sdk_kinesis::config::Credentials::new(ACCOUNT, "test-secret", None, None, "tests"),
        ))
        .endpoint_url(endpoint)
        .build()
}

/// An SDK configuration acting in `account` and `region` of moto at `moto_url`, straight (not
/// through a proxy): the default credentials for [`ACCOUNT`], credentials from moto's STS
/// AssumeRole (which act in the role's account) for any other.
pub async fn sdk_config_in(moto_url: &str, account: &str, region: &str) -> aws_config::SdkConfig {
    let base = sdk_config(moto_url);
    let config = base
        .to_builder()
        .region(aws_config::Region::new(region.to_owned()));
    if account == ACCOUNT {
        return config.build();
    }
    let creds = aws_sdk_sts::Client::new(&base)
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account}:role/SeedAdmin"))
        .role_session_name("seed")
        .send()
        .await
        .expect("AssumeRole")
        .credentials
        .expect("credentials");
    config
        .credentials_provider(aws_sdk_kinesis::config::SharedCredentialsProvider::new(
            aws_sdk_kinesis::config::Credentials::new(
                creds.access_key_id(),
                creds.secret_access_key(),
                Some(creds.session_token().to_owned()),
                None,
                "seed",
            ),
        ))
        .build()
}

impl Emulators {
    pub async fn start(create: Duration, update: Duration) -> Self {
        let (kinesis_mock, kinesis_url) = start_kinesis_mock(create, update);
        let (moto, moto_url) = start_moto();
        let kinesis_proxy = Proxy::start(&kinesis_url).await;
        let moto_proxy = Proxy::start(&moto_url).await;
        // Seeding and checking go straight to the emulators, so the proxies count only the
        // enforcer's calls.
        Self {
            kinesis: aws_sdk_kinesis::Client::new(&sdk_config(&kinesis_url)),
            firehose: aws_sdk_firehose::Client::new(&sdk_config(&moto_url)),
            kms: aws_sdk_kms::Client::new(&sdk_config(&moto_url)),
            moto_url,
            kinesis_proxy,
            moto_proxy,
            _kinesis_mock: kinesis_mock,
            _moto: moto,
        }
    }

    /// The environment that points the enforcer's binaries at the proxies.
    pub fn env(&self, mandated_key: &str) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL_KINESIS", self.kinesis_proxy.url.as_str()),
            ("AWS_ENDPOINT_URL_FIREHOSE", self.moto_proxy.url.as_str()),
            ("AWS_ENDPOINT_URL_KMS", self.moto_proxy.url.as_str()),
            ("AWS_ENDPOINT_URL_STS", self.moto_proxy.url.as_str()),
            ("AWS_ACCESS_KEY_ID", ACCOUNT),
            ("AWS_SECRET_ACCESS_KEY", "test-secret"),
            ("AWS_REGION", REGION),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("MANDATED_KMS_KEY", mandated_key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// A customer managed key in moto with `alias` (e.g. `alias/org-streams`); returns its ARN.
    pub async fn create_key(&self, alias: &str) -> String {
        create_key_on(&self.kms, alias).await
    }

    pub async fn create_stream(&self, name: &str) {
        create_stream_on(&self.kinesis, name).await;
    }

    pub async fn stream(&self, name: &str) -> aws_sdk_kinesis::types::StreamDescriptionSummary {
        stream_on(&self.kinesis, name).await
    }

    /// Waits until the stream is ACTIVE (kinesis-mock's own CREATING / UPDATING phases).
    pub async fn wait_active(&self, name: &str) {
        wait_active_on(&self.kinesis, name).await;
    }

    /// A DirectPut (or other source type) delivery stream: [`create_delivery_stream_on`].
    pub async fn create_delivery_stream(&self, name: &str, kinesis_source: Option<&str>) {
        create_delivery_stream_on(&self.firehose, ACCOUNT, name, kinesis_source).await;
    }

    pub async fn delivery_encryption(
        &self,
        name: &str,
    ) -> Option<aws_sdk_firehose::types::DeliveryStreamEncryptionConfiguration> {
        delivery_encryption_on(&self.firehose, name).await
    }

    /// Resolves any key reference to its key ARN in moto.
    pub async fn key_arn(&self, key: &str) -> String {
        self.kms
            .describe_key()
            .key_id(key)
            .send()
            .await
            .expect("DescribeKey")
            .key_metadata
            .and_then(|m| m.arn)
            .expect("arn")
    }
}

/// A DirectPut (or, with `kinesis_source`, Kinesis-fed) delivery stream in `account`, through
/// `firehose`. moto's DescribeDeliveryStream is only readable by the Rust SDK when the S3
/// destination sets these three fields.
pub async fn create_delivery_stream_on(
    firehose: &aws_sdk_firehose::Client,
    account: &str,
    name: &str,
    kinesis_source: Option<&str>,
) {
    use aws_sdk_firehose::types::*;
    let destination = ExtendedS3DestinationConfiguration::builder()
        .role_arn(format!("arn:aws:iam::{account}:role/FirehoseDelivery"))
        .bucket_arn("arn:aws:s3:::example-delivery-bucket")
        .compression_format(CompressionFormat::Uncompressed)
        .buffering_hints(
            BufferingHints::builder()
                .size_in_mbs(5)
                .interval_in_seconds(300)
                .build(),
        )
        .encryption_configuration(
            EncryptionConfiguration::builder()
                .no_encryption_config(NoEncryptionConfig::NoEncryption)
                .build(),
        )
        .build()
        .expect("destination");
    let mut request = firehose
        .create_delivery_stream()
        .delivery_stream_name(name)
        .extended_s3_destination_configuration(destination);
    request = match kinesis_source {
        None => request.delivery_stream_type(DeliveryStreamType::DirectPut),
        Some(stream_arn) => request
            .delivery_stream_type(DeliveryStreamType::KinesisStreamAsSource)
            .kinesis_stream_source_configuration(
                KinesisStreamSourceConfiguration::builder()
                    .kinesis_stream_arn(stream_arn)
                    .role_arn(format!("arn:aws:iam::{account}:role/FirehoseSourceRead"))
                    .build()
                    .expect("source"),
            ),
    };
    request.send().await.expect("CreateDeliveryStream");
}

/// What DescribeStreamSummary says of `name`, through `kinesis` (any emulator or account).
pub async fn stream_on(
    kinesis: &aws_sdk_kinesis::Client,
    name: &str,
) -> aws_sdk_kinesis::types::StreamDescriptionSummary {
    kinesis
        .describe_stream_summary()
        .stream_name(name)
        .send()
        .await
        .expect("DescribeStreamSummary")
        .stream_description_summary
        .expect("summary")
}

/// A customer managed key with `alias`, through `kms` (any account and region); returns its ARN.
pub async fn create_key_on(kms: &aws_sdk_kms::Client, alias: &str) -> String {
    let key = kms.create_key().send().await.expect("CreateKey");
    let meta = key.key_metadata().expect("metadata");
    kms.create_alias()
        .alias_name(alias)
        .target_key_id(meta.key_id())
        .send()
        .await
        .expect("CreateAlias");
    meta.arn().expect("arn").to_owned()
}

/// A delivery stream's encryption configuration, as DescribeDeliveryStream reports it.
pub async fn delivery_encryption_on(
    firehose: &aws_sdk_firehose::Client,
    name: &str,
) -> Option<aws_sdk_firehose::types::DeliveryStreamEncryptionConfiguration> {
    firehose
        .describe_delivery_stream()
        .delivery_stream_name(name)
        .send()
        .await
        .expect("DescribeDeliveryStream")
        .delivery_stream_description
        .expect("description")
        .delivery_stream_encryption_configuration
}

/// Puts a stream on `key` with StartStreamEncryption (seeding, straight at the emulator).
pub async fn encrypt_stream_on(kinesis: &aws_sdk_kinesis::Client, name: &str, key: &str) {
    kinesis
        .start_stream_encryption()
        .stream_name(name)
        .encryption_type(aws_sdk_kinesis::types::EncryptionType::Kms)
        .key_id(key)
        .send()
        .await
        .expect("StartStreamEncryption");
}

/// Creates a one-shard stream with `kinesis`. kinesis-mock allows only a few streams CREATING at
/// once: a `LimitExceededException` waits its turn (for up to a minute).
pub async fn create_stream_on(kinesis: &aws_sdk_kinesis::Client, name: &str) {
    for _ in 0..600 {
        match kinesis
            .create_stream()
            .stream_name(name)
            .shard_count(1)
            .send()
            .await
        {
            Ok(_) => return,
            Err(e) if format!("{e:?}").contains("LimitExceeded") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("CreateStream {name}: {e:?}"),
        }
    }
    panic!("CreateStream {name}: still limited after a minute");
}

/// Waits (up to 60 s) until `name` is ACTIVE.
pub async fn wait_active_on(kinesis: &aws_sdk_kinesis::Client, name: &str) {
    let start = Instant::now();
    loop {
        let status = stream_on(kinesis, name).await.stream_status;
        if status == aws_sdk_kinesis::types::StreamStatus::Active {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{name} never became ACTIVE"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fixture from events/ with the stream name (and ARN where present) replaced.
pub fn event(fixture: &str, name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("events")
        .join(format!("{fixture}.json"));
    let mut event: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("JSON");
    let detail = &mut event["detail"];
    let params = &mut detail["requestParameters"];
    if params.get("streamName").is_some() {
        params["streamName"] = name.into();
    }
    if params.get("streamARN").is_some() {
        params["streamARN"] = format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}").into();
    }
    if params.get("deliveryStreamName").is_some() {
        params["deliveryStreamName"] = name.into();
    }
    if detail["responseElements"]
        .get("deliveryStreamARN")
        .is_some()
    {
        detail["responseElements"]["deliveryStreamARN"] =
            format!("arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/{name}").into();
    }
    event
}

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
fn isolate_env(command: &mut Command, env: &[(String, String)]) {
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

#[derive(Default)]
struct RuntimeState {
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

async fn runtime_handle(
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

/// The re-application ledger's table, as template.yaml declares it (`resource` and `applied`,
/// on demand), named `table` in moto's DynamoDB at `moto_url`.
pub async fn create_ledger_table(moto_url: &str, table: &str) {
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk_config(moto_url));
    let key = |name: &str, kind| {
        aws_sdk_dynamodb::types::KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .unwrap()
    };
    let attribute = |name: &str| {
        aws_sdk_dynamodb::types::AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    dynamodb
        .create_table()
        .table_name(table)
        .key_schema(key("resource", aws_sdk_dynamodb::types::KeyType::Hash))
        .key_schema(key("applied", aws_sdk_dynamodb::types::KeyType::Range))
        .attribute_definitions(attribute("resource"))
        .attribute_definitions(attribute("applied"))
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .send()
        .await
        .expect("CreateTable");
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

impl Process {
    /// Stops the process and returns what it wrote on stdout.
    pub fn stop_and_read_stdout(mut self) -> String {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let mut out = String::new();
        if let Some(mut stdout) = self.0.stdout.take() {
            use std::io::Read;
            let _ = stdout.read_to_string(&mut out);
        }
        if let Some(drain) = self.1.take() {
            // The drain ends at end-of-file, which the kill brings.
            out.push_str(&String::from_utf8_lossy(&drain.join().unwrap_or_default()));
        }
        out
    }
}
