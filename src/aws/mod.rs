//! The AWS side: the narrow ports the enforcer needs from Kinesis, Firehose, KMS and the
//! ledger (DynamoDB), their adapters on the SDK clients, the clients themselves, and how an
//! account and region is reached.

pub mod clients;
pub mod connector;
pub mod error;
pub mod firehose;
pub mod kinesis;
pub mod kms;
pub mod ledger;
pub mod queue;
mod tags;

use crate::aws::firehose::FirehoseApi;
use crate::aws::kinesis::KinesisApi;
use crate::aws::kms::KmsApi;
use crate::aws::ledger::{Ledger, LedgerApi};

/// Everything the enforcer needs from AWS in one account and region: one port, so the enforcer
/// and the connector carry one type parameter, and a fake (the decision table's in-memory
/// model) implements it all.
pub trait Aws: KinesisApi + FirehoseApi + KmsApi + LedgerApi + Send + Sync {}

impl<T: KinesisApi + FirehoseApi + KmsApi + LedgerApi + Send + Sync> Aws for T {}

/// The SDK's side of [`Aws`]: one client per service, and the ledger when one is configured.
/// Each service's adapter code is in its own file (`kinesis.rs`, `firehose.rs`, `kms.rs`,
/// `ledger.rs`).
#[derive(Debug, Clone)]
pub struct SdkAws {
    kinesis: aws_sdk_kinesis::Client,
    firehose: aws_sdk_firehose::Client,
    kms: aws_sdk_kms::Client,
    /// Written with the function's own credentials, whatever account the resource is in.
    ledger: Option<Ledger>,
}

impl SdkAws {
    /// The port over these clients; `ledger` counts the writes (none: nothing is counted).
    pub fn new(
        kinesis: aws_sdk_kinesis::Client,
        firehose: aws_sdk_firehose::Client,
        kms: aws_sdk_kms::Client,
        ledger: Option<Ledger>,
    ) -> Self {
        Self {
            kinesis,
            firehose,
            kms,
            ledger,
        }
    }
}
