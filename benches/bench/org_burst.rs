//! The organisation-wide burst: many accounts creating streams at once, each stream CREATING for
//! 10 s (shown by the proxy, where moto makes it ACTIVE at once) and created by Terraform, so
//! that every event gets the 30 s settle period. Two designs of the same function, with the real
//! `bootstrap`:
//!
//! - **before**: EventBridge invokes the function asynchronously, `RESERVED_CONCURRENCY` 4
//!   containers take the events one at a time, each paced at a quarter of the limits;
//! - **after**: each event is routed to its account and region's message group on a FIFO queue
//!   (moto's SQS), and the queue's event source hands batches to up to `EventConcurrency`
//!   containers; an event whose stream is not ready waits on the re-check queue (moto delays
//!   it) and goes back to its group. The harness plays both event source mappings: it receives
//!   up to 10 messages (moto keeps the FIFO rule: no message of a group while one of it is in
//!   flight), invokes, and deletes what the answer does not name.
//!
//! Time to compliance of a stream is from its creation to the answer of the invocation that
//! handled its event. The proxy counts every call per account, for the busiest second.

use crate::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{ACCOUNT, Proxy, REGION, RuntimeApi};

/// The Terraform provider's user agent (a real one, from the adapters' fixtures).
const TERRAFORM: &str = "APN/1.0 HashiCorp/1.0 Terraform/1.11.4 terraform-provider-aws/5.100.0";
/// How long a new stream is CREATING.
const CREATING: Duration = Duration::from_secs(10);
/// The template's `EventConcurrency` default.
const EVENT_CONCURRENCY: usize = 50;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Design {
    Before,
    After,
}

/// One burst: `accounts` accounts creating `per_account` streams each at once, and with
/// `flood`, one more account creating 5 streams a second for 30 s beside them.
pub(crate) struct Burst {
    pub(crate) design: Design,
    pub(crate) accounts: usize,
    pub(crate) per_account: usize,
    pub(crate) flood: bool,
}

/// What a burst measured.
pub(crate) struct Measured {
    /// Seconds from creation to compliance, of the burst's streams (the flood's apart).
    pub(crate) seconds: Vec<f64>,
    /// The flood's streams done when the burst was, of how many.
    pub(crate) flood_done: (usize, usize),
    /// The busiest second of any one account, per API.
    pub(crate) busiest: BTreeMap<&'static str, usize>,
    /// Outcomes of the invocations.
    pub(crate) failures: usize,
    /// The emulator's (moto's, one process for every account) busiest second and its average,
    /// in CPU seconds per second: the shared part of the benchmark a real organisation lacks.
    pub(crate) moto_cpu: (f64, f64),
}

/// CPU seconds a process has used (`/proc/<pid>/stat`: utime + stime, in clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the command's `)`: state is field 0, utime 11, stime 12.
    (ticks(11) + ticks(12)) / 100.0
}

const FLOODER: &str = "299999999999";

