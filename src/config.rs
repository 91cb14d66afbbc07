//! Configuration from the environment, read once and validated at start.

use crate::model::exemption::ExemptTag;
use crate::model::key::MandatedKey;
use crate::policy::retry::{PolicyError, RetryPolicy};

/// The variable naming the mandated KMS key.
pub const MANDATED_KMS_KEY: &str = "MANDATED_KMS_KEY";
/// The variable giving regions their own mandated key, as `region=key,region=key`.
pub const MANDATED_KMS_KEYS: &str = "MANDATED_KMS_KEYS";
/// The variable holding the key ARN that `MANDATED_KMS_KEY` must name in the function's region
/// (the template scopes the function's KMS permissions to it).
pub const MANDATED_KMS_KEY_ARN: &str = "MANDATED_KMS_KEY_ARN";
/// The variable holding the retry policy JSON.
pub const RETRY_POLICY: &str = "RETRY_POLICY";
/// The variable holding the log level.
pub const LOG_LEVEL: &str = "LOG_LEVEL";
/// The variable naming the exemption tag.
pub const EXEMPT_TAG: &str = "EXEMPT_TAG";
/// The variable choosing between enforcing and reporting.
pub const ENFORCEMENT_MODE: &str = "ENFORCEMENT_MODE";
/// The variable naming the CloudWatch namespace of the metrics.
pub const METRICS_NAMESPACE: &str = "METRICS_NAMESPACE";
/// The variable holding the share of the documented per-account API limits the function uses.
pub const RATE_SHARE: &str = "RATE_SHARE";
/// The variable holding the function's reserved concurrency, when it has one.
pub const RESERVED_CONCURRENCY: &str = "RESERVED_CONCURRENCY";
/// The variable naming the role the enforcer assumes in member accounts (central mode).
pub const TARGET_ROLE_NAME: &str = "TARGET_ROLE_NAME";
/// The variable holding the external id the member role's trust policy requires.
pub const TARGET_EXTERNAL_ID: &str = "TARGET_EXTERNAL_ID";
/// The variable listing the accounts the enforcer may act in (central mode).
pub const ALLOWED_ACCOUNTS: &str = "ALLOWED_ACCOUNTS";
/// The variable listing the regions the enforcer may act in and sweeps (central mode).
pub const ALLOWED_REGIONS: &str = "ALLOWED_REGIONS";
/// The variable naming the AWS Organizations organisation the member accounts belong to.
pub const ORGANIZATION_ID: &str = "ORGANIZATION_ID";
/// The variable listing the infrastructure-as-code tools to recognise (`model/caller.rs`).
pub const IAC_TOOLS: &str = "IAC_TOOLS";
/// The variable holding the settle period given to a tool's resource, in seconds.
pub const IAC_SETTLE_SECONDS: &str = "IAC_SETTLE_SECONDS";
/// The settle period when `IAC_SETTLE_SECONDS` is not set: a tool's resource must stay ACTIVE
/// this long, unchanged, before the enforcer writes. It outlasts the longest gap a tool leaves
/// between two of its own post-create steps (Terraform's waiters poll up to 10 s apart).
pub const DEFAULT_SETTLE_SECONDS: u64 = 30;
/// The variable naming the DynamoDB table of the re-application ledger ([`crate::aws::ledger`]).
pub const LEDGER_TABLE: &str = "LEDGER_TABLE";
/// The variable holding how many times in 24 hours the key may be re-applied to one resource.
pub const FLAP_THRESHOLD: &str = "FLAP_THRESHOLD";
/// Re-applications per resource per 24 hours when `FLAP_THRESHOLD` is not set: below Kinesis's
/// 25 new keys per stream and, at two calls a cycle (their Stop, our Start), below Firehose's 25
/// Start and Stop calls per delivery stream.
pub const DEFAULT_FLAP_THRESHOLD: u32 = 10;
/// The highest threshold: one below Kinesis's quota of 25.
pub const MAX_FLAP_THRESHOLD: u32 = 24;
/// The longest settle period: it must fit inside one invocation with room to apply and confirm.
pub const MAX_SETTLE_SECONDS: u64 = 600;
/// The variable holding how long a resolution of the mandated key is used, in seconds.
pub const KEY_CACHE_SECONDS: &str = "KEY_CACHE_SECONDS";
/// How long a resolution of the mandated key is used when `KEY_CACHE_SECONDS` is not set: an
/// alias re-pointed to another key takes effect in every warm container within 5 minutes, for
/// one kms:DescribeKey per container and place in that time.
pub const DEFAULT_KEY_CACHE_SECONDS: u64 = 300;
/// The longest `KEY_CACHE_SECONDS`: a day.
pub const MAX_KEY_CACHE_SECONDS: u64 = 86_400;
/// The variable holding the URL of the sweep queue: with it, a scheduled sweep plans one message
/// per account and region there instead of sweeping ([`crate::sweep::plan`]).
pub const SWEEP_QUEUE_URL: &str = "SWEEP_QUEUE_URL";
/// The variable holding the URL of the events queue (a FIFO queue): with it, an event from
/// EventBridge is not handled where it arrives but routed there, in its account and region's
/// message group, and handled when the queue hands it back.
pub const EVENTS_QUEUE_URL: &str = "EVENTS_QUEUE_URL";
/// The variable holding the URL of the failed-events queue: an event from the events queue that
/// fails is kept there as Lambda's on-failure destination would keep it.
pub const FAILED_EVENTS_QUEUE_URL: &str = "FAILED_EVENTS_QUEUE_URL";
/// The variable holding the URL of the re-check queue (a standard queue): an event from the
/// events queue whose stream is not ready waits there, not in the invocation, and goes back to
/// its place's message group when the wait is over.
pub const RECHECK_QUEUE_URL: &str = "RECHECK_QUEUE_URL";
/// The variable holding how many invocations can act in one account and region at once
/// (`PLACE_CONCURRENCY`): each paces its calls there at `RATE_SHARE` divided by it.
pub const PLACE_CONCURRENCY: &str = "PLACE_CONCURRENCY";
/// The variable holding the age, in seconds, past which a resource a sweep had to remediate
/// counts as missed by the event path (`MissedByEvents`); 0 counts none.
pub const MISSED_EVENT_SECONDS: &str = "MISSED_EVENT_SECONDS";
/// `MISSED_EVENT_SECONDS` when it is not set: 15 minutes, far past the seconds an event takes
/// to arrive and its retries.
pub const DEFAULT_MISSED_EVENT_SECONDS: u64 = 900;
/// The share of the per-account limits used when `RATE_SHARE` is not set.
pub const DEFAULT_RATE_SHARE: f64 = crate::policy::ratelimit::DEFAULT_SHARE;
/// The namespace used when `METRICS_NAMESPACE` is not set.
pub const DEFAULT_METRICS_NAMESPACE: &str = "StreamEncryptionEnforcer";

