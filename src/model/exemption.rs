//! Exemption by tag (`EXEMPT_TAG`): a stream carrying the tag is left alone, and says so.

use std::fmt;

/// The tag that exempts a stream: a key, and optionally the value it must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExemptTag {
    key: String,
    value: Option<String>,
}

/// Tags as the services return them: key and (possibly absent) value.
pub type Tags = Vec<(String, Option<String>)>;

impl ExemptTag {
    /// Parses `key` (any value exempts) or `key=value` (only that value exempts). Keys are 1 to
    /// 128 characters and values at most 256, as Kinesis and Firehose allow.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (key, value) = match text.split_once('=') {
            Some((key, value)) => (key.trim(), Some(value.trim().to_owned())),
            None => (text.trim(), None),
        };
        if key.is_empty() || key.chars().count() > 128 {
            return Err(format!("tag key {key:?} must be 1 to 128 characters"));
        }
        if value.as_ref().is_some_and(|v| v.chars().count() > 256) {
            return Err("tag value must be at most 256 characters".into());
        }
        Ok(Self {
            key: key.to_owned(),
            value,
        })
    }

    /// Whether these tags carry the exemption.
    pub fn matches(&self, tags: &Tags) -> bool {
        tags.iter().any(|(key, value)| {
            key == &self.key
                && match &self.value {
                    None => true,
                    Some(wanted) => value.as_deref().unwrap_or("") == wanted,
                }
        })
    }
}

impl fmt::Display for ExemptTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{}={value}", self.key),
            None => f.write_str(&self.key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, Option<&str>)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
            .collect()
    }

    #[test]
    fn key_alone_matches_any_value_and_key_value_only_that_value() {
        let any = ExemptTag::parse("encryption-exempt").unwrap();
        assert!(any.matches(&tags(&[
            ("team", Some("a")),
            ("encryption-exempt", Some("ticket-42"))
        ])));
        assert!(any.matches(&tags(&[("encryption-exempt", None)])));
        assert!(!any.matches(&tags(&[("team", Some("encryption-exempt"))])));
        let exact = ExemptTag::parse("compliance=exempt").unwrap();
        assert!(exact.matches(&tags(&[("compliance", Some("exempt"))])));
        assert!(!exact.matches(&tags(&[("compliance", Some("required"))])));
        assert_eq!(exact.to_string(), "compliance=exempt");
    }

    #[test]
    fn bad_tags_are_rejected() {
        assert!(ExemptTag::parse("").is_err());
        assert!(ExemptTag::parse("=x").is_err());
        assert!(ExemptTag::parse(&"k".repeat(129)).is_err());
        assert!(ExemptTag::parse(&format!("k={}", "v".repeat(257))).is_err());
    }
}
