//! Any bytes as the Lambda's event: parsed or rejected with a reason, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    stream_encryption_enforcer::fuzzing::event(data);
});