/// Whether the enforcer changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Apply the mandated key (the default).
    Enforce,
    /// Decide and report, but make no write call: what would be changed is `noncompliant`.
    Report,
}

/// The enforcer's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The key every stream must use.
    pub mandated_key: MandatedKey,
    /// Regions with a mandated key of their own (`MANDATED_KMS_KEYS`); the others use
    /// [`Self::mandated_key`].
    pub regional_keys: std::collections::BTreeMap<String, MandatedKey>,
    /// The key ARN `mandated_key` must resolve to in the function's region
    /// (`MANDATED_KMS_KEY_ARN`), checked at cold start.
    pub mandated_key_arn: Option<String>,
    /// How AWS errors are retried.
    pub retry_policy: RetryPolicy,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub log_level: tracing::Level,
    /// Streams carrying this tag are left alone.
    pub exempt_tag: Option<ExemptTag>,
    /// Enforce or only report.
    pub mode: Mode,
    /// CloudWatch namespace of the embedded metrics.
    pub metrics_namespace: String,
    /// The share of the documented per-account limits all of the function's calls together may
    /// use (`RATE_SHARE`, 0.9 by default; above 1 only against endpoints without those limits).
    pub rate_share: f64,
    /// How many containers can run at once (`RESERVED_CONCURRENCY`), when that is bounded: each
    /// one paces itself at `rate_share / containers`, so that together they stay inside it.
    pub containers: Option<u32>,
    /// Central mode: the role assumed in every other account, and who may be acted on.
    pub central: Option<Central>,
    /// The infrastructure-as-code tools recognised from an event's record (`IAC_TOOLS`).
    pub iac_tools: crate::model::caller::Tools,
    /// How long a tool's resource must stay ACTIVE and unchanged before a write
    /// (`IAC_SETTLE_SECONDS`); zero gives tools no settle period.
    pub settle: std::time::Duration,
    /// The re-application ledger's table (`LEDGER_TABLE`); without it nothing is counted.
    pub ledger_table: Option<String>,
    /// A ledger that cannot be read fails the event instead of skipping the flapping check (no
    /// variable: `enforcer replay` sets it, where a skipped check would let replays spend a
    /// flapping stream's 25 keys a day).
    pub ledger_required: bool,
    /// Re-applications allowed per resource per 24 hours (`FLAP_THRESHOLD`).
    pub flap_threshold: u32,
    /// How long a resolution of the mandated key is used (`KEY_CACHE_SECONDS`); zero resolves
    /// it for every event.
    pub key_ttl: std::time::Duration,
    /// The sweep queue (`SWEEP_QUEUE_URL`); without it a scheduled sweep runs in one invocation.
    pub sweep_queue_url: Option<String>,
    /// How old a resource a sweep remediates must be to count as missed by the event path
    /// (`MISSED_EVENT_SECONDS`); `None` counts none.
    pub missed_after: Option<std::time::Duration>,
    /// The events queue (`EVENTS_QUEUE_URL`); without it an event is handled where it arrives.
    pub events_queue_url: Option<String>,
    /// The failed-events queue (`FAILED_EVENTS_QUEUE_URL`).
    pub failed_events_queue_url: Option<String>,
    /// The re-check queue (`RECHECK_QUEUE_URL`); without it an event from the events queue
    /// waits for its stream in the invocation.
    pub recheck_queue_url: Option<String>,
    /// How many invocations can act in one account and region at once (`PLACE_CONCURRENCY`):
    /// when set, each paces itself at `rate_share` divided by it, whatever `containers` is.
    pub place_concurrency: Option<u32>,
}

/// Central mode: one enforcer for many accounts and regions, through a role in each account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Central {
    /// The role's name, the same in every member account (`TARGET_ROLE_NAME`).
    pub role_name: String,
    /// The external id the role's trust policy asks for (`TARGET_EXTERNAL_ID`).
    pub external_id: Option<String>,
    /// The accounts that may be acted on besides the function's own (`ALLOWED_ACCOUNTS`);
    /// `None` when only the organisation bounds them.
    pub accounts: Option<std::collections::BTreeSet<String>>,
    /// The regions that may be acted on and are swept (`ALLOWED_REGIONS`, required: the
    /// function acts on exactly the regions it sweeps).
    pub regions: std::collections::BTreeSet<String>,
    /// The organisation (`ORGANIZATION_ID`, `o-` and 10 to 32 lower-case letters or digits).
    pub organization_id: Option<String>,
}