pub(crate) async fn run_burst(burst: &Burst) -> Measured {
    let (moto, moto_url) = support::start_moto();
    let moto_pid = moto.id();
    let proxy = Proxy::start(&moto_url).await;
    let accounts: Vec<String> = (0..burst.accounts)
        .map(|i| format!("{:012}", 210_000_000_000u64 + i as u64))
        .collect();
    let mut members: HashMap<String, aws_sdk_kinesis::Client> = HashMap::new();
    for account in accounts
        .iter()
        .chain(burst.flood.then_some(&FLOODER.to_owned()))
    {
        let config = support::sdk_config_in(&moto_url, account, REGION).await;
        support::create_key_on(
            &aws_sdk_kms::Client::new(&config),
            &format!("alias/{KEY_ALIAS}"),
        )
        .await;
        members.insert(account.clone(), aws_sdk_kinesis::Client::new(&config));
    }
    let home = support::sdk_config_in(&moto_url, ACCOUNT, REGION).await;
    support::create_key_on(
        &aws_sdk_kms::Client::new(&home),
        &format!("alias/{KEY_ALIAS}"),
    )
    .await;
    let sqs = aws_sdk_sqs::Client::new(&home);
    let events_queue = support::create_queue_on(&sqs, "burst-events.fifo").await;
    support::create_queue_on(&sqs, "burst-failed").await;
    let recheck_queue = support::create_queue_on(&sqs, "burst-recheck").await;
    let mut allowed = accounts.clone();
    if burst.flood {
        allowed.push(FLOODER.to_owned());
    }
    let mut vars: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", proxy.url.as_str()),
        ("AWS_ACCESS_KEY_ID", ACCOUNT),
        ("AWS_SECRET_ACCESS_KEY", "test-secret"),
        ("AWS_REGION", REGION),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("MANDATED_KMS_KEY", &format!("alias/{KEY_ALIAS}")),
        ("TARGET_ROLE_NAME", "StreamEncryptionEnforcerMember"),
        ("ALLOWED_ACCOUNTS", &allowed.join(",")),
        ("ALLOWED_REGIONS", REGION),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let containers = match burst.design {
        Design::Before => {
            vars.push(("RESERVED_CONCURRENCY".into(), "4".into()));
            4
        }
        Design::After => {
            for (var, name) in [
                ("EVENTS_QUEUE_URL", "burst-events.fifo"),
                ("FAILED_EVENTS_QUEUE_URL", "burst-failed"),
                ("RECHECK_QUEUE_URL", "burst-recheck"),
            ] {
                vars.push((var.into(), format!("{}/{ACCOUNT}/{name}", proxy.url)));
            }
            vars.push(("PLACE_CONCURRENCY".into(), "2".into()));
            // The event sources' concurrency, and a few for the routing.
            EVENT_CONCURRENCY + 5 + 4
        }
    };
    let api = Arc::new(RuntimeApi::start().await);
    let _processes: Vec<_> = (0..containers)
        .map(|_| start_container(&api, &vars))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Each stream: created (CREATING for 10 s at the proxy), its Terraform event handed to the
    // function. When each was created, and when its event was done, by the event's id.
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let done: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let ctx = Arc::new(Ctx {
        members,
        proxy: proxy.clone(),
        api: api.clone(),
        created: created.clone(),
        done: done.clone(),
        design: burst.design,
    });
    // moto's CPU, each second of the burst.
    let sampler = tokio::spawn(async move {
        let mut busiest: f64 = 0.0;
        let (start, first) = (Instant::now(), cpu_seconds(moto_pid));
        let mut last = first;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = cpu_seconds(moto_pid);
            busiest = busiest.max(now - last);
            last = now;
            if start.elapsed() > Duration::from_secs(7200) {
                return (busiest, 0.0);
            }
            MOTO_CPU
                .lock()
                .unwrap()
                .replace((busiest, (now - first) / start.elapsed().as_secs_f64()));
        }
    });
    let mut tasks = Vec::new();
    for account in &accounts {
        for i in 0..burst.per_account {
            tasks.push(tokio::spawn(create(
                ctx.clone(),
                account.clone(),
                format!("burst-{i}"),
            )));
        }
    }
    if burst.flood {
        // As fast as AWS lets one account create streams: 5 a second, for 30 s.
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let mut each = Vec::new();
            for i in 0..150 {
                each.push(tokio::spawn(create(
                    ctx.clone(),
                    FLOODER.to_owned(),
                    format!("flood-{i:03}"),
                )));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            for task in each {
                let _ = task.await;
            }
        }));
    }
    let burst_ids: Vec<String> = accounts
        .iter()
        .flat_map(|a| (0..burst.per_account).map(move |i| format!("{a}-burst-{i}")))
        .collect();
    let failures = Arc::new(Mutex::new(0usize));
    if burst.design == Design::After {
        // The event source mappings: up to EVENT_CONCURRENCY batches of the events queue in
        // flight, and 5 of the re-check queue's (the template's). A stream is compliant when
        // the answer of a batch that held its event comes back and moto shows its key.
        let mut pollers = Vec::new();
        let queues = [
            (events_queue.clone(), EVENT_CONCURRENCY),
            (recheck_queue.clone(), 5),
        ];
        for (queue, count) in queues {
            for p in 0..count {
                let (sqs, queue, api, done, failures, ctx) = (
                    sqs.clone(),
                    queue.clone(),
                    api.clone(),
                    done.clone(),
                    failures.clone(),
                    ctx.clone(),
                );
                let burst_ids = burst_ids.clone();
                pollers.push(tokio::spawn(async move {
                    for n in 0.. {
                        if burst_ids.iter().all(|id| done.lock().unwrap().contains_key(id)) {
                            return;
                        }
                        let got = sqs
                            .receive_message()
                            .queue_url(&queue)
                            .max_number_of_messages(10)
                            .visibility_timeout(900)
                            .send()
                            .await
                            .map(|r| r.messages.unwrap_or_default())
                            .unwrap_or_default();
                        if got.is_empty() {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                        let records: Vec<Value> = got
                            .iter()
                            .map(|m| json!({"messageId": m.message_id(), "body": m.body(), "eventSource": "aws:sqs"}))
                            .collect();
                        let id = format!("poller-{}-{p}-{n}", queue.rsplit('/').next().unwrap_or(""));
                        api.push(&id, json!({ "Records": records }), Duration::from_secs(300));
                        let answer = api.result_of(&id, Duration::from_secs(900)).await;
                        let now = Instant::now();
                        let kept: Vec<&str> = answer.body["batchItemFailures"]
                            .as_array()
                            .map(|a| a.iter().filter_map(|f| f["itemIdentifier"].as_str()).collect())
                            .unwrap_or_default();
                        *failures.lock().unwrap() += kept.len();
                        for m in &got {
                            if kept.contains(&m.message_id().unwrap_or_default()) {
                                continue;
                            }
                            let _ = sqs
                                .delete_message()
                                .queue_url(&queue)
                                .receipt_handle(m.receipt_handle().unwrap_or_default())
                                .send()
                                .await;
                            if !queue.ends_with(".fifo") {
                                continue;
                            }
                            let body: Value =
                                serde_json::from_str(m.body().unwrap_or("{}")).unwrap_or_default();
                            let event = if body.get("kind").is_some() { &body["event"] } else { &body };
                            let (Some(event_id), Some(account), Some(name)) = (
                                event["id"].as_str(),
                                event["detail"]["recipientAccountId"].as_str(),
                                event["detail"]["requestParameters"]["streamName"].as_str(),
                            ) else {
                                continue;
                            };
                            if done.lock().unwrap().contains_key(event_id) {
                                continue;
                            }
                            let Some(kinesis) = ctx.members.get(account) else {
                                continue;
                            };
                            let encrypted = kinesis
                                .describe_stream_summary()
                                .stream_name(name)
                                .send()
                                .await
                                .ok()
                                .and_then(|d| d.stream_description_summary)
                                .is_some_and(|d| d.key_id.is_some());
                            if encrypted {
                                done.lock().unwrap().insert(event_id.to_owned(), now);
                            }
                        }
                    }
                }));
            }
        }
        for poller in pollers {
            let _ = poller.await;
        }
    } else {
        loop {
            if burst_ids
                .iter()
                .all(|id| done.lock().unwrap().contains_key(id))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let (created, done) = (
        created.lock().unwrap().clone(),
        done.lock().unwrap().clone(),
    );
    let seconds: Vec<f64> = burst_ids
        .iter()
        .map(|id| (done[id] - created[id]).as_secs_f64())
        .collect();
    let flood_total = if burst.flood { 150 } else { 0 };
    let flood_done = done.keys().filter(|id| id.starts_with(FLOODER)).count();
    let mut busiest = BTreeMap::new();
    for op in [
        "DescribeStreamSummary",
        "StartStreamEncryption",
        "ListTagsForStream",
    ] {
        let peak = allowed
            .iter()
            .map(|a| proxy.peak_per_second_for(&[op], &format!(":{a}:stream/")))
            .max()
            .unwrap_or(0);
        busiest.insert(op, peak);
    }
    for task in tasks {
        task.abort();
    }
    sampler.abort();
    let moto_cpu = MOTO_CPU.lock().unwrap().take().unwrap_or((0.0, 0.0));
    drop(moto);
    let failures = *failures.lock().unwrap();
    Measured {
        seconds,
        flood_done: (flood_done, flood_total),
        busiest,
        failures,
        moto_cpu,
    }
}

/// The sampler's last reading: moto's busiest second and its average, in CPU seconds a second.
static MOTO_CPU: Mutex<Option<(f64, f64)>> = Mutex::new(None);

/// What creating a stream needs.
struct Ctx {
    members: HashMap<String, aws_sdk_kinesis::Client>,
    proxy: Proxy,
    api: Arc<RuntimeApi>,
    created: Arc<Mutex<HashMap<String, Instant>>>,
    done: Arc<Mutex<HashMap<String, Instant>>>,
    design: Design,
}

/// Creates a stream (CREATING for 10 s at the proxy) and hands its Terraform event to the
/// function; on the design before, waits for its answer.
async fn create(ctx: Arc<Ctx>, account: String, name: String) {
    support::create_stream_on(&ctx.members[&account], &name).await;
    let arn = format!("arn:aws:kinesis:{REGION}:{account}:stream/{name}");
    let now = Instant::now();
    ctx.proxy.creating_until(&arn, now + CREATING);
    let id = format!("{account}-{name}");
    ctx.created.lock().unwrap().insert(id.clone(), now);
    let text = create_event(&name).to_string().replace(ACCOUNT, &account);
    let mut event: Value = serde_json::from_str(&text).expect("JSON");
    event["id"] = json!(id);
    event["detail"]["userAgent"] = json!(TERRAFORM);
    ctx.api.push(&id, event, Duration::from_secs(300));
    if ctx.design == Design::Before {
        ctx.api.result_of(&id, Duration::from_secs(7200)).await;
        ctx.done.lock().unwrap().insert(id, Instant::now());
    }
}

/// The burst rows of the organisation section.
pub(crate) async fn org_burst(results: &mut Results) {
    let before_accounts: usize = std::env::var("BENCH_BURST_BEFORE_ACCOUNTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let runs = [
        ("after", Design::After, 1, false),
        ("after", Design::After, 50, false),
        ("after", Design::After, 50, true),
        ("before", Design::Before, 1, false),
        ("before", Design::Before, before_accounts, false),
    ];
    let designs = std::env::var("BENCH_BURST_DESIGNS").unwrap_or_else(|_| "before,after".into());
    // Which bursts: `1`, `50`, `50-flood` (default all).
    let cases = std::env::var("BENCH_BURST_CASES").unwrap_or_else(|_| "1,50,50-flood".into());
    let mut single = HashMap::new();
    let mut json_rows = Vec::new();
    for (label, design, accounts, flood) in runs {
        let case = match (accounts, flood) {
            (1, _) => "1",
            (_, false) => "50",
            (_, true) => "50-flood",
        };
        if !designs.split(',').any(|d| d == label) || !cases.split(',').any(|c| c == case) {
            continue;
        }
        println!(
            "-- burst {label}: {accounts} account(s) x 4 streams{}",
            if flood {
                ", with a flooding account"
            } else {
                ""
            }
        );
        let measured = run_burst(&Burst {
            design,
            accounts,
            per_account: 4,
            flood,
        })
        .await;
        let s = stats(measured.seconds.clone());
        if accounts == 1 {
            single.insert(label, s.max);
        }
        let within = match single.get(label) {
            Some(one) if accounts > 1 && !flood => Some(s.max <= 2.0 * one),
            _ => None,
        };
        let busiest: Vec<String> = measured
            .busiest
            .iter()
            .map(|(op, n)| format!("{op} {n}/s"))
            .collect();
        results.row(
            "organisation",
            format!(
                "burst, {label}: {accounts} account(s) x 4 Terraform streams (CREATING 10 s, settle 30 s){}",
                if flood { ", beside one account creating 5 streams/s for 30 s" } else { "" }
            ),
            format!(
                "time to compliance median {:.1} s, last {:.1} s; busiest second of one account: {}; {} kept; moto {:.2} CPU s/s at most, {:.2} on average{}",
                s.median,
                s.max,
                busiest.join(", "),
                measured.failures,
                measured.moto_cpu.0,
                measured.moto_cpu.1,
                if flood {
                    format!("; the flooding account: {} of {} done by then", measured.flood_done.0, measured.flood_done.1)
                } else {
                    String::new()
                }
            ),
            "",
            if accounts > 1 && !flood { "last within 2x one account's" } else { "" },
            within,
        );
        json_rows.push(json!({
            "design": label, "accounts": accounts, "flood": flood,
            "seconds": s.json(), "busiest": measured.busiest,
            "flood_done": measured.flood_done, "kept": measured.failures,
            "moto_cpu_busiest_second": measured.moto_cpu.0, "moto_cpu_average": measured.moto_cpu.1,
        }));
    }
    results.record("organisation-burst", json!(json_rows));
}
