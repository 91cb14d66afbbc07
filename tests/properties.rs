//! Property tests: nothing that comes from outside (an event, a retry policy) can make the
//! parsers panic, and every rejection carries a reason.

use proptest::prelude::*;
use serde_json::{Value, json};
use stream_encryption_enforcer::event::{self, Parsed};
use stream_encryption_enforcer::retry::{RandomSource, RetryDecision, RetryPolicy};

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
        serde_json::from_str(include_str!("../events/kinesis-create-stream.json")).unwrap();
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

struct Fixed(f64);
impl RandomSource for Fixed {
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
    fn a_mutated_real_event_is_parsed_or_rejected_with_a_reason(value in mutated_event()) {
        match event::parse(value) {
            Ok(Parsed::Ignored { reason, .. }) => prop_assert!(!reason.is_empty()),
            // Whatever was accepted passed validation: it can be put into an ARN.
            Ok(Parsed::Trigger(t)) => prop_assert!(t.resource.arn().starts_with("arn:")),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
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
    fn accepted_policies_never_panic_and_delays_respect_the_cap(
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
            match state.on_error("A", &mut Fixed(unit)) {
                RetryDecision::Retry { delay, .. } => {
                    retries += 1;
                    if let Some(cap) = cap {
                        prop_assert!(delay.as_secs_f64() <= cap as f64 + 1e-9);
                    }
                }
                RetryDecision::Exhausted { .. } => break,
                RetryDecision::NotRetryable => prop_assert!(false, "A is named"),
            }
        }
        prop_assert_eq!(retries, attempts);
    }
}
