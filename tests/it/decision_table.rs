//! The whole decision table, in milliseconds: every stream status, encryption, form of the
//! mandated key, mode and exemption (on the resource, or in the create call's record), and the
//! flapping guard's count, through the real event parsing and the real enforcer, on an
//! in-memory model of Kinesis, Firehose, KMS and the re-application ledger (`Model`, behind the
//! same port the SDK adapters implement) with the clock paused.
//!
//! The model keeps AWS's rules that the decision depends on: a write on a stream that is not
//! `ACTIVE` (or a delivery stream that is not, or whose encryption is changing) is refused with
//! `ResourceInUseException`; a Start leaves a stream `UPDATING` / `ENABLING` for one read, and
//! `ENABLING` / `DISABLING` under way end in `ENABLED` / `DISABLED` after a read; a
//! deleted resource is `ResourceNotFoundException`; KMS resolves aliases, key ids and ARNs of its
//! own account and region only. The expected outcome of each case comes from the README's
//! outcome table, written out below as an oracle that knows nothing of the implementation.

use crate::support::own_account::OwnAccount;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stream_encryption_enforcer::aws::Aws;
use stream_encryption_enforcer::aws::error::AwsError;
use stream_encryption_enforcer::aws::firehose::{
    DeliveryEncryption, DeliveryStatus, DeliverySummary, EncryptionStatus, FirehoseApi, FirehoseKey,
};
use stream_encryption_enforcer::aws::kinesis::{
    KinesisApi, ListCursor, StreamPage, StreamStatus, StreamSummary,
};
use stream_encryption_enforcer::aws::kms::KmsApi;
use stream_encryption_enforcer::aws::ledger::{Application, LedgerApi};
use stream_encryption_enforcer::config::Config;
use stream_encryption_enforcer::fleet::Fleet;
use stream_encryption_enforcer::model::exemption::Tags;
use stream_encryption_enforcer::model::key::KeyInfo;
use stream_encryption_enforcer::model::outcome::{Outcome, Report};
use stream_encryption_enforcer::model::resource::{Location, Resource};
use tokio::time::Instant;

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const KEY_ID: &str = "1111aaaa-22bb-33cc-44dd-555555eeeeee";
const OTHER_KEY_ID: &str = "9999ffff-88ee-77dd-66cc-444444bbbbbb";
const AWS_MANAGED_ID: &str = "0000abcd-0000-4000-8000-00000000aaaa";
const EXEMPT: &str = "compliance=exempt";

fn key_arn(id: &str) -> String {
    format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/{id}")
}

fn alias_arn(name: &str) -> String {
    format!("arn:aws:kms:{REGION}:{ACCOUNT}:{name}")
}

// ---- The model of the three services.

#[derive(Clone)]
struct Stream {
    status: StreamStatus,
    /// Reads left until a CREATING / UPDATING stream is ACTIVE.
    reads_to_ready: u32,
    key: Option<String>,
    tags: Tags,
}

#[derive(Clone)]
struct Delivery {
    status: DeliveryStatus,
    reads_to_ready: u32,
    source_type: String,
    encryption: Option<DeliveryEncryption>,
    tags: Tags,
}

#[derive(Default)]
struct World {
    streams: HashMap<String, Stream>,
    deliveries: HashMap<String, Delivery>,
    /// Every name KMS resolves (alias name, alias ARN, key id, key ARN) and what to.
    keys: HashMap<String, KeyInfo>,
    calls: BTreeMap<&'static str, u32>,
    /// Writes answered ResourceInUseException: the enforcer wrote on a resource not ready.
    refused_writes: u32,
    /// The re-application ledger, by resource ARN (none: no `LEDGER_TABLE`).
    ledger: Option<Vec<(String, Application)>>,
    /// The ledger's Query is denied.
    ledger_unreadable: bool,
}

#[derive(Clone, Default)]
struct Model(Arc<Mutex<World>>);

impl Model {
    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.0.lock().unwrap()
    }

    fn count(&self, call: &'static str) {
        *self.world().calls.entry(call).or_default() += 1;
    }

    fn calls(&self, call: &str) -> u32 {
        self.world().calls.get(call).copied().unwrap_or(0)
    }

    fn with_keys(self) -> Self {
        {
            let mut world = self.world();
            let mandated = KeyInfo {
                arn: key_arn(KEY_ID),
                aws_managed: false,
            };
            for name in [
                "alias/org-streams".to_owned(),
                alias_arn("alias/org-streams"),
                // Another alias on the same key: not the mandated form.
                "alias/also-org".to_owned(),
                KEY_ID.to_owned(),
                key_arn(KEY_ID),
            ] {
                world.keys.insert(name, mandated.clone());
            }
            let other = KeyInfo {
                arn: key_arn(OTHER_KEY_ID),
                aws_managed: false,
            };
            world.keys.insert(key_arn(OTHER_KEY_ID), other);
            let managed = KeyInfo {
                arn: key_arn(AWS_MANAGED_ID),
                aws_managed: true,
            };
            for name in [
                "alias/aws/kinesis".to_owned(),
                alias_arn("alias/aws/kinesis"),
                key_arn(AWS_MANAGED_ID),
            ] {
                world.keys.insert(name, managed.clone());
            }
        }
        self
    }
}

fn not_found(what: &str) -> AwsError {
    AwsError::new("ResourceNotFoundException", format!("{what} not found"))
}

fn in_use(what: &str) -> AwsError {
    AwsError::new(
        "ResourceInUseException",
        format!("{what} is not currently ACTIVE"),
    )
}

impl KinesisApi for Model {
    async fn stream_summary(&self, stream: &Resource) -> Result<StreamSummary, AwsError> {
        self.count("DescribeStreamSummary");
        let mut world = self.world();
        let s = world
            .streams
            .get_mut(&stream.name)
            .ok_or_else(|| not_found(&stream.name))?;
        if matches!(s.status, StreamStatus::Creating | StreamStatus::Updating) {
            if s.reads_to_ready == 0 {
                s.status = StreamStatus::Active;
            } else {
                s.reads_to_ready -= 1;
            }
        }
        Ok(StreamSummary {
            status: s.status.clone(),
            key_id: s.key.clone(),
            created: None,
        })
    }

    async fn list_streams(&self, _: Option<ListCursor>) -> Result<StreamPage, AwsError> {
        self.count("ListStreams");
        let mut names: Vec<String> = self.world().streams.keys().cloned().collect();
        names.sort();
        Ok(StreamPage { names, next: None })
    }

