//! Any bytes as `RETRY_POLICY`: rejected with a reason, or a policy that retries as ASL says.
#![no_main]

#[path = "../../tests/it/support/fuzz_properties.rs"]
#[allow(dead_code)] // each target uses one of the two
mod fuzz_properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzz_properties::retry_policy(data);
});
