//! Configuration from the environment, read once and validated at start.

use crate::key::MandatedKey;
use crate::retry::{PolicyError, RetryPolicy};

/// The variable naming the mandated KMS key.
pub const MANDATED_KMS_KEY: &str = "MANDATED_KMS_KEY";
/// The variable holding the retry policy JSON.
pub const RETRY_POLICY: &str = "RETRY_POLICY";
/// The variable holding the log level.
pub const LOG_LEVEL: &str = "LOG_LEVEL";

/// The enforcer's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The key every stream must use.
    pub mandated_key: MandatedKey,
    /// How AWS errors are retried.
    pub retry_policy: RetryPolicy,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub log_level: tracing::Level,
}

/// A configuration value is missing or invalid. The message names the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set or empty.
    #[error("{0} is required and not set")]
    Missing(&'static str),
    /// The mandated key is not one of the accepted forms.
    #[error("{MANDATED_KMS_KEY}: {0}")]
    Key(#[source] crate::resource::InvalidValue),
    /// The retry policy is invalid.
    #[error("{RETRY_POLICY}: {0}")]
    Policy(#[source] PolicyError),
    /// The log level is not a level.
    #[error("{LOG_LEVEL}: {0:?} is not one of error, warn, info, debug, trace")]
    LogLevel(String),
}

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
        let retry_policy = match set(RETRY_POLICY) {
            Some(json) => RetryPolicy::parse(&json).map_err(ConfigError::Policy)?,
            None => RetryPolicy::default_policy(),
        };
        let log_level = match set(LOG_LEVEL) {
            None => tracing::Level::INFO,
            Some(level) => level.parse().map_err(|_| ConfigError::LogLevel(level))?,
        };
        Ok(Self {
            mandated_key,
            retry_policy,
            log_level,
        })
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
    fn errors_name_the_variable() {
        let cases: [(&[(&str, &str)], &str); 5] = [
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
}
