//! No event lost: several hundred events of every kind through the handler (in process, the
//! same `run_event` the Lambda runs, with real SDK clients) against the emulators, while the
//! proxies inject faults at random from a fixed seed, with bursts and streams deleted midway.
//! Then the books: one terminal result per event, failed events replayed as Lambda's retries
//! would, every stream that should be on the mandated key on it, and every write call accounted
//! for by a report.

use crate::support::own_account::OwnAccount;
use crate::support::*;
use aws_config::BehaviorVersion;
use futures_util::stream::{self, StreamExt};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use stream_encryption_enforcer::aws::SdkAws;
use stream_encryption_enforcer::aws::clients::lambda_settings;
use stream_encryption_enforcer::config::Config;
use stream_encryption_enforcer::fleet::Fleet;
use stream_encryption_enforcer::lambda::{HandlerError, Output, run_event};
use stream_encryption_enforcer::model::outcome::Report;
use stream_encryption_enforcer::model::resource::Location;
use stream_encryption_enforcer::policy::retry::{DEFAULT_POLICY_JSON, RetryPolicy};
use tokio::time::Instant;

const SEED: u64 = 20_261_122;
const ALIAS: &str = "alias/org-streams";
const FOREIGN: &str = "alias/another-team";
const EXEMPT: &str = "compliance=exempt";
/// Events handled at once (Lambda's concurrency for a burst of creations).
const CONCURRENCY: usize = 16;
/// Each event's time, as a Lambda timeout would give it.
const EVENT_TIME: Duration = Duration::from_secs(120);

type Sdk = (
    aws_sdk_kinesis::Client,
    aws_sdk_firehose::Client,
    aws_sdk_kms::Client,
);
type Handled = Result<Output, HandlerError>;
type Soak = Fleet<OwnAccount<SdkAws>>;

/// SDK clients configured as the Lambda's (`clients::lambda_settings`).
async fn clients(kinesis_url: &str, moto_url: &str) -> Sdk {
    let base = |url: &str| {
        lambda_settings(aws_config::defaults(BehaviorVersion::latest()))
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
                ACCOUNT, "soak", None, None, "soak",
            ))
            .endpoint_url(url)
    };
    let kinesis = base(kinesis_url).load().await;
    let moto = base(moto_url).load().await;
    (
        aws_sdk_kinesis::Client::new(&kinesis),
        aws_sdk_firehose::Client::new(&moto),
        aws_sdk_kms::Client::new(&moto),
    )
}

/// The default policy's retriers (same `ErrorEquals`, same `MaxAttempts`) with delays of at
/// most 2 s, so that several hundred events fit in a test run.
fn policy() -> String {
    let mut policy: Value = serde_json::from_str(DEFAULT_POLICY_JSON).unwrap();
    for retrier in policy.as_array_mut().unwrap() {
        retrier["IntervalSeconds"] = json!(1);
        retrier["BackoffRate"] = json!(1.5);
        retrier["MaxDelaySeconds"] = json!(2);
        retrier["JitterStrategy"] = json!("FULL");
    }
    policy.to_string()
}

fn enforcer(sdk: Sdk) -> Soak {
    let policy = policy();
    let config = Config::from_lookup(|name| match name {
        "MANDATED_KMS_KEY" => Some(ALIAS.into()),
        "RETRY_POLICY" => Some(policy.clone()),
        "EXEMPT_TAG" => Some(EXEMPT.into()),
        _ => None,
    })
    .unwrap();
    Fleet::new(OwnAccount::sdk(sdk.0, sdk.1, sdk.2), &config)
}

/// The most write calls one event may make under the policy: the first, plus every retry of
/// every retrier (their counters are separate).
fn write_budget() -> u32 {
    let policy = RetryPolicy::parse(&policy()).unwrap();
    1 + policy
        .retriers()
        .iter()
        .map(|r| r.max_attempts as u32)
        .sum::<u32>()
}

