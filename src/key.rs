//! The mandated KMS key and key equivalence.
//!
//! A key can be named five ways (key id, key ARN, alias ARN, `alias/Name`, and the AWS managed
//! `alias/aws/<service>`), and Kinesis reports back whichever form it was given. Two different
//! strings can name the same key, so keys are compared after resolution (kms:DescribeKey gives
//! the key ARN for every form). Without resolution only some answers can be proven: [`compare`]
//! says `Unknown` for the rest instead of guessing.

use crate::resource::{InvalidValue, Location, partition_of, validate_account};

/// A key reference parsed into its form. Unqualified forms (key id, alias name) are relative to
/// the account and region of the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyForm {
    /// A key id: a GUID, or `mrk-` and 32 hex digits for a multi-Region key.
    KeyId(String),
    /// `arn:<partition>:kms:<region>:<account>:key/<id>`.
    KeyArn {
        /// Where the key lives.
        location: Location,
        /// The key id.
        id: String,
    },
    /// `alias/<name>`; the name excludes the `alias/` prefix.
    AliasName(String),
    /// `arn:<partition>:kms:<region>:<account>:alias/<name>`.
    AliasArn {
        /// Where the alias lives.
        location: Location,
        /// The alias name without `alias/`.
        name: String,
    },
}

/// Whether two key references name the same key, as far as can be proven without KMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMatch {
    /// Provably the same key.
    Same,
    /// Provably different keys.
    Different,
    /// Cannot be decided without resolving them (e.g. an alias against a key ARN).
    Unknown,
}

impl KeyForm {
    /// Parses any of the five forms.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        let bad = |reason| InvalidValue {
            field: "KMS key",
            value: text.chars().take(160).collect(),
            reason,
        };
        if let Some(name) = text.strip_prefix("alias/") {
            return valid_alias_name(name)
                .then(|| Self::AliasName(name.to_owned()))
                .ok_or(bad(ALIAS_RULE));
        }
        if let Some(rest) = text.strip_prefix("arn:") {
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            let [partition, service, region, account, resource] = parts[..] else {
                return Err(bad("not an ARN"));
            };
            if service != "kms" {
                return Err(bad("not a KMS ARN"));
            }
            validate_account(account)?;
            if partition_of(region)? != partition {
                return Err(bad("the partition does not match the region"));
            }
            let location = Location::new(account, region)?;
            if let Some(id) = resource.strip_prefix("key/") {
                return valid_key_id(id)
                    .then(|| Self::KeyArn {
                        location,
                        id: id.to_owned(),
                    })
                    .ok_or(bad(KEY_ID_RULE));
            }
            if let Some(name) = resource.strip_prefix("alias/") {
                return valid_alias_name(name)
                    .then(|| Self::AliasArn {
                        location,
                        name: name.to_owned(),
                    })
                    .ok_or(bad(ALIAS_RULE));
            }
            return Err(bad("a KMS ARN must name key/<id> or alias/<name>"));
        }
        if valid_key_id(text) {
            return Ok(Self::KeyId(text.to_owned()));
        }
        Err(bad("expected a key id, key ARN, alias ARN or alias/<name>"))
    }

    /// Whether the form names an AWS managed key by its reserved alias (`alias/aws/...`).
    pub fn is_aws_managed_alias(&self) -> bool {
        match self {
            Self::AliasName(name) | Self::AliasArn { name, .. } => name.starts_with("aws/"),
            _ => false,
        }
    }

    /// The form with the caller's location filled in where it was implied.
    fn qualified(&self, at: &Location) -> Self {
        match self {
            Self::KeyId(id) => Self::KeyArn {
                location: at.clone(),
                id: id.clone(),
            },
            Self::AliasName(name) => Self::AliasArn {
                location: at.clone(),
                name: name.clone(),
            },
            other => other.clone(),
        }
    }
}

const KEY_ID_RULE: &str = "a key id is a GUID or mrk- followed by 32 hex digits";
const ALIAS_RULE: &str = "an alias name is 1 to 250 characters of a-z, A-Z, 0-9, '/', '_' and '-'";

fn valid_key_id(id: &str) -> bool {
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(rest) = id.strip_prefix("mrk-") {
        return rest.len() == 32 && hex(rest);
    }
    let groups: Vec<&str> = id.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]) && groups.iter().all(|g| hex(g))
}

fn valid_alias_name(name: &str) -> bool {
    (1..=250).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-'))
}

