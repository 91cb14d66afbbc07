//! stream-encryption-enforcer: keeps every Kinesis data stream and Firehose delivery stream
//! encrypted with the organisation's mandated KMS key.
//!
//! EventBridge delivers the CloudTrail record of each stream-creating or encryption-changing call;
//! the enforcer inspects the stream, applies the mandated key with `StartStreamEncryption` /
//! `StartDeliveryStreamEncryption` under a Step Functions retry policy, confirms the key took, and
//! reports exactly one [`Outcome`](outcome::Outcome) per event.
//!
//! # Layout
//!
//! - [`event`]: EventBridge / CloudTrail record -> the resource to act on, or a reason to ignore.
//! - [`resource`]: stream names, ARNs, accounts, regions and partitions, validated.
//! - [`key`]: key forms, the mandated key, and what can be proven about two key references.
//! - [`config`]: environment variables, read once and validated.
//! - [`exemption`]: the exemption tag.
//! - [`creator`]: the infrastructure-as-code tool behind a call, and what it must declare.
//! - [`retry`]: the retry policy (Amazon States Language `Retry`), parsed and executed.
//! - [`ratelimit`]: client-side pacing inside the per-account API limits.
//! - [`aws_error`]: one error type for every AWS call, named as the policy names errors.
//! - [`kinesis`], [`firehose`], [`kms`]: the narrow traits the enforcer needs, and their
//!   adapters for the SDK clients.
//! - [`enforcer`]: the decision for one event: inspect, decide, apply, confirm; the shared
//!   steps in `enforcer/mod.rs`, each service's procedure in `enforcer/kinesis.rs` and
//!   `enforcer/firehose.rs`.
//! - [`sweep`]: the inventory of an account and region, and every resource of it (or of many
//!   accounts and regions, in central mode) through the same decision.
//! - [`fleet`]: one enforcer per account and region, kept in a bounded first-in-first-out
//!   cache; it parses an event, refuses or reaches the resource's place, and enforces.
//! - [`connector`]: how a place is reached (the SDK's connector is in [`clients`]), and why it
//!   may not be ([`connector::CannotAct`]).
//! - [`scope`]: which accounts and regions the function may act in, decided with no call.
//! - [`organisation`]: the allowed accounts, as configured or read from the organisation.
//! - [`ledger`]: the re-application ledger (DynamoDB) that tells a flapping resource.
//! - [`outcome`]: the outcome vocabulary and the per-event report, and its constructors.
//! - [`metrics`]: one CloudWatch embedded-metric-format line per outcome.
//! - [`handler`]: deadline, logging and errors shared by the Lambda and the CLI.
//! - [`clients`]: the SDK clients, built once with the SDK's own retries off.
//!
//! The binaries are thin: `src/bin/bootstrap.rs` (the Lambda) and `src/bin/enforcer.rs` (the CLI).
//! Test-only code lives under `tests/`: the fuzz targets' properties (`tests/fuzz_properties/`,
//! which `fuzz/` includes by path) and the connector for tests that bring their own adapters
//! (`tests/own_account/`).

mod app;
pub mod aws;
pub mod config;
pub mod enforce;
pub mod fleet;
pub mod lambda;
pub mod model;
pub mod policy;
pub mod sweep;
mod sync;

pub use app::App;
