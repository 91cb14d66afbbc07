//! The mandated KMS key and key equivalence.
//!
//! A key can be named five ways (key id, key ARN, alias ARN, `alias/Name`, and the AWS managed
//! `alias/aws/<service>`), and Kinesis reports back whichever form it was given. Two different
//! strings can name the same key, so keys are compared after resolution (kms:DescribeKey gives
//! the key ARN for every form). Without resolution only some answers can be proven: [`compare`]
//! says `Unknown` for the rest instead of guessing.

use crate::model::resource::{InvalidValue, Location, partition_of, validate_account};

/// The error name of an event whose resource's region has no mandated key: the configured key is
/// of another region (and not multi-Region), so it is not applied there.
pub const KEY_IN_OTHER_REGION: &str = "Enforcer.KeyInOtherRegion";

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

    /// The mandated key for resources at `at`. KMS keys and aliases are regional, and Kinesis and
    /// Firehose encrypt only with a key in the stream's own region: an alias name (`alias/Name`)
    /// and a key id are relative to `at` and resolved there; a key ARN or alias ARN is only the
    /// key of its own region; a multi-Region key's ARN (`key/mrk-...`) names its replica in
    /// every region, which has the same key id. `Err` says why there is none for `at`: that key
    /// is never sent to a Start call.
    pub fn for_location(&self, at: &Location) -> Result<Self, String> {
        let (location, what) = match &self.form {
            KeyForm::KeyArn { location, .. } => (location, "key"),
            KeyForm::AliasArn { location, .. } => (location, "alias"),
            KeyForm::KeyId(_) | KeyForm::AliasName(_) => return Ok(self.clone()),
        };
        if location.region == at.region {
            return Ok(self.clone());
        }
        let elsewhere = format!(
            "the mandated {what} {} is in {}, but the resource is in {}: Kinesis and Firehose \
             encrypt only with a key in the resource's own region, so it is not applied there",
            self.configured, location.region, at.region
        );
        if location.partition != at.partition {
            return Err(format!("{elsewhere} (another partition)"));
        }
        match &self.form {
            KeyForm::KeyArn { id, .. } if id.starts_with("mrk-") => Self::parse(&format!(
                "arn:{}:kms:{}:{}:key/{id}",
                at.partition, at.region, location.account
            ))
            .map_err(|e| format!("{elsewhere}, and its replica cannot be named: {e}")),
            KeyForm::AliasArn { name, .. } => Err(format!(
                "{elsewhere}; name it alias/{name} to have it resolved in each region, or give \
                 each region its key in MANDATED_KMS_KEYS"
            )),
            _ => Err(format!(
                "{elsewhere}; name the key by an alias (alias/Name, resolved in each region), use \
                 a multi-Region key (mrk-...), whose replica in each region is used, or give each \
                 region its key in MANDATED_KMS_KEYS"
            )),
        }
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

    #[test]
    fn a_key_of_another_region_is_never_the_mandated_key_there_but_a_multi_region_key_is() {
        let east = Location::new("123456789012", "us-east-1").unwrap();
        let west = Location::new("210987654321", "eu-west-1").unwrap();
        let key = |s: &str| MandatedKey::parse(s).unwrap();
        // Relative forms are resolved where the resource is.
        for relative in [
            "alias/org-streams",
            ID,
            "mrk-1234abcd12ab34cd56ef1234567890ab",
        ] {
            assert_eq!(key(relative).for_location(&west), Ok(key(relative)));
        }
        // A key ARN is the key of its own region only, whatever the account.
        let arn = format!("arn:aws:kms:us-east-1:123456789012:key/{ID}");
        assert_eq!(key(&arn).for_location(&east), Ok(key(&arn)));
        let refused = key(&arn).for_location(&west).unwrap_err();
        assert!(
            refused.contains("is in us-east-1, but the resource is in eu-west-1")
                && refused.contains("multi-Region key"),
            "{refused}"
        );
        // A multi-Region key's replica: same account and id, the resource's region.
        let mrk = "arn:aws:kms:us-east-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab";
        assert_eq!(
            key(mrk).for_location(&west).unwrap().configured(),
            "arn:aws:kms:eu-west-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab"
        );
        // An alias ARN names an alias in one region.
        let alias = "arn:aws:kms:us-east-1:123456789012:alias/org-streams";
        let refused = key(alias).for_location(&west).unwrap_err();
        assert!(
            refused.contains("alias/org-streams to have it resolved in each region"),
            "{refused}"
        );
        // No key crosses partitions, multi-Region or not.
        let china = Location::new("123456789012", "cn-north-1").unwrap();
        assert!(
            key(mrk)
                .for_location(&china)
                .unwrap_err()
                .contains("another partition")
        );
    }
}
