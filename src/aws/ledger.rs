//! The re-application ledger: every key the enforcer put on a resource in the last 24 hours, in
//! a DynamoDB table, so that a resource whose encryption something keeps reverting is noticed
//! before AWS's own quota is spent (Kinesis: 25 new keys per stream per rolling 24 hours;
//! Firehose: 25 Start and Stop calls per delivery stream per 24 hours).
//!
//! Why a table: the count must survive container restarts and be shared by every container and,
//! in central mode, by every account's events, which only an external store does. One item per
//! application (partition key `resource`, the resource's ARN; sort key `applied`, the time in
//! zero-padded epoch milliseconds and a random suffix) makes a write a plain PutItem that two
//! containers cannot lose to each other, and a count one Query with a key condition. Items carry
//! `expires` for DynamoDB's TTL, which deletes them in its own time; the Query's key condition,
//! not the TTL, decides what counts as the last 24 hours.

use crate::aws::SdkAws;
use crate::aws::error::AwsError;
use aws_sdk_dynamodb::types::AttributeValue;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The window the quotas count in.
pub const WINDOW: Duration = Duration::from_secs(24 * 3600);

/// One recorded application of the mandated key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    /// When, in milliseconds since the epoch.
    pub at_ms: u64,
    /// Who or what had left the resource off the mandated key: the tool, else the principal of
    /// the event's call.
    pub reverted_by: String,
}

/// What the enforcer needs from the ledger.
///
/// The ledger is optional (no `LEDGER_TABLE`: nothing is counted), and "no ledger" is
/// [`LedgerApi::counts`] answering `false`, not an `Option` around the port: the enforcer's
/// one bundled port ([`crate::aws::Aws`]) stays flat, and a fake switches the ledger off with
/// a flag. Without a ledger the enforcer makes neither call, so no rate-limiter slot is taken.
pub trait LedgerApi: Send + Sync {
    /// Whether applications are counted at all.
    fn counts(&self) -> bool;
    /// The applications to `resource` within the last [`WINDOW`] before `now`.
    fn recent(
        &self,
        resource: &str,
        now: SystemTime,
    ) -> impl Future<Output = Result<Vec<Application>, AwsError>> + Send;
    /// Records an application to `resource` at `now`, left off the key by `reverted_by`.
    fn record(
        &self,
        resource: &str,
        now: SystemTime,
        reverted_by: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// The ledger table, written with the function's own credentials.
#[derive(Debug, Clone)]
pub struct Ledger {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

fn epoch_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Ledger {
    /// The ledger in `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

impl LedgerApi for Ledger {
    fn counts(&self) -> bool {
        true
    }

    async fn recent(&self, resource: &str, now: SystemTime) -> Result<Vec<Application>, AwsError> {
        let window = u64::try_from(WINDOW.as_millis()).unwrap_or(u64::MAX);
        let since = epoch_ms(now).saturating_sub(window);
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("#r = :r AND #a >= :since")
                .expression_attribute_names("#r", "resource")
                .expression_attribute_names("#a", "applied")
                .expression_attribute_values(":r", AttributeValue::S(resource.to_owned()))
                .expression_attribute_values(":since", AttributeValue::S(format!("{since:013}")))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(AwsError::from_sdk)?;
            found.extend(page.items().iter().filter_map(|item| {
                let applied = item.get("applied")?.as_s().ok()?;
                Some(Application {
                    at_ms: applied.get(..13)?.parse().ok()?,
                    reverted_by: item
                        .get("reverted_by")
                        .and_then(|v| v.as_s().ok())
                        .cloned()
                        .unwrap_or_default(),
                })
            }));
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(found),
            }
        }
    }

    async fn record(
        &self,
        resource: &str,
        now: SystemTime,
        reverted_by: &str,
    ) -> Result<(), AwsError> {
        let at = epoch_ms(now);
        let expires = (at / 1000).saturating_add(WINDOW.as_secs() + 3600);
        self.client
            .put_item()
            .table_name(&self.table)
            .item("resource", AttributeValue::S(resource.to_owned()))
            .item(
                "applied",
                AttributeValue::S(format!("{at:013}#{:08x}", fastrand::u32(..))),
            )
            .item("reverted_by", AttributeValue::S(reverted_by.to_owned()))
            .item("expires", AttributeValue::N(expires.to_string()))
            .send()
            .await
            .map_err(AwsError::from_sdk)?;
        Ok(())
    }
}

/// The SDK's ledger when `LEDGER_TABLE` is set; without one nothing is read or written.
impl LedgerApi for SdkAws {
    fn counts(&self) -> bool {
        self.ledger.is_some()
    }

    async fn recent(&self, resource: &str, now: SystemTime) -> Result<Vec<Application>, AwsError> {
        match &self.ledger {
            Some(ledger) => ledger.recent(resource, now).await,
            None => Ok(Vec::new()),
        }
    }

    async fn record(&self, resource: &str, now: SystemTime, by: &str) -> Result<(), AwsError> {
        match &self.ledger {
            Some(ledger) => ledger.record(resource, now, by).await,
            None => Ok(()),
        }
    }
}
