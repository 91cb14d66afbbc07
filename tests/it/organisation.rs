//! Central mode against moto server modelling several accounts: the real `bootstrap` and
//! `enforcer` binaries, the member role assumed through moto's STS (its credentials act in the
//! role's account), every call counted at a proxy in front of moto.
//!
//! The same stream name exists in every account and region, so acting in the wrong place would
//! encrypt the wrong stream; each one must end on the key of its own account and region.

use crate::support::*;
use serde_json::json;
use std::time::Duration;

const ROLE: &str = "StreamEncryptionEnforcerMember";
const EXTERNAL_ID: &str = "org-streams-enforcer";
const ALIAS: &str = "alias/org-streams";
const MEMBER_A: &str = "111111111111";
const MEMBER_B: &str = "222222222222";
/// In the organisation's emulator, but not in ALLOWED_ACCOUNTS.
const OUTSIDER: &str = "333333333333";
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];

/// moto, and a counting proxy in front of it that the binaries talk to.
struct Org {
    moto_url: String,
    proxy: Proxy,
    _moto: Process,
}

/// Clients acting in `account` and `region` of moto, straight (not through the proxy): the
/// function's own credentials for its own account, AssumeRole credentials for the others.
struct Member {
    kinesis: aws_sdk_kinesis::Client,
    firehose: aws_sdk_firehose::Client,
    kms: aws_sdk_kms::Client,
}

impl Org {
    async fn start() -> Self {
        let (moto, moto_url) = start_moto();
        let proxy = Proxy::start(&moto_url).await;
        Self {
            moto_url,
            proxy,
            _moto: moto,
        }
    }

    async fn member(&self, account: &str, region: &str) -> Member {
        let config = sdk_config_in(&self.moto_url, account, region).await;
        Member {
            kinesis: aws_sdk_kinesis::Client::new(&config),
            firehose: aws_sdk_firehose::Client::new(&config),
            kms: aws_sdk_kms::Client::new(&config),
        }
    }

