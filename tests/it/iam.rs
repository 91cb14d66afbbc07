//! The function's role as IAM would hold it: the real `bootstrap`, through its event and sweep
//! paths, against kinesis-mock and moto, with both proxies answering every call the role's
//! policy does not allow `AccessDeniedException`. The policy is `template.yaml`'s `EnforcerRole`,
//! its intrinsics resolved for this account, region, key and table by `tests/policies/cfn.py`.
//!
//! moto's own IAM enforcement (`INITIAL_NO_AUTH_ACTION_COUNT`) cannot be the judge here: moto
//! 5.2.5 authorizes Kinesis, Firehose, KMS and DynamoDB calls against the resource `*`, so a
//! statement scoped to ARNs never matches, and a statement with a Condition whose key it does
//! not know counts as an explicit Deny (`moto/iam/access_control.py`, `IAMPolicyStatement`).
//!
//! Passes when every call the binary makes is allowed, and removing any one statement the binary
//! needs makes the run fail with AccessDenied for that statement's action. The statements AWS
//! uses on the function's behalf (Kinesis's kms:GenerateDataKey and Firehose's kms:CreateGrant
//! with the caller's identity, Lambda's delivery to the queue and the log group) cannot be shown
//! by emulators and are not exercised.

use crate::support::*;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

const ALIAS: &str = "alias/org-streams";
const TABLE: &str = "enforcer-ledger";
/// Statements of `EnforcerRole` that AWS uses on the function's behalf, not the binary itself.
const ON_BEHALF: [&str; 4] = [
    "KinesisUsesMandatedKey",
    "FirehoseGrantOnMandatedKey",
    // Lambda's delivery; the binary sends there too, but only an event that fails does, and this
    // run's events succeed (the unit tests show the record it sends).
    "OnFailureDestination",
    "OwnLogGroup",
];

/// The product's three queues in moto, as the stack creates them: the events queue (FIFO), the
/// sweep queue and the failed-events queue. Each is a URL the test reads directly.
struct Queues {
    events: String,
    sweep: String,
    failed: String,
    recheck: String,
}

impl Queues {
    async fn create(emu: &Emulators) -> Self {
        let sqs = aws_sdk_sqs::Client::new(&sdk_config(&emu.moto_url));
        let create = |name: &'static str| {
            let sqs = sqs.clone();
            async move { create_queue_on(&sqs, name).await }
        };
        Self {
            events: create("enforcer-events.fifo").await,
            sweep: create("enforcer-sweep.fifo").await,
            failed: create("enforcer-failed").await,
            recheck: create("enforcer-recheck").await,
        }
    }

    /// The ARN of the queue named `name` in this account and region.
    fn arn(name: &str) -> String {
        format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")
    }

    /// The function's variables for the queues, on the proxy `endpoint`.
    fn env(endpoint: &str) -> Vec<(String, String)> {
        [
            ("EVENTS_QUEUE_URL", "enforcer-events.fifo"),
            ("SWEEP_QUEUE_URL", "enforcer-sweep.fifo"),
            ("FAILED_EVENTS_QUEUE_URL", "enforcer-failed"),
            ("RECHECK_QUEUE_URL", "enforcer-recheck"),
        ]
        .into_iter()
        .map(|(var, name)| (var.to_owned(), format!("{endpoint}/{ACCOUNT}/{name}")))
        .chain([("AWS_ENDPOINT_URL_SQS".to_owned(), endpoint.to_owned())])
        .collect()
    }
}

/// Hands every message of `queue` to the function as one SQS event (as the event source mapping
/// would) and deletes them; whether there was one.
async fn deliver_all(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    api: &RuntimeApi,
    id: &str,
    results: &mut Vec<RuntimeResult>,
) -> bool {
    let received = sqs
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("ReceiveMessage");
    let messages = received.messages();
    if messages.is_empty() {
        return false;
    }
    let records: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| json!({"messageId": m.message_id(), "body": m.body(), "eventSource": "aws:sqs"}))
        .collect();
    api.push(id, json!({ "Records": records }), Duration::from_secs(120));
    *results = api
        .results(results.len() + 1, Duration::from_secs(180))
        .await;
    for m in messages {
        sqs.delete_message()
            .queue_url(queue)
            .receipt_handle(m.receipt_handle().unwrap())
            .send()
            .await
            .expect("DeleteMessage");
    }
    true
}

