//! The mandated key as kms:DescribeKey resolves it, cached per place for `KEY_CACHE_SECONDS`.

use super::{Enforcer, EventRun, Halt};
use crate::aws::Aws;
use crate::model::key::KeyInfo;
use crate::policy::ratelimit::Operation;
use crate::policy::retry::CallError;
use crate::sync::lock;
use tokio::time::Instant;

const KMS_NOT_FOUND: &str = "NotFoundException";

/// The mandated key as kms:DescribeKey last resolved it, and when.
#[derive(Clone)]
pub(super) struct Resolved {
    info: KeyInfo,
    at: Instant,
}

impl<A: Aws> Enforcer<A> {
    /// The enforcer with the mandated key already resolved as `key`, from now (none: it resolves
    /// the key itself on first use).
    pub fn with_resolution(self, key: Option<KeyInfo>) -> Self {
        if let Some(info) = key {
            *lock(&self.resolved) = Some(Resolved {
                info,
                at: Instant::now(),
            });
        }
        self
    }

    /// The mandated key resolved with kms:DescribeKey, again once the last resolution is
    /// `KEY_CACHE_SECONDS` old: an alias re-pointed to another key takes effect in warm
    /// containers within that time. A transient failure to resolve again (throttling, an
    /// outage, the deadline) keeps the last resolution, logged; a lasting one (the alias is
    /// gone, access is denied) fails the event. `None` only for an AWS managed alias
    /// (`alias/aws/...`) that does not exist yet: AWS creates it on first use.
    pub(super) async fn mandated_key(
        &self,
        run: &mut EventRun<'_>,
    ) -> Result<Option<KeyInfo>, Halt> {
        let last = lock(&self.resolved).clone();
        if let Some(last) = &last
            && last.at.elapsed() < self.rules.key_ttl
        {
            return Ok(Some(last.info.clone()));
        }
        let configured = self.key.configured();
        match self
            .paced(
                run.deadline,
                &mut *run.random,
                Operation::DescribeKey,
                || self.aws.describe_key(configured),
            )
            .await
        {
            Ok((info, _)) => {
                if let Some(last) = &last
                    && last.info.arn != info.arn
                {
                    tracing::warn!(key = configured, was = %last.info.arn, now = %info.arn, "the mandated key resolves to another key now");
                    run.key_changed_from = Some(last.info.arn.clone());
                }
                *lock(&self.resolved) = Some(Resolved {
                    info: info.clone(),
                    at: Instant::now(),
                });
                Ok(Some(info))
            }
            Err(e)
                if last.is_some()
                    && !matches!(
                        e,
                        CallError::Failed {
                            exhausted: false,
                            ..
                        }
                    ) =>
            {
                let last = last.map(|l| l.info);
                tracing::warn!(key = configured, error = %e, resolved = ?last.as_ref().map(|l| &l.arn), "cannot resolve the mandated key again; using the last resolution");
                Ok(last)
            }
            Err(e) if e.aws().code() == KMS_NOT_FOUND && self.key.form().is_aws_managed_alias() => {
                tracing::info!(
                    key = configured,
                    "AWS managed key not created yet; it is created on first use"
                );
                Ok(None)
            }
            Err(e) => Err(Halt::Failed {
                code: e.aws().code().to_owned(),
                reason: format!("cannot resolve the mandated key {configured}: {e}"),
            }),
        }
    }
}