/// What kind of event, and what must be true of its resource at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// A stream created just before its event (still CREATING): ends on the key.
    NewStream,
    /// A stream already on the mandated key, its event delivered again: no write.
    Compliant,
    /// StopStreamEncryption: ends on the key.
    Stopped,
    /// StartStreamEncryption with another team's key: ends on the mandated key.
    ForeignKey,
    /// Deleted while its event is handled: `gone` (or done before the delete).
    Deleted,
    /// Tagged exempt: left alone.
    Exempt,
    /// A DirectPut delivery stream: ends on the key.
    NewDelivery,
    /// Fed by a Kinesis stream: not applicable, left alone.
    SourcedDelivery,
    /// StopDeliveryStreamEncryption: ends on the key.
    StoppedDelivery,
    /// A CreateStream that failed (`errorCode`): ignored.
    FailedCall,
    /// Not an event the handler can use.
    Malformed,
    /// Another account's stream: refused.
    OtherAccount,
}

/// moto allows 50 delivery streams per account: the Firehose kinds add up to 50.
const POPULATION: [(Kind, usize); 12] = [
    (Kind::NewStream, 140),
    (Kind::Compliant, 40),
    (Kind::Stopped, 30),
    (Kind::ForeignKey, 30),
    (Kind::Deleted, 20),
    (Kind::Exempt, 15),
    (Kind::NewDelivery, 30),
    (Kind::SourcedDelivery, 8),
    (Kind::StoppedDelivery, 12),
    (Kind::FailedCall, 20),
    (Kind::Malformed, 15),
    (Kind::OtherAccount, 10),
];

#[derive(Debug)]
struct Item {
    kind: Kind,
    name: String,
    event: Value,
}

fn item(kind: Kind, i: usize, rng: &mut fastrand::Rng) -> Item {
    let name = format!("soak-{:02}-{i:04}", kind as u8);
    let event = match kind {
        Kind::NewStream | Kind::Compliant | Kind::Deleted | Kind::Exempt => {
            event("kinesis-create-stream", &name)
        }
        Kind::Stopped => event("kinesis-stop-stream-encryption", &name),
        Kind::ForeignKey => event("kinesis-start-stream-encryption-foreign-key", &name),
        Kind::NewDelivery => event("firehose-create-delivery-stream", &name),
        Kind::SourcedDelivery => event("firehose-create-delivery-stream-kinesis-source", &name),
        Kind::StoppedDelivery => event("firehose-stop-delivery-stream-encryption", &name),
        Kind::FailedCall => event("kinesis-create-stream-failed", &name),
        Kind::Malformed => match rng.u8(..3) {
            0 => json!({"detail-type": "AWS API Call via CloudTrail", "source": "aws.kinesis"}),
            1 => {
                let mut e = event("kinesis-create-stream", &name);
                e["detail"]["requestParameters"]["streamName"] = json!("../../etc/passwd");
                e
            }
            _ => json!(
                (0..rng.usize(1..64))
                    .map(|_| rng.u8(..))
                    .collect::<Vec<u8>>()
            ),
        },
        Kind::OtherAccount => {
            let mut e = event("kinesis-create-stream", &name);
            e["account"] = json!("210987654321");
            e["detail"]["recipientAccountId"] = json!("210987654321");
            e
        }
    };
    Item { kind, name, event }
}

/// Seeds what must exist before the events: everything but the streams created during the run.
async fn prepare(emu: &Emulators, items: &[Item], mandated: &str, foreign: &str) {
    let kinesis = &emu.kinesis;
    let kinds = [
        Kind::Compliant,
        Kind::Stopped,
        Kind::ForeignKey,
        Kind::Deleted,
        Kind::Exempt,
    ];
    let streams: Vec<&Item> = items.iter().filter(|i| kinds.contains(&i.kind)).collect();
    for chunk in streams.chunks(5) {
        for item in chunk {
            create_stream_on(kinesis, &item.name).await;
        }
        for item in chunk {
            wait_active_on(kinesis, &item.name).await;
        }
    }
    for item in &streams {
        let key = match item.kind {
            Kind::Compliant => mandated,
            Kind::ForeignKey => foreign,
            Kind::Exempt => {
                let (k, v) = EXEMPT.split_once('=').unwrap();
                kinesis
                    .add_tags_to_stream()
                    .stream_name(&item.name)
                    .tags(k, v)
                    .send()
                    .await
                    .expect("AddTagsToStream");
                continue;
            }
            _ => continue,
        };
        encrypt_stream_on(kinesis, &item.name, key).await;
    }
    for item in &streams {
        wait_active_on(kinesis, &item.name).await;
    }
    let source = format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/soak-source");
    for item in items {
        match item.kind {
            Kind::NewDelivery | Kind::StoppedDelivery => {
                emu.create_delivery_stream(&item.name, None).await
            }
            Kind::SourcedDelivery => emu.create_delivery_stream(&item.name, Some(&source)).await,
            _ => {}
        }
    }
}