    async fn stream_tags(&self, stream: &Resource) -> Result<Tags, AwsError> {
        self.count("ListTagsForStream");
        let world = self.world();
        let s = world
            .streams
            .get(&stream.name)
            .ok_or_else(|| not_found(&stream.name))?;
        Ok(s.tags.clone())
    }

    async fn start_encryption(&self, stream: &Resource, key_id: &str) -> Result<(), AwsError> {
        self.count("StartStreamEncryption");
        let mut world = self.world();
        let Some(s) = world.streams.get_mut(&stream.name) else {
            return Err(not_found(&stream.name));
        };
        if s.status != StreamStatus::Active {
            world.refused_writes += 1;
            return Err(in_use(&stream.name));
        }
        s.key = Some(key_id.to_owned());
        s.status = StreamStatus::Updating;
        s.reads_to_ready = 1;
        Ok(())
    }
}

impl FirehoseApi for Model {
    async fn delivery_summary(&self, stream: &Resource) -> Result<DeliverySummary, AwsError> {
        self.count("DescribeDeliveryStream");
        let mut world = self.world();
        let d = world
            .deliveries
            .get_mut(&stream.name)
            .ok_or_else(|| not_found(&stream.name))?;
        let changing = d.encryption.as_ref().is_some_and(|e| {
            matches!(
                e.status,
                EncryptionStatus::Enabling | EncryptionStatus::Disabling
            )
        });
        if d.status == DeliveryStatus::Creating || changing {
            if d.reads_to_ready == 0 {
                d.status = DeliveryStatus::Active;
                if let Some(e) = d.encryption.as_mut().filter(|_| changing) {
                    if e.status == EncryptionStatus::Enabling {
                        e.status = EncryptionStatus::Enabled;
                    } else {
                        e.status = EncryptionStatus::Disabled;
                        e.key = None;
                    }
                }
            } else {
                d.reads_to_ready -= 1;
            }
        }
        Ok(DeliverySummary {
            status: d.status.clone(),
            source_type: d.source_type.clone(),
            encryption: d.encryption.clone(),
            created: None,
        })
    }

    async fn list_delivery_streams(
        &self,
        _: Option<String>,
    ) -> Result<(Vec<String>, bool), AwsError> {
        self.count("ListDeliveryStreams");
        let mut names: Vec<String> = self.world().deliveries.keys().cloned().collect();
        names.sort();
        Ok((names, false))
    }

    async fn delivery_stream_tags(&self, stream: &Resource) -> Result<Tags, AwsError> {
        self.count("ListTagsForDeliveryStream");
        let world = self.world();
        let d = world
            .deliveries
            .get(&stream.name)
            .ok_or_else(|| not_found(&stream.name))?;
        Ok(d.tags.clone())
    }

    async fn start_encryption(&self, stream: &Resource, key: &FirehoseKey) -> Result<(), AwsError> {
        self.count("StartDeliveryStreamEncryption");
        let mut world = self.world();
        let Some(d) = world.deliveries.get_mut(&stream.name) else {
            return Err(not_found(&stream.name));
        };
        let changing = d.encryption.as_ref().is_some_and(|e| {
            matches!(
                e.status,
                EncryptionStatus::Enabling | EncryptionStatus::Disabling
            )
        });
        if d.status != DeliveryStatus::Active || changing {
            world.refused_writes += 1;
            return Err(in_use(&stream.name));
        }
        if d.source_type != "DirectPut" {
            return Err(AwsError::new(
                "InvalidArgumentException",
                "server-side encryption is not supported for this source",
            ));
        }
        d.encryption = Some(DeliveryEncryption {
            status: EncryptionStatus::Enabling,
            key: Some(key.clone()),
            failure: None,
        });
        d.reads_to_ready = 1;
        Ok(())
    }
}

impl KmsApi for Model {
    async fn describe_key(&self, key: &str) -> Result<KeyInfo, AwsError> {
        self.count("DescribeKey");
        self.world()
            .keys
            .get(key)
            .cloned()
            .ok_or_else(|| AwsError::new("NotFoundException", format!("key {key} not found")))
    }
}

impl LedgerApi for Model {
    fn counts(&self) -> bool {
        self.world().ledger.is_some()
    }

    async fn recent(
        &self,
        resource: &str,
        now: std::time::SystemTime,
    ) -> Result<Vec<Application>, AwsError> {
        self.count("Query");
        let world = self.world();
        if world.ledger_unreadable {
            return Err(AwsError::new(
                "AccessDeniedException",
                "not authorized to perform dynamodb:Query",
            ));
        }
        let since = epoch_ms(now).saturating_sub(DAY_MS);
        Ok(world
            .ledger
            .iter()
            .flatten()
            .filter(|(arn, a)| arn == resource && a.at_ms >= since)
            .map(|(_, a)| a.clone())
            .collect())
    }

    async fn record(
        &self,
        resource: &str,
        now: std::time::SystemTime,
        reverted_by: &str,
    ) -> Result<(), AwsError> {
        self.count("PutItem");
        let application = Application {
            at_ms: epoch_ms(now),
            reverted_by: reverted_by.to_owned(),
        };
        if let Some(ledger) = self.world().ledger.as_mut() {
            ledger.push((resource.to_owned(), application));
        }
        Ok(())
    }
}

const DAY_MS: u64 = 24 * 3600 * 1000;

fn epoch_ms(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

// ---- One case.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Enforce,
    Report,
}

fn config(mandated: &str, mode: Mode, flap_threshold: Option<u32>) -> Config {
    let mode = match mode {
        Mode::Enforce => "enforce",
        Mode::Report => "report",
    };
    Config::from_lookup(|name| match name {
        "MANDATED_KMS_KEY" => Some(mandated.to_owned()),
        "ENFORCEMENT_MODE" => Some(mode.to_owned()),
        "EXEMPT_TAG" => Some(EXEMPT.to_owned()),
        "FLAP_THRESHOLD" => flap_threshold.map(|n| n.to_string()),
        _ => None,
    })
    .expect("configuration")
}

fn event(fixture: &str, name_field: &str, name: &str) -> serde_json::Value {
    let path = format!("{}/events/{fixture}.json", env!("CARGO_MANIFEST_DIR"));
    let mut event: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
    event["detail"]["requestParameters"][name_field] = name.into();
    event
}

