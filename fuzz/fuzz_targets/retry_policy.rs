//! Any bytes as `RETRY_POLICY`: rejected with a reason, or a policy that retries as ASL says.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    stream_encryption_enforcer::fuzzing::retry_policy(data);
});
