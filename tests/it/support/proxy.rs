//! The recording, fault-injecting proxy in front of each emulator: faults by call and by
//! resource, AWS's per-account rate limits, AWS's rule of no write on a stream that is not
//! `ACTIVE`, and the identity policies of `iam` held to every caller.

use super::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// Serves HTTP/1.1 on a fresh loopback port with `handler`; returns the address and the task.
pub(crate) async fn serve<S, H, Fut, E>(
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

pub(crate) struct Rule {
    operation: String,
    /// Only requests whose body contains this (e.g. a stream name).
    body_contains: Option<String>,
    remaining: usize,
    fault: Fault,
}

/// A per-account API limit as AWS applies it: at most `per_second` of `operations` together in
/// any one second; the rest are answered `code` (throttled) without reaching the emulator.
pub(crate) struct Limit {
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
pub(crate) struct ProxyState {
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
    /// Streams (by ARN) the proxy shows as CREATING until the instant given, as AWS would for a
    /// new stream, where the emulator makes them ACTIVE at once ([`Proxy::creating_until`]).
    creating: HashMap<String, Instant>,
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

    /// Throttles as AWS does: more than `per_second` calls of `operations` together within one
    /// second are answered with `code` (counted in [`Self::injected`] as `operation: code`).
    #[allow(dead_code)] // the benchmark's burst and race
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
    #[allow(dead_code)] // the benchmark's race
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

    /// Shows the stream `arn` as CREATING until `until`: DescribeStreamSummary answers that
    /// status, and a StartStreamEncryption is answered ResourceInUseException, as AWS answers a
    /// write on a stream that is not ACTIVE.
    pub fn creating_until(&self, arn: &str, until: Instant) {
        self.state
            .lock()
            .unwrap()
            .creating
            .insert(arn.to_owned(), until);
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

pub(crate) fn full(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = StatusCode::from_u16(status).expect("status");
    response.headers_mut().insert(
        "content-type",
        "application/x-amz-json-1.1".parse().expect("header"),
    );
    response
}

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) async fn handle(
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
    // A stream still in its (simulated) CREATING period.
    let creating = {
        let state = state.lock().unwrap();
        let arn = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|b| {
                b.get("StreamARN")
                    .and_then(|a| a.as_str())
                    .map(str::to_owned)
            });
        arn.is_some_and(|arn| {
            state
                .creating
                .get(&arn)
                .is_some_and(|until| Instant::now() < *until)
        })
    };
    if creating && KINESIS_WRITES.contains(&operation.as_str()) {
        let body = serde_json::json!({"__type": "ResourceInUseException",
            "message": "Stream is not ACTIVE, instead in state CREATING"});
        return Ok(full(400, body.to_string()));
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
    if creating && operation == "DescribeStreamSummary" && parts.status.is_success() {
        let mut answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        answer["StreamDescriptionSummary"]["StreamStatus"] = serde_json::json!("CREATING");
        body = Bytes::from(answer.to_string());
        parts.headers.remove("content-length");
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
pub(crate) fn query_param(body: &str, name: &str) -> Option<String> {
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
pub(crate) async fn upstream_stream_status(
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
