//! Test harness: the real emulators (kinesis-mock, moto server) on free loopback ports, a
//! recording and fault-injecting HTTP proxy in front of each, and helpers to run the real
//! binaries. Everything started here is stopped when its handle drops.
//!
//! - `process`: the emulators' processes and free ports;
//! - `proxy`: the recording, fault-injecting, rate-limiting, IAM-enforcing proxy;
//! - `iam`: the evaluation of identity policies the proxy applies;
//! - `seed`: [`Emulators`], SDK clients and the seeding helpers;
//! - `runtime`: the real binaries, and the Lambda Runtime API `bootstrap` polls;
//! - `iac`: models of Terraform's and CloudFormation's waiters;
//! - `mocks`: aws-smithy-mocks clients and real-shaped outputs, for the adapter tests;
//! - `own_account`: a connector for tests that bring their own adapters;
//! - `documents`: the README and docs/ the tests hold the code to;
//! - `fuzz_properties`: the parsers' properties, shared with the fuzz targets (`fuzz/`).

pub mod documents;
pub mod fuzz_properties;
pub mod iac;
mod iam;
pub mod mocks;
pub mod own_account;
mod process;
mod proxy;
mod runtime;
mod seed;

pub use iam::*;
pub use process::*;
pub use proxy::*;
pub use runtime::*;
pub use seed::*;

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
