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
        matches!(self.judge(tags, today()), Exemption::Exempt { .. })
    }

    /// What these tags say, on `today` (days since 1970-01-01). With a key alone, the tag's value
    /// may carry an expiry and a reason, `until=YYYY-MM-DD reason=...`: the exemption holds
    /// through that day (UTC). Any other value exempts as it always did; with `key=value`, only
    /// that value does.
    pub fn judge(&self, tags: &Tags, today: i64) -> Exemption {
        let Some((_, value)) = tags.iter().find(|(key, _)| key == &self.key) else {
            return Exemption::None;
        };
        let value = value.as_deref().unwrap_or("");
        if let Some(wanted) = &self.value {
            return if value == wanted {
                Exemption::Exempt {
                    until: None,
                    reason: None,
                }
            } else {
                Exemption::None
            };
        }
        let Some(until) = field(value, "until", false) else {
            return Exemption::Exempt {
                until: None,
                reason: None,
            };
        };
        let reason = field(value, "reason", true).map(str::to_owned);
        match days_of(until) {
            None => Exemption::Malformed {
                value: value.to_owned(),
            },
            Some(day) if day < today => Exemption::Expired {
                until: until.to_owned(),
                reason,
            },
            Some(_) => Exemption::Exempt {
                until: Some(until.to_owned()),
                reason,
            },
        }
    }
}

/// What a resource's tags say about its exemption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exemption {
    /// No exemption tag.
    None,
    /// Exempt: through `until` (UTC), when the tag says so.
    Exempt {
        until: Option<String>,
        reason: Option<String>,
    },
    /// The tag's `until` has passed: enforced.
    Expired {
        until: String,
        reason: Option<String>,
    },
    /// The tag names an `until` that is not a date (`YYYY-MM-DD`): it exempts nothing.
    Malformed { value: String },
}

impl Exemption {
    /// What the report says of an exemption that does not hold, if anything.
    pub fn why_enforced(&self, tag: &ExemptTag) -> Option<String> {
        match self {
            Self::Expired { until, reason } => Some(format!(
                "its exemption ({} until={until}{}) expired, so it is enforced",
                tag.key,
                reason
                    .as_ref()
                    .map_or(String::new(), |r| format!(", reason: {r}"))
            )),
            Self::Malformed { value } => Some(format!(
                "its exemption tag {}={value:?} has an until that is not a date (until=YYYY-MM-DD), \
                 so it exempts nothing",
                tag.key
            )),
            Self::None | Self::Exempt { .. } => None,
        }
    }
}

/// The value of `name=` in an exemption tag's value: up to the next space (or, with `rest`, to
/// the end), and in either case up to a `;`. Kinesis and Firehose allow letters, digits, spaces
/// and `_ . / = + - % @` in a tag value (`:` too for Firehose), not `;`
/// (<https://docs.aws.amazon.com/kinesis/latest/APIReference/API_Tag.html>), so the fields are
/// written `until=2027-03-31 reason=CHG-1234 migration`; `;` is taken too.
fn field<'v>(value: &'v str, name: &str, rest: bool) -> Option<&'v str> {
    let start = value
        .match_indices(&format!("{name}="))
        .find(|(at, _)| *at == 0 || value[..*at].ends_with([' ', ';']))?
        .0
        + name.len()
        + 1;
    let tail = &value[start..];
    let end = tail
        .find(|c: char| c == ';' || (!rest && c.is_whitespace()))
        .unwrap_or(tail.len());
    let found = tail[..end].trim();
    (!found.is_empty() || !rest).then_some(found)
}

/// Today, in days since 1970-01-01 (UTC).
pub fn today() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| {
            i64::try_from(d.as_secs() / 86_400).unwrap_or(i64::MAX)
        })
}

/// The day `YYYY-MM-DD` names, in days since 1970-01-01; `None` when it is not a real date.
fn days_of(text: &str) -> Option<i64> {
    let mut parts = text.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d < 1 || d > month_days[usize::try_from(m - 1).ok()?] {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm), exact for the proleptic Gregorian calendar.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
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
    fn an_exemption_may_expire_and_a_bad_date_exempts_nothing() {
        let tag = ExemptTag::parse("encryption-exempt").unwrap();
        let day = |text| days_of(text).unwrap();
        assert_eq!(day("1970-01-01"), 0);
        assert_eq!(day("2000-03-01"), 11_017);
        assert_eq!(day("2026-12-03"), 20_790);
        let on =
            |value: &str, today| tag.judge(&tags(&[("encryption-exempt", Some(value))]), today);
        // As AWS allows a tag value to be written (no `;`), and with `;` too.
        let until = "until=2026-12-31 reason=migration ticket 42";
        assert_eq!(
            on("until=2026-12-31;reason=migration ticket 42", 0),
            on(until, 0)
        );
        assert_eq!(
            on(until, day("2026-12-31")),
            Exemption::Exempt {
                until: Some("2026-12-31".into()),
                reason: Some("migration ticket 42".into())
            },
            "through the last day"
        );
        let expired = on(until, day("2027-01-01"));
        assert_eq!(
            expired,
            Exemption::Expired {
                until: "2026-12-31".into(),
                reason: Some("migration ticket 42".into())
            }
        );
        assert!(expired.why_enforced(&tag).unwrap().contains("expired"));
        for bad in [
            "until=2026-02-30",
            "until=26-12-31",
            "until=2026/12/31",
            "until=soon",
        ] {
            let judged = on(bad, day("2026-01-01"));
            assert!(matches!(judged, Exemption::Malformed { .. }), "{bad}");
            assert!(
                judged.why_enforced(&tag).unwrap().contains("not a date"),
                "{bad}"
            );
        }
        // A plain value keeps its meaning, and so does key=value (no expiry there).
        assert!(matches!(
            on("ticket-42", 0),
            Exemption::Exempt { until: None, .. }
        ));
        let exact = ExemptTag::parse("compliance=exempt").unwrap();
        assert_eq!(
            exact.judge(&tags(&[("compliance", Some("until=2000-01-01"))]), 0),
            Exemption::None
        );
    }

    #[test]
    fn bad_tags_are_rejected() {
        assert!(ExemptTag::parse("").is_err());
        assert!(ExemptTag::parse("=x").is_err());
        assert!(ExemptTag::parse(&"k".repeat(129)).is_err());
        assert!(ExemptTag::parse(&format!("k={}", "v".repeat(257))).is_err());
    }
}
