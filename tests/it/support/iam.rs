//! IAM evaluation of the template's identity policies, as a proxy holds callers to them:
//! every resource a call names must be allowed, conditions fail closed.

use std::collections::HashMap;

/// The identity policies a proxy holds callers to: the function's own (its own credentials, in
/// [`ACCOUNT`]), and one per role it assumes (calls signed with that session's access key, in
/// the role's account).
pub struct Policies {
    pub own: IamPolicy,
    /// By role ARN.
    pub roles: HashMap<String, IamPolicy>,
}

/// One statement of an identity policy, as `tests/policies/cfn.py` resolves it from a template.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct PolicyStatement {
    #[serde(rename = "Sid", default)]
    pub sid: String,
    #[serde(rename = "Effect")]
    pub effect: String,
    #[serde(rename = "Action", deserialize_with = "one_or_many")]
    pub action: Vec<String>,
    #[serde(rename = "Resource", deserialize_with = "one_or_many")]
    pub resource: Vec<String>,
    #[serde(rename = "Condition", default)]
    pub condition: Option<serde_json::Value>,
}

pub(crate) fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match serde::Deserialize::deserialize(d)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

/// An identity policy evaluated as IAM does for the calls the enforcer makes itself: a call is
/// allowed when, for every resource it names (a Kinesis StartStreamEncryption names the stream
/// and the key), an Allow statement matches the action and that resource, and no Deny does.
/// Conditions are evaluated on `context` (`aws:ResourceOrgID`, `kms:ResourceAliases`, ...) with
/// StringEquals, StringLike, ArnEquals, ArnLike, Bool and their ForAnyValue forms; a key the
/// context lacks fails the condition, so a statement that needs what the proxy cannot know
/// (kms:ViaService of a call AWS makes on the caller's behalf) fails closed.
/// sts:GetCallerIdentity is always allowed, as on AWS.
pub struct IamPolicy {
    pub statements: Vec<PolicyStatement>,
    /// The key ARN each key reference names, keyed by key id, key ARN or alias ARN (an alias
    /// name in a request is qualified with the caller's account and region): IAM authorizes a
    /// key named by alias against the key.
    pub keys: HashMap<String, String>,
    /// The request context the conditions are evaluated on.
    pub context: HashMap<String, String>,
}

