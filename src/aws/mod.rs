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
