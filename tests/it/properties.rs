//! Property tests of the two parsers of outside input (an event, a retry policy): nothing makes
//! them panic, and what they accept or refuse is what the documents say. An accepted resource is
//! the one the record names, in the record's account and region, with a name AWS allows; a
//! failed call is ignored whatever its code; a field that does not decide anything changes
//! nothing; a policy's delays are exactly `min(IntervalSeconds x BackoffRate^(n-1),
//! MaxDelaySeconds)` (times the jitter draw under `FULL`); a refused policy's reason names
//! what is wrong.

use proptest::prelude::*;
use serde_json::{Value, json};
use stream_encryption_enforcer::model::event::{self, Parsed};
use stream_encryption_enforcer::policy::retry::{RandomSource, RetryDecision, RetryPolicy};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        prop::sample::select(vec![
            "aws.kinesis",
            "aws.firehose",
            "AWS API Call via CloudTrail",
            "kinesis.amazonaws.com",
            "CreateStream",
            "StartDeliveryStreamEncryption",
            "123456789012",
            "us-east-1",
            "arn:aws:kinesis:us-east-1:123456789012:stream/x",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "source",
                    "detail-type",
                    "detail",
                    "id",
                    "account",
                    "region",
                    "eventSource",
                    "eventName",
                    "awsRegion",
                    "recipientAccountId",
                    "requestParameters",
                    "responseElements",
                    "streamName",
                    "streamARN",
                    "deliveryStreamName",
                    "errorCode",
                    "tags",
                    "key",
                    "value",
                    "x",
                ]),
                inner,
                0..8,
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// A well-formed event whose parts are replaced by arbitrary values.
fn mutated_event() -> impl Strategy<Value = Value> {
    let base: Value =
        serde_json::from_str(include_str!("../../events/kinesis-create-stream.json")).unwrap();
    (
        prop::sample::select(vec![
            "/source",
            "/detail-type",
            "/detail",
            "/detail/eventName",
            "/detail/awsRegion",
            "/detail/recipientAccountId",
            "/detail/requestParameters",
            "/detail/requestParameters/streamName",
            "/detail/requestParameters/tags",
            "/detail/errorCode",
        ]),
        json_value(),
    )
        .prop_map(move |(pointer, value)| {
            let mut event = base.clone();
            if let Some(slot) = event.pointer_mut(pointer) {
                *slot = value;
            }
            event
        })
}

/// A random source that always draws the same value.
struct Constant(f64);
impl RandomSource for Constant {
    fn unit(&mut self) -> f64 {
        self.0
    }
}

