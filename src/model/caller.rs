//! Who made the call behind an event: an infrastructure-as-code tool (Terraform, Pulumi,
//! CloudFormation / CDK, Crossplane) or a person or application.
//!
//! A tool creates a stream and then configures it in further steps, each of which AWS refuses
//! while the stream is not ACTIVE (Terraform's `aws_kinesis_stream` waits for ACTIVE after
//! CreateStream and after each of retention, enhanced monitoring, StartStreamEncryption and tags,
//! with no retry on ResourceInUseException). A write by the enforcer between two of those steps
//! fails the tool's run, so a tool's stream is given a settle period before any write. The tool
//! is recognised from the CloudTrail record: its `userAgent` (Terraform writes
//! `Terraform/<version>` and `terraform-provider-aws/<version>`; Pulumi and CDKTF embed the same
//! provider) and `userIdentity.invokedBy` (`cloudformation.amazonaws.com`).

use std::fmt;

/// The tools recognised when `IAC_TOOLS` is not set, in the order they are tried: Pulumi,
/// Crossplane and CDKTF embed the Terraform provider, so they come before it.
pub(crate) const DEFAULT_TOOLS: &str = "Pulumi=pulumi,Crossplane=crossplane|upbound/provider-aws,\
    Terraform=terraform-provider-aws/|Terraform/|cdktf,\
    CloudFormation=cloudformation.amazonaws.com";

/// The key a Firehose definition declares when the mandated key is AWS managed: Firehose's own
/// `AWS_OWNED_CMK` (it takes no AWS managed key ARN).
pub(crate) const AWS_OWNED: &str = "AWS_OWNED_CMK";

/// The calls' identity as the record gives it: what the tool is recognised from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// `userAgent`.
    pub user_agent: Option<String>,
    /// `userIdentity.invokedBy`: the AWS service that made the call on the principal's behalf.
    pub invoked_by: Option<String>,
    /// `userIdentity.sessionContext.sessionIssuer.arn` (a role), else `userIdentity.arn`.
    pub principal: Option<String>,
}

/// One recognised tool: its name and the markers, any of which in `userAgent` or `invokedBy`
/// (compared case-insensitively) names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    /// The name reports use (`Terraform`, `CloudFormation`, ...).
    pub name: String,
    markers: Vec<String>,
}

/// The tools to recognise, tried in order; the first whose marker appears wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools(Vec<Tool>);

