//! How the enforcer reaches an account and region: the [`Connector`] (the SDK one is
//! [`crate::aws::clients::SdkConnector`]), the port it makes, and why it may not reach one.

use crate::aws::Aws;
use crate::aws::error::AwsError;
use crate::aws::queue::{Outgoing, QueueKind};
use crate::model::resource::Location;
use std::collections::BTreeSet;
use std::future::Future;

/// How the enforcer reaches an account and region.
pub trait Connector: Send + Sync {
    /// The port it makes.
    type Aws: Aws;

    /// The port that acts in `at`: with the function's own credentials when `own`, else with
    /// the target role's in `at.account`; the ledger always with the function's own. Makes no
    /// call.
    fn connect(&self, at: &Location, own: bool) -> Result<Self::Aws, AwsError>;

    /// Makes sure the target role's credentials for `at.account` are at hand: sts:AssumeRole
    /// when none are cached or they are about to expire, else nothing.
    fn assume(&self, at: &Location) -> impl Future<Output = Result<(), AwsError>> + Send;

    /// The organisation the function's account belongs to, with its ACTIVE accounts
    /// (organizations:DescribeOrganization and ListAccounts, from the management account or a
    /// delegated administrator).
    fn organization(&self) -> impl Future<Output = Result<Organization, AwsError>> + Send;

    /// Sends at most [`crate::aws::queue::BATCH`] messages to one of the product's queues with
    /// the function's own credentials: `Err` when none was taken, else those SQS refused.
    /// Without that queue configured, an error.
    fn enqueue(
        &self,
        queue: QueueKind,
        messages: &[Outgoing],
    ) -> impl Future<Output = Result<Vec<crate::aws::queue::Refused>, AwsError>> + Send {
        let _ = messages;
        async move { Err(no_queue(queue)) }
    }
}

/// The error code of an [`Connector::enqueue`] to a queue that is not configured.
pub const NO_QUEUE: &str = "Enforcer.NoQueue";

/// The error of an [`Connector::enqueue`] to a queue that is not configured.
pub fn no_queue(queue: QueueKind) -> AwsError {
    AwsError::unsent(
        NO_QUEUE,
        format!(
            "{} is not set: there is no queue to send to",
            queue.variable()
        ),
    )
}

/// An organisation and its ACTIVE accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    /// `o-...`.
    pub id: String,
    /// The ACTIVE member accounts, the management account included.
    pub accounts: BTreeSet<String>,
}

/// Why the function cannot act at an account and region: its role could not be assumed, it
/// has no clients or no mandated key there, or the accounts it may act in could not be read.
#[derive(Debug)]
pub struct CannotAct {
    /// The AWS error code, or an `Enforcer.` name.
    pub code: String,
    /// Why, in words.
    pub reason: String,
}

impl std::fmt::Display for CannotAct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.reason, self.code)
    }
}
