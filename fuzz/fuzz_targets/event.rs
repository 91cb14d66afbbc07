//! Any bytes as the Lambda's event: parsed or rejected with a reason, never a panic.
#![no_main]

#[path = "../../tests/it/support/fuzz_properties.rs"]
#[allow(dead_code)] // each target uses one of the two
mod fuzz_properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzz_properties::event(data);
});