proptest! {
    #[test]
    fn any_json_is_parsed_or_rejected_with_a_reason(value in json_value()) {
        match event::parse(value) {
            Ok(Parsed::Ignored { reason, .. }) => prop_assert!(!reason.is_empty()),
            Ok(Parsed::Trigger(t)) => prop_assert!(!t.resource.name.is_empty()),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn a_mutated_real_event_is_accepted_only_as_the_stream_its_record_names(value in mutated_event()) {
        // The record names the stream by name or by ARN; a record without its account or region
        // (never so from CloudTrail) falls back to the EventBridge envelope's.
        let text = |pointer: &str| value.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
        let named = text("/detail/requestParameters/streamName").or_else(|| {
            text("/detail/requestParameters/streamARN")
                .and_then(|arn| arn.rsplit_once('/').map(|(_, n)| n.to_owned()))
        });
        let account = text("/detail/recipientAccountId").or_else(|| text("/account"));
        let region = text("/detail/awsRegion").or_else(|| text("/region"));
        let (envelope_account, envelope_region) = (text("/account"), text("/region"));
        match event::parse(value) {
            Ok(Parsed::Ignored { reason, .. }) => prop_assert!(!reason.is_empty()),
            Ok(Parsed::Trigger(t)) => {
                // The resource is the record's, in the record's account and region...
                prop_assert_eq!(Some(&t.resource.name), named.as_ref());
                prop_assert_eq!(Some(&t.resource.location.account), account.as_ref());
                prop_assert_eq!(Some(&t.resource.location.region), region.as_ref());
                // ...which are the envelope's, where it names them.
                if let Some(envelope) = &envelope_account {
                    prop_assert_eq!(&t.resource.location.account, envelope);
                }
                if let Some(envelope) = &envelope_region {
                    prop_assert_eq!(&t.resource.location.region, envelope);
                }
                // ...with a name AWS allows (1 to 128 of a-z A-Z 0-9 _ . -).
                let name = &t.resource.name;
                prop_assert!(!name.is_empty() && name.len() <= 128, "{}", name);
                prop_assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)), "{}", name);
                prop_assert_eq!(
                    t.resource.arn(),
                    format!("arn:aws:kinesis:{}:{}:stream/{name}", t.resource.location.region, t.resource.location.account)
                );
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn a_failed_call_is_ignored_whatever_its_code(code in "[A-Za-z.]{1,40}", message in ".{0,60}") {
        let mut event: Value =
            serde_json::from_str(include_str!("../../events/kinesis-create-stream.json")).unwrap();
        event["detail"]["errorCode"] = json!(code);
        event["detail"]["errorMessage"] = json!(message);
        match event::parse(event) {
            Ok(Parsed::Ignored { reason, .. }) => prop_assert!(reason.contains(&code), "{}", reason),
            other => prop_assert!(false, "a failed call was not ignored: {:?}", other),
        }
    }

    #[test]
    fn fields_that_decide_nothing_change_nothing(
        agent in ".{0,80}",
        ip in ".{0,40}",
        request_id in ".{0,40}",
        version in ".{0,10}",
    ) {
        let base: Value =
            serde_json::from_str(include_str!("../../events/kinesis-create-stream.json")).unwrap();
        let mut changed = base.clone();
        changed["detail"]["sourceIPAddress"] = json!(ip);
        changed["detail"]["requestID"] = json!(request_id);
        // (`time` is not varied: EventBridge's schema makes it a timestamp, and an event
        // without one is refused as not an EventBridge event.)
        changed["detail"]["eventVersion"] = json!(version);
        changed["detail"]["tlsDetails"] = json!(null);
        let Ok(Parsed::Trigger(want)) = event::parse(base) else {
            panic!("the fixture is a trigger");
        };
        let Ok(Parsed::Trigger(got)) = event::parse(changed.clone()) else {
            return Err(TestCaseError::fail(format!("not a trigger: {changed}")));
        };
        prop_assert_eq!(&got, &want);
        // The user agent only says who called (for the tool's settle period): never which
        // resource.
        changed["detail"]["userAgent"] = json!(agent);
        let Ok(Parsed::Trigger(got)) = event::parse(changed) else {
            return Err(TestCaseError::fail("not a trigger with another user agent"));
        };
        prop_assert_eq!(&got.resource, &want.resource);
    }

    #[test]
    fn any_bytes_are_parsed_or_rejected(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = event::parse_bytes(&bytes) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn any_retry_policy_text_is_accepted_or_rejected_with_a_reason(text in ".{0,200}") {
        if let Err(e) = RetryPolicy::parse(&text) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn any_retry_policy_json_is_accepted_or_rejected_with_a_reason(value in json_value()) {
        if let Err(e) = RetryPolicy::parse(&value.to_string()) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn a_field_step_functions_does_not_know_is_refused_by_its_name(field in "[A-Z][A-Za-z]{2,20}") {
        let known = ["ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate",
                     "MaxDelaySeconds", "JitterStrategy", "Comment"];
        prop_assume!(!known.contains(&field.as_str()));
        let text = json!([{"ErrorEquals": ["A"], field.clone(): 1}]).to_string();
        match RetryPolicy::parse(&text) {
            Err(e) => prop_assert!(e.to_string().contains(&field), "{}", e),
            Ok(_) => prop_assert!(false, "accepted unknown field {}", field),
        }
    }

    #[test]
    fn an_out_of_range_number_is_refused_naming_its_field(
        (field, value) in prop_oneof![
            (Just("IntervalSeconds"), -5i64..1),
            (Just("MaxAttempts"), -5i64..0),
            (Just("MaxDelaySeconds"), -5i64..1),
        ]
    ) {
        let text = json!([{"ErrorEquals": ["A"], field: value}]).to_string();
        match RetryPolicy::parse(&text) {
            Err(e) => prop_assert!(e.to_string().contains(field), "{}", e),
            Ok(_) => prop_assert!(false, "accepted {}={}", field, value),
        }
    }

    #[test]
    fn accepted_policies_wait_exactly_as_step_functions_would(
        interval in 1u64..100,
        attempts in 0u64..50,
        backoff in 1.0f64..10.0,
        cap in prop::option::of(1u64..600),
        full in any::<bool>(),
        unit in 0.0f64..1.0,
    ) {
        let mut retrier = json!({
            "ErrorEquals": ["A"],
            "IntervalSeconds": interval,
            "MaxAttempts": attempts,
            "BackoffRate": backoff,
            "JitterStrategy": if full { "FULL" } else { "NONE" },
        });
        if let Some(cap) = cap {
            retrier["MaxDelaySeconds"] = json!(cap);
        }
        let policy = RetryPolicy::parse(&json!([retrier]).to_string()).unwrap();
        let mut state = policy.start();
        let mut retries = 0;
        loop {
            match state.on_error("A", &mut Constant(unit)) {
                RetryDecision::Retry { delay, .. } => {
                    retries += 1;
                    // Step Functions: IntervalSeconds x BackoffRate^(n-1), capped; FULL jitter
                    // draws uniformly below that.
                    // No delay exceeds the largest MaxDelaySeconds States Language allows
                    // (31,622,400 s, 366 days).
                    let mut want = (interval as f64 * backoff.powi(retries as i32 - 1)).min(31_622_400.0);
                    if let Some(cap) = cap {
                        want = want.min(cap as f64);
                        prop_assert!(delay.as_secs_f64() <= cap as f64 + 1e-9);
                    }
                    if full {
                        want *= unit;
                    }
                    let got = delay.as_secs_f64();
                    prop_assert!(
                        (got - want).abs() <= 1e-3 + want * 1e-9,
                        "retry {}: {} s, want {} s", retries, got, want
                    );
                }
                RetryDecision::Exhausted { .. } => break,
                RetryDecision::NotRetryable => prop_assert!(false, "A is named"),
            }
        }
        prop_assert_eq!(retries, attempts);
    }
}