/// Whether `queue` holds messages still in their delay.
async fn delayed(sqs: &aws_sdk_sqs::Client, queue: &str) -> bool {
    let name = aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed;
    sqs.get_queue_attributes()
        .queue_url(queue)
        .attribute_names(name.clone())
        .send()
        .await
        .ok()
        .and_then(|a| a.attributes().and_then(|m| m.get(&name).cloned()))
        .is_some_and(|n| n != "0")
}

/// One run of the event and sweep paths on new resources named after `run`: a CREATING stream,
/// an ACTIVE unencrypted one, a delivery stream, each by its CloudTrail event (routed to the
/// events queue, then handed back from it), then the scheduled sweep (planned onto the sweep
/// queue, its message handed back). Returns the results, each failure the function kept in the
/// failed-events queue as a result of kind `error`, and the calls the proxies denied, by
/// operation.
async fn run(
    emu: &Emulators,
    env: &[(String, String)],
    run: &str,
    queues: &Queues,
) -> (Vec<RuntimeResult>, BTreeSet<String>) {
    let creating = format!("{run}-orders");
    let active = format!("{run}-audit");
    let delivery = format!("{run}-clicks");
    emu.create_stream(&active).await;
    emu.wait_active(&active).await;
    emu.create_stream(&creating).await;
    // CREATING for longer than the routing takes, as on AWS: its event is deferred.
    emu.kinesis_proxy.creating_until(
        &format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{creating}"),
        std::time::Instant::now() + Duration::from_secs(3),
    );
    emu.create_delivery_stream(&delivery, None).await;
    let minute = Duration::from_secs(60);
    let api = RuntimeApi::start().await;
    // Each event its own id, as EventBridge gives them: the events queue takes one copy per id.
    let with_id = |mut event: serde_json::Value, id: &str| {
        event["id"] = json!(format!("{run}-{id}"));
        event
    };
    api.push(
        "creating",
        with_id(event("kinesis-create-stream", &creating), "creating"),
        minute,
    );
    api.push(
        "active",
        with_id(event("kinesis-create-stream", &active), "active"),
        minute,
    );
    api.push(
        "delivery",
        with_id(
            event("firehose-create-delivery-stream", &delivery),
            "delivery",
        ),
        minute,
    );
    api.push(
        "sweep",
        serde_json::from_str(include_str!("../../events/scheduled-sweep.json")).unwrap(),
        Duration::from_secs(120),
    );
    let lambda = start_bootstrap(&api, env);
    let mut results = api.results(4, Duration::from_secs(180)).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk_config(&emu.moto_url));
    // The events, until none waits for its stream on the re-check queue any more.
    for round in 0..60 {
        let mut any = deliver_all(
            &sqs,
            &queues.events,
            &api,
            &format!("events-{round}"),
            &mut results,
        )
        .await;
        any |= deliver_all(
            &sqs,
            &queues.recheck,
            &api,
            &format!("recheck-{round}"),
            &mut results,
        )
        .await;
        if !any && !delayed(&sqs, &queues.recheck).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    deliver_all(&sqs, &queues.sweep, &api, "place", &mut results).await;
    loop {
        let kept = sqs
            .receive_message()
            .queue_url(&queues.failed)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("ReceiveMessage");
        if kept.messages().is_empty() {
            break;
        }
        for m in kept.messages() {
            results.push(RuntimeResult {
                request_id: "failed-events-queue".into(),
                kind: "error".into(),
                body: serde_json::from_str(m.body().unwrap()).unwrap(),
            });
            sqs.delete_message()
                .queue_url(&queues.failed)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .expect("DeleteMessage");
        }
    }
    // The outcome lines of the events handled from the queue (and of the sweep).
    let logs = lambda.stop_and_read_stdout();
    results.extend(outcome_lines(&logs).into_iter().map(|line| RuntimeResult {
        request_id: "log".into(),
        kind: "outcome".into(),
        body: line,
    }));
    let mut denied = emu.kinesis_proxy.injected();
    denied.extend(emu.moto_proxy.injected());
    let denied = denied
        .into_keys()
        .filter_map(|k| k.strip_suffix(": AccessDenied").map(str::to_owned))
        // IAM authorizes SQS's batch operations as the single ones.
        .map(|op| match op.as_str() {
            "SendMessageBatch" => "SendMessage".to_owned(),
            _ => op,
        })
        .collect();
    emu.kinesis_proxy.reset_counts();
    emu.moto_proxy.reset_counts();
    (results, denied)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_role_allows_every_call_of_the_binary_and_each_statement_is_needed() {
    let emu = Emulators::start(Duration::from_millis(500), Duration::from_millis(300)).await;
    let key_arn = emu.create_key(ALIAS).await;
    create_ledger_table(&emu.moto_url, TABLE).await;
    let table_arn = format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}");
    let queues = Queues::create(&emu).await;
    let statements = role_policy(
        "template.yaml",
        "EnforcerRole",
        &[
            ("AWS::AccountId", ACCOUNT),
            ("AWS::Region", REGION),
            ("MandatedKmsKeyArn", &key_arn),
            ("ReapplicationLedger", &table_arn),
            ("SweepQueue", &Queues::arn("enforcer-sweep.fifo")),
            ("RecheckQueue", &Queues::arn("enforcer-recheck")),
            ("EventsQueue", &Queues::arn("enforcer-events.fifo")),
            ("FailedEventsQueue", &Queues::arn("enforcer-failed")),
            // One account and region: the central-mode policy is not there.
            ("Condition:IsCentral", "false"),
        ],
    );
    let keys = key_names(&key_arn, ALIAS);
    let hold = |statements: Vec<PolicyStatement>| {
        for proxy in [&emu.kinesis_proxy, &emu.moto_proxy] {
            proxy.enforce_policy(IamPolicy {
                statements: statements.clone(),
                keys: keys.clone(),
                context: HashMap::new(),
            });
        }
    };
    let mut env = emu.env(ALIAS);
    env.extend(
        [
            ("AWS_ENDPOINT_URL_DYNAMODB", emu.moto_proxy.url.as_str()),
            ("LEDGER_TABLE", TABLE),
            ("MANDATED_KMS_KEY_ARN", key_arn.as_str()),
            ("EXEMPT_TAG", "enforcer-exempt"),
            ("IAC_TOOLS", "none"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    env.extend(Queues::env(&emu.moto_proxy.url));
    // A run failed when an invocation answered an error or kept a sweep queue message.
    let failed = |results: &[RuntimeResult]| {
        results.iter().any(|r| {
            r.kind == "error"
                || r.body["batchItemFailures"]
                    .as_array()
                    .is_some_and(|kept| !kept.is_empty())
        })
    };

    // The whole policy: every call allowed, every event and the sweep succeed.
    hold(statements.clone());
    let (results, denied) = run(&emu, &env, "full", &queues).await;
    assert!(denied.is_empty(), "denied: {denied:?}");
    // Three events routed, the sweep planned, the events handed back (the CREATING stream's
    // through the re-check queue), and the place.
    let answers: Vec<&RuntimeResult> = results.iter().filter(|r| r.kind != "outcome").collect();
    assert!(
        answers.iter().any(|r| r.request_id.starts_with("recheck-")),
        "the CREATING stream's event was not deferred: {results:?}"
    );
    let handled: Vec<&serde_json::Value> = results
        .iter()
        .filter(|r| r.kind == "outcome" && r.body["event_name"] != json!("Sweep"))
        .map(|r| &r.body["outcome"])
        .collect();
    assert_eq!(handled, [&json!("remediated"); 3], "{results:?}");
    assert!(!failed(&results), "{results:?}");
    let routed: Vec<&serde_json::Value> = results[..3].iter().map(|r| &r.body["group"]).collect();
    assert_eq!(
        routed,
        [&json!(format!("{ACCOUNT}:{REGION}")); 3],
        "{results:?}"
    );
    assert_eq!(results[3].body["places"], json!(1), "{results:?}");
    for name in ["full-orders", "full-audit"] {
        assert_eq!(emu.stream(name).await.key_id(), Some(ALIAS), "{name}");
    }
    let clicks = emu.delivery_encryption("full-clicks").await;
    assert_eq!(
        clicks.as_ref().and_then(|e| e.key_arn()),
        Some(key_arn.as_str()),
        "{clicks:?}"
    );

    // Each statement the binary needs, removed in turn: the run fails, denied for its action.
    let needed: Vec<&PolicyStatement> = statements
        .iter()
        .filter(|s| !ON_BEHALF.contains(&s.sid.as_str()))
        .collect();
    assert_eq!(
        needed.iter().map(|s| s.sid.as_str()).collect::<Vec<_>>(),
        [
            "ListAccountStreams",
            "InspectStreams",
            "EncryptStreamsWithMandatedKey",
            "InspectAndEncryptDeliveryStreams",
            "ResolveMandatedKey",
            "ReapplicationLedger",
            "EventsQueue",
            "RecheckQueue",
            "SweepQueue"
        ]
    );
    for (i, missing) in needed.iter().enumerate() {
        hold(
            statements
                .iter()
                .filter(|s| s.sid != missing.sid)
                .cloned()
                .collect(),
        );
        let (results, denied) = run(&emu, &env, &format!("without-{i}"), &queues).await;
        let actions: BTreeSet<String> = missing
            .action
            .iter()
            .map(|a| a.split_once(':').unwrap().1.to_owned())
            .collect();
        assert!(
            !denied.is_disjoint(&actions),
            "without {}: denied {denied:?}, expected one of {actions:?}",
            missing.sid
        );
        if missing.sid == "RecheckQueue" {
            // By design a re-check queue that cannot take an event does not stop it: the event
            // waits for its stream in the invocation instead.
            let handled: Vec<&serde_json::Value> = results
                .iter()
                .filter(|r| r.kind == "outcome" && r.body["event_name"] != json!("Sweep"))
                .map(|r| &r.body["outcome"])
                .collect();
            assert_eq!(handled, [&json!("remediated"); 3], "{results:?}");
        } else if missing.sid == "ReapplicationLedger" {
            // By design an unreadable ledger does not stop a remediation: the report says the
            // flapping check was skipped, and why.
            assert!(
                results
                    .iter()
                    .any(|r| r.body["reason"]
                        .as_str()
                        .is_some_and(|reason| reason.contains(
                            "re-application ledger could not be read (AccessDeniedException"
                        ))),
                "{results:?}"
            );
        } else {
            assert!(
                failed(&results),
                "without {}, every invocation still succeeded: {results:?}",
                missing.sid
            );
        }
    }
}

const MEMBER: &str = "111111111111";
const ORG: &str = "o-a1b2c3d4e5";
const MEMBER_ROLE: &str = "StreamEncryptionEnforcerMember";
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];

/// An event of `fixture` for `name` as `MEMBER`'s CloudTrail in `region` records it.
fn member_event(fixture: &str, name: &str, region: &str) -> serde_json::Value {
    let text = event(fixture, name)
        .to_string()
        .replace(ACCOUNT, MEMBER)
        .replace(REGION, region);
    serde_json::from_str(&text).unwrap()
}

/// Central mode: the function's own policy (with the central-mode statements) for its own calls,
/// and `member.yaml`'s MemberRole, resolved for each account, for the calls of each assumed
/// role. sts:AssumeRole is allowed only for roles in the organisation (`aws:ResourceOrgID` in the
/// context), and KMS only on keys carrying the mandated alias (`kms:ResourceAliases`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_member_role_allows_every_call_in_its_account_and_is_assumed_only_inside_the_organisation()
 {
    let (_moto, moto_url) = start_moto();
    let proxy = Proxy::start(&moto_url).await;
    let mut keys = HashMap::new();
    let mut member_places = Vec::new();
    for account in [MEMBER, ACCOUNT] {
        for region in REGIONS {
            let config = sdk_config_in(&moto_url, account, region).await;
            let key = create_key_on(&aws_sdk_kms::Client::new(&config), ALIAS).await;
            keys.insert(
                format!("arn:aws:kms:{region}:{account}:{ALIAS}"),
                key.clone(),
            );
            keys.insert(key.rsplit('/').next().unwrap().to_owned(), key.clone());
            if account == MEMBER {
                member_places.push((region, config));
            }
        }
    }
    let own_key = keys[&format!("arn:aws:kms:{REGION}:{ACCOUNT}:{ALIAS}")].clone();
    let own = role_policy(
        "template.yaml",
        "EnforcerRole",
        &[
            ("AWS::AccountId", ACCOUNT),
            ("AWS::Region", REGION),
            ("OrganizationId", ORG),
            ("MandatedKmsKeyArn", &own_key),
            ("Condition:IsCentral", "true"),
        ],
    );
    let member = |account: &str| {
        role_policy(
            "member.yaml",
            "MemberRole",
            &[
                ("AWS::AccountId", account),
                ("MandatedKeyAlias", ALIAS),
                ("MandatedKmsKeyArn", ""),
                ("Condition:SharedKey", "false"),
                ("Condition:CreateRole", "true"),
            ],
        )
    };
    let hold = |member_statements: &dyn Fn(&str) -> Vec<PolicyStatement>, org: &str| {
        let context: HashMap<String, String> = [
            ("aws:ResourceOrgID".to_owned(), org.to_owned()),
            ("kms:ResourceAliases".to_owned(), ALIAS.to_owned()),
        ]
        .into();
        let policy = |statements: Vec<PolicyStatement>| IamPolicy {
            statements,
            keys: keys.clone(),
            context: context.clone(),
        };
        // The member role exists in every account, the function's own included (its other
        // regions go through it).
        let roles = [MEMBER, ACCOUNT]
            .iter()
            .map(|a| {
                (
                    format!("arn:aws:iam::{a}:role/{MEMBER_ROLE}"),
                    policy(member_statements(a)),
                )
            })
            .collect();
        proxy.enforce_policies(Policies {
            own: policy(own.clone()),
            roles,
        });
    };
    let env: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", proxy.url.as_str()),
        ("AWS_ACCESS_KEY_ID", ACCOUNT),
        ("AWS_SECRET_ACCESS_KEY", "test-secret"),
        ("AWS_REGION", REGION),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("MANDATED_KMS_KEY", ALIAS),
        ("TARGET_ROLE_NAME", MEMBER_ROLE),
        ("ALLOWED_ACCOUNTS", MEMBER),
        ("ALLOWED_REGIONS", "us-east-1,eu-west-1"),
        ("IAC_TOOLS", "none"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    // One run: a new stream in each of the member's regions and a delivery stream, by event,
    // then the sweep of both accounts in both regions.
    let run = async |name: &str| {
        for (_, config) in &member_places {
            create_stream_on(&aws_sdk_kinesis::Client::new(config), name).await;
        }
        let west = aws_sdk_firehose::Client::new(&member_places[1].1);
        create_delivery_stream_on(&west, MEMBER, name, None).await;
        let minute = Duration::from_secs(60);
        let api = RuntimeApi::start().await;
        for region in REGIONS {
            api.push(
                region,
                member_event("kinesis-create-stream", name, region),
                minute,
            );
        }
        api.push(
            "firehose",
            member_event("firehose-create-delivery-stream", name, "eu-west-1"),
            minute,
        );
        api.push(
            "sweep",
            serde_json::from_str(include_str!("../../events/scheduled-sweep.json")).unwrap(),
            Duration::from_secs(120),
        );
        let lambda = start_bootstrap(&api, &env);
        let results = api.results(4, Duration::from_secs(180)).await;
        drop(lambda);
        let denied: BTreeSet<String> = proxy
            .injected()
            .into_keys()
            .filter_map(|k| k.strip_suffix(": AccessDenied").map(str::to_owned))
            .collect();
        proxy.reset_counts();
        (results, denied)
    };

    hold(&member, ORG);
    let (results, denied) = run("full").await;
    assert!(denied.is_empty(), "denied: {denied:?}");
    for result in &results {
        assert_eq!(result.kind, "response", "{result:?}");
    }
    let outcomes: Vec<&serde_json::Value> =
        results[..3].iter().map(|r| &r.body["outcome"]).collect();
    assert_eq!(outcomes, [&json!("remediated"); 3], "{results:?}");

    // The accounts are in another organisation: aws:ResourceOrgID stops every AssumeRole.
    hold(&member, "o-zzzzzzzzzz");
    let (results, denied) = run("elsewhere").await;
    assert_eq!(
        denied,
        BTreeSet::from(["AssumeRole".to_owned()]),
        "{results:?}"
    );
    assert!(results.iter().all(|r| r.kind == "error"), "{results:?}");

    // Each member statement the binary needs, removed in turn.
    let needed: Vec<PolicyStatement> = member(MEMBER)
        .into_iter()
        .filter(|s| {
            !["KinesisUsesMandatedKey", "FirehoseGrantOnMandatedKey"].contains(&s.sid.as_str())
        })
        .collect();
    assert_eq!(
        needed.iter().map(|s| s.sid.as_str()).collect::<Vec<_>>(),
        [
            "ListAccountStreams",
            "InspectStreams",
            "EncryptStreamsWithMandatedKey",
            "InspectAndEncryptDeliveryStreams",
            "ResolveMandatedKey"
        ]
    );
    for (i, missing) in needed.iter().enumerate() {
        let without = |account: &str| {
            member(account)
                .into_iter()
                .filter(|s| s.sid != missing.sid)
                .collect::<Vec<_>>()
        };
        hold(&without, ORG);
        let (results, denied) = run(&format!("without-{i}")).await;
        let actions: BTreeSet<String> = missing
            .action
            .iter()
            .map(|a| a.split_once(':').unwrap().1.to_owned())
            .collect();
        assert!(
            !denied.is_disjoint(&actions),
            "without {}: denied {denied:?}, expected one of {actions:?}",
            missing.sid
        );
        assert!(
            results.iter().any(|r| r.kind == "error"),
            "without {}, every invocation still succeeded: {results:?}",
            missing.sid
        );
    }
}