pub(crate) fn glob(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == value;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !value.starts_with(first) || value.len() < first.len() + last.len() || !value.ends_with(last)
    {
        return false;
    }
    let mut rest = &value[first.len()..value.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

impl IamPolicy {
    /// The action (`kinesis:StartStreamEncryption`) and the resources of a JSON-protocol request
    /// made in `account` and `region`, from its `X-Amz-Target` and body.
    pub(crate) fn request(
        &self,
        target: &str,
        body: &serde_json::Value,
        account: &str,
        region: &str,
    ) -> Option<(String, Vec<String>)> {
        let (service, operation) = target.split_once('.')?;
        let field = |name: &str| body.get(name).and_then(|v| v.as_str());
        let key = |reference: &str| {
            let qualified = match reference.strip_prefix("alias/") {
                Some(_) => format!("arn:aws:kms:{region}:{account}:{reference}"),
                None => reference.to_owned(),
            };
            self.keys.get(&qualified).cloned().unwrap_or(qualified)
        };
        let (prefix, resources) = match service {
            "Kinesis_20131202" => {
                let stream = field("StreamARN").map(str::to_owned).or_else(|| {
                    field("StreamName")
                        .map(|n| format!("arn:aws:kinesis:{region}:{account}:stream/{n}"))
                });
                let mut resources: Vec<String> = stream.into_iter().collect();
                if operation == "StartStreamEncryption"
                    && let Some(k) = field("KeyId")
                {
                    resources.push(key(k));
                }
                ("kinesis", resources)
            }
            "Firehose_20150804" => (
                "firehose",
                field("DeliveryStreamName")
                    .map(|n| format!("arn:aws:firehose:{region}:{account}:deliverystream/{n}"))
                    .into_iter()
                    .collect(),
            ),
            "TrentService" => ("kms", field("KeyId").map(key).into_iter().collect()),
            // A queue URL ends in /<account>/<name>; IAM names the queue by its ARN.
            "AmazonSQS" => (
                "sqs",
                field("QueueUrl")
                    .and_then(|url| {
                        let mut parts = url.trim_end_matches('/').rsplit('/');
                        let name = parts.next()?;
                        let owner = parts.next()?;
                        Some(format!("arn:aws:sqs:{region}:{owner}:{name}"))
                    })
                    .into_iter()
                    .collect(),
            ),
            "DynamoDB_20120810" => (
                "dynamodb",
                field("TableName")
                    .map(|t| format!("arn:aws:dynamodb:{region}:{account}:table/{t}"))
                    .into_iter()
                    .collect(),
            ),
            _ => return None,
        };
        let resources = if resources.is_empty() {
            vec!["*".to_owned()]
        } else {
            resources
        };
        // IAM has no batch actions of SQS: SendMessage's permission is SendMessageBatch's
        // (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-batch-api.html).
        let operation = match (prefix, operation) {
            ("sqs", batch) if batch.ends_with("Batch") => batch.trim_end_matches("Batch"),
            _ => operation,
        };
        Some((format!("{prefix}:{operation}"), resources))
    }

    /// Whether every condition of `condition` holds on the context.
    pub(crate) fn holds(&self, condition: &serde_json::Value) -> bool {
        let Some(operators) = condition.as_object() else {
            return false;
        };
        operators.iter().all(|(operator, keys)| {
            let Some(keys) = keys.as_object() else {
                return false;
            };
            let base = operator
                .strip_prefix("ForAnyValue:")
                .unwrap_or(operator.as_str());
            keys.iter().all(|(key, wanted)| {
                let Some(actual) = self.context.get(key) else {
                    return false;
                };
                let wanted: Vec<&str> = match wanted {
                    serde_json::Value::String(one) => vec![one.as_str()],
                    serde_json::Value::Array(many) => {
                        many.iter().filter_map(|v| v.as_str()).collect()
                    }
                    _ => return false,
                };
                wanted.iter().any(|w| match base {
                    "StringEquals" | "ArnEquals" | "Bool" => w == actual,
                    "StringLike" | "ArnLike" => glob(w, actual),
                    _ => false,
                })
            })
        })
    }

    /// `None` when the policy allows the call; else the resource it is denied on.
    pub(crate) fn denies(&self, action: &str, resources: &[String]) -> Option<String> {
        let matches = |s: &PolicyStatement, resource: &str| {
            s.condition.as_ref().is_none_or(|c| self.holds(c))
                && s.action
                    .iter()
                    .any(|a| glob(&a.to_ascii_lowercase(), &action.to_ascii_lowercase()))
                && s.resource.iter().any(|r| glob(r, resource))
        };
        resources
            .iter()
            .find(|resource| {
                let denied = self
                    .statements
                    .iter()
                    .any(|s| s.effect == "Deny" && matches(s, resource));
                let allowed = self
                    .statements
                    .iter()
                    .any(|s| s.effect == "Allow" && matches(s, resource));
                denied || !allowed
            })
            .cloned()
    }
}

/// The statements of `role`'s policies in `template`, resolved with `values`.
pub fn role_policy(template: &str, role: &str, values: &[(&str, &str)]) -> Vec<PolicyStatement> {
    let mut command = std::process::Command::new(super::tools_dir().join("parliament/bin/python"));
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/policies/cfn.py"
        ))
        .arg(template)
        .arg(role)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    for (name, value) in values {
        command.arg(format!("{name}={value}"));
    }
    let out = command.output().expect("tests/policies/cfn.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("statements")
}

/// The names IAM authorizes as the key `key_arn` in [`ACCOUNT`] and [`REGION`]: its id, and the
/// ARN of its `alias` (an [`IamPolicy`]'s `keys`).
pub fn key_names(key_arn: &str, alias: &str) -> HashMap<String, String> {
    let key_id = key_arn.rsplit('/').next().unwrap_or(key_arn).to_owned();
    [
        (key_id, key_arn.to_owned()),
        (
            format!("arn:aws:kms:{}:{}:{alias}", super::REGION, super::ACCOUNT),
            key_arn.to_owned(),
        ),
    ]
    .into()
}
