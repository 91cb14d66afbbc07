//! The properties the fuzz targets (`fuzz/`) hold the two parsers of outside input to. The same
//! functions replay the seed corpus and every crash regression in `tests/it/fuzz_seeds.rs`, so a
//! finding, once fixed, stays fixed in the test command. The fuzz targets include this file by
//! path; it is test code, not part of the product's library.
//!
//! A panic here is the finding: these functions assert.

use stream_encryption_enforcer::model::event::{self, Parsed};
use stream_encryption_enforcer::model::resource::Resource;
use stream_encryption_enforcer::policy::retry::{RandomSource, RetryDecision, RetryPolicy};

/// Retries simulated per retrier; a retrier allowing more is checked up to here.
const SIMULATED_RETRIES: u64 = 256;

/// Any bytes as an event: parsed or rejected with a reason, deterministically, and a resource
/// that is accepted has a valid name and location (its ARN parses back to the same resource).
pub fn event(data: &[u8]) {
    let first = event::parse_bytes(data);
    match &first {
        Ok(Parsed::Trigger(trigger)) => {
            let arn = trigger.resource.arn();
            match Resource::from_arn(trigger.resource.service, &arn) {
                Ok(again) => assert_eq!(again, trigger.resource, "{arn}"),
                Err(e) => panic!("accepted resource has an invalid ARN {arn}: {e}"),
            }
            assert!(!trigger.event_name.is_empty());
        }
        Ok(Parsed::Ignored { reason, .. }) => assert!(!reason.is_empty(), "ignored without reason"),
        Err(e) => assert!(!e.to_string().is_empty(), "rejected without reason"),
    }
    let second = event::parse_bytes(data);
    assert_eq!(
        format!("{first:?}"),
        format!("{second:?}"),
        "not deterministic"
    );
}

struct Extremes(u64);

impl RandomSource for Extremes {
    fn unit(&mut self) -> f64 {
        self.0 += 1;
        // 0, just under 1, and the middle: the edges of full jitter.
        [0.0, 0.999_999_9, 0.5][(self.0 % 3) as usize]
    }
}

/// Any bytes as a `RETRY_POLICY`: rejected with a reason, or a policy under which every error a
/// retrier names is retried by the first retrier naming it, exactly `MaxAttempts` times, with
/// every delay finite and within `MaxDelaySeconds`.
pub fn retry_policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policy = match RetryPolicy::parse(text) {
        Ok(policy) => policy,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "rejected without reason");
            return;
        }
    };
    let retriers = policy.retriers();
    for retrier in retriers {
        for named in &retrier.error_equals {
            // An error each name stands for: the code itself, without a `<Service>.` prefix;
            // one error of a States.* name's family.
            let name = match named.as_str() {
                "States.ALL" | "States.TaskFailed" => "SomeServiceException",
                "States.Timeout" => stream_encryption_enforcer::aws::error::transport::TIMEOUT,
                "States.Permissions" => "AccessDeniedException",
                other if other.starts_with("Enforcer.") => other,
                other => other.split_once('.').map_or(other, |(_, code)| code),
            };
            let first = retriers
                .iter()
                .position(|r| r.handles(name))
                .expect("the retrier itself names it");
            let expected = retriers[first].max_attempts;
            let mut state = policy.start();
            let mut random = Extremes(0);
            let mut retries = 0;
            while retries <= SIMULATED_RETRIES {
                match state.on_error(name, &mut random) {
                    RetryDecision::Retry { delay, retrier, .. } => {
                        assert_eq!(retrier, first, "{name} retried by a later retrier");
                        if let Some(cap) = retriers[first].max_delay_seconds {
                            assert!(
                                delay.as_secs_f64() <= cap as f64 + 1e-6,
                                "{delay:?} > {cap}"
                            );
                        }
                        retries += 1;
                    }
                    RetryDecision::Exhausted { retrier } => {
                        assert_eq!(retrier, first);
                        break;
                    }
                    RetryDecision::NotRetryable => panic!("{name} is named but not retried"),
                }
            }
            if expected <= SIMULATED_RETRIES {
                assert_eq!(retries, expected, "{name}: retries");
            }
        }
    }
}
