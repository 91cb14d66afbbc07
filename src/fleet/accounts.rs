//! The accounts other than its own the function may act in: `ALLOWED_ACCOUNTS` as configured,
//! or, with only `ORGANIZATION_ID`, the organisation's ACTIVE accounts, read with
//! organizations:ListAccounts and read again every [`ORGANIZATION_REFRESH`].

use crate::aws::connector::{CannotAct, Connector};
use crate::config::Central;
use crate::policy::retry::{self, RandomSource, RetryPolicy};
use crate::sync::lock;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long the organisation's account list is used before it is read again: a new account is
/// acted on at most this long after it joins (its events meanwhile are refused, kept by Lambda's
/// retries and the on-failure queue, and the sweep catches its streams).
pub(super) const ORGANIZATION_REFRESH: Duration = Duration::from_secs(600);

/// The accounts as last known, and when they were read.
struct Known {
    /// When they were read from the organisation; `None` when configured.
    read: Option<Instant>,
    accounts: Arc<BTreeSet<String>>,
}

/// The accounts other than its own the function may act in. Empty until read in
/// organisation-only mode.
pub(crate) struct AllowedAccounts {
    known: Mutex<Option<Known>>,
    /// One reading of the organisation at a time.
    reading: tokio::sync::Mutex<()>,
}

impl AllowedAccounts {
    /// The configured `ALLOWED_ACCOUNTS`, never stale; none in organisation-only and
    /// single-account mode.
    pub(crate) fn new(central: Option<&Central>) -> Self {
        let known = central
            .and_then(|c| c.accounts.clone())
            .map(|accounts| Known {
                read: None,
                accounts: Arc::new(accounts),
            });
        Self {
            known: Mutex::new(known),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    /// The accounts as last read; `None` in single-account mode, or before the organisation
    /// was read.
    pub(crate) fn current(&self) -> Option<Arc<BTreeSet<String>>> {
        lock(&self.known).as_ref().map(|k| k.accounts.clone())
    }

    fn fresh(&self) -> bool {
        matches!(lock(&self.known).as_ref(), Some(Known { read: Some(read), .. }) if read.elapsed() < ORGANIZATION_REFRESH)
    }

    /// In central mode with `ORGANIZATION_ID` and no `ALLOWED_ACCOUNTS`: reads the
    /// organisation's ACTIVE accounts through `connector` when they were never read or were
    /// read more than [`ORGANIZATION_REFRESH`] ago (one call in the function's own account,
    /// under `policy`). Otherwise nothing. A failed re-read keeps the list read before.
    pub(crate) async fn refresh<C: Connector>(
        &self,
        central: Option<&Central>,
        policy: &RetryPolicy,
        connector: &C,
        deadline: Instant,
        random: &mut (dyn RandomSource + Send),
    ) -> Result<(), CannotAct> {
        let Some(central) = central else {
            return Ok(());
        };
        let (None, Some(organization_id)) = (&central.accounts, &central.organization_id) else {
            return Ok(());
        };
        if self.fresh() {
            return Ok(());
        }
        let _reading = self.reading.lock().await;
        if self.fresh() {
            return Ok(());
        }
        let read = retry::run(
            policy,
            deadline,
            random,
            "organizations:ListAccounts",
            || connector.organization(),
        )
        .await;
        let organization = match read {
            Ok((organization, _)) => organization,
            // A list read before stays in use: a passing Organizations outage must not stop
            // enforcement in the accounts already known.
            Err(e) if self.current().is_some() => {
                tracing::warn!(organization = %organization_id, error = %e, "cannot read the organisation's accounts again; using the list read before");
                return Ok(());
            }
            Err(e) => {
                return Err(CannotAct {
                    code: e.aws().code().to_owned(),
                    reason: format!(
                        "cannot read the accounts of organisation {organization_id}: {e}; the \
                         function's account must be the management account or a delegated \
                         administrator, or set ALLOWED_ACCOUNTS"
                    ),
                });
            }
        };
        if organization.id != *organization_id {
            return Err(CannotAct {
                code: "Enforcer.OrganizationMismatch".into(),
                reason: format!(
                    "ORGANIZATION_ID is {organization_id}, but the function's account belongs to {}",
                    organization.id
                ),
            });
        }
        tracing::info!(
            organization = %organization.id,
            accounts = organization.accounts.len(),
            "read the organisation's accounts"
        );
        *lock(&self.known) = Some(Known {
            read: Some(Instant::now()),
            accounts: Arc::new(organization.accounts),
        });
        Ok(())
    }
}
