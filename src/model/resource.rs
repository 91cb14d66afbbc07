//! The resources the enforcer acts on, and validation of every name, id and ARN that comes from
//! an event before it goes into an ARN or an AWS call.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Which service a resource belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// A Kinesis data stream.
    Kinesis,
    /// A Firehose delivery stream.
    Firehose,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Kinesis => "kinesis",
            Self::Firehose => "firehose",
        })
    }
}

/// Where a resource lives: partition, region and account, all validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    /// `aws`, `aws-cn`, `aws-us-gov`, ...
    pub partition: String,
    /// The region, e.g. `eu-west-1`.
    pub region: String,
    /// The 12-digit account id.
    pub account: String,
}

/// A Kinesis data stream or Firehose delivery stream, named and located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The service.
    pub service: Service,
    /// Partition, region and account.
    pub location: Location,
    /// The stream or delivery stream name.
    pub name: String,
}

/// A value from an event failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {value:?} is invalid: {reason}")]
pub struct InvalidValue {
    /// Which field held it.
    pub field: &'static str,
    /// The value (truncated to keep messages short).
    pub value: String,
    /// The rule it breaks.
    pub reason: &'static str,
}

fn invalid(field: &'static str, value: &str, reason: &'static str) -> InvalidValue {
    let value: String = value.chars().take(160).collect();
    InvalidValue {
        field,
        value,
        reason,
    }
}

impl Location {
    /// Validates an account id and a region and derives the partition from the region.
    pub fn new(account: &str, region: &str) -> Result<Self, InvalidValue> {
        validate_account(account)?;
        let partition = partition_of(region)?;
        Ok(Self {
            partition: partition.to_owned(),
            region: region.to_owned(),
            account: account.to_owned(),
        })
    }
}

impl Location {
    /// The place as an SQS FIFO message group, `<account>:<region>`: one place's messages are
    /// handed out one batch at a time, whatever the other places' backlog.
    pub fn group(&self) -> String {
        format!("{}:{}", self.account, self.region)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "account {} in {} ({})",
            self.account, self.region, self.partition
        )
    }
}

impl Resource {
    /// A resource from a name given in an event, validated against the service's name pattern.
    pub fn named(service: Service, location: Location, name: &str) -> Result<Self, InvalidValue> {
        validate_name(service, name)?;
        Ok(Self {
            service,
            location,
            name: name.to_owned(),
        })
    }

    /// A resource from an ARN given in an event:
    /// `arn:<partition>:kinesis:<region>:<account>:stream/<name>` or
    /// `arn:<partition>:firehose:<region>:<account>:deliverystream/<name>`.
    pub fn from_arn(service: Service, arn: &str) -> Result<Self, InvalidValue> {
        let field = match service {
            Service::Kinesis => "streamARN",
            Service::Firehose => "deliveryStreamARN",
        };
        let (svc, kind) = match service {
            Service::Kinesis => ("kinesis", "stream/"),
            Service::Firehose => ("firehose", "deliverystream/"),
        };
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [prefix, partition, arn_service, region, account, resource] = parts[..] else {
            return Err(invalid(field, arn, "not an ARN"));
        };
        if prefix != "arn" || arn_service != svc {
            return Err(invalid(field, arn, "not an ARN of this service"));
        }
        let Some(name) = resource.strip_prefix(kind) else {
            return Err(invalid(field, arn, "the resource part is not a stream"));
        };
        let location = Location::new(account, region)?;
        if location.partition != partition {
            return Err(invalid(
                field,
                arn,
                "the partition does not match the region",
            ));
        }
        Self::named(service, location, name)
    }

    /// The resource's ARN.
    pub fn arn(&self) -> String {
        let Location {
            partition,
            region,
            account,
        } = &self.location;
        match self.service {
            Service::Kinesis => format!(
                "arn:{partition}:kinesis:{region}:{account}:stream/{}",
                self.name
            ),
            Service::Firehose => format!(
                "arn:{partition}:firehose:{region}:{account}:deliverystream/{}",
                self.name
            ),
        }
    }
}