/// Compares two key references that are both relative to `at` (the account and region the
/// stream and the caller share). A key ARN names exactly one key, so two different key ARNs are
/// different keys; two aliases, or an alias and a key, can only be compared through KMS.
pub fn compare(a: &KeyForm, b: &KeyForm, at: &Location) -> KeyMatch {
    match (a.qualified(at), b.qualified(at)) {
        (x, y) if x == y => KeyMatch::Same,
        (KeyForm::KeyArn { .. }, KeyForm::KeyArn { .. }) => KeyMatch::Different,
        _ => KeyMatch::Unknown,
    }
}

/// What kms:DescribeKey says about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key ARN.
    pub arn: String,
    /// Whether AWS manages the key (`KeyManager: AWS`).
    pub aws_managed: bool,
}

/// The mandated key as configured (`MANDATED_KMS_KEY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MandatedKey {
    configured: String,
    form: KeyForm,
}

impl MandatedKey {
    /// Parses the configured key; every one of the five forms is accepted.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        Ok(Self {
            configured: text.to_owned(),
            form: KeyForm::parse(text)?,
        })
    }

    /// The key exactly as configured; this is what Kinesis is given.
    pub fn configured(&self) -> &str {
        &self.configured
    }

    /// The parsed form.
    pub fn form(&self) -> &KeyForm {
        &self.form
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";
    const OTHER_ID: &str = "0987dcba-09fe-87dc-65ba-ab0987654321";

    fn here() -> Location {
        Location::new("123456789012", "eu-west-1").unwrap()
    }

    fn form(s: &str) -> KeyForm {
        KeyForm::parse(s).unwrap()
    }

    #[test]
    fn parses_all_five_forms() {
        assert_eq!(form(ID), KeyForm::KeyId(ID.into()));
        assert_eq!(
            form(&format!("arn:aws:kms:eu-west-1:123456789012:key/{ID}")),
            KeyForm::KeyArn {
                location: here(),
                id: ID.into()
            }
        );
        assert_eq!(
            form("arn:aws:kms:eu-west-1:123456789012:alias/org/streams"),
            KeyForm::AliasArn {
                location: here(),
                name: "org/streams".into()
            }
        );
        assert_eq!(form("alias/org-key"), KeyForm::AliasName("org-key".into()));
        assert!(form("alias/aws/kinesis").is_aws_managed_alias());
        assert!(!form("alias/org-key").is_aws_managed_alias());
        assert_eq!(
            form("mrk-1234abcd12ab34cd56ef1234567890ab"),
            KeyForm::KeyId("mrk-1234abcd12ab34cd56ef1234567890ab".into())
        );
    }

    #[test]
    fn rejects_what_is_not_a_key() {
        for bad in [
            "",
            "alias/",
            "alias/has space",
            "not-a-key",
            "1234abcd-12ab-34cd-56ef-1234567890a",
            "arn:aws:s3:::bucket",
            "arn:aws:kms:eu-west-1:123456789012:grant/x",
            "arn:aws:kms:eu-west-1:12345:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws-cn:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        ] {
            let err = KeyForm::parse(bad).unwrap_err();
            assert!(!err.reason.is_empty(), "{bad:?} rejected without a reason");
        }
    }

    #[test]
    fn equal_forms_are_proven_without_kms() {
        let arn = format!("arn:aws:kms:eu-west-1:123456789012:key/{ID}");
        assert_eq!(compare(&form(ID), &form(&arn), &here()), KeyMatch::Same);
        assert_eq!(
            compare(
                &form("alias/org"),
                &form("arn:aws:kms:eu-west-1:123456789012:alias/org"),
                &here()
            ),
            KeyMatch::Same
        );
        assert_eq!(
            compare(&form(ID), &form(OTHER_ID), &here()),
            KeyMatch::Different
        );
        assert_eq!(
            compare(
                &form(&arn),
                &form(&format!(
                    "arn:aws:kms:eu-west-1:123456789012:key/{OTHER_ID}"
                )),
                &here()
            ),
            KeyMatch::Different
        );
    }

    #[test]
    fn location_matters_for_unqualified_forms() {
        // The same key id in another region is another key.
        let elsewhere = format!("arn:aws:kms:us-east-1:123456789012:key/{ID}");
        assert_eq!(
            compare(&form(ID), &form(&elsewhere), &here()),
            KeyMatch::Different
        );
        let alias_elsewhere = "arn:aws:kms:us-east-1:123456789012:alias/org";
        assert_eq!(
            compare(&form("alias/org"), &form(alias_elsewhere), &here()),
            KeyMatch::Unknown
        );
    }

    #[test]
    fn aliases_and_keys_need_kms() {
        assert_eq!(
            compare(&form("alias/org"), &form(ID), &here()),
            KeyMatch::Unknown
        );
        assert_eq!(
            compare(&form("alias/a"), &form("alias/b"), &here()),
            KeyMatch::Unknown
        );
    }
}