    /// The central function's environment: home account 123456789012 in us-east-1.
    fn env(&self, allowed: &str) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.proxy.url.as_str()),
            ("AWS_ACCESS_KEY_ID", ACCOUNT),
            ("AWS_SECRET_ACCESS_KEY", "test-secret"),
            ("AWS_REGION", REGION),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("MANDATED_KMS_KEY", ALIAS),
            ("TARGET_ROLE_NAME", ROLE),
            ("TARGET_EXTERNAL_ID", EXTERNAL_ID),
            ("ALLOWED_ACCOUNTS", allowed),
            ("ALLOWED_REGIONS", "us-east-1,eu-west-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

impl Member {
    /// The mandated alias in this account and region, on a new key; returns the key's ARN.
    async fn key(&self) -> String {
        create_key_on(&self.kms, ALIAS).await
    }

    /// The key ARN the stream is encrypted with, its key reference resolved in this account
    /// and region (the enforcer applies the key as configured, here the alias).
    async fn stream_key(&self, name: &str) -> Option<String> {
        let key_id = stream_on(&self.kinesis, name).await.key_id?;
        let meta = self
            .kms
            .describe_key()
            .key_id(key_id)
            .send()
            .await
            .expect("DescribeKey")
            .key_metadata
            .expect("metadata");
        meta.arn
    }

    async fn delivery_key(&self, name: &str) -> Option<String> {
        delivery_encryption_on(&self.firehose, name)
            .await
            .and_then(|c| c.key_arn)
    }
}

/// A fixture from events/ for `name` in `account` and `region`, as the member account's
/// CloudTrail would record it and EventBridge would forward it to the central bus.
fn event_at(fixture: &str, name: &str, account: &str, region: &str) -> serde_json::Value {
    let mut event = event(fixture, name);
    let text = event
        .to_string()
        .replace(ACCOUNT, account)
        .replace(REGION, region);
    event = serde_json::from_str(&text).expect("JSON");
    event["id"] = json!(format!("{account}-{region}-{name}-{fixture}"));
    event
}

fn locations() -> Vec<(&'static str, &'static str)> {
    let mut all = Vec::new();
    for account in [MEMBER_A, MEMBER_B] {
        for region in REGIONS {
            all.push((account, region));
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_from_member_accounts_are_enforced_in_their_own_account_and_region() {
    let org = Org::start().await;
    // "orders" in both member accounts in both regions, in the function's own account, and in
    // an account outside the allowed set; each place has its own key under the same alias.
    let mut keys = Vec::new();
    for (account, region) in locations()
        .into_iter()
        .chain([(ACCOUNT, REGION), (OUTSIDER, REGION)])
    {
        let member = org.member(account, region).await;
        let key = member.key().await;
        create_stream_on(&member.kinesis, "orders").await;
        keys.push((account, region, key));
    }
    let clicks = org.member(MEMBER_B, "eu-west-1").await;
    create_delivery_stream_on(&clicks.firehose, MEMBER_B, "clicks", None).await;

    let api = RuntimeApi::start().await;
    let mut pushed = 0;
    for (account, region) in locations().into_iter().chain([(ACCOUNT, REGION)]) {
        let id = format!("create-{account}-{region}");
        api.push(
            &id,
            event_at("kinesis-create-stream", "orders", account, region),
            Duration::from_secs(60),
        );
        pushed += 1;
    }
    api.push(
        "firehose",
        event_at(
            "firehose-create-delivery-stream",
            "clicks",
            MEMBER_B,
            "eu-west-1",
        ),
        Duration::from_secs(60),
    );
    // A second delivery of one event: the same container, the same account's cached credentials.
    api.push(
        "again",
        event_at("kinesis-create-stream", "orders", MEMBER_A, "eu-west-1"),
        Duration::from_secs(60),
    );
    pushed += 2;
    let allowed = format!("{MEMBER_A},{MEMBER_B}");
    let lambda = start_bootstrap(&api, &org.env(&allowed));
    let results = api.results(pushed, Duration::from_secs(120)).await;
    let by_id = |id: &str| {
        results
            .iter()
            .find(|r| r.request_id == id)
            .unwrap_or_else(|| panic!("{id}: {results:?}"))
    };
    for (account, region) in locations().into_iter().chain([(ACCOUNT, REGION)]) {
        let result = by_id(&format!("create-{account}-{region}"));
        assert_eq!(result.kind, "response", "{result:?}");
        assert_eq!(result.body["outcome"], json!("remediated"), "{result:?}");
        assert_eq!(
            result.body["resource"],
            json!(format!("arn:aws:kinesis:{region}:{account}:stream/orders"))
        );
    }
    assert_eq!(by_id("firehose").body["outcome"], json!("remediated"));
    assert_eq!(by_id("again").body["outcome"], json!("already_compliant"));

    // Each stream is on the key of its own account and region; the outsider's is untouched.
    for (account, region, key) in &keys {
        let member = org.member(account, region).await;
        let found = member.stream_key("orders").await;
        if *account == OUTSIDER {
            assert_eq!(found, None, "{account} {region}");
        } else {
            assert_eq!(found.as_deref(), Some(key.as_str()), "{account} {region}");
        }
    }
    let b_west = keys
        .iter()
        .find(|(a, r, _)| *a == MEMBER_B && *r == "eu-west-1")
        .map(|(_, _, k)| k.clone());
    assert_eq!(clicks.delivery_key("clicks").await, b_west);

    // One AssumeRole per member account for all of its events and regions, with the external
    // id; none for the function's own account, which acts with its own credentials.
    assert_eq!(org.proxy.calls("AssumeRole"), 2);
    for account in [MEMBER_A, MEMBER_B] {
        assert_eq!(org.proxy.calls_for("AssumeRole", account), 1, "{account}");
    }
    assert_eq!(org.proxy.calls_for("AssumeRole", EXTERNAL_ID), 2);
    assert_eq!(org.proxy.calls_for("AssumeRole", ACCOUNT), 0);

    // An event from an account outside ALLOWED_ACCOUNTS: refused, and not one call is made.
    org.proxy.reset_counts();
    api.push(
        "outsider",
        event_at("kinesis-create-stream", "orders", OUTSIDER, REGION),
        Duration::from_secs(60),
    );
    // And a region outside ALLOWED_REGIONS of an allowed account.
    api.push(
        "far-region",
        event_at(
            "kinesis-create-stream",
            "orders",
            MEMBER_A,
            "ap-southeast-2",
        ),
        Duration::from_secs(60),
    );
    let results = api.results(pushed + 2, Duration::from_secs(60)).await;
    assert_eq!(org.proxy.total_calls(), 0);
    for (id, needle) in [
        (
            "outsider",
            "account 333333333333 is not in ALLOWED_ACCOUNTS",
        ),
        (
            "far-region",
            "region ap-southeast-2 is not in ALLOWED_REGIONS",
        ),
    ] {
        let refused = results.iter().find(|r| r.request_id == id).unwrap();
        assert_eq!(refused.kind, "error", "{refused:?}");
        let message = refused.error_message("EventRefused");
        assert!(message.contains(needle), "{message}");
    }

    // The scheduled sweep covers every allowed account in every allowed region, the function's
    // own included, in one summary: everything is already on its key, the outsider not swept.
    let sweep: serde_json::Value =
        serde_json::from_str(include_str!("../../events/scheduled-sweep.json")).unwrap();
    api.push("sweep", sweep, Duration::from_secs(120));
    let results = api.results(pushed + 3, Duration::from_secs(120)).await;
    let logs = lambda.stop_and_read_stdout();
    let sweep = results.iter().find(|r| r.request_id == "sweep").unwrap();
    assert_eq!(sweep.kind, "response", "{sweep:?}");
    assert_eq!(sweep.body["counts"], json!({"already_compliant": 6}));
    // The answer is counts; every swept resource has its own outcome line in the log.
    assert_eq!(sweep.body["not_compliant_total"], json!(0), "{sweep:?}");
    let mut swept: Vec<String> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == json!("outcome") && l["event_name"] == json!("Sweep"))
        .map(|l| l["resource"].as_str().unwrap().to_owned())
        .collect();
    swept.sort();
    assert_eq!(
        swept,
        [
            "arn:aws:firehose:eu-west-1:222222222222:deliverystream/clicks",
            "arn:aws:kinesis:eu-west-1:111111111111:stream/orders",
            "arn:aws:kinesis:eu-west-1:222222222222:stream/orders",
            "arn:aws:kinesis:us-east-1:111111111111:stream/orders",
            "arn:aws:kinesis:us-east-1:123456789012:stream/orders",
            "arn:aws:kinesis:us-east-1:222222222222:stream/orders",
        ]
    );
    // Only the function's own account in eu-west-1 needed a first AssumeRole.
    assert_eq!(org.proxy.calls("AssumeRole"), 1);
    assert_eq!(org.proxy.calls_for("AssumeRole", ACCOUNT), 1);
    assert!(
        logs.contains(r#""outcome":"refused""#),
        "the refusal is logged as an outcome: {logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_and_sweep_cover_every_allowed_account_and_region_each_within_its_own_limits() {
    let org = Org::start().await;
    const PER_PLACE: usize = 12;
    let mut keys = Vec::new();
    for (account, region) in locations() {
        let member = org.member(account, region).await;
        let key = member.key().await;
        for i in 0..PER_PLACE {
            create_stream_on(&member.kinesis, &format!("s{i:02}")).await;
        }
        // One stream per place is already on the mandated key.
        encrypt_stream_on(&member.kinesis, "s00", &key).await;
        keys.push((account, region, key));
    }
    let home = org.member(ACCOUNT, REGION).await;
    home.key().await;
    let env = org.env(&format!("{MEMBER_A},{MEMBER_B}"));

    // The audit lists every stream of every allowed account and region, and the function's
    // own account in both regions (it has one stream, none in eu-west-1).
    let audit = enforcer(&env, &["audit", "--output", "json"]).await;
    assert_eq!(audit.code, Some(3), "{audit:?}");
    let rows = audit.report.as_array().expect("rows");
    assert_eq!(rows.len(), 4 * PER_PLACE, "{rows:?}");
    for (account, region) in locations() {
        let here: Vec<&serde_json::Value> = rows
            .iter()
            .filter(|r| {
                r["resource"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("arn:aws:kinesis:{region}:{account}:stream/"))
            })
            .collect();
        assert_eq!(here.len(), PER_PLACE, "{account} {region}");
        let compliant = here.iter().filter(|r| r["verdict"] == "compliant").count();
        assert_eq!(compliant, 1, "{account} {region}: {here:?}");
    }

    // The sweep puts every stream on its own place's key. Each account and region is paced on
    // its own: together they go faster than one account's StartStreamEncryption limit (5/s)
    // allows, while no single one exceeds it.
    org.proxy.reset_counts();
    let sweep = enforcer(&env, &["sweep", "--output", "json"]).await;
    assert_eq!(sweep.code, Some(0), "{sweep:?}");
    assert_eq!(
        sweep.report["counts"],
        json!({"already_compliant": 4, "remediated": 4 * (PER_PLACE - 1)})
    );
    for (account, region, key) in &keys {
        let member = org.member(account, region).await;
        for i in 0..PER_PLACE {
            let found = member.stream_key(&format!("s{i:02}")).await;
            assert_eq!(
                found.as_deref(),
                Some(key.as_str()),
                "{account} {region} s{i:02}"
            );
        }
        let place = format!("{region}:{account}:stream/");
        let peak = org
            .proxy
            .peak_per_second_for(&["StartStreamEncryption"], &place);
        eprintln!("{account} {region}: peak {peak} StartStreamEncryption calls in one second");
        assert!(
            peak <= 5,
            "{account} {region}: {peak} Start calls in one second"
        );
    }
    let together = org.proxy.peak_per_second(&["StartStreamEncryption"]);
    eprintln!("all places together: peak {together} StartStreamEncryption calls in one second");
    assert!(
        together > 5,
        "the places were paced as one: peak {together} Start calls per second"
    );
    // One AssumeRole per account, whatever the number of regions and streams: the two members,
    // and the function's own account for its other region (only its own account *and* region
    // use the function's own credentials).
    assert_eq!(org.proxy.calls("AssumeRole"), 3);
    for account in [MEMBER_A, MEMBER_B, ACCOUNT] {
        assert_eq!(org.proxy.calls_for("AssumeRole", account), 1, "{account}");
    }

    // Only allowed accounts can be named; an unreachable account is reported, not skipped.
    let outsider = enforcer(&env, &["audit", "--accounts", OUTSIDER]).await;
    assert_eq!(outsider.code, Some(2), "{outsider:?}");
    assert!(
        outsider.stderr.contains("not in ALLOWED_ACCOUNTS"),
        "{outsider:?}"
    );
    org.proxy.inject_for(
        "AssumeRole",
        MEMBER_B,
        1,
        // STS speaks the query protocol: its errors are XML.
        Fault::Raw {
            status: 403,
            body: "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>\
                   <Message>User is not authorized to perform: sts:AssumeRole</Message></Error>\
                   <RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
                .into(),
        },
    );
    let denied = enforcer(
        &env,
        &[
            "audit",
            "--output",
            "json",
            "--accounts",
            &format!("{MEMBER_A},{MEMBER_B}"),
            "--regions",
            "us-east-1",
        ],
    )
    .await;
    assert_eq!(denied.code, Some(3), "{denied:?}");
    let rows = denied.report.as_array().expect("rows");
    let unlisted: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r["verdict"] == "not listed")
        .collect();
    assert_eq!(unlisted.len(), 1, "{rows:?}");
    assert_eq!(
        unlisted[0]["resource"],
        json!(format!("{MEMBER_B}/us-east-1"))
    );
    let reason = unlisted[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("AccessDenied") && reason.contains(ROLE),
        "{reason}"
    );
    assert_eq!(
        rows.iter().filter(|r| r["verdict"] == "compliant").count(),
        PER_PLACE,
        "{MEMBER_A} us-east-1 is still audited"
    );
}

/// Without ALLOWED_ACCOUNTS, the organisation is the list: read once from moto's Organizations
/// (the function's account is the management account here), and every account outside it is
/// refused without a call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_only_the_organisation_id_its_active_accounts_are_the_allowed_set() {
    let org = Org::start().await;
    let organizations = aws_sdk_organizations::Client::new(&sdk_config(&org.moto_url));
    let organization_id = organizations
        .create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await
        .expect("CreateOrganization")
        .organization
        .and_then(|o| o.id)
        .expect("id");
    let created = organizations
        .create_account()
        .email("streams@example.com")
        .account_name("streams")
        .send()
        .await
        .expect("CreateAccount")
        .create_account_status
        .expect("status");
    let member_id = created.account_id.expect("account id");
    let member = org.member(&member_id, REGION).await;
    let key = member.key().await;
    create_stream_on(&member.kinesis, "orders").await;

    let mut env = org.env("");
    env.retain(|(k, _)| k != "ALLOWED_ACCOUNTS");
    env.push(("ORGANIZATION_ID".into(), organization_id.clone()));
    // Organizations throttles twice and fails once on its side (HTTP 500, a code the policy does
    // not name): the default policy retries all three, and the first read still succeeds.
    org.proxy.inject(
        "DescribeOrganization",
        1,
        Fault::AwsError {
            status: 500,
            code: "ServiceException".into(),
            message: "internal error".into(),
        },
    );
    org.proxy.inject(
        "ListAccounts",
        2,
        Fault::error("TooManyRequestsException", "AWS Organizations can't complete your request because another request is already in progress"),
    );
    let api = RuntimeApi::start().await;
    api.push(
        "member",
        event_at("kinesis-create-stream", "orders", &member_id, REGION),
        Duration::from_secs(60),
    );
    api.push(
        "outsider",
        event_at("kinesis-create-stream", "orders", OUTSIDER, REGION),
        Duration::from_secs(60),
    );
    api.push(
        "member-again",
        event_at("kinesis-create-stream", "orders", &member_id, REGION),
        Duration::from_secs(60),
    );
    let lambda = start_bootstrap(&api, &env);
    let results = api.results(3, Duration::from_secs(60)).await;
    drop(lambda);
    let by_id = |id: &str| results.iter().find(|r| r.request_id == id).unwrap();
    assert_eq!(
        by_id("member").body["outcome"],
        json!("remediated"),
        "{results:?}"
    );
    assert_eq!(
        by_id("member-again").body["outcome"],
        json!("already_compliant")
    );
    let outsider = by_id("outsider");
    let message = outsider.error_message("EventRefused");
    assert!(
        message.contains(&format!(
            "account {OUTSIDER} is not in the ACTIVE accounts of organisation {organization_id}"
        )),
        "{message}"
    );
    assert_eq!(member.stream_key("orders").await, Some(key));
    // Read once for the three events (after the three retried answers); nothing was called in
    // the outsider's account.
    assert_eq!(org.proxy.calls("ListAccounts"), 3);
    assert_eq!(org.proxy.calls("DescribeOrganization"), 4);
    assert_eq!(org.proxy.calls_anywhere(OUTSIDER), 0);

    // The function's own account needs no organisation read: with Organizations hung, its
    // event in a new container is enforced, and Organizations is not called.
    let own = org.member(ACCOUNT, REGION).await;
    let own_key = own.key().await;
    create_stream_on(&own.kinesis, "own-orders").await;
    org.proxy.reset_counts();
    org.proxy.inject("DescribeOrganization", 1000, Fault::Hang);
    org.proxy.inject("ListAccounts", 1000, Fault::Hang);
    let api = RuntimeApi::start().await;
    api.push(
        "own",
        event_at("kinesis-create-stream", "own-orders", ACCOUNT, REGION),
        Duration::from_secs(20),
    );
    let lambda = start_bootstrap(&api, &env);
    let results = api.results(1, Duration::from_secs(60)).await;
    drop(lambda);
    assert_eq!(
        results[0].body["outcome"],
        json!("remediated"),
        "{results:?}"
    );
    assert_eq!(org.proxy.calls("DescribeOrganization"), 0);
    assert_eq!(org.proxy.calls("ListAccounts"), 0);
    assert_eq!(own.stream_key("own-orders").await, Some(own_key));
    org.proxy.clear_faults();

    // STS hung: the member role cannot be assumed, and the event still gets its one outcome
    // before its 5 s deadline (an AssumeRole attempt alone would take 10 s).
    org.proxy.inject("AssumeRole", 1000, Fault::Hang);
    let api = RuntimeApi::start().await;
    let budget = Duration::from_secs(5);
    let pushed = std::time::Instant::now();
    api.push(
        "sts-hung",
        event_at("kinesis-create-stream", "orders", &member_id, REGION),
        budget,
    );
    let lambda = start_bootstrap(&api, &env);
    let results = api.results(1, Duration::from_secs(60)).await;
    let answered = pushed.elapsed();
    eprintln!("answered in {answered:?}");
    let logs = lambda.stop_and_read_stdout();
    assert!(answered < budget, "answered after {answered:?}");
    let message = results[0].body["errorMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains("sts:AssumeRole") && message.contains("Enforcer.DeadlineExceeded"),
        "{results:?}"
    );
    let outcomes = logs
        .lines()
        .filter(|l| l.contains(r#""message":"outcome""#))
        .count();
    assert_eq!(outcomes, 1, "{logs}");
    org.proxy.clear_faults();

    // A configured organisation id that is not the account's own fails the event: kept, not
    // refused and not acted on.
    let mut wrong = env.clone();
    wrong.retain(|(k, _)| k != "ORGANIZATION_ID");
    wrong.push(("ORGANIZATION_ID".into(), "o-zzzzzzzzzz".into()));
    let inv = invoke(
        &wrong,
        &event_at("kinesis-create-stream", "orders", &member_id, REGION),
        &[],
    )
    .await;
    assert_eq!(inv.code, Some(1), "{inv:?}");
    assert_eq!(inv.report["outcome"], json!("failed"));
    assert_eq!(
        inv.report["error_code"],
        json!("Enforcer.OrganizationMismatch")
    );
}

/// Keys are regional: with a key ARN of us-east-1 as the mandated key, a stream in eu-west-1 is
/// never given it (Kinesis would refuse it, or worse); the event fails naming both regions, with
/// no call. `MANDATED_KMS_KEYS` gives eu-west-1 its own key, which is then applied there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_another_region_is_never_applied_and_each_region_can_have_its_own() {
    let org = Org::start().await;
    let east = org.member(MEMBER_A, "us-east-1").await;
    let west = org.member(MEMBER_A, "eu-west-1").await;
    let east_key = east.key().await;
    let west_key = west.key().await;
    create_stream_on(&east.kinesis, "orders").await;
    create_stream_on(&west.kinesis, "orders").await;
    let mut env = org.env(MEMBER_A);
    env.retain(|(k, _)| k != "MANDATED_KMS_KEY");
    env.push(("MANDATED_KMS_KEY".into(), east_key.clone()));

    let api = RuntimeApi::start().await;
    let minute = Duration::from_secs(60);
    api.push(
        "east",
        event_at("kinesis-create-stream", "orders", MEMBER_A, "us-east-1"),
        minute,
    );
    api.push(
        "west",
        event_at("kinesis-create-stream", "orders", MEMBER_A, "eu-west-1"),
        minute,
    );
    let lambda = start_bootstrap(&api, &env);
    let results = api.results(2, minute).await;
    let logs = lambda.stop_and_read_stdout();
    assert_eq!(
        results[0].body["outcome"],
        json!("remediated"),
        "{results:?}"
    );
    assert_eq!(east.stream_key("orders").await, Some(east_key.clone()));
    let west_result = &results[1];
    let message = west_result.error_message("RemediationFailed");
    assert!(
        message.contains("Enforcer.KeyInOtherRegion")
            && message.contains(&format!(
                "the mandated key {east_key} is in us-east-1, but the resource is in eu-west-1"
            )),
        "{message}"
    );
    assert!(west.stream_key("orders").await.is_none());
    assert_eq!(
        org.proxy.calls("StartStreamEncryption"),
        1,
        "only the east stream's"
    );
    let failed: Vec<serde_json::Value> = crate::support::outcome_lines(&logs)
        .into_iter()
        .filter(|l| l["outcome"] == json!("failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{logs}");
    assert_eq!(failed[0]["error_code"], json!("Enforcer.KeyInOtherRegion"));

    // eu-west-1 with its own key.
    env.push(("MANDATED_KMS_KEYS".into(), format!("eu-west-1={west_key}")));
    let api = RuntimeApi::start().await;
    api.push(
        "west-mapped",
        event_at("kinesis-create-stream", "orders", MEMBER_A, "eu-west-1"),
        minute,
    );
    let lambda = start_bootstrap(&api, &env);
    let results = api.results(1, minute).await;
    drop(lambda);
    assert_eq!(
        results[0].body["outcome"],
        json!("remediated"),
        "{results:?}"
    );
    assert_eq!(results[0].body["key"], json!(west_key));
    assert_eq!(west.stream_key("orders").await, Some(west_key));
}

/// The members of the fan-out test: six accounts, the last two without a member role the
/// function may assume (their member stack is not deployed yet).
const FANOUT_MEMBERS: [&str; 6] = [
    MEMBER_A,
    MEMBER_B,
    "444444444444",
    "555555555555",
    "666666666666",
    "777777777777",
];
const NOT_DEPLOYED: [&str; 2] = ["666666666666", "777777777777"];

/// What Lambda's SQS event source mapping does, on moto's SQS: receives up to `batch` messages,
/// hands them to the function as one SQS event, deletes the ones the answer does not name, and
/// makes the named ones visible again (as their visibility timeout running out would).
async fn deliver(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    api: &RuntimeApi,
    id: &str,
    pushed: &mut usize,
    batch: i32,
) -> (Vec<String>, Vec<(String, String)>) {
    let received = sqs
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(batch)
        .visibility_timeout(600)
        .send()
        .await
        .expect("ReceiveMessage");
    let messages = received.messages();
    assert!(!messages.is_empty(), "{id}: the queue is empty");
    let records: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:{REGION}:{ACCOUNT}:enforcer-sweep"),
                "awsRegion": REGION,
            })
        })
        .collect();
    api.push(id, json!({ "Records": records }), Duration::from_secs(120));
    *pushed += 1;
    let results = api.results(*pushed, Duration::from_secs(180)).await;
    let result = results.iter().find(|r| r.request_id == id).unwrap();
    assert_eq!(result.kind, "response", "{result:?}");
    let failed: Vec<String> = result.body["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("{id}: not a batch answer: {result:?}"))
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
        .collect();
    let mut bodies = Vec::new();
    for m in messages {
        let id = m.message_id().unwrap().to_owned();
        bodies.push((id.clone(), m.body().unwrap().to_owned()));
        let change = if failed.contains(&id) {
            sqs.change_message_visibility()
                .queue_url(queue)
                .receipt_handle(m.receipt_handle().unwrap())
                .visibility_timeout(0)
                .send()
                .await
                .map(drop)
                .map_err(|e| format!("{e:?}"))
        } else {
            sqs.delete_message()
                .queue_url(queue)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .map(drop)
                .map_err(|e| format!("{e:?}"))
        };
        change.expect("settle the message");
    }
    (failed, bodies)
}

/// The organisation-scale sweep on SQS: the scheduled event plans one message per account and
/// region into moto's SQS; the messages, handed back as SQS events, sweep every reachable place
/// and name exactly the unreachable ones, which succeed once their role can be assumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_sweep_fans_out_per_place_and_keeps_exactly_the_places_that_failed() {
    let org = Org::start().await;
    let mut places = Vec::new();
    for account in std::iter::once(ACCOUNT).chain(FANOUT_MEMBERS) {
        for region in REGIONS {
            let member = org.member(account, region).await;
            let key = member.key().await;
            for name in ["orders", "clicks"] {
                create_stream_on(&member.kinesis, name).await;
            }
            places.push((account, region, key));
        }
    }
    let home_sqs = aws_sdk_sqs::Client::new(&sdk_config_in(&org.moto_url, ACCOUNT, REGION).await);
    // A FIFO queue, as the stack's: one message group per place.
    let queue = home_sqs
        .create_queue()
        .queue_name("enforcer-sweep.fifo")
        .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .expect("url");
    // The member stack is not deployed in two accounts: their role cannot be assumed.
    for account in NOT_DEPLOYED {
        org.proxy.inject_for(
            "AssumeRole",
            account,
            1000,
            Fault::Raw {
                status: 403,
                body: "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>\
                       <Message>User is not authorized to perform: sts:AssumeRole</Message></Error>\
                       <RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
                    .into(),
            },
        );
    }
    let mut env = org.env(&FANOUT_MEMBERS.join(","));
    // The queue URL as the function would be given it, on the proxy's endpoint.
    let queue_path = queue
        .split_once("://")
        .unwrap()
        .1
        .split_once('/')
        .unwrap()
        .1;
    env.push((
        "SWEEP_QUEUE_URL".into(),
        format!("{}/{queue_path}", org.proxy.url),
    ));
    // Every stream here was created seconds ago: count any the sweep remediates as missed.
    env.push(("MISSED_EVENT_SECONDS".into(), "1".into()));
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let api = RuntimeApi::start().await;
    let lambda = start_bootstrap(&api, &env);
    let scheduled: serde_json::Value =
        serde_json::from_str(include_str!("../../events/scheduled-sweep.json")).unwrap();
    api.push("plan", scheduled.clone(), Duration::from_secs(60));
    let mut pushed = 1;
    let results = api.results(pushed, Duration::from_secs(60)).await;
    let plan = &results[0];
    assert_eq!(plan.kind, "response", "{plan:?}");
    assert_eq!(
        plan.body,
        json!({"sweep_id": scheduled["id"], "places": 14}),
        "{plan:?}"
    );
    // The plan is in the queue, one message per account and region, the function's own included.
    let attributes = home_sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .expect("GetQueueAttributes");
    assert_eq!(
        attributes.attributes().unwrap()
            [&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages],
        "14"
    );

    // The event source mapping's batches (10 messages at most), until the queue is worked
    // through once.
    let mut failed = Vec::new();
    let mut planned = Vec::new();
    for batch in ["batch-1", "batch-2"] {
        let (f, bodies) = deliver(&home_sqs, &queue, &api, batch, &mut pushed, 10).await;
        failed.extend(f);
        planned.extend(bodies);
    }
    assert_eq!(planned.len(), 14);
    let place_of = |id: &str| -> (String, String) {
        let body = &planned.iter().find(|(i, _)| i == id).unwrap().1;
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["sweep_id"], scheduled["id"]);
        (
            v["account"].as_str().unwrap().to_owned(),
            v["region"].as_str().unwrap().to_owned(),
        )
    };
    let mut failed_places: Vec<(String, String)> = failed.iter().map(|id| place_of(id)).collect();
    failed_places.sort();
    let mut want: Vec<(String, String)> = NOT_DEPLOYED
        .iter()
        .flat_map(|a| REGIONS.map(|r| (a.to_string(), r.to_string())))
        .collect();
    want.sort();
    assert_eq!(
        failed_places, want,
        "exactly the unreachable places are kept"
    );

    // Every reachable place is on its own key; the unreachable ones are untouched.
    for (account, region, key) in &places {
        let member = org.member(account, region).await;
        for name in ["orders", "clicks"] {
            let found = member.stream_key(name).await;
            if NOT_DEPLOYED.contains(account) {
                assert_eq!(found, None, "{account} {region} {name}");
            } else {
                assert_eq!(
                    found.as_deref(),
                    Some(key.as_str()),
                    "{account} {region} {name}"
                );
            }
        }
    }

    // The member stacks are deployed: the four messages, handed again as they are, succeed.
    org.proxy.clear_faults();
    let (again, bodies) = deliver(&home_sqs, &queue, &api, "retry", &mut pushed, 10).await;
    assert_eq!(bodies.len(), 4, "{bodies:?}");
    assert!(again.is_empty(), "{again:?}");
    for (account, region, key) in places.iter().filter(|(a, _, _)| NOT_DEPLOYED.contains(a)) {
        let member = org.member(account, region).await;
        for name in ["orders", "clicks"] {
            assert_eq!(
                member.stream_key(name).await.as_deref(),
                Some(key.as_str()),
                "{account} {region} {name}"
            );
        }
    }
    let logs = lambda.stop_and_read_stdout();

    // An operator's sweep goes through the same queue, inside the function's pacing.
    let enqueued = enforcer(
        &env,
        &[
            "sweep",
            "--enqueue",
            "--accounts",
            MEMBER_A,
            "--regions",
            "eu-west-1",
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(enqueued.code, Some(0), "{enqueued:?}");
    assert_eq!(enqueued.report["places"], json!(1), "{enqueued:?}");
    let sent = home_sqs
        .receive_message()
        .queue_url(&queue)
        .send()
        .await
        .expect("ReceiveMessage");
    let [message] = sent.messages() else {
        panic!("{sent:?}")
    };
    let body: serde_json::Value = serde_json::from_str(message.body().unwrap()).unwrap();
    assert_eq!(
        (&body["account"], &body["region"], &body["sweep_id"]),
        (
            &json!(MEMBER_A),
            &json!("eu-west-1"),
            &enqueued.report["sweep_id"]
        )
    );
    // A place message from the sweep dead-letter queue (FIFO, as the stack's): `enforcer replay`
    // sweeps its place and deletes it.
    let dead = home_sqs
        .create_queue()
        .queue_name("enforcer-sweep-dlq.fifo")
        .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .expect("url");
    home_sqs
        .send_message()
        .queue_url(&dead)
        .message_body(message.body().unwrap())
        .message_group_id(format!("{MEMBER_A}:eu-west-1"))
        .message_deduplication_id("replayed-place")
        .send()
        .await
        .expect("SendMessage");
    let dead_path = dead.split_once("://").unwrap().1.split_once('/').unwrap().1;
    let dead_url = format!("{}/{dead_path}", org.proxy.url);
    let replayed = enforcer(&env, &["replay", "--queue", &dead_url, "--output", "json"]).await;
    assert_eq!(replayed.code, Some(0), "{replayed:?}");
    assert_eq!(
        replayed.report["messages"][0]["outcome"],
        json!("sweep_place"),
        "{replayed:?}"
    );

    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let metric = |name: &str| -> u64 { lines.iter().filter_map(|l| l[name].as_u64()).sum() };
    assert_eq!(metric("PlacesPlanned"), 14);
    assert_eq!(metric("PlacesFailed"), 4);
    assert_eq!(metric("PlacesSwept"), 14);
    // Every stream was remediated by the sweep, long (here: a second) after its creation.
    assert_eq!(metric("MissedByEvents"), 28);
    let parts: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["message"] == json!("sweep place"))
        .collect();
    assert_eq!(parts.len(), 18, "{parts:?}");
    for part in parts {
        assert_eq!(part["sweep_id"], scheduled["id"], "{part}");
        if part["result"] == json!("failed") {
            let reason = part["reason"].as_str().unwrap();
            assert!(
                reason.contains("AccessDenied") && reason.contains(ROLE),
                "{reason}"
            );
        }
    }
}

/// Events at organisation scale on moto's SQS: each event is routed to its account and region's
/// message group on a FIFO queue (a copy of an event is taken once), SQS hands out no more of a
/// group while a batch of it is in flight, and the events handed back are enforced in their own
/// place; one whose stream is still CREATING waits on the re-check queue, not in its group's
/// batch, and comes back to its group; one that is refused is kept in the failed-events queue,
/// not handed back to its group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_routed_to_their_places_group_and_handled_from_the_queue() {
    let org = Org::start().await;
    let places = [
        (ACCOUNT, REGION),
        (MEMBER_A, REGION),
        (MEMBER_B, "eu-west-1"),
    ];
    let mut keys = Vec::new();
    for (account, region) in places {
        let member = org.member(account, region).await;
        keys.push(member.key().await);
        for name in ["orders", "clicks"] {
            create_stream_on(&member.kinesis, name).await;
        }
    }
    let sqs = aws_sdk_sqs::Client::new(&sdk_config_in(&org.moto_url, ACCOUNT, REGION).await);
    let create = |name: &'static str| {
        let sqs = sqs.clone();
        async move {
            let url = create_queue_on(&sqs, name).await;
            let path = url
                .split_once("://")
                .unwrap()
                .1
                .split_once('/')
                .unwrap()
                .1
                .to_owned();
            (url, path)
        }
    };
    // One stream still CREATING when its event is handled, as on AWS: the worker waits for it.
    org.proxy.creating_until(
        &format!("arn:aws:kinesis:eu-west-1:{MEMBER_B}:stream/orders"),
        std::time::Instant::now() + Duration::from_secs(3),
    );
    let (events_queue, events_path) = create("enforcer-events.fifo").await;
    let (failed_queue, failed_path) = create("enforcer-failed").await;
    let (recheck_queue, recheck_path) = create("enforcer-recheck").await;
    let mut env = org.env(&format!("{MEMBER_A},{MEMBER_B}"));
    env.extend([
        (
            "EVENTS_QUEUE_URL".to_owned(),
            format!("{}/{events_path}", org.proxy.url),
        ),
        (
            "FAILED_EVENTS_QUEUE_URL".to_owned(),
            format!("{}/{failed_path}", org.proxy.url),
        ),
        (
            "RECHECK_QUEUE_URL".to_owned(),
            format!("{}/{recheck_path}", org.proxy.url),
        ),
        ("PLACE_CONCURRENCY".to_owned(), "2".to_owned()),
    ]);
    let api = RuntimeApi::start().await;
    let lambda = start_bootstrap(&api, &env);
    let mut pushed = 0;
    for (account, region) in places {
        for name in ["orders", "clicks"] {
            api.push(
                &format!("{account}_{region}_{name}"),
                event_at("kinesis-create-stream", name, account, region),
                Duration::from_secs(60),
            );
            pushed += 1;
        }
    }
    // EventBridge delivers at least once: a second copy of an event, with its id.
    api.push(
        "copy",
        event_at("kinesis-create-stream", "orders", MEMBER_A, REGION),
        Duration::from_secs(60),
    );
    // And an event from an account the function does not serve.
    api.push(
        "outsider",
        event_at("kinesis-create-stream", "orders", OUTSIDER, REGION),
        Duration::from_secs(60),
    );
    pushed += 2;
    let results = api.results(pushed, Duration::from_secs(60)).await;
    for result in &results {
        assert_eq!(result.kind, "response", "{result:?}");
        let want = match result.request_id.as_str() {
            "copy" => format!("{MEMBER_A}:{REGION}"),
            "outsider" => format!("{OUTSIDER}:{REGION}"),
            id => {
                let mut parts = id.split('_');
                format!("{}:{}", parts.next().unwrap(), parts.next().unwrap())
            }
        };
        assert_eq!(result.body["group"], json!(want), "{result:?}");
    }
    // Seven distinct events in four groups; the copy was taken once.
    let count = sqs
        .get_queue_attributes()
        .queue_url(&events_queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .expect("GetQueueAttributes");
    assert_eq!(
        count.attributes().unwrap()
            [&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages],
        "7"
    );
    // One message at a time: while a group's message is in flight, no receive returns another
    // of that group (the rule the design rests on, as moto's SQS engine keeps it).
    let receive = |max: i32| {
        let sqs = sqs.clone();
        let queue = events_queue.clone();
        async move {
            sqs.receive_message()
                .queue_url(&queue)
                .max_number_of_messages(max)
                .visibility_timeout(600)
                .message_system_attribute_names(
                    aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId,
                )
                .send()
                .await
                .expect("ReceiveMessage")
                .messages
                .unwrap_or_default()
        }
    };
    let group_of = |m: &aws_sdk_sqs::types::Message| {
        m.attributes().unwrap()[&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId]
            .clone()
    };
    let mut first = Vec::new();
    loop {
        let got = receive(1).await;
        let Some(m) = got.into_iter().next() else {
            break;
        };
        assert!(
            !first.iter().any(|f| group_of(f) == group_of(&m)),
            "a second message of {} while one is in flight",
            group_of(&m)
        );
        first.push(m);
    }
    assert_eq!(first.len(), 4, "one per group: {first:?}");
    // The event source mapping's part: a batch handed to the function, the messages it does not
    // name deleted; then the groups' next messages.
    // And the re-check queue's: an event whose stream is still CREATING waits there, then goes
    // back to its group.
    let mut pushed_batches = 0;
    let mut rechecked = 0;
    let mut batch = first;
    for _ in 0..60 {
        let from_recheck = batch.is_empty();
        if from_recheck {
            batch = sqs
                .receive_message()
                .queue_url(&recheck_queue)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("ReceiveMessage")
                .messages
                .unwrap_or_default();
        }
        if batch.is_empty() {
            let delayed =
                aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed;
            let waiting = sqs
                .get_queue_attributes()
                .queue_url(&recheck_queue)
                .attribute_names(delayed.clone())
                .send()
                .await
                .expect("GetQueueAttributes");
            if waiting
                .attributes()
                .and_then(|a| a.get(&delayed))
                .is_none_or(|n| n == "0")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            batch = receive(10).await;
            continue;
        }
        let records: Vec<serde_json::Value> = batch
            .iter()
            .map(|m| json!({"messageId": m.message_id(), "body": m.body(), "eventSource": "aws:sqs"}))
            .collect();
        pushed_batches += 1;
        rechecked += usize::from(from_recheck);
        api.push(
            &format!("batch-{pushed_batches}"),
            json!({ "Records": records }),
            Duration::from_secs(120),
        );
        let answer = api
            .result_of(&format!("batch-{pushed_batches}"), Duration::from_secs(120))
            .await
            .body;
        assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
        let queue = if from_recheck {
            &recheck_queue
        } else {
            &events_queue
        };
        for m in &batch {
            sqs.delete_message()
                .queue_url(queue)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .expect("DeleteMessage");
        }
        batch = receive(10).await;
    }
    assert!(
        rechecked >= 1,
        "the CREATING stream's event was never deferred"
    );
    // Every place's streams on its own key.
    for ((account, region), key) in places.iter().zip(&keys) {
        let member = org.member(account, region).await;
        for name in ["orders", "clicks"] {
            assert_eq!(
                member.stream_key(name).await.as_deref(),
                Some(key.as_str()),
                "{account} {region} {name}"
            );
        }
    }
    // The outsider's event is refused, and kept in the failed-events queue as Lambda's on-failure
    // record (what `enforcer replay` reads), not handed back to its group.
    let kept = sqs
        .receive_message()
        .queue_url(&failed_queue)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("ReceiveMessage");
    let [record] = kept.messages() else {
        panic!("{kept:?}")
    };
    let record: serde_json::Value = serde_json::from_str(record.body().unwrap()).unwrap();
    assert_eq!(
        record["responsePayload"]["errorType"],
        json!("EventRefused"),
        "{record}"
    );
    assert_eq!(
        record["requestPayload"]["detail"]["recipientAccountId"],
        json!(OUTSIDER)
    );
    let logs = lambda.stop_and_read_stdout();
    let outcomes: Vec<serde_json::Value> = outcome_lines(&logs)
        .into_iter()
        .map(|l| l["outcome"].clone())
        .collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == json!("remediated"))
            .count(),
        6,
        "{outcomes:?}"
    );
    assert!(logs.contains("kept in the failed-events queue"), "{logs}");
}