/// What one handling of an event ended in, for the books.
fn result_name(result: &Result<Output, HandlerError>) -> String {
    match result {
        Ok(Output::Event(report)) => report.outcome.to_string(),
        Ok(Output::Sweep(_) | Output::Plan(_) | Output::Batch(_) | Output::Routed(_)) => {
            "sweep".into()
        }
        Err(HandlerError::Failed(_)) => "failed (error)".into(),
        Err(HandlerError::Refused(_)) => "refused (error)".into(),
        Err(HandlerError::InvalidEvent(_)) => "invalid event (error)".into(),
        Err(e) => format!("other error: {e}"),
    }
}

fn report_of(result: &Result<Output, HandlerError>) -> Option<&Report> {
    match result {
        Ok(Output::Event(report)) => Some(report),
        Err(HandlerError::Failed(report)) | Err(HandlerError::Refused(report)) => Some(report),
        _ => None,
    }
}

async fn handle(
    enforcer: &Soak,
    home: &Location,
    emu: &Emulators,
    item: &Item,
    first_pass: bool,
    rng_seed: u64,
) -> Result<Output, HandlerError> {
    if first_pass && item.kind == Kind::NewStream {
        create_stream_on(&emu.kinesis, &item.name).await;
    }
    let deadline = Instant::now() + EVENT_TIME;
    let handling = run_event(enforcer, item.event.clone(), deadline, Some(home), |_| {});
    if first_pass && item.kind == Kind::Deleted {
        let kinesis = emu.kinesis.clone();
        let name = item.name.clone();
        let delay = Duration::from_millis(fastrand::Rng::with_seed(rng_seed).u64(0..400));
        let delete = async move {
            tokio::time::sleep(delay).await;
            // As a person would: a stream the enforcer has put in UPDATING refuses the delete
            // (ResourceInUseException) until it is ACTIVE again.
            for _ in 0..300 {
                match kinesis.delete_stream().stream_name(&name).send().await {
                    Ok(_) => return,
                    // The SDK's own retry of a delete that took (its answer lost under load).
                    Err(e) if format!("{e:?}").contains("ResourceNotFound") => return,
                    Err(e)
                        if ["ResourceInUse", "LimitExceeded"]
                            .iter()
                            .any(|c| format!("{e:?}").contains(c)) =>
                    {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!("DeleteStream {name}: {e:?}"),
                }
            }
            panic!("DeleteStream {name}: still in use after 30 s");
        };
        let (result, ()) = tokio::join!(handling, delete);
        return result;
    }
    handling.await
}

/// Every so often, a burst: throttling on the reads, a ResourceInUse storm on the writes, 5xx
/// on Firehose; until `done`.
async fn bursts(emu: &Emulators, rng: &mut fastrand::Rng, done: &AtomicBool) -> usize {
    let mut bursts = 0;
    while !done.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(rng.u64(1000..3000))).await;
        let throttle = Fault::error("LimitExceededException", "Rate exceeded (soak burst)");
        match rng.u8(..4) {
            0 => emu
                .kinesis_proxy
                .inject("DescribeStreamSummary", 12, throttle),
            1 => emu.kinesis_proxy.inject(
                "StartStreamEncryption",
                10,
                Fault::error("ResourceInUseException", "storm"),
            ),
            2 => emu.moto_proxy.inject(
                "StartDeliveryStreamEncryption",
                8,
                Fault::error("ResourceInUseException", "storm"),
            ),
            _ => emu.moto_proxy.inject(
                "DescribeDeliveryStream",
                8,
                Fault::Raw {
                    status: 503,
                    body: String::new(),
                },
            ),
        }
        bursts += 1;
    }
    bursts
}