impl Central {
    /// The role's ARN in `account` of `partition`.
    pub fn role_arn(&self, partition: &str, account: &str) -> String {
        format!("arn:{partition}:iam::{account}:role/{}", self.role_name)
    }
}

/// `MANDATED_KMS_KEYS`: `region=key` entries separated by commas or white space. A key ARN or
/// alias ARN must be in its entry's region (keys are regional).
fn regional_keys(
    text: &str,
) -> Result<std::collections::BTreeMap<String, MandatedKey>, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        var: MANDATED_KMS_KEYS,
        reason,
    };
    let mut keys = std::collections::BTreeMap::new();
    for entry in items(text) {
        let Some((region, key)) = entry.split_once('=') else {
            return Err(invalid(format!(
                "{entry:?} is not region=key (for example eu-west-1=alias/org-streams)"
            )));
        };
        crate::model::resource::partition_of(region).map_err(|e| invalid(e.to_string()))?;
        let key = MandatedKey::parse(key).map_err(|e| invalid(format!("{region}: {e}")))?;
        let at = crate::model::resource::Location::new("000000000000", region)
            .map_err(|e| invalid(e.to_string()))?;
        let own = key
            .for_location(&at)
            .map_err(|e| invalid(format!("{region}: {e}")))?;
        if own != key {
            return Err(invalid(format!(
                "{region}: {} is a multi-Region key of another region; give its replica in {region}, {}",
                key.configured(),
                own.configured()
            )));
        }
        if keys.insert(region.to_owned(), key).is_some() {
            return Err(invalid(format!("{region} is given twice")));
        }
    }
    Ok(keys)
}

/// A list variable: entries separated by commas or white space, each checked by `valid`.
fn list(
    var: &'static str,
    text: &str,
    valid: impl Fn(&str) -> bool,
    what: &str,
) -> Result<std::collections::BTreeSet<String>, ConfigError> {
    let items: std::collections::BTreeSet<String> = items(text).map(str::to_owned).collect();
    if let Some(bad) = items.iter().find(|item| !valid(item)) {
        return Err(ConfigError::Invalid {
            var,
            reason: format!("{bad:?} is not {what}"),
        });
    }
    if items.is_empty() {
        return Err(ConfigError::Invalid {
            var,
            reason: format!("names no entry; give {what}s separated by commas"),
        });
    }
    Ok(items)
}

/// The entries of a list variable, separated by commas or white space.
fn items(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
}

/// A number variable: `default` when unset, else a number in `range`. `what` says what it is,
/// in the message: "a whole number of seconds" or "a whole number".
fn bounded<T>(
    var: &'static str,
    value: Option<String>,
    range: std::ops::RangeInclusive<T>,
    default: T,
    what: &str,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let Some(text) = value else {
        return Ok(default);
    };
    match text.parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(ConfigError::Invalid {
            var,
            reason: format!(
                "{text:?} is not {what} from {} to {}",
                range.start(),
                range.end()
            ),
        }),
    }
}

/// Checks a name variable's value: `len` characters, each alphanumeric or one of `extra`.
/// `what` names the kind of name, in the message.
fn charset(
    var: &'static str,
    value: &str,
    len: std::ops::RangeInclusive<usize>,
    extra: &str,
    what: &str,
) -> Result<(), ConfigError> {
    let valid = len.contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.as_bytes().contains(&b));
    if valid {
        return Ok(());
    }
    let allowed: Vec<String> = extra.chars().map(String::from).collect();
    Err(ConfigError::Invalid {
        var,
        reason: format!(
            "{value:?} is not {what} ({} to {} of A-Z a-z 0-9 {})",
            len.start(),
            len.end(),
            allowed.join(" ")
        ),
    })
}

/// Checks a queue URL variable: `https://` (or `http://`, which only a local endpoint serves),
/// then a host, an account id and a queue name, as SQS's GetQueueUrl returns it.
pub(crate) fn queue_url(var: &'static str, url: &str) -> Result<(), ConfigError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let parts: Vec<&str> = rest.map(|r| r.split('/').collect()).unwrap_or_default();
    let valid = match parts.as_slice() {
        [host, account, name] => {
            !host.is_empty()
                && crate::model::resource::validate_account(account).is_ok()
                && (1..=80).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        }
        _ => false,
    };
    if valid {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        var,
        reason: format!(
            "{url:?} is not a queue URL (https://sqs.<region>.amazonaws.com/<account>/<queue name>)"
        ),
    })
}

