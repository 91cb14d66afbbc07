//! The integration tests, one binary (it links the library and the SDKs once).
//!
//! The fast tier needs no emulator and no installed tool (`scripts/test-fast`):
//! - `decision_table`: every combination of state, key form, mode and exemption on an in-memory
//!   model of Kinesis, Firehose and KMS, against an oracle of the README's outcome table;
//! - `adapters`: the SDK adapters on aws-smithy-mocks;
//! - `properties`, `fuzz_seeds`: the parsers' properties and the fuzzers' pinned inputs;
//! - `docs`: the README and docs/ held to the code.
//!
//! The rest run the real binaries against kinesis-mock and moto server, which `support` starts on
//! free loopback ports and stops afterwards:
//! - `emulators`, `lambda`, `arm64`: the Lambda under a Runtime API, on each architecture;
//! - `fault_matrix`, `soak`: every AWS error and a long mixed run, through a fault proxy;
//! - `iac`, `iam`, `organisation`, `sweep`, `replay`, `asl`: the tools, the policies, central
//!   mode, the sweep, `enforcer replay` and the retry policy as Step Functions reads it.

mod support;

mod adapters;
mod arm64;
mod asl;
mod decision_table;
mod docs;
mod emulators;
mod fault_matrix;
mod fuzz_seeds;
mod iac;
mod iam;
mod lambda;
mod organisation;
mod properties;
mod replay;
mod soak;
mod sweep;