impl Tools {
    /// Parses `Name=marker|marker,Name=marker`: tools separated by commas, each a name, `=`
    /// and one or more markers separated by `|`. An empty text recognises no tool.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tools = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((name, markers)) = entry.split_once('=') else {
                return Err(format!(
                    "{entry:?} is not Name=marker|marker (e.g. Terraform=terraform-provider-aws/)"
                ));
            };
            let name = name.trim();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_ ".contains(&b))
            {
                return Err(format!(
                    "{name:?} is not a tool name (letters, digits, - _ and spaces)"
                ));
            }
            let markers: Vec<String> = markers
                .split('|')
                .map(|m| m.trim().to_ascii_lowercase())
                .filter(|m| !m.is_empty())
                .collect();
            if markers.is_empty() {
                return Err(format!("{name} has no marker to recognise it by"));
            }
            tools.push(Tool {
                name: name.to_owned(),
                markers,
            });
        }
        Ok(Self(tools))
    }

    /// No tool recognised (`IAC_TOOLS=none`).
    pub fn none() -> Self {
        Self(Vec::new())
    }

    /// The built-in list ([`DEFAULT_TOOLS`]).
    pub fn default_tools() -> Self {
        // A constant of the crate, covered by a unit test: a parse failure is a build defect.
        Self::parse(DEFAULT_TOOLS).unwrap_or(Self(Vec::new()))
    }

    /// The tool that made the call, if the record names one.
    pub fn recognise(&self, caller: &Caller) -> Option<&Tool> {
        let seen: Vec<String> = [&caller.user_agent, &caller.invoked_by]
            .into_iter()
            .flatten()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        self.0.iter().find(|tool| {
            tool.markers
                .iter()
                .any(|m| seen.iter().any(|s| s.contains(m.as_str())))
        })
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// What the resource's definition in `tool` must declare so that the tool's next run keeps the
/// mandated key instead of reverting it. `key` is the mandated key (its ARN once resolved).
pub(crate) fn advice(tool: &str, firehose: bool, key: &str) -> String {
    match (tool, firehose) {
        ("Terraform", false) => format!(
            "declare encryption_type = \"KMS\" and kms_key_id = \"{key}\" on the aws_kinesis_stream, \
             or lifecycle {{ ignore_changes = [encryption_type, kms_key_id] }}, or the next apply reverts it"
        ),
        ("Terraform", true) if key == AWS_OWNED => {
            "declare server_side_encryption { enabled = true, \
             key_type = \"AWS_OWNED_CMK\" } on the aws_kinesis_firehose_delivery_stream, or \
             lifecycle { ignore_changes = [server_side_encryption] }, or the next apply reverts it"
                .to_owned()
        }
        ("CloudFormation", true) if key == AWS_OWNED => "declare \
             DeliveryStreamEncryptionConfigurationInput { KeyType: AWS_OWNED_CMK } on the \
             AWS::KinesisFirehose::DeliveryStream, or the next stack update reverts it"
            .to_owned(),
        ("Terraform", true) => format!(
            "declare server_side_encryption {{ enabled = true, key_type = \"CUSTOMER_MANAGED_CMK\", \
             key_arn = \"{key}\" }} on the aws_kinesis_firehose_delivery_stream, or lifecycle \
             {{ ignore_changes = [server_side_encryption] }}, or the next apply reverts it"
        ),
        ("Pulumi", false) => format!(
            "declare encryptionType: \"KMS\" and kmsKeyId: \"{key}\" on the aws.kinesis.Stream, or \
             ignoreChanges: [\"encryptionType\", \"kmsKeyId\"], or the next update reverts it"
        ),
        ("Pulumi", true) => format!(
            "declare serverSideEncryption {{ enabled: true, keyType: \"CUSTOMER_MANAGED_CMK\", keyArn: \
             \"{key}\" }} on the aws.kinesis.FirehoseDeliveryStream, or ignoreChanges: \
             [\"serverSideEncryption\"], or the next update reverts it"
        ),
        ("CloudFormation", false) => format!(
            "declare StreamEncryption {{ EncryptionType: KMS, KeyId: {key} }} on the \
             AWS::Kinesis::Stream (CDK: encryption: StreamEncryption.KMS with encryptionKey set to \
             this key; CDK's default is alias/aws/kinesis), or the next stack update reverts it"
        ),
        ("CloudFormation", true) => format!(
            "declare DeliveryStreamEncryptionConfigurationInput {{ KeyType: CUSTOMER_MANAGED_CMK, \
             KeyARN: {key} }} on the AWS::KinesisFirehose::DeliveryStream (CDK: encryption with \
             this key), or the next stack update reverts it"
        ),
        ("Crossplane", _) => format!(
            "declare the key {key} in the managed resource's forProvider (encryptionType: KMS and \
             kmsKeyId, or serverSideEncryption for Firehose), or the provider's next sync reverts it"
        ),
        (other, _) => format!(
            "declare the key {key} in {other}'s definition of the resource, or its next run may revert it"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(user_agent: &str, invoked_by: Option<&str>) -> Caller {
        Caller {
            user_agent: Some(user_agent.into()),
            invoked_by: invoked_by.map(str::to_owned),
            principal: None,
        }
    }

    fn name(tools: &Tools, c: &Caller) -> Option<String> {
        tools.recognise(c).map(|t| t.name.clone())
    }

    #[test]
    fn the_default_tools_are_recognised_from_real_user_agents() {
        let tools = Tools::default_tools();
        let cases = [
            (
                "APN/1.0 HashiCorp/1.0 Terraform/1.11.4 (+https://www.terraform.io) \
                 terraform-provider-aws/5.100.0 (+https://registry.terraform.io/providers/hashicorp/aws) \
                 aws-sdk-go-v2/1.36.3 ua/2.1 os/linux lang/go#1.24.2 md/GOOS#linux api/kinesis#1.35.0",
                None,
                Some("Terraform"),
            ),
            (
                "APN/1.0 HashiCorp/1.0 Terraform/1.9.0 terraform-provider-aws/5.80.0 \
                 aws-sdk-go-v2/1.32.0 pulumi-aws/6.65.0",
                None,
                Some("Pulumi"),
            ),
            (
                "cloudformation.amazonaws.com",
                Some("cloudformation.amazonaws.com"),
                Some("CloudFormation"),
            ),
            (
                "aws-sdk-java/2.25.0 Linux/5.10 OpenJDK_64-Bit_Server_VM/17",
                Some("cloudformation.amazonaws.com"),
                Some("CloudFormation"),
            ),
            (
                "aws-sdk-go-v2/1.30.0 upbound/provider-aws-kinesis/v1.8.0 crossplane-provider-aws",
                None,
                Some("Crossplane"),
            ),
            (
                "aws-cli/2.22.4 md/awscrt#0.23.4 ua/2.1 os/linux command/kinesis.create-stream",
                None,
                None,
            ),
            ("AWS Internal", Some("kinesis.amazonaws.com"), None),
        ];
        for (user_agent, invoked_by, want) in cases {
            assert_eq!(
                name(&tools, &caller(user_agent, invoked_by)).as_deref(),
                want,
                "{user_agent}"
            );
        }
        assert_eq!(name(&tools, &Caller::default()), None);
    }

    #[test]
    fn a_configured_list_replaces_the_default_and_keeps_its_order() {
        let tools = Tools::parse("Deployer = my-deployer/ , Terraform=Terraform/").unwrap();
        assert_eq!(
            name(&tools, &caller("My-Deployer/2 Terraform/1.9", None)).as_deref(),
            Some("Deployer")
        );
        assert_eq!(
            name(&tools, &caller("x", Some("cloudformation.amazonaws.com"))),
            None
        );
        assert_eq!(Tools::parse("").unwrap(), Tools(Vec::new()));
    }

    #[test]
    fn a_bad_list_is_refused_with_a_reason() {
        for (text, needle) in [
            ("Terraform", "is not Name=marker"),
            ("=x", "is not a tool name"),
            ("Terraform=|", "has no marker"),
            ("Ter;raform=x", "is not a tool name"),
        ] {
            let reason = Tools::parse(text).unwrap_err();
            assert!(reason.contains(needle), "{text}: {reason}");
        }
    }

    #[test]
    fn advice_names_what_each_tool_must_declare() {
        let key = "arn:aws:kms:us-east-1:123456789012:key/k";
        let terraform = advice("Terraform", false, key);
        assert!(
            terraform.contains("encryption_type = \"KMS\""),
            "{terraform}"
        );
        assert!(
            terraform.contains(key) && terraform.contains("ignore_changes"),
            "{terraform}"
        );
        assert!(advice("Terraform", true, key).contains("server_side_encryption"));
        assert!(advice("CloudFormation", false, key).contains("StreamEncryption"));
        assert!(advice("CloudFormation", false, key).contains("CDK"));
        assert!(
            advice("CloudFormation", true, key)
                .contains("DeliveryStreamEncryptionConfigurationInput")
        );
        assert!(advice("Deployer", false, key).contains("Deployer"));
        let owned = advice("Terraform", true, AWS_OWNED);
        assert!(
            owned.contains("key_type = \"AWS_OWNED_CMK\"") && !owned.contains("key_arn"),
            "{owned}"
        );
        assert!(advice("CloudFormation", true, AWS_OWNED).contains("KeyType: AWS_OWNED_CMK"));
    }
}