fn central(set: &impl Fn(&str) -> Option<String>) -> Result<Option<Central>, ConfigError> {
    let accounts = set(ALLOWED_ACCOUNTS)
        .map(|text| {
            list(
                ALLOWED_ACCOUNTS,
                &text,
                |a| crate::model::resource::validate_account(a).is_ok(),
                "a 12-digit account id",
            )
        })
        .transpose()?;
    let regions = set(ALLOWED_REGIONS)
        .map(|text| {
            list(
                ALLOWED_REGIONS,
                &text,
                |r| crate::model::resource::partition_of(r).is_ok(),
                "a region (e.g. eu-west-1)",
            )
        })
        .transpose()?;
    let organization_id = set(ORGANIZATION_ID);
    if let Some(id) = &organization_id {
        let body = id.strip_prefix("o-").unwrap_or("");
        let valid = (10..=32).contains(&body.len())
            && body
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !valid {
            return Err(ConfigError::Invalid {
                var: ORGANIZATION_ID,
                reason: format!("{id:?} is not an organisation id (o- and 10 to 32 of a-z 0-9)"),
            });
        }
    }
    let external_id = set(TARGET_EXTERNAL_ID);
    if let Some(id) = &external_id {
        charset(
            TARGET_EXTERNAL_ID,
            id,
            2..=1224,
            "+=,.@:/-_",
            "an external id",
        )?;
    }
    let Some(role_name) = set(TARGET_ROLE_NAME) else {
        let stray = [
            (ALLOWED_ACCOUNTS, accounts.is_some()),
            (ALLOWED_REGIONS, regions.is_some()),
            (ORGANIZATION_ID, organization_id.is_some()),
            (TARGET_EXTERNAL_ID, external_id.is_some()),
        ];
        if let Some((var, _)) = stray.iter().find(|(_, is_set)| *is_set) {
            return Err(ConfigError::Invalid {
                var,
                reason: format!(
                    "only applies in central mode, and {TARGET_ROLE_NAME} is not set; \
                     without it the function acts in its own account and region only"
                ),
            });
        }
        return Ok(None);
    };
    charset(
        TARGET_ROLE_NAME,
        &role_name,
        1..=64,
        "+=,.@-_",
        "a role name",
    )?;
    // Acting on every region's events while sweeping only some would leave the others'
    // existing streams unchecked; listing the account's enabled regions would need
    // account:ListRegions in every member account. The regions are named instead.
    let Some(regions) = regions else {
        return Err(ConfigError::Invalid {
            var: ALLOWED_REGIONS,
            reason: format!(
                "central mode needs the regions it acts in and sweeps: list the regions the \
                 member stack is deployed to (with {TARGET_ROLE_NAME} set, events from any other \
                 region are refused)"
            ),
        });
    };
    if accounts.is_none() && organization_id.is_none() {
        return Err(ConfigError::Invalid {
            var: TARGET_ROLE_NAME,
            reason: format!(
                "central mode needs {ALLOWED_ACCOUNTS} or {ORGANIZATION_ID} (or both): \
                 without either, an event from any account would be acted on"
            ),
        });
    }
    Ok(Some(Central {
        role_name,
        external_id,
        accounts,
        regions,
        organization_id,
    }))
}

