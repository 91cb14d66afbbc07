//! Every retry policy the product accepts is valid Amazon States Language: each is placed in a
//! Task state's `Retry` and checked by the npm package asl-validator (installed by
//! scripts/setup-tools). The validator is lax (it accepts `States.ALL` before the last retrier,
//! `BackoffRate` below 1 and unknown fields), so this checks one direction only: what the
//! product accepts, Step Functions would too. The product's own refusals are unit tests in
//! src/policy/retry.rs.

use crate::support::documents;

use serde_json::{Value, json};
use std::process::Command;
use stream_encryption_enforcer::policy::retry::{DEFAULT_POLICY_JSON, RetryPolicy};

/// The JSON blocks that are policies in the README's retry-policy section (the example) and in
/// docs/retry-policy.md (the default).
fn documented_policies() -> Vec<Value> {
    let readme = documents::read("README.md");
    let start = readme.find("## The retry policy").expect("the section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let docs = documents::read("docs/retry-policy.md");
    [section, docs.as_str()]
        .into_iter()
        .flat_map(|text| text.split("```json").skip(1))
        .filter_map(|block| block.split("```").next())
        .filter_map(|text| serde_json::from_str::<Value>(text).ok())
        .filter(|v| {
            v.as_array()
                .is_some_and(|a| a.iter().all(|r| r.get("ErrorEquals").is_some()))
        })
        .collect()
}

/// Seeded random policies over the names the product gives a meaning to.
fn generated(n: usize) -> Vec<Value> {
    let names = [
        "States.TaskFailed",
        "States.Timeout",
        "States.Permissions",
        "Kinesis.ResourceInUseException",
        "Firehose.ResourceInUseException",
        "KMS.ThrottlingException",
        "Sts.ThrottlingException",
        "ResourceInUseException",
        "LimitExceededException",
        "ThrottlingException",
        "Enforcer.Timeout",
        "Enforcer.ServerError",
    ];
    let mut rng = fastrand::Rng::with_seed(13);
    (0..n)
        .map(|_| {
            let count = rng.usize(1..=4);
            let retriers: Vec<Value> = (0..count)
                .map(|i| {
                    let mut r = serde_json::Map::new();
                    let all = i + 1 == count && rng.u8(..4) == 0;
                    let errors: Vec<&str> = if all {
                        vec!["States.ALL"]
                    } else {
                        (0..rng.usize(1..=3))
                            .map(|_| names[rng.usize(..names.len())])
                            .collect()
                    };
                    r.insert("ErrorEquals".into(), json!(errors));
                    if rng.bool() {
                        r.insert("IntervalSeconds".into(), json!(rng.u64(1..=100)));
                    }
                    if rng.bool() {
                        r.insert("MaxAttempts".into(), json!(rng.u64(0..=300)));
                    }
                    if rng.bool() {
                        r.insert(
                            "BackoffRate".into(),
                            json!(1.0 + f64::from(rng.u8(..40)) / 10.0),
                        );
                    }
                    if rng.bool() {
                        r.insert("MaxDelaySeconds".into(), json!(rng.u64(1..=1000)));
                    }
                    match rng.u8(..3) {
                        0 => {}
                        1 => {
                            r.insert("JitterStrategy".into(), json!("FULL"));
                        }
                        _ => {
                            r.insert("JitterStrategy".into(), json!("NONE"));
                        }
                    }
                    if rng.u8(..3) == 0 {
                        r.insert("Comment".into(), json!("written by Workflow Studio"));
                    }
                    Value::Object(r)
                })
                .collect();
            Value::Array(retriers)
        })
        .collect()
}

/// A state machine with one Task state per policy, chained; returns asl-validator's exit code
/// and output.
fn validate(policies: &[Value]) -> (Option<i32>, String) {
    let mut states = serde_json::Map::new();
    for (i, retry) in policies.iter().enumerate() {
        let mut state = json!({
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:kinesis:startStreamEncryption",
            "Parameters": {"StreamName": "orders", "EncryptionType": "KMS", "KeyId": "alias/org-streams"},
            "Retry": retry,
        });
        if i + 1 == policies.len() {
            state["End"] = json!(true);
        } else {
            state["Next"] = json!(format!("S{}", i + 1));
        }
        states.insert(format!("S{i}"), state);
    }
    let machine = json!({"StartAt": "S0", "States": states});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("machine.json");
    std::fs::write(&path, machine.to_string()).unwrap();
    let validator = crate::support::tools_dir().join("node/node_modules/.bin/asl-validator");
    let output = Command::new(validator)
        .arg("--json-path")
        .arg(&path)
        .output()
        .expect("asl-validator runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

#[test]
fn every_policy_the_product_accepts_is_valid_states_language() {
    let mut policies = vec![serde_json::from_str::<Value>(DEFAULT_POLICY_JSON).unwrap()];
    let documented = documented_policies();
    assert!(
        documented.len() >= 2,
        "the default and the example: {documented:?}"
    );
    policies.extend(documented);
    let corpus = generated(400);
    let accepted: Vec<Value> = corpus
        .into_iter()
        .filter(|p| RetryPolicy::parse(&p.to_string()).is_ok())
        .collect();
    // The generator writes only what the product gives a meaning to: nearly all of it parses
    // (a random BackoffRate or MaxDelaySeconds never makes a policy invalid).
    assert!(accepted.len() >= 390, "{} of 400 accepted", accepted.len());
    policies.extend(accepted);
    for policy in &policies {
        RetryPolicy::parse(&policy.to_string()).expect("accepted by the product");
    }
    let (code, output) = validate(&policies);
    assert_eq!(code, Some(0), "{} policies: {output}", policies.len());
    assert!(output.contains("is valid"), "{output}");
}

#[test]
fn the_validator_refuses_what_states_language_refuses() {
    // The control: the same harness fails on a Retry that is not valid ASL.
    let (code, output) = validate(&[json!([{"ErrorEquals": ["States.ALL"], "MaxAttempts": -1}])]);
    assert_ne!(code, Some(0), "{output}");
    let (code, output) = validate(&[json!([{"ErrorEquals": "States.ALL"}])]);
    assert_ne!(code, Some(0), "{output}");
}
