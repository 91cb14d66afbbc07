//! stream-encryption-enforcer: keeps every Kinesis data stream and Firehose delivery stream
//! encrypted with the organisation's mandated KMS key.
//!
//! EventBridge delivers the CloudTrail record of each stream-creating or encryption-changing call;
//! the enforcer inspects the stream, applies the mandated key with `StartStreamEncryption` /
//! `StartDeliveryStreamEncryption` under a Step Functions retry policy, confirms the key took, and
//! reports exactly one [`Outcome`](model::outcome::Outcome) per event.
//!
//! # Layout
//!
//! One folder per layer. `model` uses no other layer, `policy` only the error type of `aws`;
//! `enforce` reaches AWS only through the port of `aws`.
//!
//! - [`model`]: the domain's types, with no I/O: the [`event`](model::event) that names a
//!   resource, the [`resource`](model::resource) and its place, [`key`](model::key) forms, the
//!   caller and its IaC tool (`caller.rs`), the [`exemption`](model::exemption) tag, and the
//!   [`outcome`](model::outcome) and report of each event.
//! - [`policy`]: how calls are made: the [`retry`](policy::retry) policy (Amazon States
//!   Language `Retry`) and the rate limiter inside AWS's per-account limits (`ratelimit.rs`).
//! - [`config`]: the environment variables, read once and validated.
//! - [`aws`]: the one port, [`Aws`](aws::Aws), bundling what the enforcer needs from
//!   [`kinesis`](aws::kinesis), [`firehose`](aws::firehose), [`kms`](aws::kms) and the
//!   [`ledger`](aws::ledger), with its SDK adapter [`SdkAws`](aws::SdkAws); the
//!   [`clients`](aws::clients) (the SDK's retries off), one [`error`](aws::error) type, and the
//!   [`connector`](aws::connector) that reaches an account and region.
//! - `enforce`: the decision for one event: pure steps per service (`kinesis.rs`,
//!   `firehose.rs`), one loop that waits, settles, gates, writes and confirms (`drive.rs`), the
//!   gate of exemption, report mode and flapping (`gate.rs`), the mandated key's resolution
//!   (`key_cache.rs`), and the report (`report.rs`).
//! - [`fleet`]: one enforcer per account and region in a bounded cache, the places the function
//!   may act in (`scope.rs`) and the allowed accounts (`accounts.rs`); it parses an event,
//!   refuses or reaches its place, and enforces.
//! - [`sweep`]: the inventory of a place, and every resource of many places through the decision.
//! - [`lambda`]: the handler shared by the Lambda and `enforcer invoke`: deadline, errors as
//!   `Diagnostic`s, the function's own place, one metrics line per outcome.
//! - [`App`]: start-up, once: configuration, clients, the mandated key's check, the fleet.
//!
//! The binaries are thin: `src/bin/bootstrap.rs` (the Lambda) and `src/bin/enforcer/` (the
//! operator's CLI, behind the `cli` feature: one file per command, and `replay/`). The
//! integration tests are one binary, `tests/it/`, whose `support/` is the harness.

#![warn(unreachable_pub)]

mod app;
pub mod aws;
pub mod config;
mod enforce;
pub mod fleet;
pub mod lambda;
pub mod model;
pub mod policy;
pub mod sweep;
mod sync;

pub use app::App;