/// Stream names: `[a-zA-Z0-9_.-]{1,128}` (Kinesis) and `{1,64}` (Firehose).
fn validate_name(service: Service, name: &str) -> Result<(), InvalidValue> {
    let (field, max) = match service {
        Service::Kinesis => ("streamName", 128),
        Service::Firehose => ("deliveryStreamName", 64),
    };
    if name.is_empty() || name.len() > max {
        return Err(invalid(
            field,
            name,
            if service == Service::Kinesis {
                "must be 1 to 128 characters"
            } else {
                "must be 1 to 64 characters"
            },
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(invalid(
            field,
            name,
            "may contain only a-z, A-Z, 0-9, '_', '.' and '-'",
        ));
    }
    Ok(())
}

/// Account ids are exactly 12 digits.
pub fn validate_account(account: &str) -> Result<(), InvalidValue> {
    if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(invalid("account", account, "must be 12 digits"))
    }
}

/// The partition of a region, which must look like `xx-name-N` (`us-east-1`, `us-gov-west-1`,
/// `cn-north-1`, `eu-isoe-west-1`) or, in the European Sovereign Cloud, `eusc-de-east-1`. The
/// mapping follows the `regionRegex` of each partition in the AWS SDKs' `partitions.json`:
/// `aws-cn` `^cn-`, `aws-us-gov` `^us-gov-`, `aws-iso` `^us-iso-`, `aws-iso-b` `^us-isob-`,
/// `aws-iso-e` `^eu-isoe-`, `aws-iso-f` `^us-isof-`, `aws-eusc` `^eusc-(de)-`, and `aws` for the
/// rest.
pub fn partition_of(region: &str) -> Result<&'static str, InvalidValue> {
    let parts: Vec<&str> = region.split('-').collect();
    let well_formed = region.len() <= 32
        && parts.len() >= 3
        && (parts[0].len() == 2 || parts[0] == "eusc")
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|n| (1..=2).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()));
    if !well_formed {
        return Err(invalid(
            "region",
            region,
            "not a region name such as us-east-1",
        ));
    }
    Ok(match (parts[0], parts[1]) {
        ("cn", _) => "aws-cn",
        ("us", "gov") => "aws-us-gov",
        ("us", "iso") => "aws-iso",
        ("us", "isob") => "aws-iso-b",
        ("eu", "isoe") => "aws-iso-e",
        ("us", "isof") => "aws-iso-f",
        ("eusc", _) => "aws-eusc",
        _ => "aws",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions() {
        for (region, partition) in [
            ("us-east-1", "aws"),
            ("eu-central-2", "aws"),
            ("ap-southeast-5", "aws"),
            ("cn-northwest-1", "aws-cn"),
            ("us-gov-west-1", "aws-us-gov"),
            ("us-iso-east-1", "aws-iso"),
            ("us-isob-east-1", "aws-iso-b"),
            ("eu-isoe-west-1", "aws-iso-e"),
            ("us-isof-south-1", "aws-iso-f"),
            ("eusc-de-east-1", "aws-eusc"),
        ] {
            assert_eq!(partition_of(region).unwrap(), partition, "{region}");
        }
        for bad in [
            "",
            "us-east",
            "US-EAST-1",
            "us-east-123",
            "u-east-1",
            "euscx-de-east-1",
            "us--1",
            "us-east-1/../x",
        ] {
            assert!(partition_of(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn arns_round_trip_and_are_validated() {
        let arn = "arn:aws:kinesis:eu-west-1:123456789012:stream/a.b_c-d";
        assert_eq!(
            Resource::from_arn(Service::Kinesis, arn).unwrap().arn(),
            arn
        );
        for arn in [
            "arn:aws-us-gov:firehose:us-gov-west-1:123456789012:deliverystream/x",
            "arn:aws-eusc:firehose:eusc-de-east-1:123456789012:deliverystream/x",
            "arn:aws-iso-f:firehose:us-isof-south-1:123456789012:deliverystream/x",
        ] {
            assert_eq!(
                Resource::from_arn(Service::Firehose, arn).unwrap().arn(),
                arn
            );
        }
        for bad in [
            "arn:aws:kinesis:eu-west-1:123456789012:stream/",
            "arn:aws:kinesis:eu-west-1:123456789012:table/x",
            "arn:aws:sqs:eu-west-1:123456789012:stream/x",
            "arn:aws-cn:kinesis:eu-west-1:123456789012:stream/x",
            "arn:aws:kinesis:eu-west-1:1234567890123:stream/x",
            "stream/x",
        ] {
            assert!(
                Resource::from_arn(Service::Kinesis, bad).is_err(),
                "{bad:?} accepted"
            );
        }
        let firehose_name = "x".repeat(65);
        let here = Location::new("123456789012", "eu-west-1").unwrap();
        assert!(Resource::named(Service::Firehose, here.clone(), &firehose_name).is_err());
        assert!(Resource::named(Service::Kinesis, here, &firehose_name).is_ok());
    }
}
