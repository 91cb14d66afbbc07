//! The one outcome reported per event.

use crate::model::event::Trigger;
use crate::model::resource::Service;
use serde::Serialize;
use std::fmt;

/// What happened to one event. Every event gets exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The mandated key was applied and confirmed.
    Remediated,
    /// The resource already uses the mandated key; no write call was made.
    AlreadyCompliant,
    /// The resource is exempt from enforcement.
    Exempt,
    /// Server-side encryption does not apply (a Firehose stream with a Kinesis, MSK or database
    /// source, or one whose creation failed).
    NotApplicable,
    /// The event needs no action (a failed API call, an event type that is not handled).
    Ignored,
    /// The resource was deleted before the enforcer got to it.
    Gone,
    /// Report mode (`ENFORCEMENT_MODE=report`): the resource is not on the mandated key and
    /// would have been changed; no write call was made.
    Noncompliant,
    /// The event names a resource in a partition, account or region this function does not
    /// serve; no AWS call was made and the event is returned as an error.
    Refused,
    /// The key could not be applied or confirmed; the event is returned as an error.
    Failed,
    /// Something keeps reverting the resource's encryption: the enforcer re-applied the key as
    /// often as `FLAP_THRESHOLD` allows in 24 hours and stopped, before AWS's own quota is spent.
    /// The event is returned as an error; the reason names who reverts it.
    Flapping,
}

impl Outcome {
    /// The name used in logs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Remediated => "remediated",
            Self::AlreadyCompliant => "already_compliant",
            Self::Exempt => "exempt",
            Self::NotApplicable => "not_applicable",
            Self::Ignored => "ignored",
            Self::Gone => "gone",
            Self::Noncompliant => "noncompliant",
            Self::Refused => "refused",
            Self::Failed => "failed",
            Self::Flapping => "flapping",
        }
    }

    /// Whether the event is returned as an error: the resource was left off the mandated key
    /// by something the enforcer could not overcome.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Failed | Self::Flapping)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the enforcer found before it changed anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct InitialState {
    /// `StreamStatus` / `DeliveryStreamStatus`.
    pub status: String,
    /// `NONE` or `KMS` (Kinesis); the SSE status and key type (Firehose), or `NONE`.
    pub encryption: String,
    /// The key the resource reported, as it reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// When the resource was created, in seconds since the Unix epoch, as it reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
}

/// The report of one event: what the Lambda logs and returns and `enforcer invoke` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The outcome.
    pub outcome: Outcome,
    /// `kinesis` or `firehose`, when the event is about one of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<Service>,
    /// The resource's ARN, when the event names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The event id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The CloudTrail event name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    /// The mandated key: its key ARN once resolved, else as configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Write calls (Start*Encryption) made for this event, failed ones included.
    pub attempts: u32,
    /// Why, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The AWS error code (or transport name) behind a `failed` or `gone` outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// The resource's state when first inspected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<InitialState>,
    /// The infrastructure-as-code tool recognised as the caller behind the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creator: Option<String>,
    /// The settle period given to the tool's resource before deciding, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settle_seconds: Option<u64>,
    /// The key ARN the mandated key resolved to before, when this event found it resolving to
    /// another (`key`): the alias was re-pointed. Counted as `MandatedKeyChanged`, which alarms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_changed_from: Option<String>,
}

impl Report {
    /// A report of `outcome` that names nothing else yet: each case sets the fields it knows
    /// (`Report { reason: ..., ..Report::new(outcome) }`).
    pub fn new(outcome: Outcome) -> Self {
        Self {
            outcome,
            service: None,
            resource: None,
            event_id: None,
            event_name: None,
            key: None,
            attempts: 0,
            reason: None,
            error_code: None,
            found: None,
            creator: None,
            settle_seconds: None,
            key_changed_from: None,
        }
    }

    /// A report of `outcome` about the resource, event and call `trigger` names.
    pub fn about(trigger: &Trigger, outcome: Outcome) -> Self {
        Self {
            service: Some(trigger.resource.service),
            resource: Some(trigger.resource.arn()),
            event_id: trigger.event_id.clone(),
            event_name: Some(trigger.event_name.clone()),
            ..Self::new(outcome)
        }
    }

    /// The report of an event that needs no action.
    pub fn ignored(
        event_id: Option<String>,
        service: Option<Service>,
        event_name: Option<String>,
        reason: String,
    ) -> Self {
        Self {
            service,
            event_id,
            event_name,
            reason: Some(reason),
            ..Self::new(Outcome::Ignored)
        }
    }

    /// The report of an event whose resource is not the function's to act on.
    pub fn refused(trigger: &Trigger, reason: String) -> Self {
        Self {
            reason: Some(reason),
            ..Self::about(trigger, Outcome::Refused)
        }
    }

    /// Logs the report as one structured line.
    pub fn log(&self) {
        let level_failed = self.outcome.is_failure() || self.outcome == Outcome::Refused;
        macro_rules! emit {
            ($level:ident) => {
                tracing::$level!(
                    outcome = self.outcome.as_str(),
                    service = self.service.map(|s| s.to_string()),
                    resource = self.resource.as_deref(),
                    event_id = self.event_id.as_deref(),
                    event_name = self.event_name.as_deref(),
                    key = self.key.as_deref(),
                    attempts = self.attempts,
                    reason = self.reason.as_deref(),
                    error_code = self.error_code.as_deref(),
                    creator = self.creator.as_deref(),
                    settle_seconds = self.settle_seconds,
                    "outcome"
                )
            };
        }
        if level_failed {
            emit!(error);
        } else {
            emit!(info);
        }
    }
}
