//! The checks before an event's first write (the exemption tag, report mode, the flapping
//! ledger), decided once per event, and the ledger's record of a write that took.

use super::{Enforcer, EventRun, Halt, Verdict};
use crate::aws::Aws;
use crate::aws::error::AwsError;
use crate::config::Mode;
use crate::model::exemption::{Exemption, Tags};
use crate::model::outcome::Outcome;
use crate::model::resource::{Resource, Service};
use crate::policy::ratelimit::Operation;
use std::future::Future;

/// The highest flapping threshold for a Firehose delivery stream: each revert cycle costs two
/// of its 25 Start and Stop calls per 24 hours.
const FIREHOSE_FLAP_LIMIT: u32 = 12;

/// What the checks before the first write decided.
#[derive(Debug, Clone)]
pub(super) enum Gate {
    /// Write the key.
    Write,
    /// The resource carries the exemption tag (this one).
    Exempt(String),
    /// Report mode: no write.
    Report,
    /// The ledger holds the threshold's applications: no write, for this reason.
    Flapping(String),
}

impl Gate {
    /// How the event ends when the gate is closed (`was`: what the resource was, in words);
    /// `None` when the key is to be written.
    pub(super) fn end(self, was: &str) -> Option<Result<Verdict, Halt>> {
        Some(match self {
            Gate::Write => return None,
            Gate::Exempt(tag) => Ok(Verdict(
                Outcome::Exempt,
                format!("{was}; exempt by tag {tag}"),
            )),
            Gate::Report => Ok(Verdict(
                Outcome::Noncompliant,
                format!("{was}; report mode: the mandated key was not applied"),
            )),
            Gate::Flapping(reason) => Err(Halt::Flapping { reason }),
        })
    }
}

impl<A: Aws> Enforcer<A> {
    /// The event's gate: decided on its first call (the exemption tag, from the create call's
    /// own tags when the record has them, else listed; then the mode; then the ledger), the
    /// same answer after. Called only for a resource off the mandated key, so a compliant one
    /// never has its tags listed.
    pub(super) async fn gate<Fut>(
        &self,
        resource: &Resource,
        record_tags: Option<&Tags>,
        run: &mut EventRun<'_>,
        list_operation: Operation,
        list_tags: impl FnMut() -> Fut,
    ) -> Result<Gate, Halt>
    where
        Fut: Future<Output = Result<Tags, AwsError>>,
    {
        if let Some(gate) = &run.gate {
            return Ok(gate.clone());
        }
        let gate = self
            .decide_gate(resource, record_tags, run, list_operation, list_tags)
            .await?;
        run.gate = Some(gate.clone());
        Ok(gate)
    }

    async fn decide_gate<Fut>(
        &self,
        resource: &Resource,
        record_tags: Option<&Tags>,
        run: &mut EventRun<'_>,
        list_operation: Operation,
        list_tags: impl FnMut() -> Fut,
    ) -> Result<Gate, Halt>
    where
        Fut: Future<Output = Result<Tags, AwsError>>,
    {
        if let Some(tag) = &self.rules.exempt_tag {
            // The create call's own tags when they name the exemption, else the resource's.
            let today = crate::model::exemption::today();
            let judged = match record_tags.map(|tags| tag.judge(tags, today)) {
                Some(judged) if judged != Exemption::None => judged,
                _ => tag.judge(&self.read(run, list_operation, list_tags).await?, today),
            };
            match &judged {
                Exemption::Exempt { until, reason } => {
                    let mut said = tag.to_string();
                    if let Some(until) = until {
                        said.push_str(&format!(" until {until}"));
                    }
                    if let Some(reason) = reason {
                        said.push_str(&format!(" ({reason})"));
                    }
                    return Ok(Gate::Exempt(said));
                }
                Exemption::None => {}
                Exemption::Expired { .. } | Exemption::Malformed { .. } => {
                    run.note = judged.why_enforced(tag);
                }
            }
        }
        if self.rules.mode == Mode::Report {
            return Ok(Gate::Report);
        }
        Ok(match self.flapping(resource, run).await? {
            Some(reason) => Gate::Flapping(reason),
            None => Gate::Write,
        })
    }

    /// Why the write must not be made, when the ledger holds `flap_threshold` applications to
    /// the resource in the last 24 hours: something keeps reverting it. A ledger that cannot
    /// be read does not stop the write (AWS's own quota still bounds it); the failure is
    /// logged and said in the report. Where the check is required (`enforcer replay`), it fails
    /// the event instead.
    async fn flapping(
        &self,
        resource: &Resource,
        run: &mut EventRun<'_>,
    ) -> Result<Option<String>, Halt> {
        if !self.aws.counts() {
            return Ok(None);
        }
        let arn = resource.arn();
        let now = std::time::SystemTime::now();
        let recent = match self
            .paced(
                run.deadline,
                &mut *run.random,
                Operation::LedgerQuery,
                || self.aws.recent(&arn, now),
            )
            .await
        {
            Ok((recent, _)) => recent,
            Err(e) if self.rules.ledger_required => {
                return Err(Halt::Failed {
                    reason: format!(
                        "the re-application ledger could not be read ({}); a replay makes no write \
                         without the flapping check",
                        e.aws()
                    ),
                    code: super::codes::LEDGER_UNREADABLE.to_owned(),
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "the re-application ledger could not be read; the key is applied without the flapping check");
                let skipped = format!(
                    "the re-application ledger could not be read ({}), so the flapping check was skipped",
                    e.aws()
                );
                run.note = Some(match run.note.take() {
                    Some(note) => format!("{note}; {skipped}"),
                    None => skipped,
                });
                return Ok(None);
            }
        };
        // Firehose counts Start and Stop together against its 25: a revert cycle costs two.
        let threshold = match resource.service {
            Service::Kinesis => self.rules.flap_threshold,
            Service::Firehose => self.rules.flap_threshold.min(FIREHOSE_FLAP_LIMIT),
        } as usize;
        if recent.len() < threshold {
            return Ok(None);
        }
        let mut by: std::collections::BTreeMap<&str, usize> = Default::default();
        for application in &recent {
            *by.entry(application.reverted_by.as_str()).or_default() += 1;
        }
        let mut by: Vec<(&str, usize)> = by.into_iter().collect();
        by.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        let list: Vec<String> = by.iter().map(|(who, n)| format!("{who} x{n}")).collect();
        Ok(Some(format!(
            "the mandated key was applied {} times in 24 hours (threshold {}), now left off it \
             again by {}; left off by: {}; see docs/errors.md#enforcerflapping",
            recent.len(),
            threshold,
            run.reverted_by,
            list.join(", ")
        )))
    }

    /// Records a write that took in the ledger; a failure is logged, the outcome stands.
    pub(super) async fn record_application(&self, resource: &Resource, run: &mut EventRun<'_>) {
        if !self.aws.counts() {
            return;
        }
        let arn = resource.arn();
        let by = run.reverted_by.clone();
        let now = std::time::SystemTime::now();
        if let Err(e) = self
            .paced(run.deadline, &mut *run.random, Operation::LedgerPut, || {
                self.aws.record(&arn, now, &by)
            })
            .await
        {
            tracing::warn!(error = %e, resource = %arn, "the re-application could not be recorded in the ledger");
        }
    }
}