fn chaos(seed: u64, operations: &[&str]) -> Chaos {
    Chaos {
        rng: fastrand::Rng::with_seed(seed),
        rate: 0.06,
        faults: vec![
            Fault::error("LimitExceededException", "Rate exceeded (soak)"),
            Fault::error("ThrottlingException", "Rate exceeded (soak)"),
            Fault::Raw {
                status: 500,
                body: String::new(),
            },
            Fault::Raw {
                status: 503,
                body: String::new(),
            },
            Fault::Reset,
        ],
        operations: operations.iter().map(|s| s.to_string()).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_hundred_events_under_random_faults_lose_nothing() {
    let started = std::time::Instant::now();
    let emu = Emulators::start(Duration::from_millis(800), Duration::from_millis(400)).await;
    let mandated = emu.create_key(ALIAS).await;
    let foreign = emu.create_key(FOREIGN).await;
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut items: Vec<Item> = POPULATION
        .iter()
        .flat_map(|&(kind, n)| (0..n).map(move |i| (kind, i)))
        .map(|(kind, i)| item(kind, i, &mut rng))
        .collect();
    rng.shuffle(&mut items);
    prepare(&emu, &items, &mandated, &foreign).await;
    let prepared = started.elapsed();

    let home = Location::new(ACCOUNT, REGION).unwrap();
    let enforcer = enforcer(clients(&emu.kinesis_proxy.url, &emu.moto_proxy.url).await);
    emu.kinesis_proxy.set_chaos(Some(chaos(
        SEED + 1,
        &[
            "DescribeStreamSummary",
            "StartStreamEncryption",
            "ListTagsForStream",
        ],
    )));
    emu.moto_proxy.set_chaos(Some(chaos(
        SEED + 2,
        &[
            "DescribeDeliveryStream",
            "StartDeliveryStreamEncryption",
            "ListTagsForDeliveryStream",
            "DescribeKey",
        ],
    )));
    let done = AtomicBool::new(false);
    let mut burst_rng = fastrand::Rng::with_seed(SEED + 3);
    let run_started = std::time::Instant::now();
    let (first, bursts): (Vec<(usize, Handled)>, usize) = tokio::join!(
        async {
            let results = stream::iter(items.iter().enumerate())
                .map(|(i, item)| {
                    let (enforcer, home, emu) = (&enforcer, &home, &emu);
                    async move {
                        let r = handle(enforcer, home, emu, item, true, SEED + i as u64).await;
                        (i, r)
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect::<Vec<_>>()
                .await;
            done.store(true, Ordering::Relaxed);
            results
        },
        bursts(&emu, &mut burst_rng, &done)
    );
    let first_pass = run_started.elapsed();
    // The faults are over before Lambda retries (its first retry comes a minute later): no
    // chaos, and no burst left half-answered.
    for proxy in [&emu.kinesis_proxy, &emu.moto_proxy] {
        proxy.set_chaos(None);
        proxy.clear_faults();
    }
    let injected: BTreeMap<String, usize> = emu
        .kinesis_proxy
        .injected()
        .into_iter()
        .chain(emu.moto_proxy.injected())
        .collect();

    // Exactly one terminal result per event.
    let mut seen = vec![0; items.len()];
    for (i, _) in &first {
        seen[*i] += 1;
    }
    assert!(seen.iter().all(|&n| n == 1), "results per event: {seen:?}");

    // Lambda retries a returned error (twice); the replay runs with the faults over.
    let mut attempts_reported: u32 = 0;
    let mut first_outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut finals: Vec<Option<Result<Output, HandlerError>>> =
        (0..items.len()).map(|_| None).collect();
    for (i, result) in first {
        *first_outcomes.entry(result_name(&result)).or_default() += 1;
        attempts_reported += report_of(&result).map_or(0, |r| r.attempts);
        finals[i] = Some(result);
    }
    let mut replayed = 0;
    for round in 0..2 {
        let retry: Vec<usize> = (0..items.len())
            .filter(|&i| matches!(finals[i], Some(Err(HandlerError::Failed(_)))))
            .collect();
        // Lambda retries each failed event on its own, so they run side by side here too.
        let results = stream::iter(retry)
            .map(|i| {
                let (enforcer, home, emu, item) = (&enforcer, &home, &emu, &items[i]);
                async move { (i, handle(enforcer, home, emu, item, false, round).await) }
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        for (i, result) in results {
            replayed += 1;
            attempts_reported += report_of(&result).map_or(0, |r| r.attempts);
            finals[i] = Some(result);
        }
    }
    let mut final_outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for result in finals.iter().flatten() {
        *final_outcomes.entry(result_name(result)).or_default() += 1;
    }

    // The books.
    let start_calls = emu.kinesis_proxy.calls("StartStreamEncryption")
        + emu.moto_proxy.calls("StartDeliveryStreamEncryption");
    println!("soak books (seed {SEED}):");
    println!(
        "  events: {} ({})",
        items.len(),
        POPULATION
            .iter()
            .map(|(k, n)| format!("{k:?} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  faults injected: {} ({bursts} bursts): {injected:?}",
        injected.values().sum::<usize>()
    );
    println!("  first pass ({first_pass:.1?}): {first_outcomes:?}");
    println!("  replayed as Lambda retries: {replayed}; final: {final_outcomes:?}");
    println!(
        "  write calls: {start_calls} at the proxies (faulted ones included), {attempts_reported} in reports; budget {} per event",
        write_budget()
    );
    println!("  seeding {prepared:.1?}, total {:.1?}", started.elapsed());

    // Every write call is accounted for by a report, and none exceeds the policy's budget.
    assert_eq!(start_calls as u32, attempts_reported);
    for result in finals.iter().flatten() {
        if let Some(report) = report_of(result) {
            assert!(report.attempts <= write_budget(), "{report:?}");
        }
    }
    // Every event ends as its kind says, once the retried ones are replayed.
    for (item, result) in items.iter().zip(finals.iter().flatten()) {
        let got = result_name(result);
        let allowed: &[&str] = match item.kind {
            Kind::NewStream
            | Kind::Stopped
            | Kind::ForeignKey
            | Kind::NewDelivery
            | Kind::StoppedDelivery => &["remediated", "already_compliant"],
            Kind::Compliant => &["already_compliant"],
            Kind::Deleted => &["gone", "remediated"],
            Kind::Exempt => &["exempt"],
            Kind::SourcedDelivery => &["not_applicable"],
            Kind::FailedCall => &["ignored"],
            Kind::Malformed => &["invalid event (error)"],
            Kind::OtherAccount => &["refused (error)"],
        };
        assert!(
            allowed.contains(&got.as_str()),
            "{:?} {}: {got}: {:?}",
            item.kind,
            item.name,
            report_of(result)
        );
    }
    // The resources: on the mandated key where they should be, untouched where they should be.
    for item in &items {
        match item.kind {
            Kind::NewStream | Kind::Stopped | Kind::ForeignKey | Kind::Compliant => {
                let key = emu.stream(&item.name).await.key_id;
                let key = emu.key_arn(key.as_deref().unwrap_or("none")).await;
                assert_eq!(key, mandated, "{item:?}");
            }
            Kind::NewDelivery | Kind::StoppedDelivery => {
                let enc = emu.delivery_encryption(&item.name).await;
                assert_eq!(
                    enc.and_then(|e| e.key_arn).as_deref(),
                    Some(mandated.as_str()),
                    "{item:?}"
                );
            }
            Kind::Exempt => assert!(emu.stream(&item.name).await.key_id.is_none()),
            Kind::SourcedDelivery => {
                assert!(emu.delivery_encryption(&item.name).await.is_none())
            }
            _ => {}
        }
    }
    // Never a write on a stream that was compliant, exempt or not applicable.
    for item in &items {
        if matches!(item.kind, Kind::Compliant | Kind::Exempt) {
            assert_eq!(
                emu.kinesis_proxy
                    .calls_for("StartStreamEncryption", &item.name),
                0,
                "{item:?}"
            );
        }
        if item.kind == Kind::SourcedDelivery {
            assert_eq!(
                emu.moto_proxy
                    .calls_for("StartDeliveryStreamEncryption", &item.name),
                0
            );
        }
        if matches!(
            item.kind,
            Kind::FailedCall | Kind::Malformed | Kind::OtherAccount
        ) {
            let any = ["DescribeStreamSummary", "StartStreamEncryption"]
                .iter()
                .map(|op| emu.kinesis_proxy.calls_for(op, &item.name))
                .sum::<usize>();
            assert_eq!(any, 0, "{item:?}");
        }
    }
    // The run met faults of every kind the chaos draws, and bursts.
    assert!(bursts > 0 && injected.len() >= 5, "{injected:?}");
}

/// kinesis-mock killed (SIGKILL) in the middle of a run and restarted on the same port with its
/// saved state: no event hangs past its deadline, nothing is reported done that the emulator did
/// not answer, the failed events succeed when replayed, and a sweep afterwards finds every stream
/// on the mandated key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_emulator_killed_mid_run_neither_hangs_the_enforcer_nor_fakes_success() {
    const STREAMS: usize = 40;
    let state = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let (create, update) = (Duration::from_millis(300), Duration::from_millis(300));
    let mut kinesis_mock = Some(start_kinesis_mock_on(
        port,
        create,
        update,
        Some(state.path()),
    ));
    let kinesis_url = format!("http://127.0.0.1:{port}");
    let (_moto, moto_url) = start_moto();
    let kinesis_proxy = Proxy::start(&kinesis_url).await;
    let moto_proxy = Proxy::start(&moto_url).await;
    let direct = aws_sdk_kinesis::Client::new(&sdk_config(&kinesis_url));
    let kms = aws_sdk_kms::Client::new(&sdk_config(&moto_url));
    let key = kms.create_key().send().await.expect("CreateKey");
    let key_id = key.key_metadata().expect("metadata").key_id().to_owned();
    let mandated = key.key_metadata().and_then(|m| m.arn()).unwrap().to_owned();
    kms.create_alias()
        .alias_name(ALIAS)
        .target_key_id(&key_id)
        .send()
        .await
        .expect("CreateAlias");
    let names: Vec<String> = (0..STREAMS).map(|i| format!("kill-{i:03}")).collect();
    for chunk in names.chunks(5) {
        for name in chunk {
            create_stream_on(&direct, name).await;
        }
        for name in chunk {
            wait_active_on(&direct, name).await;
        }
    }
    // Let the state be saved before anything can kill it.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let enforcer = enforcer(clients(&kinesis_proxy.url, &moto_proxy.url).await);
    let home = Location::new(ACCOUNT, REGION).unwrap();
    let deadline_each = Duration::from_secs(60);
    let run = stream::iter(names.iter().enumerate())
        .map(|(i, name)| {
            let (enforcer, home) = (&enforcer, &home);
            async move {
                // Spread over ~4 s so that events meet the emulator up, down and back.
                tokio::time::sleep(Duration::from_millis(100 * i as u64)).await;
                let started = Instant::now();
                let event = event("kinesis-create-stream", name);
                let result =
                    run_event(enforcer, event, started + deadline_each, Some(home), |_| {}).await;
                (i, started.elapsed(), result)
            }
        })
        .buffer_unordered(STREAMS)
        .collect::<Vec<_>>();
    let outage = async {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        drop(kinesis_mock.take()); // SIGKILL
        tokio::time::sleep(Duration::from_secs(4)).await;
        kinesis_mock = Some(start_kinesis_mock_on(
            port,
            create,
            update,
            Some(state.path()),
        ));
        // kinesis-mock saves a stream's status but not the timer that ends its UPDATING: a
        // stream saved mid-update stays UPDATING for ever after the restart, where on AWS an
        // update always finishes. The enforcer now waits such a stream out with reads (it no
        // longer pokes it with Start), so finish those updates as AWS would: the same key again,
        // straight at the emulator, restarts the timer.
        // A stream seen UPDATING on two reads 1 s apart (ten times the emulator's UPDATING) is
        // stuck; checked for 20 s after the restart.
        let mut updating = std::collections::BTreeSet::new();
        let mut recreated = std::collections::BTreeSet::new();
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            for name in &names {
                let Ok(out) = direct
                    .describe_stream_summary()
                    .stream_name(name)
                    .send()
                    .await
                else {
                    continue;
                };
                let Some(summary) = out.stream_description_summary else {
                    continue;
                };
                if summary.stream_status != aws_sdk_kinesis::types::StreamStatus::Updating {
                    updating.remove(name);
                    continue;
                }
                if !updating.insert(name.clone()) {
                    // It refuses every write on it (ResourceInUseException), so the way out is a
                    // new stream of the name (kinesis-mock answers the delete with an error but
                    // frees the name), which the replay then finds unencrypted.
                    let deleted = direct.delete_stream().stream_name(name).send().await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let created = direct
                        .create_stream()
                        .stream_name(name)
                        .shard_count(1)
                        .send()
                        .await;
                    println!(
                        "{name}: stuck UPDATING after the restart; recreated: {} {}",
                        deleted.is_ok(),
                        created.is_ok()
                    );
                    updating.remove(name);
                    recreated.insert(name.clone());
                }
            }
        }
        recreated
    };
    let (results, recreated) = tokio::join!(run, outage);

    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed = Vec::new();
    for (i, took, result) in &results {
        let name = &names[*i];
        // No hang: every event ends by its deadline (plus the time to return).
        assert!(
            *took <= deadline_each + Duration::from_secs(2),
            "{name}: {took:?}"
        );
        *outcomes.entry(result_name(result)).or_default() += 1;
        let report = report_of(result).unwrap_or_else(|| panic!("{name}: {}", result_name(result)));
        match report.outcome.as_str() {
            // Done only if the emulator itself answered the write (and a read) with 200.
            "remediated" => {
                assert!(
                    kinesis_proxy
                        .answered("StartStreamEncryption", name)
                        .contains(&200),
                    "{name}: remediated without an answered Start: {report:?}"
                );
                assert!(
                    kinesis_proxy
                        .answered("DescribeStreamSummary", name)
                        .contains(&200)
                );
            }
            "already_compliant" => assert!(
                kinesis_proxy
                    .answered("DescribeStreamSummary", name)
                    .contains(&200)
            ),
            "failed" => {
                let code = report.error_code.as_deref().unwrap_or("");
                assert!(
                    code.starts_with("Enforcer.") || code == "ResourceNotFoundException",
                    "{name}: {report:?}"
                );
                failed.push(*i);
            }
            // The stream the harness deleted and made again (stuck UPDATING after the restart,
            // which only the emulator does) was read in between: gone, rightly, and retried.
            "gone" if recreated.contains(name) => failed.push(*i),
            other => panic!("{name}: {other}: {report:?}"),
        }
    }
    // Lambda's retry of the failed events, with the emulator back.
    let mut replayed: BTreeMap<String, usize> = BTreeMap::new();
    for &i in &failed {
        let event = event("kinesis-create-stream", &names[i]);
        let result = run_event(
            &enforcer,
            event,
            Instant::now() + deadline_each,
            Some(&home),
            |_| {},
        )
        .await;
        *replayed.entry(result_name(&result)).or_default() += 1;
        assert!(
            result.is_ok(),
            "{}: {}: {:?}",
            names[i],
            result_name(&result),
            report_of(&result)
        );
    }
    // The scheduled sweep catches anything the restart lost (state saved every 100 ms).
    let summary = enforcer
        .sweep(
            &home,
            vec![home.clone()],
            Instant::now() + deadline_each,
            |_| {},
        )
        .await;
    assert!(summary.is_complete(), "{summary:?}");
    let fixed_by_sweep = summary
        .reports
        .iter()
        .filter(|r| r.outcome.as_str() == "remediated")
        .count();
    for name in &names {
        let key = stream_on(&direct, name).await.key_id.unwrap_or_default();
        let arn = kms
            .describe_key()
            .key_id(&key)
            .send()
            .await
            .ok()
            .and_then(|k| k.key_metadata)
            .and_then(|m| m.arn);
        assert_eq!(arn.as_deref(), Some(mandated.as_str()), "{name}");
    }
    // The outage was met: calls arrived that the emulator never answered.
    let unanswered: usize = ["DescribeStreamSummary", "StartStreamEncryption"]
        .iter()
        .map(|op| kinesis_proxy.calls(op) - kinesis_proxy.answered(op, "").len())
        .sum();
    println!(
        "kill and restart: {STREAMS} events: {outcomes:?}; {unanswered} calls met the dead \
         emulator; replayed {}: {replayed:?}; the sweep then remediated {fixed_by_sweep}",
        failed.len()
    );
    assert!(unanswered > 0, "the outage met no call: {outcomes:?}");
    drop(kinesis_mock);
}