async fn run(model: &Model, mandated: &str, mode: Mode, event: serde_json::Value) -> Report {
    run_with(model.clone(), &config(mandated, mode, None), event).await
}

/// As [`run`], with `aws` answering the calls and `config` as the configuration.
async fn run_with<A: Aws + Clone>(aws: A, config: &Config, event: serde_json::Value) -> Report {
    let fleet = Fleet::new(OwnAccount::new(aws), config);
    let home = Location::new(ACCOUNT, REGION).expect("home");
    fleet
        .handle(
            event,
            Some(&home),
            Instant::now() + Duration::from_secs(300),
            &mut fastrand::Rng::with_seed(7),
        )
        .await
        .expect("a usable event")
}

/// Exemptions that expire (`EXEMPT_TAG` a key alone, the tag's value `until=YYYY-MM-DD reason=`):
/// in force through their day, enforced after it with the report saying so, and a value whose
/// `until` is not a date exempts nothing. On the resource or in the create call's record, in
/// either mode. (Far past and far future dates: the cases hold on any day this runs.)
#[tokio::test(start_paused = true)]
async fn an_exemption_holds_until_its_day_and_a_bad_date_exempts_nothing() {
    let mut failures = Vec::new();
    let cases = [
        (
            "until=2999-12-31;reason=migration",
            Some("until 2999-12-31 (migration)"),
        ),
        ("until=2000-01-01;reason=migration", None),
        ("until=31/12/2999", None),
        ("ticket-42", Some("compliance")),
    ];
    for (value, exempt_says) in cases {
        for in_record in [false, true] {
            for mode in [Mode::Enforce, Mode::Report] {
                let model = Model::default().with_keys();
                let tags: Tags = vec![("compliance".into(), Some(value.into()))];
                unencrypted_orders_tagged(&model, if in_record { Tags::new() } else { tags });
                let mut event = event("kinesis-create-stream", "streamName", "orders");
                if in_record {
                    event["detail"]["requestParameters"]["tags"] =
                        serde_json::json!({"compliance": value});
                }
                let mode_name = match mode {
                    Mode::Enforce => "enforce",
                    Mode::Report => "report",
                };
                let config = Config::from_lookup(|name| match name {
                    "MANDATED_KMS_KEY" => Some("alias/org-streams".to_owned()),
                    "ENFORCEMENT_MODE" => Some(mode_name.to_owned()),
                    "EXEMPT_TAG" => Some("compliance".to_owned()),
                    _ => None,
                })
                .expect("configuration");
                let report = run_with(model.clone(), &config, event).await;
                let reason = report.reason.clone().unwrap_or_default();
                let (want, says) = match (exempt_says, mode) {
                    (Some(says), _) => (Outcome::Exempt, says),
                    (None, Mode::Enforce) => (Outcome::Remediated, ""),
                    (None, Mode::Report) => (Outcome::Noncompliant, ""),
                };
                let enforced_says = if value.contains("2000-01-01") {
                    "expired"
                } else {
                    "not a date"
                };
                let ok = report.outcome == want
                    && reason.contains(says)
                    && (exempt_says.is_some() || reason.contains(enforced_says))
                    && model.calls("StartStreamEncryption")
                        == u32::from(want == Outcome::Remediated);
                if !ok {
                    failures.push(format!(
                        "{value:?}, in record {in_record}, {mode_name}: {} ({reason})",
                        report.outcome
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Whether, and how, a resource carries the exemption tag.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Exempt {
    No,
    /// On the resource: the enforcer must list its tags to see it.
    Listed,
    /// In the create call's own record (and not on the resource as the model answers
    /// ListTags): the enforcer must take it from the record, with no ListTags call.
    InRecord,
}

impl Exempt {
    const ALL: [Exempt; 3] = [Exempt::No, Exempt::Listed, Exempt::InRecord];

    fn is_exempt(self) -> bool {
        self != Exempt::No
    }

    /// The tags the model answers ListTags with.
    fn listed(self) -> Tags {
        tags(self == Exempt::Listed)
    }
}

fn tags(exempt: bool) -> Tags {
    if exempt {
        vec![("compliance".into(), Some("exempt".into()))]
    } else {
        vec![("team".into(), Some("data".into()))]
    }
}

/// What the outcome table says when the resource is there, ready or not, and applicable.
fn expected_when_present(compliant: bool, exempt: bool, mode: Mode) -> Outcome {
    if compliant {
        Outcome::AlreadyCompliant
    } else if exempt {
        Outcome::Exempt
    } else if mode == Mode::Report {
        Outcome::Noncompliant
    } else {
        Outcome::Remediated
    }
}

// ---- Kinesis.

/// The forms a stream can report its key in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Reported {
    Unencrypted,
    AliasName,
    AliasArn,
    KeyId,
    KeyArn,
    /// Another alias that points at the mandated key today.
    OtherAliasSameKey,
    OtherKeyArn,
    /// The mandated key's id, in another region's ARN.
    KeyArnOtherRegion,
    AwsManagedAlias,
    AwsManagedKeyArn,
}

impl Reported {
    const ALL: [Reported; 10] = [
        Reported::Unencrypted,
        Reported::AliasName,
        Reported::AliasArn,
        Reported::KeyId,
        Reported::KeyArn,
        Reported::OtherAliasSameKey,
        Reported::OtherKeyArn,
        Reported::KeyArnOtherRegion,
        Reported::AwsManagedAlias,
        Reported::AwsManagedKeyArn,
    ];

    fn key(self) -> Option<String> {
        Some(match self {
            Reported::Unencrypted => return None,
            Reported::AliasName => "alias/org-streams".into(),
            Reported::AliasArn => alias_arn("alias/org-streams"),
            Reported::KeyId => KEY_ID.into(),
            Reported::KeyArn => key_arn(KEY_ID),
            Reported::OtherAliasSameKey => "alias/also-org".into(),
            Reported::OtherKeyArn => key_arn(OTHER_KEY_ID),
            Reported::KeyArnOtherRegion => format!("arn:aws:kms:eu-west-1:{ACCOUNT}:key/{KEY_ID}"),
            Reported::AwsManagedAlias => "alias/aws/kinesis".into(),
            Reported::AwsManagedKeyArn => key_arn(AWS_MANAGED_ID),
        })
    }
}

/// The mandated key's configured forms, and (the oracle) which reported forms are compliant
/// with each: the configured form or an equal one, or the mandated key's own ARN or id; never
/// another alias.
/// Each with the key ARN KMS resolves it to.
fn mandates() -> Vec<(String, Vec<Reported>, String)> {
    use Reported::*;
    let by_alias = vec![AliasName, AliasArn, KeyId, KeyArn];
    let by_key = vec![KeyId, KeyArn];
    vec![
        (
            "alias/org-streams".into(),
            by_alias.clone(),
            key_arn(KEY_ID),
        ),
        (alias_arn("alias/org-streams"), by_alias, key_arn(KEY_ID)),
        (KEY_ID.into(), by_key.clone(), key_arn(KEY_ID)),
        (key_arn(KEY_ID), by_key, key_arn(KEY_ID)),
        (
            "alias/aws/kinesis".into(),
            vec![AwsManagedAlias, AwsManagedKeyArn],
            key_arn(AWS_MANAGED_ID),
        ),
    ]
}

#[derive(Clone, Copy, Debug)]
enum Ready {
    Active,
    /// CREATING for two reads.
    Creating,
    /// UPDATING for one read.
    Updating,
}

#[tokio::test(start_paused = true)]
async fn kinesis_every_status_key_form_mode_and_exemption() {
    let mut failures = Vec::new();
    let mut cases = 0;
    for (mandated, compliant_forms, resolved) in mandates() {
        for reported in Reported::ALL {
            for ready in [Ready::Active, Ready::Creating, Ready::Updating] {
                for mode in [Mode::Enforce, Mode::Report] {
                    for exempt in Exempt::ALL {
                        cases += 1;
                        let model = Model::default().with_keys();
                        let (status, reads) = match ready {
                            Ready::Active => (StreamStatus::Active, 0),
                            Ready::Creating => (StreamStatus::Creating, 2),
                            Ready::Updating => (StreamStatus::Updating, 1),
                        };
                        let first_status = status.name().to_owned();
                        model.world().streams.insert(
                            "orders".into(),
                            Stream {
                                status,
                                reads_to_ready: reads,
                                key: reported.key(),
                                tags: exempt.listed(),
                            },
                        );
                        let mut event = event("kinesis-create-stream", "streamName", "orders");
                        if exempt == Exempt::InRecord {
                            event["detail"]["requestParameters"]["tags"] =
                                serde_json::json!({"compliance": "exempt"});
                        }
                        let report = run(&model, &mandated, mode, event).await;
                        let compliant = compliant_forms.contains(&reported);
                        let want = expected_when_present(compliant, exempt.is_exempt(), mode);
                        let writes = model.calls("StartStreamEncryption");
                        let after = model.world().streams["orders"].clone();
                        let mut wrong = Vec::new();
                        if report.outcome != want {
                            wrong.push(format!("outcome {} (want {want})", report.outcome));
                        }
                        let want_writes = u32::from(want == Outcome::Remediated);
                        if writes != want_writes || report.attempts != writes {
                            wrong.push(format!(
                                "{writes} Start calls, attempts {} (want {want_writes})",
                                report.attempts
                            ));
                        }
                        if model.world().refused_writes != 0 {
                            wrong.push("wrote on a stream that was not ACTIVE".into());
                        }
                        let want_key = if want == Outcome::Remediated {
                            Some(mandated.clone())
                        } else {
                            reported.key()
                        };
                        if after.key != want_key {
                            wrong.push(format!("stream key {:?} (want {want_key:?})", after.key));
                        }
                        // The report names the mandated key by the ARN it resolved to, and what
                        // the stream was when first read.
                        if report.key.as_deref() != Some(resolved.as_str()) {
                            wrong.push(format!("report key {:?} (want {resolved})", report.key));
                        }
                        let found = report.found.as_ref();
                        let want_encryption = if reported.key().is_some() {
                            "KMS"
                        } else {
                            "NONE"
                        };
                        if found.map(|f| (f.status.as_str(), f.encryption.as_str(), f.key.clone()))
                            != Some((first_status.as_str(), want_encryption, reported.key()))
                        {
                            wrong.push(format!("found {found:?}"));
                        }
                        // Tags are read only for a stream that is not on the key, and never
                        // when the record carries the exemption.
                        let tag_reads = model.calls("ListTagsForStream");
                        if (compliant || exempt == Exempt::InRecord) && tag_reads != 0 {
                            wrong.push(format!("{tag_reads} tag reads"));
                        }
                        if !wrong.is_empty() {
                            failures.push(format!(
                                "mandated {mandated}, reported {reported:?}, {ready:?}, {mode:?}, exempt {exempt:?}: {}",
                                wrong.join("; ")
                            ));
                        }
                    }
                }
            }
        }
    }
    assert_eq!(cases, 5 * 10 * 3 * 2 * 3);
    assert!(
        failures.is_empty(),
        "{} of {cases} cases wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(start_paused = true)]
async fn kinesis_a_stream_deleted_or_being_deleted_is_gone_with_no_write() {
    for deleting in [false, true] {
        let model = Model::default().with_keys();
        if deleting {
            model.world().streams.insert(
                "orders".into(),
                Stream {
                    status: StreamStatus::Deleting,
                    reads_to_ready: 0,
                    key: None,
                    tags: tags(false),
                },
            );
        }
        let report = run(
            &model,
            "alias/org-streams",
            Mode::Enforce,
            event("kinesis-create-stream", "streamName", "orders"),
        )
        .await;
        assert_eq!(report.outcome, Outcome::Gone, "deleting {deleting}");
        assert_eq!(model.calls("StartStreamEncryption"), 0);
    }
}

// ---- Firehose.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Sse {
    None,
    Disabled,
    EnabledMandated,
    EnablingMandated,
    EnabledAwsOwned,
    EnabledOtherKey,
    /// Being turned off: refused writes until DISABLED.
    Disabling,
    /// Being put on another key: refused writes until ENABLED there.
    EnablingOtherKey,
    EnablingFailedMandated,
    DisablingFailed,
}

impl Sse {
    const ALL: [Sse; 10] = [
        Sse::None,
        Sse::Disabled,
        Sse::EnabledMandated,
        Sse::EnablingMandated,
        Sse::EnabledAwsOwned,
        Sse::EnabledOtherKey,
        Sse::Disabling,
        Sse::EnablingOtherKey,
        Sse::EnablingFailedMandated,
        Sse::DisablingFailed,
    ];

    fn encryption(self) -> Option<DeliveryEncryption> {
        let (status, key) = match self {
            Sse::None => return None,
            Sse::Disabled => (EncryptionStatus::Disabled, None),
            Sse::EnabledMandated => (
                EncryptionStatus::Enabled,
                Some(FirehoseKey::CustomerManaged(key_arn(KEY_ID))),
            ),
            Sse::EnablingMandated => (
                EncryptionStatus::Enabling,
                Some(FirehoseKey::CustomerManaged(key_arn(KEY_ID))),
            ),
            Sse::EnabledAwsOwned => (EncryptionStatus::Enabled, Some(FirehoseKey::AwsOwned)),
            Sse::EnabledOtherKey => (
                EncryptionStatus::Enabled,
                Some(FirehoseKey::CustomerManaged(key_arn(OTHER_KEY_ID))),
            ),
            Sse::Disabling => (
                EncryptionStatus::Disabling,
                Some(FirehoseKey::CustomerManaged(key_arn(KEY_ID))),
            ),
            Sse::EnablingOtherKey => (
                EncryptionStatus::Enabling,
                Some(FirehoseKey::CustomerManaged(key_arn(OTHER_KEY_ID))),
            ),
            Sse::EnablingFailedMandated => (
                EncryptionStatus::EnablingFailed,
                Some(FirehoseKey::CustomerManaged(key_arn(KEY_ID))),
            ),
            Sse::DisablingFailed => (
                EncryptionStatus::DisablingFailed,
                Some(FirehoseKey::CustomerManaged(key_arn(OTHER_KEY_ID))),
            ),
        };
        Some(DeliveryEncryption {
            status,
            key,
            failure: None,
        })
    }
}

#[tokio::test(start_paused = true)]
async fn firehose_every_source_status_encryption_mandate_mode_and_exemption() {
    let mut failures = Vec::new();
    let mut cases = 0;
    // Every form of a customer managed mandate is applied by its key ARN; an AWS managed one
    // means the key Firehose owns.
    let cmk = FirehoseKey::CustomerManaged(key_arn(KEY_ID));
    let mandates = [
        ("alias/org-streams".to_owned(), cmk.clone(), key_arn(KEY_ID)),
        (alias_arn("alias/org-streams"), cmk.clone(), key_arn(KEY_ID)),
        (KEY_ID.to_owned(), cmk.clone(), key_arn(KEY_ID)),
        (key_arn(KEY_ID), cmk, key_arn(KEY_ID)),
        (
            "alias/aws/kinesis".to_owned(),
            FirehoseKey::AwsOwned,
            key_arn(AWS_MANAGED_ID),
        ),
    ];
    for (mandated, wanted, resolved) in &mandates {
        for direct_put in [true, false] {
            for sse in Sse::ALL {
                for creating in [false, true] {
                    for mode in [Mode::Enforce, Mode::Report] {
                        for exempt in Exempt::ALL {
                            cases += 1;
                            let model = Model::default().with_keys();
                            let source = if direct_put {
                                "DirectPut"
                            } else {
                                "KinesisStreamAsSource"
                            };
                            model.world().deliveries.insert(
                                "clickstream".into(),
                                Delivery {
                                    status: if creating {
                                        DeliveryStatus::Creating
                                    } else {
                                        DeliveryStatus::Active
                                    },
                                    reads_to_ready: if creating { 2 } else { 1 },
                                    source_type: source.into(),
                                    encryption: sse.encryption(),
                                    tags: exempt.listed(),
                                },
                            );
                            let mut event = event(
                                "firehose-create-delivery-stream",
                                "deliveryStreamName",
                                "clickstream",
                            );
                            event["detail"]["requestParameters"]["deliveryStreamType"] =
                                source.into();
                            if exempt == Exempt::InRecord {
                                event["detail"]["requestParameters"]["tags"] =
                                    serde_json::json!([{"key": "compliance", "value": "exempt"}]);
                            }
                            let report = run(&model, mandated, mode, event).await;
                            let initial = sse.encryption();
                            // On the wanted key, ENABLED or already ENABLING to it.
                            let compliant = initial.as_ref().is_some_and(|e| {
                                e.key.as_ref() == Some(wanted)
                                    && matches!(
                                        e.status,
                                        EncryptionStatus::Enabled | EncryptionStatus::Enabling
                                    )
                            });
                            let want = if !direct_put {
                                Outcome::NotApplicable
                            } else {
                                expected_when_present(compliant, exempt.is_exempt(), mode)
                            };
                            let writes = model.calls("StartDeliveryStreamEncryption");
                            let after = model.world().deliveries["clickstream"].clone();
                            let mut wrong = Vec::new();
                            if report.outcome != want {
                                wrong.push(format!("outcome {} (want {want})", report.outcome));
                            }
                            let want_writes = u32::from(want == Outcome::Remediated);
                            if writes != want_writes || report.attempts != writes {
                                wrong.push(format!(
                                    "{writes} Start calls, attempts {} (want {want_writes})",
                                    report.attempts
                                ));
                            }
                            if model.world().refused_writes != 0 {
                                wrong.push("wrote on a delivery stream not ready".into());
                            }
                            if want == Outcome::Remediated
                                && after.encryption.as_ref().map(|e| (&e.status, &e.key))
                                    != Some((&EncryptionStatus::Enabled, &Some(wanted.clone())))
                            {
                                wrong.push(format!("ends {:?}", after.encryption));
                            }
                            // Without a write nothing changes, but what was already under way.
                            let under_way = matches!(
                                sse,
                                Sse::EnablingMandated | Sse::Disabling | Sse::EnablingOtherKey
                            );
                            if writes == 0 && !under_way && after.encryption != initial {
                                wrong.push(format!("changed to {:?}", after.encryption));
                            }
                            // A stream not applicable is left before the key is resolved.
                            let want_key = if want == Outcome::NotApplicable {
                                mandated.as_str()
                            } else {
                                resolved.as_str()
                            };
                            if report.key.as_deref() != Some(want_key) {
                                wrong
                                    .push(format!("report key {:?} (want {want_key})", report.key));
                            }
                            let tag_reads = model.calls("ListTagsForDeliveryStream");
                            if (compliant || !direct_put || exempt == Exempt::InRecord)
                                && tag_reads != 0
                            {
                                wrong.push(format!("{tag_reads} tag reads"));
                            }
                            if !wrong.is_empty() {
                                failures.push(format!(
                                    "mandated {mandated}, {source}, {sse:?}, creating {creating}, {mode:?}, exempt {exempt:?}: {}",
                                    wrong.join("; ")
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(cases, 5 * 2 * 10 * 2 * 2 * 3);
    assert!(
        failures.is_empty(),
        "{} of {cases} cases wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(start_paused = true)]
async fn firehose_a_failed_creation_is_not_applicable_and_a_deleted_stream_gone() {
    for (status, want) in [
        (Some(DeliveryStatus::CreatingFailed), Outcome::NotApplicable),
        (Some(DeliveryStatus::Deleting), Outcome::Gone),
        (None, Outcome::Gone),
    ] {
        let model = Model::default().with_keys();
        if let Some(status) = status.clone() {
            model.world().deliveries.insert(
                "clickstream".into(),
                Delivery {
                    status,
                    reads_to_ready: 0,
                    source_type: "DirectPut".into(),
                    encryption: None,
                    tags: tags(false),
                },
            );
        }
        let report = run(
            &model,
            "alias/org-streams",
            Mode::Enforce,
            event(
                "firehose-create-delivery-stream",
                "deliveryStreamName",
                "clickstream",
            ),
        )
        .await;
        assert_eq!(report.outcome, want, "{status:?}");
        assert_eq!(model.calls("StartDeliveryStreamEncryption"), 0);
    }
}

/// How [`Twisted`] answers Kinesis's StartStreamEncryption instead of the model.
#[derive(Clone)]
enum Twist {
    /// The Start "takes" another key than the one asked for.
    OtherKey,
    /// The first Start is refused with ResourceInUseException, as when someone else is
    /// changing the stream at that moment; later ones reach the model.
    BusyOnce(Arc<std::sync::atomic::AtomicBool>),
}

/// The model, with one twist in its StartStreamEncryption.
#[derive(Clone)]
struct Twisted(Model, Twist);

impl KinesisApi for Twisted {
    async fn stream_summary(&self, stream: &Resource) -> Result<StreamSummary, AwsError> {
        self.0.stream_summary(stream).await
    }
    async fn list_streams(&self, from: Option<ListCursor>) -> Result<StreamPage, AwsError> {
        self.0.list_streams(from).await
    }
    async fn stream_tags(&self, stream: &Resource) -> Result<Tags, AwsError> {
        self.0.stream_tags(stream).await
    }
    async fn start_encryption(&self, stream: &Resource, key: &str) -> Result<(), AwsError> {
        match &self.1 {
            Twist::OtherKey => {
                KinesisApi::start_encryption(&self.0, stream, &key_arn(OTHER_KEY_ID)).await
            }
            Twist::BusyOnce(refused) => {
                if !refused.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    self.0.count("StartStreamEncryption");
                    return Err(in_use(&stream.name));
                }
                KinesisApi::start_encryption(&self.0, stream, key).await
            }
        }
    }
}
impl FirehoseApi for Twisted {
    async fn delivery_summary(&self, stream: &Resource) -> Result<DeliverySummary, AwsError> {
        self.0.delivery_summary(stream).await
    }
    async fn list_delivery_streams(
        &self,
        after: Option<String>,
    ) -> Result<(Vec<String>, bool), AwsError> {
        self.0.list_delivery_streams(after).await
    }
    async fn delivery_stream_tags(&self, stream: &Resource) -> Result<Tags, AwsError> {
        self.0.delivery_stream_tags(stream).await
    }
    async fn start_encryption(&self, stream: &Resource, key: &FirehoseKey) -> Result<(), AwsError> {
        FirehoseApi::start_encryption(&self.0, stream, key).await
    }
}
impl KmsApi for Twisted {
    async fn describe_key(&self, key: &str) -> Result<KeyInfo, AwsError> {
        self.0.describe_key(key).await
    }
}
impl LedgerApi for Twisted {
    fn counts(&self) -> bool {
        self.0.counts()
    }
    async fn recent(
        &self,
        resource: &str,
        now: std::time::SystemTime,
    ) -> Result<Vec<Application>, AwsError> {
        self.0.recent(resource, now).await
    }
    async fn record(
        &self,
        resource: &str,
        now: std::time::SystemTime,
        by: &str,
    ) -> Result<(), AwsError> {
        self.0.record(resource, now, by).await
    }
}

fn unencrypted_orders(model: &Model) {
    unencrypted_orders_tagged(model, tags(false));
}

/// An ACTIVE, unencrypted stream `orders` with these tags.
fn unencrypted_orders_tagged(model: &Model, tags: Tags) {
    model.world().streams.insert(
        "orders".into(),
        Stream {
            status: StreamStatus::Active,
            reads_to_ready: 0,
            key: None,
            tags,
        },
    );
}

#[tokio::test(start_paused = true)]
async fn the_table_can_fail_a_model_that_reports_another_key_after_start_is_caught() {
    // The confirm step is what makes `remediated` true: a Start that "takes" a key other than
    // the mandated one must fail the event, not pass it.
    let model = Model::default().with_keys();
    unencrypted_orders(&model);
    let report = run_with(
        Twisted(model.clone(), Twist::OtherKey),
        &config("alias/org-streams", Mode::Enforce, None),
        event("kinesis-create-stream", "streamName", "orders"),
    )
    .await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert_eq!(report.error_code.as_deref(), Some("Enforcer.KeyMismatch"));
}

#[tokio::test(start_paused = true)]
async fn a_write_refused_as_in_use_is_retried_after_a_fresh_read_and_the_checks_are_not_repeated() {
    // The exemption tag and the ledger are checked once per event, before its first write; a
    // second write after ResourceInUseException reads the stream again but not them.
    let model = Model::default().with_keys();
    unencrypted_orders(&model);
    model.world().ledger = Some(Vec::new());
    let report = run_with(
        Twisted(model.clone(), Twist::BusyOnce(Default::default())),
        &config("alias/org-streams", Mode::Enforce, None),
        event("kinesis-create-stream", "streamName", "orders"),
    )
    .await;
    assert_eq!(report.outcome, Outcome::Remediated, "{report:?}");
    assert_eq!(report.attempts, 2);
    assert_eq!(model.calls("StartStreamEncryption"), 2);
    assert_eq!(model.calls("ListTagsForStream"), 1);
    assert_eq!(model.calls("Query"), 1);
    assert_eq!(model.calls("PutItem"), 1);
    // Read first, again after the refused write, then twice to confirm (UPDATING, ACTIVE).
    assert_eq!(model.calls("DescribeStreamSummary"), 4);
}

// ---- The flapping guard.

/// What the re-application ledger holds before the event.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kept {
    /// No `LEDGER_TABLE`: nothing is counted.
    NoLedger,
    /// Its Query is denied.
    Unreadable,
    /// This many applications to the resource in the last 24 hours (and others that do not
    /// count: older ones, and another resource's).
    Prior(u32),
}

/// Who left the resource off the key before, as the ledger records it.
const EARLIER: &str = "Terraform (arn:aws:iam::123456789012:role/Other)";

#[tokio::test(start_paused = true)]
async fn flapping_every_service_threshold_count_mode_and_exemption() {
    use std::time::SystemTime;
    let mut failures = Vec::new();
    let mut cases = 0;
    let hour = Duration::from_secs(3600);
    for firehose in [false, true] {
        for threshold in [None, Some(1), Some(3), Some(12), Some(13), Some(24)] {
            // The oracle, from the README's configuration table: the default is 10, and a
            // delivery stream's threshold is at most 12 (a revert cycle costs two of 25 calls).
            let configured = threshold.unwrap_or(10);
            let effective = if firehose {
                configured.min(12)
            } else {
                configured
            };
            let mut kept = vec![Kept::NoLedger, Kept::Unreadable];
            let mut priors = vec![0, effective - 1, effective, effective + 1, configured];
            priors.sort();
            priors.dedup();
            kept.extend(priors.into_iter().map(Kept::Prior));
            for kept in kept {
                for compliant in [false, true] {
                    for (mode, exempt) in [
                        (Mode::Enforce, Exempt::No),
                        (Mode::Enforce, Exempt::Listed),
                        (Mode::Report, Exempt::No),
                    ] {
                        cases += 1;
                        let model = Model::default().with_keys();
                        let (name, fixture, field) = if firehose {
                            (
                                "clickstream",
                                "firehose-create-delivery-stream",
                                "deliveryStreamName",
                            )
                        } else {
                            ("orders", "kinesis-create-stream", "streamName")
                        };
                        let arn = Resource::named(
                            if firehose {
                                stream_encryption_enforcer::model::resource::Service::Firehose
                            } else {
                                stream_encryption_enforcer::model::resource::Service::Kinesis
                            },
                            Location::new(ACCOUNT, REGION).expect("home"),
                            name,
                        )
                        .expect("resource")
                        .arn();
                        {
                            let mut world = model.world();
                            if firehose {
                                world.deliveries.insert(
                                    name.into(),
                                    Delivery {
                                        status: DeliveryStatus::Active,
                                        reads_to_ready: 1,
                                        source_type: "DirectPut".into(),
                                        encryption: if compliant {
                                            Sse::EnabledMandated.encryption()
                                        } else {
                                            None
                                        },
                                        tags: exempt.listed(),
                                    },
                                );
                            } else {
                                world.streams.insert(
                                    name.into(),
                                    Stream {
                                        status: StreamStatus::Active,
                                        reads_to_ready: 0,
                                        key: compliant.then(|| key_arn(KEY_ID)),
                                        tags: exempt.listed(),
                                    },
                                );
                            }
                            let now = SystemTime::now();
                            let at = |ago: Duration| Application {
                                at_ms: epoch_ms(now - ago),
                                reverted_by: EARLIER.into(),
                            };
                            world.ledger_unreadable = kept == Kept::Unreadable;
                            if kept != Kept::NoLedger {
                                let mut ledger = Vec::new();
                                let prior = match kept {
                                    Kept::Prior(n) => n,
                                    _ => 0,
                                };
                                for i in 0..prior {
                                    ledger.push((arn.clone(), at(hour * (i + 1) / 2)));
                                }
                                // Older than 24 hours, or another resource's: not counted.
                                for _ in 0..3 {
                                    ledger.push((arn.clone(), at(hour * 25)));
                                    ledger.push((format!("{arn}-other"), at(hour)));
                                }
                                world.ledger = Some(ledger);
                            }
                        }
                        let before = model.world().ledger.clone();
                        let mut event = event(fixture, field, name);
                        if firehose {
                            event["detail"]["requestParameters"]["deliveryStreamType"] =
                                "DirectPut".into();
                        }
                        let config = config("alias/org-streams", mode, threshold);
                        let report = run_with(model.clone(), &config, event).await;

                        let would_write =
                            !compliant && !exempt.is_exempt() && mode == Mode::Enforce;
                        let flapping =
                            would_write && matches!(kept, Kept::Prior(n) if n >= effective);
                        let want = if flapping {
                            Outcome::Flapping
                        } else {
                            expected_when_present(compliant, exempt.is_exempt(), mode)
                        };
                        let wrote = want == Outcome::Remediated;
                        let start = if firehose {
                            "StartDeliveryStreamEncryption"
                        } else {
                            "StartStreamEncryption"
                        };
                        let mut wrong = Vec::new();
                        if report.outcome != want {
                            wrong.push(format!("outcome {} (want {want})", report.outcome));
                        }
                        let writes = model.calls(start);
                        if writes != u32::from(wrote) || report.attempts != writes {
                            wrong.push(format!(
                                "{writes} Start calls, attempts {}",
                                report.attempts
                            ));
                        }
                        // The ledger is asked before the first write only, and only when one is
                        // configured.
                        let want_queries = u32::from(would_write && kept != Kept::NoLedger);
                        if model.calls("Query") != want_queries {
                            wrong.push(format!("{} ledger reads", model.calls("Query")));
                        }
                        let want_error = flapping.then_some("Enforcer.Flapping");
                        if want != Outcome::Failed && report.error_code.as_deref() != want_error {
                            wrong.push(format!("error code {:?}", report.error_code));
                        }
                        let reason = report.reason.clone().unwrap_or_default();
                        if let (true, Kept::Prior(n)) = (flapping, kept)
                            && !(reason.contains(&format!("applied {n} times"))
                                && reason.contains(&format!("{EARLIER} x{n}")))
                        {
                            wrong.push(format!("reason {reason:?}"));
                        }
                        if kept == Kept::Unreadable
                            && wrote
                            && !reason.contains(
                                "re-application ledger could not be read (AccessDeniedException",
                            )
                        {
                            wrong.push(format!(
                                "reason {reason:?} does not say the check was skipped"
                            ));
                        }
                        // A write that took is recorded, with who left the resource off the key;
                        // nothing else changes the ledger.
                        let after = model.world().ledger.clone();
                        let recorded = matches!(kept, Kept::Prior(_)) && wrote;
                        match (&before, &after) {
                            (Some(before), Some(after)) if recorded => {
                                let added = &after[before.len()..];
                                if after[..before.len()] != before[..]
                                    || added.len() != 1
                                    || added[0].0 != arn
                                    || !added[0].1.reverted_by.contains("DataPlatformDeployer")
                                {
                                    wrong.push(format!("recorded {added:?}"));
                                }
                            }
                            _ if kept != Kept::Unreadable && before != after => {
                                wrong.push("the ledger changed".into());
                            }
                            _ => {}
                        }
                        if !wrong.is_empty() {
                            failures.push(format!(
                                "firehose {firehose}, threshold {threshold:?}, {kept:?}, compliant {compliant}, {mode:?}, exempt {exempt:?}: {}",
                                wrong.join("; ")
                            ));
                        }
                    }
                }
            }
        }
    }
    assert_eq!(cases, 426);
    assert!(
        failures.is_empty(),
        "{} of {cases} cases wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A place larger than one invocation continues across messages: each part sweeps what its time
/// allows, in a fixed order, and sends a follow-up that starts at the first resource it did not
/// reach; handed those messages, the parts together put every stream on the key, each started
/// exactly once.
#[tokio::test(start_paused = true)]
async fn a_place_larger_than_one_invocation_continues_across_messages() {
    use stream_encryption_enforcer::sweep::plan::{PartEnd, PlaceMessage};
    const STREAMS: usize = 300;
    let model = Model::default().with_keys();
    for i in 0..STREAMS {
        model.world().streams.insert(
            format!("s{i:03}"),
            Stream {
                status: StreamStatus::Active,
                reads_to_ready: 0,
                key: None,
                tags: tags(false),
            },
        );
    }
    let fleet = Fleet::new(
        OwnAccount::new(model.clone()),
        &config("alias/org-streams", Mode::Enforce, None),
    );
    let home = Location::new(ACCOUNT, REGION).expect("home");
    // An invocation of 60 s: resources start during the first 25 s (30 s are kept to finish
    // one, 5 s to send the follow-up).
    let invocation = Duration::from_secs(60);
    let mut message = PlaceMessage::first("sweep-test", &home);
    let mut parts = Vec::new();
    loop {
        let deadline = Instant::now() + invocation;
        let part = fleet
            .sweep_part(&message, &home, &home, deadline, |_| {})
            .await;
        assert!(Instant::now() <= deadline, "part {} overran", message.part);
        let sent = fleet.connector().take_sent();
        parts.push((part.summary.reports.len(), part.end.clone()));
        match &part.end {
            PartEnd::Continued(from) => {
                assert_eq!(sent.len(), 1, "one follow-up");
                let (next, _) = PlaceMessage::parse(&sent[0]).expect("a place message");
                assert_eq!(next.from.as_ref(), Some(from));
                assert_eq!(next.part, message.part + 1);
                message = next;
            }
            PartEnd::Swept => {
                assert!(sent.is_empty());
                break;
            }
            PartEnd::Failed(why) => panic!("part {} failed: {why}", message.part),
        }
        assert!(parts.len() < 50, "no end: {parts:?}");
    }
    assert!(parts.len() >= 3, "the place fits one invocation: {parts:?}");
    let encrypted = model
        .world()
        .streams
        .values()
        .filter(|s| s.key.is_some())
        .count();
    assert_eq!(encrypted, STREAMS, "parts: {parts:?}");
    // Each stream started once: a part begins where the last one stopped.
    assert_eq!(model.calls("StartStreamEncryption") as usize, STREAMS);
    eprintln!("{STREAMS} streams in {} parts: {parts:?}", parts.len());
}

/// A deferred event ends as the same event waited for in one invocation would: each wait for a
/// CREATING stream, and the settle period of a Terraform stream, is handed back (the events
/// queue's re-check) and carried into the next handling, which carries on where the last one
/// stopped: the retry policy's count, the settle period begun, what was found first.
#[tokio::test(start_paused = true)]
async fn a_deferred_event_ends_as_the_waited_one_would() {
    use stream_encryption_enforcer::fleet::{Deferral, Enforced};
    let model = Model::default().with_keys();
    model.world().streams.insert(
        "orders".into(),
        Stream {
            status: StreamStatus::Creating,
            reads_to_ready: 3,
            key: None,
            tags: tags(false),
        },
    );
    let fleet = Fleet::new(
        OwnAccount::new(model.clone()),
        &config("alias/org-streams", Mode::Enforce, None),
    );
    let home = Location::new(ACCOUNT, REGION).expect("home");
    let mut event = event("kinesis-create-stream", "streamName", "orders");
    event["detail"]["userAgent"] =
        "APN/1.0 HashiCorp/1.0 Terraform/1.11.4 terraform-provider-aws/5.100.0".into();
    let started = Instant::now();
    let mut carry = None;
    let mut waits = Vec::new();
    let report = loop {
        let handled = fleet
            .handle_with(
                event.clone(),
                Some(&home),
                Instant::now() + Duration::from_secs(60),
                &mut fastrand::Rng::with_seed(7),
                Deferral::On(carry.take()),
            )
            .await
            .expect("a usable event");
        match handled {
            Enforced::Done(report) => break report,
            Enforced::Later { after, carry: next } => {
                // What goes on the queue is what comes back: through JSON.
                let text = serde_json::to_string(&next).unwrap();
                carry = Some(serde_json::from_str(&text).unwrap());
                waits.push(after);
                tokio::time::advance(after).await;
            }
        }
        assert!(waits.len() < 50, "no end: {waits:?}");
    };
    assert_eq!(report.outcome, Outcome::Remediated, "{report:?}");
    assert_eq!(report.creator.as_deref(), Some("Terraform"));
    // Found CREATING at the first handling, though ACTIVE at the last.
    assert_eq!(report.found.as_ref().unwrap().status, "CREATING");
    assert_eq!(model.calls("StartStreamEncryption"), 1);
    // Three waits for the CREATING stream, then the settle period, in as many deferrals, and
    // the settle period is kept: the write is made 30 s after the stream was first seen ready.
    assert!(waits.len() >= 4, "{waits:?}");
    let settle: Duration = waits.iter().skip(3).sum();
    assert_eq!(settle, Duration::from_secs(30), "{waits:?}");
    assert!(Instant::now() - started >= Duration::from_secs(30));
}
