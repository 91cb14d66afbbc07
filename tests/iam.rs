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

mod support;

use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::process::Command;
use std::time::Duration;
use support::*;

const ALIAS: &str = "alias/org-streams";
const TABLE: &str = "enforcer-ledger";
/// Statements of `EnforcerRole` that AWS uses on the function's behalf, not the binary itself.
const ON_BEHALF: [&str; 4] = [
    "KinesisUsesMandatedKey",
    "FirehoseGrantOnMandatedKey",
    "OnFailureDestination",
    "OwnLogGroup",
];

/// The statements of `template.yaml`'s EnforcerRole, resolved with `values`.
fn enforcer_role(values: &[(&str, &str)]) -> Vec<PolicyStatement> {
    let mut command = Command::new(tools_dir().join("parliament/bin/python"));
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/policies/cfn.py"
        ))
        .arg("template.yaml")
        .arg("EnforcerRole")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    for (name, value) in values {
        command.arg(format!("{name}={value}"));
    }
    let out = command.output().expect("tests/policies/cfn.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("statements")
}

async fn create_ledger(emu: &Emulators) {
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk_config(&emu.moto_url));
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
        .table_name(TABLE)
        .key_schema(key("resource", aws_sdk_dynamodb::types::KeyType::Hash))
        .key_schema(key("applied", aws_sdk_dynamodb::types::KeyType::Range))
        .attribute_definitions(attribute("resource"))
        .attribute_definitions(attribute("applied"))
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
}

/// One run of the event and sweep paths on new resources named after `run`: a CREATING stream,
/// an ACTIVE unencrypted one, a delivery stream, each by its CloudTrail event, then the
/// scheduled sweep. Returns the results and the calls the proxies denied, by operation.
async fn run(
    emu: &Emulators,
    env: &[(String, String)],
    run: &str,
) -> (Vec<RuntimeResult>, BTreeSet<String>) {
    let creating = format!("{run}-orders");
    let active = format!("{run}-audit");
    let delivery = format!("{run}-clicks");
    emu.create_stream(&active).await;
    emu.wait_active(&active).await;
    emu.create_stream(&creating).await;
    emu.create_delivery_stream(&delivery, None).await;
    let minute = Duration::from_secs(60);
    let api = RuntimeApi::start().await;
    api.push(
        "creating",
        event("kinesis-create-stream", &creating),
        minute,
    );
    api.push("active", event("kinesis-create-stream", &active), minute);
    api.push(
        "delivery",
        event("firehose-create-delivery-stream", &delivery),
        minute,
    );
    api.push(
        "sweep",
        serde_json::from_str(include_str!("../events/scheduled-sweep.json")).unwrap(),
        Duration::from_secs(120),
    );
    let lambda = start_bootstrap(&api, env);
    let results = api.results(4, Duration::from_secs(180)).await;
    drop(lambda);
    let mut denied = emu.kinesis_proxy.injected();
    denied.extend(emu.moto_proxy.injected());
    let denied = denied
        .into_keys()
        .filter_map(|k| k.strip_suffix(": AccessDenied").map(str::to_owned))
        .collect();
    emu.kinesis_proxy.reset_counts();
    emu.moto_proxy.reset_counts();
    (results, denied)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_role_allows_every_call_of_the_binary_and_each_statement_is_needed() {
    let emu = Emulators::start(Duration::from_millis(500), Duration::from_millis(300)).await;
    let key_arn = emu.create_key(ALIAS).await;
    create_ledger(&emu).await;
    let table_arn = format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}");
    let statements = enforcer_role(&[
        ("AWS::AccountId", ACCOUNT),
        ("AWS::Region", REGION),
        ("MandatedKmsKeyArn", &key_arn),
        ("ReapplicationLedger", &table_arn),
        // One account and region: the central-mode policy is not there.
        ("Condition:IsCentral", "false"),
    ]);
    let key_id = key_arn.rsplit('/').next().unwrap().to_owned();
    let keys: HashMap<String, String> = [
        (ALIAS.to_owned(), key_arn.clone()),
        (key_id, key_arn.clone()),
        (
            format!("arn:aws:kms:{REGION}:{ACCOUNT}:{ALIAS}"),
            key_arn.clone(),
        ),
    ]
    .into();
    let hold = |statements: Vec<PolicyStatement>| {
        for proxy in [&emu.kinesis_proxy, &emu.moto_proxy] {
            proxy.enforce_policy(IamPolicy {
                statements: statements.clone(),
                keys: keys.clone(),
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

    // The whole policy: every call allowed, every event and the sweep succeed.
    hold(statements.clone());
    let (results, denied) = run(&emu, &env, "full").await;
    assert!(denied.is_empty(), "denied: {denied:?}");
    for result in &results {
        assert_eq!(result.kind, "response", "{result:?}");
    }
    let outcomes: Vec<&serde_json::Value> =
        results[..3].iter().map(|r| &r.body["outcome"]).collect();
    assert_eq!(outcomes, [&json!("remediated"); 3], "{results:?}");

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
            "ReapplicationLedger"
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
        let (results, denied) = run(&emu, &env, &format!("without-{i}")).await;
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
        if missing.sid == "ReapplicationLedger" {
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
                results.iter().any(|r| r.kind == "error"),
                "without {}, every invocation still succeeded: {results:?}",
                missing.sid
            );
        }
    }
}