/// A configuration value is missing or invalid. The message names the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set or empty.
    #[error("{0} is required and not set")]
    Missing(&'static str),
    /// The mandated key is not one of the accepted forms.
    #[error("{MANDATED_KMS_KEY}: {0}")]
    Key(#[source] crate::model::resource::InvalidValue),
    /// The retry policy is invalid.
    #[error("{RETRY_POLICY}: {0}")]
    Policy(#[source] PolicyError),
    /// The log level is not a level.
    #[error("{LOG_LEVEL}: {0:?} is not one of error, warn, info, debug, trace")]
    LogLevel(String),
    /// Another variable has a value it cannot take.
    #[error("{var}: {reason}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Every variable the product reads, and only those: what `enforcer --function` takes from a
/// deployed function's environment (never `AWS_*` or a shell's variables).
pub const VARIABLES: [&str; 26] = [
    MANDATED_KMS_KEY,
    MANDATED_KMS_KEYS,
    MANDATED_KMS_KEY_ARN,
    RETRY_POLICY,
    LOG_LEVEL,
    EXEMPT_TAG,
    ENFORCEMENT_MODE,
    METRICS_NAMESPACE,
    RATE_SHARE,
    RESERVED_CONCURRENCY,
    TARGET_ROLE_NAME,
    TARGET_EXTERNAL_ID,
    ALLOWED_ACCOUNTS,
    ALLOWED_REGIONS,
    ORGANIZATION_ID,
    IAC_TOOLS,
    IAC_SETTLE_SECONDS,
    LEDGER_TABLE,
    FLAP_THRESHOLD,
    KEY_CACHE_SECONDS,
    SWEEP_QUEUE_URL,
    EVENTS_QUEUE_URL,
    FAILED_EVENTS_QUEUE_URL,
    RECHECK_QUEUE_URL,
    PLACE_CONCURRENCY,
    MISSED_EVENT_SECONDS,
];

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let set = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let key = set(MANDATED_KMS_KEY).ok_or(ConfigError::Missing(MANDATED_KMS_KEY))?;
        let mandated_key = MandatedKey::parse(&key).map_err(ConfigError::Key)?;
        let regional_keys = match set(MANDATED_KMS_KEYS) {
            None => std::collections::BTreeMap::new(),
            Some(text) => regional_keys(&text)?,
        };
        let mandated_key_arn = set(MANDATED_KMS_KEY_ARN);
        if let Some(arn) = &mandated_key_arn
            && !matches!(
                crate::model::key::KeyForm::parse(arn),
                Ok(crate::model::key::KeyForm::KeyArn { .. })
            )
        {
            return Err(ConfigError::Invalid {
                var: MANDATED_KMS_KEY_ARN,
                reason: format!(
                    "{arn:?} is not a key ARN (arn:<partition>:kms:<region>:<account>:key/<id>)"
                ),
            });
        }
        let retry_policy = match set(RETRY_POLICY) {
            Some(json) => RetryPolicy::parse(&json).map_err(ConfigError::Policy)?,
            None => RetryPolicy::default_policy(),
        };
        let log_level = match set(LOG_LEVEL) {
            None => tracing::Level::INFO,
            Some(level) => level.parse().map_err(|_| ConfigError::LogLevel(level))?,
        };
        let exempt_tag = set(EXEMPT_TAG)
            .map(|tag| ExemptTag::parse(&tag))
            .transpose()
            .map_err(|reason| ConfigError::Invalid {
                var: EXEMPT_TAG,
                reason,
            })?;
        let mode = match set(ENFORCEMENT_MODE).as_deref() {
            None | Some("enforce") => Mode::Enforce,
            Some("report") => Mode::Report,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: ENFORCEMENT_MODE,
                    reason: format!("{other:?} is not enforce or report"),
                });
            }
        };
        let metrics_namespace =
            set(METRICS_NAMESPACE).unwrap_or_else(|| DEFAULT_METRICS_NAMESPACE.to_owned());
        charset(
            METRICS_NAMESPACE,
            &metrics_namespace,
            1..=255,
            ".-_/#:",
            "a CloudWatch namespace",
        )?;
        let rate_share = match set(RATE_SHARE) {
            None => DEFAULT_RATE_SHARE,
            Some(text) => match text.parse::<f64>() {
                Ok(share) if share.is_finite() && share > 0.0 && share <= 100.0 => share,
                _ => {
                    return Err(ConfigError::Invalid {
                        var: RATE_SHARE,
                        reason: format!(
                            "{text:?} is not a number above 0 and at most 100 (0.9 = 90% of the documented limits)"
                        ),
                    });
                }
            },
        };
        let containers = match set(RESERVED_CONCURRENCY) {
            None => None,
            given => Some(bounded(
                RESERVED_CONCURRENCY,
                given,
                1..=100_000u32,
                1,
                "a whole number",
            )?),
        };
        let central = central(&set)?;
        // Empty is unset (CloudFormation passes every variable, empty when not given); `none`
        // recognises no tool.
        let iac_tools = match set(IAC_TOOLS).as_deref() {
            None => crate::model::caller::Tools::default_tools(),
            Some("none") => crate::model::caller::Tools::none(),
            Some(text) => {
                crate::model::caller::Tools::parse(text).map_err(|reason| ConfigError::Invalid {
                    var: IAC_TOOLS,
                    reason,
                })?
            }
        };
        let seconds = "a whole number of seconds";
        let settle = bounded(
            IAC_SETTLE_SECONDS,
            set(IAC_SETTLE_SECONDS),
            0..=MAX_SETTLE_SECONDS,
            DEFAULT_SETTLE_SECONDS,
            seconds,
        )?;
        let ledger_table = set(LEDGER_TABLE);
        if let Some(table) = &ledger_table {
            charset(LEDGER_TABLE, table, 3..=255, "_.-", "a DynamoDB table name")?;
        }
        // The highest threshold is one below Kinesis's 25 new keys per stream per 24 hours.
        let flap_threshold = bounded(
            FLAP_THRESHOLD,
            set(FLAP_THRESHOLD),
            1..=MAX_FLAP_THRESHOLD,
            DEFAULT_FLAP_THRESHOLD,
            "a whole number",
        )?;
        let key_ttl = bounded(
            KEY_CACHE_SECONDS,
            set(KEY_CACHE_SECONDS),
            0..=MAX_KEY_CACHE_SECONDS,
            DEFAULT_KEY_CACHE_SECONDS,
            seconds,
        )?;
        let sweep_queue_url = set(SWEEP_QUEUE_URL);
        if let Some(url) = &sweep_queue_url {
            queue_url(SWEEP_QUEUE_URL, url)?;
        }
        let events_queue_url = set(EVENTS_QUEUE_URL);
        if let Some(url) = &events_queue_url {
            queue_url(EVENTS_QUEUE_URL, url)?;
            if !url.ends_with(".fifo") {
                return Err(ConfigError::Invalid {
                    var: EVENTS_QUEUE_URL,
                    reason: format!(
                        "{url:?} is not a FIFO queue (its name ends in .fifo): only a FIFO queue \
                         hands out one account and region's events one batch at a time"
                    ),
                });
            }
        }
        let failed_events_queue_url = set(FAILED_EVENTS_QUEUE_URL);
        if let Some(url) = &failed_events_queue_url {
            queue_url(FAILED_EVENTS_QUEUE_URL, url)?;
        }
        let recheck_queue_url = set(RECHECK_QUEUE_URL);
        if let Some(url) = &recheck_queue_url {
            queue_url(RECHECK_QUEUE_URL, url)?;
        }
        let place_concurrency = match set(PLACE_CONCURRENCY) {
            None => None,
            given => Some(bounded(
                PLACE_CONCURRENCY,
                given,
                1..=1000u32,
                1,
                "a whole number",
            )?),
        };
        let missed_after = bounded(
            MISSED_EVENT_SECONDS,
            set(MISSED_EVENT_SECONDS),
            0..=31_536_000,
            DEFAULT_MISSED_EVENT_SECONDS,
            seconds,
        )?;
        Ok(Self {
            events_queue_url,
            failed_events_queue_url,
            recheck_queue_url,
            place_concurrency,
            sweep_queue_url,
            missed_after: (missed_after > 0).then(|| std::time::Duration::from_secs(missed_after)),
            key_ttl: std::time::Duration::from_secs(key_ttl),
            central,
            ledger_table,
            ledger_required: false,
            flap_threshold,
            iac_tools,
            settle: std::time::Duration::from_secs(settle),
            mandated_key,
            regional_keys,
            mandated_key_arn,
            retry_policy,
            log_level,
            exempt_tag,
            mode,
            metrics_namespace,
            rate_share,
            containers,
        })
    }

    /// The mandated key for resources at `at`: the region's own from `MANDATED_KMS_KEYS`, else
    /// `MANDATED_KMS_KEY` as it applies there ([`MandatedKey::for_location`]). `Err` says why
    /// there is none.
    pub fn mandated_key_at(
        &self,
        at: &crate::model::resource::Location,
    ) -> Result<MandatedKey, String> {
        match self.regional_keys.get(&at.region) {
            Some(key) => Ok(key.clone()),
            None => self.mandated_key.for_location(at),
        }
    }

    /// The share of the per-account limits one container paces itself at.
    /// `PLACE_CONCURRENCY` when set (at most that many invocations act in one place at once),
    /// else `RESERVED_CONCURRENCY` (at most that many at all).
    pub fn container_share(&self) -> f64 {
        let at_once = self.place_concurrency.or(self.containers).unwrap_or(1);
        self.rate_share / f64::from(at_once)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn regions_get_their_own_key_and_the_others_the_default_as_it_applies_there() {
        let eu = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let config = config(&[
            (
                "MANDATED_KMS_KEY",
                "arn:aws:kms:us-east-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab",
            ),
            (
                "MANDATED_KMS_KEYS",
                &format!("eu-west-1={eu} ap-south-1=alias/india-streams"),
            ),
        ])
        .unwrap();
        let at = |region| crate::model::resource::Location::new("111111111111", region).unwrap();
        assert_eq!(
            config
                .mandated_key_at(&at("eu-west-1"))
                .unwrap()
                .configured(),
            eu
        );
        assert_eq!(
            config
                .mandated_key_at(&at("ap-south-1"))
                .unwrap()
                .configured(),
            "alias/india-streams"
        );
        // Elsewhere the default, here a multi-Region key: its replica in that region.
        assert_eq!(
            config
                .mandated_key_at(&at("us-west-2"))
                .unwrap()
                .configured(),
            "arn:aws:kms:us-west-2:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab"
        );
        assert!(config.mandated_key_arn.is_none());
    }

    #[test]
    fn a_number_out_of_its_range_names_the_range() {
        let err = bounded("N", Some("11".into()), 1..=10u32, 5, "a whole number").unwrap_err();
        assert_eq!(
            err.to_string(),
            "N: \"11\" is not a whole number from 1 to 10"
        );
        assert_eq!(
            bounded("N", None, 1..=10u32, 5, "a whole number").unwrap(),
            5
        );
        assert_eq!(
            bounded("N", Some("10".into()), 1..=10u32, 5, "x").unwrap(),
            10
        );
        assert!(bounded("N", Some("-1".into()), 0..=10u64, 5, "x").is_err());
    }

    #[test]
    fn the_sweep_queue_and_the_missed_event_age_are_read() {
        let plain = config(&[("MANDATED_KMS_KEY", "alias/org")]).unwrap();
        assert_eq!(plain.sweep_queue_url, None);
        assert_eq!(
            plain.missed_after,
            Some(std::time::Duration::from_secs(900))
        );
        let url = "https://sqs.eu-west-1.amazonaws.com/123456789012/enforcer-sweep";
        let set = config(&[
            ("MANDATED_KMS_KEY", "alias/org"),
            ("SWEEP_QUEUE_URL", url),
            ("MISSED_EVENT_SECONDS", "0"),
        ])
        .unwrap();
        assert_eq!(set.sweep_queue_url.as_deref(), Some(url));
        assert_eq!(set.missed_after, None);
        // A local endpoint's URL, as moto and ElasticMQ give it.
        assert!(queue_url("V", "http://127.0.0.1:4566/123456789012/q.fifo").is_ok());
        assert!(queue_url("V", "https://sqs.eu-west-1.amazonaws.com/123456789012/a/b").is_err());
    }

    #[test]
    fn a_name_outside_its_characters_names_them() {
        let err = charset("T", "a b", 3..=255, "_.-", "a table name").unwrap_err();
        assert_eq!(
            err.to_string(),
            "T: \"a b\" is not a table name (3 to 255 of A-Z a-z 0-9 _ . -)"
        );
        assert!(charset("T", "ab", 3..=255, "_.-", "a table name").is_err());
        assert!(charset("T", "a_b.c-d", 3..=255, "_.-", "a table name").is_ok());
    }

    #[test]
    fn errors_name_the_variable() {
        let cases: [(&[(&str, &str)], &str); 28] = [
            (
                &[
                    ("MANDATED_KMS_KEY", "alias/org"),
                    (
                        "SWEEP_QUEUE_URL",
                        "sqs.us-east-1.amazonaws.com/123456789012/q",
                    ),
                ],
                "SWEEP_QUEUE_URL:",
            ),
            (
                &[
                    ("MANDATED_KMS_KEY", "alias/org"),
                    (
                        "SWEEP_QUEUE_URL",
                        "https://sqs.us-east-1.amazonaws.com/12345/q",
                    ),
                ],
                "SWEEP_QUEUE_URL:",
            ),
            (
                &[
                    ("MANDATED_KMS_KEY", "alias/org"),
                    ("MISSED_EVENT_SECONDS", "-1"),
                ],
                "MISSED_EVENT_SECONDS:",
            ),
            (
                &[("MANDATED_KMS_KEY", "alias/org"), ("FLAP_THRESHOLD", "25")],
                "FLAP_THRESHOLD:",
            ),
            (
                &[("MANDATED_KMS_KEY", "alias/org"), ("FLAP_THRESHOLD", "0")],
                "FLAP_THRESHOLD:",
            ),
            (
                &[("MANDATED_KMS_KEY", "alias/org"), ("LEDGER_TABLE", "a b")],
                "LEDGER_TABLE:",
            ),
            (
                &[
                    ("MANDATED_KMS_KEY", "alias/org"),
                    ("IAC_TOOLS", "Terraform"),
                ],
                "IAC_TOOLS:",
            ),
            (
                &[
                    ("MANDATED_KMS_KEY", "alias/org"),
                    ("IAC_SETTLE_SECONDS", "601"),
                ],
                "IAC_SETTLE_SECONDS:",
            ),
            (
                &[
                    ("MANDATED_KMS_KEY", "alias/org"),
                    ("KEY_CACHE_SECONDS", "86401"),
                ],
                "KEY_CACHE_SECONDS:",
            ),
            (
                &[
                    ("MANDATED_KMS_KEY", "alias/org"),
                    (
                        "MANDATED_KMS_KEYS",
                        "eu-west-1=arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                    ),
                ],
                "MANDATED_KMS_KEYS: eu-west-1: the mandated key",
            ),
            (
                &[
                    ("MANDATED_KMS_KEY", "alias/org"),
                    ("MANDATED_KMS_KEYS", "eu-west-1"),
                ],
                "MANDATED_KMS_KEYS:",
            ),
            (
                &[
                    ("MANDATED_KMS_KEY", "alias/org"),
                    ("MANDATED_KMS_KEYS", "eu-west-1=alias/a,eu-west-1=alias/b"),
                ],
                "MANDATED_KMS_KEYS: eu-west-1 is given twice",
            ),
            (
                &[
                    ("MANDATED_KMS_KEY", "alias/org"),
                    ("MANDATED_KMS_KEY_ARN", "alias/org"),
                ],
                "MANDATED_KMS_KEY_ARN:",
            ),
            (
                &[
                    ("MANDATED_KMS_KEY", "alias/org"),
                    ("KEY_CACHE_SECONDS", "five minutes"),
                ],
                "KEY_CACHE_SECONDS:",
            ),
            (
                &[
                    ("MANDATED_KMS_KEY", "alias/org"),
                    ("IAC_SETTLE_SECONDS", "1.5"),
                ],
                "IAC_SETTLE_SECONDS:",
            ),
            (
                &[("MANDATED_KMS_KEY", "alias/org"), ("RATE_SHARE", "0")],
                "RATE_SHARE:",
            ),
            (
                &[("MANDATED_KMS_KEY", "alias/org"), ("RATE_SHARE", "NaN")],
                "RATE_SHARE:",
            ),
            (
                &[("MANDATED_KMS_KEY", "alias/org"), ("RATE_SHARE", "101")],
                "RATE_SHARE:",
            ),
            (
                &[
                    ("MANDATED_KMS_KEY", "alias/org"),
                    ("RESERVED_CONCURRENCY", "0"),
                ],
                "RESERVED_CONCURRENCY:",
            ),
            (
                &[
                    ("MANDATED_KMS_KEY", "alias/org"),
                    ("RESERVED_CONCURRENCY", "-3"),
                ],
                "RESERVED_CONCURRENCY:",
            ),
            (
                &[("MANDATED_KMS_KEY", "alias/org"), ("EXEMPT_TAG", "=x")],
                "EXEMPT_TAG:",
            ),
            (
                &[
                    ("MANDATED_KMS_KEY", "alias/org"),
                    ("ENFORCEMENT_MODE", "dry"),
                ],
                "ENFORCEMENT_MODE:",
            ),
            (
                &[
                    ("MANDATED_KMS_KEY", "alias/org"),
                    ("METRICS_NAMESPACE", "a b"),
                ],
                "METRICS_NAMESPACE:",
            ),
            (&[], "MANDATED_KMS_KEY is required"),
            (
                &[("MANDATED_KMS_KEY", "  ")],
                "MANDATED_KMS_KEY is required",
            ),
            (&[("MANDATED_KMS_KEY", "my-key")], "MANDATED_KMS_KEY:"),
            (
                &[("MANDATED_KMS_KEY", "alias/org"), ("RETRY_POLICY", "[{}]")],
                "RETRY_POLICY:",
            ),
            (
                &[("MANDATED_KMS_KEY", "alias/org"), ("LOG_LEVEL", "loud")],
                "LOG_LEVEL:",
            ),
        ];
        for (vars, expected) in cases {
            let err = config(vars).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{vars:?}: {err}");
        }
    }

    #[test]
    fn defaults_and_overrides() {
        let c = config(&[("MANDATED_KMS_KEY", "alias/aws/kinesis")]).unwrap();
        assert_eq!(c.mandated_key.configured(), "alias/aws/kinesis");
        assert_eq!(c.retry_policy, RetryPolicy::default_policy());
        assert_eq!(c.log_level, tracing::Level::INFO);
        assert_eq!((c.rate_share, c.containers), (0.9, None));
        assert_eq!(c.container_share(), 0.9);
        assert_eq!((c.exempt_tag, c.mode), (None, Mode::Enforce));
        assert_eq!(c.metrics_namespace, DEFAULT_METRICS_NAMESPACE);
        assert_eq!(c.iac_tools, crate::model::caller::Tools::default_tools());
        assert_eq!(
            c.settle,
            std::time::Duration::from_secs(DEFAULT_SETTLE_SECONDS)
        );
        let c = config(&[
            ("MANDATED_KMS_KEY", "alias/org"),
            ("IAC_TOOLS", "none"),
            ("IAC_SETTLE_SECONDS", "0"),
        ])
        .unwrap();
        assert_eq!(c.iac_tools, crate::model::caller::Tools::none());
        assert_eq!(c.settle, std::time::Duration::ZERO);
        let c = config(&[("MANDATED_KMS_KEY", "alias/org"), ("IAC_TOOLS", "")]).unwrap();
        assert_eq!(c.iac_tools, crate::model::caller::Tools::default_tools());
        let shared = config(&[
            ("MANDATED_KMS_KEY", "alias/org"),
            ("RATE_SHARE", "0.8"),
            ("RESERVED_CONCURRENCY", "4"),
        ])
        .unwrap();
        assert_eq!((shared.rate_share, shared.containers), (0.8, Some(4)));
        assert_eq!(shared.container_share(), 0.2);
        let c = config(&[
            ("MANDATED_KMS_KEY", "alias/org"),
            ("EXEMPT_TAG", "compliance=exempt"),
            ("ENFORCEMENT_MODE", "report"),
            ("METRICS_NAMESPACE", "Security/Streams"),
        ])
        .unwrap();
        assert_eq!(
            c.exempt_tag.map(|t| t.to_string()).as_deref(),
            Some("compliance=exempt")
        );
        assert_eq!(
            (c.mode, c.metrics_namespace.as_str()),
            (Mode::Report, "Security/Streams")
        );
        let c = config(&[
            ("MANDATED_KMS_KEY", "alias/org"),
            (
                "RETRY_POLICY",
                r#"[{"ErrorEquals":["States.ALL"],"MaxAttempts":0}]"#,
            ),
            ("LOG_LEVEL", "debug"),
        ])
        .unwrap();
        assert_eq!(c.retry_policy.retriers().len(), 1);
        assert_eq!(c.log_level, tracing::Level::DEBUG);
    }

    #[test]
    fn central_mode_needs_a_role_and_a_bound_on_the_accounts() {
        let key = ("MANDATED_KMS_KEY", "alias/org");
        let role = ("TARGET_ROLE_NAME", "StreamEncryptionEnforcerMember");
        let c = config(&[
            key,
            role,
            ("TARGET_EXTERNAL_ID", "org-streams-enforcer"),
            (
                "ALLOWED_ACCOUNTS",
                " 111111111111, 222222222222 111111111111",
            ),
            ("ALLOWED_REGIONS", "eu-west-1,us-east-1"),
            ("ORGANIZATION_ID", "o-a1b2c3d4e5"),
        ])
        .unwrap()
        .central
        .unwrap();
        assert_eq!(
            c.accounts.clone().unwrap().into_iter().collect::<Vec<_>>(),
            ["111111111111", "222222222222"]
        );
        assert_eq!(
            c.regions.clone().into_iter().collect::<Vec<_>>(),
            ["eu-west-1", "us-east-1"]
        );
        assert_eq!(c.external_id.as_deref(), Some("org-streams-enforcer"));
        assert_eq!(
            c.role_arn("aws", "111111111111"),
            "arn:aws:iam::111111111111:role/StreamEncryptionEnforcerMember"
        );
        // The organisation alone bounds the accounts too.
        let regions = ("ALLOWED_REGIONS", "eu-west-1");
        let c = config(&[key, role, regions, ("ORGANIZATION_ID", "o-a1b2c3d4e5")]).unwrap();
        assert!(c.central.unwrap().accounts.is_none());
        assert!(config(&[key]).unwrap().central.is_none());

        let cases: [(&[(&str, &str)], &str); 9] = [
            (
                &[key, role, regions],
                "TARGET_ROLE_NAME: central mode needs",
            ),
            (
                &[key, role, ("ALLOWED_ACCOUNTS", "111111111111")],
                "ALLOWED_REGIONS: central mode needs the regions",
            ),
            (
                &[
                    key,
                    ("TARGET_ROLE_NAME", "a/b"),
                    ("ALLOWED_ACCOUNTS", "111111111111"),
                ],
                "TARGET_ROLE_NAME:",
            ),
            (
                &[key, role, ("ALLOWED_ACCOUNTS", "11111111111")],
                "ALLOWED_ACCOUNTS: \"11111111111\"",
            ),
            (
                &[key, role, ("ALLOWED_ACCOUNTS", " , ")],
                "ALLOWED_ACCOUNTS: names no entry",
            ),
            (
                &[key, role, ("ORGANIZATION_ID", "r-abcd")],
                "ORGANIZATION_ID:",
            ),
            (
                &[
                    key,
                    role,
                    ("ORGANIZATION_ID", "o-a1b2c3d4e5"),
                    ("ALLOWED_REGIONS", "europe"),
                ],
                "ALLOWED_REGIONS:",
            ),
            (
                &[
                    key,
                    role,
                    ("ORGANIZATION_ID", "o-a1b2c3d4e5"),
                    ("TARGET_EXTERNAL_ID", "x"),
                ],
                "TARGET_EXTERNAL_ID:",
            ),
            (
                &[key, ("ALLOWED_ACCOUNTS", "111111111111")],
                "ALLOWED_ACCOUNTS: only applies in central mode",
            ),
        ];
        for (vars, expected) in cases {
            let err = config(vars).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{vars:?}: {err}");
        }
    }

    #[test]
    fn every_variable_the_configuration_reads_is_listed_for_function_configs() {
        // Each `pub const NAME: &str = "NAME";` of this file is a variable: all are listed.
        let source = include_str!("config.rs");
        let declared: Vec<&str> = source
            .lines()
            .filter_map(|l| l.strip_prefix("pub const "))
            .filter_map(|l| l.split_once(": &str = \""))
            .filter(|(name, rest)| rest.starts_with(&format!("{name}\";")))
            .map(|(name, _)| name)
            .collect();
        assert_eq!(declared.len(), VARIABLES.len(), "{declared:?}");
        for name in declared {
            assert!(VARIABLES.contains(&name), "{name} is not in VARIABLES");
        }
        assert!(!VARIABLES.iter().any(|v| v.starts_with("AWS_")));
    }
}
