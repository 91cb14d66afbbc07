//! What the enforcer needs from KMS (resolving a key reference to its key ARN), and its adapter.

use crate::aws::SdkAws;
use crate::aws::error::{AwsError, transport};
use crate::model::key::KeyInfo;
use aws_sdk_kms::types::KeyManagerType;
use std::future::Future;

/// The KMS calls the enforcer makes.
pub trait KmsApi: Send + Sync {
    /// kms:DescribeKey on a key id, key ARN, alias name or alias ARN.
    fn describe_key(&self, key: &str) -> impl Future<Output = Result<KeyInfo, AwsError>> + Send;
}

impl KmsApi for SdkAws {
    async fn describe_key(&self, key: &str) -> Result<KeyInfo, AwsError> {
        describe_key(&self.kms, key).await
    }
}

/// kms:DescribeKey with a bare client: the cold-start check makes it before any [`SdkAws`].
async fn describe_key(kms: &aws_sdk_kms::Client, key: &str) -> Result<KeyInfo, AwsError> {
    let out = kms
        .describe_key()
        .key_id(key)
        .send()
        .await
        .map_err(AwsError::from_sdk)?;
    let meta = out.key_metadata().ok_or_else(|| {
        AwsError::new(
            transport::RESPONSE_ERROR,
            "DescribeKey returned no key metadata",
        )
    })?;
    let arn = meta.arn().ok_or_else(|| {
        AwsError::new(transport::RESPONSE_ERROR, "DescribeKey returned no key ARN")
    })?;
    Ok(KeyInfo {
        arn: arn.to_owned(),
        aws_managed: meta.key_manager() == Some(&KeyManagerType::Aws),
    })
}

/// Whether `MANDATED_KMS_KEY` names `MANDATED_KMS_KEY_ARN` in the function's `region`: the two
/// are set separately, and the template scopes the function's KMS permissions to the ARN, so a
/// mismatch would fail every event (or, worse, apply a key nobody meant). `Err` is the
/// configuration error, naming both values. A check that cannot finish (throttling, an outage)
/// is not an error: it is logged, and each event resolves the key anyway. `Ok` holds the
/// resolution when it was made, for the function's own place to start with.
pub async fn check_mandated_key_arn(
    config: &crate::config::Config,
    kms: &aws_sdk_kms::Client,
    region: &str,
    deadline: tokio::time::Instant,
) -> Result<Option<KeyInfo>, String> {
    use crate::config::{MANDATED_KMS_KEY, MANDATED_KMS_KEY_ARN};
    use crate::model::key::KeyForm;
    let Some(expected) = &config.mandated_key_arn else {
        return Ok(None);
    };
    let configured = config.mandated_key.configured();
    let Ok(KeyForm::KeyArn { location, .. }) = KeyForm::parse(expected) else {
        return Err(format!(
            "{MANDATED_KMS_KEY_ARN}: {expected:?} is not a key ARN"
        ));
    };
    if location.region != region {
        return Err(format!(
            "{MANDATED_KMS_KEY_ARN} {expected} is a key in {}, but the function runs in {region}; \
             give the ARN of the key {MANDATED_KMS_KEY} ({configured}) names in {region}",
            location.region
        ));
    }
    let here = config.mandated_key_at(&location)?;
    let mut random = fastrand::Rng::new();
    let resolved = crate::policy::retry::run(
        &config.retry_policy,
        deadline,
        &mut random,
        "kms:DescribeKey",
        || describe_key(kms, here.configured()),
    )
    .await;
    match resolved {
        Ok((info, _)) if info.arn == *expected => Ok(Some(info)),
        Ok((info, _)) => Err(format!(
            "{MANDATED_KMS_KEY} {} names the key {} in {region}, but {MANDATED_KMS_KEY_ARN} is \
             {expected} (the function's KMS permissions are scoped to it): give the two the same key",
            here.configured(),
            info.arn
        )),
        Err(e) if crate::policy::retry::PERMISSION_ERRORS.contains(&e.aws().code()) => {
            Err(format!(
                "kms:DescribeKey of {MANDATED_KMS_KEY} {} was denied ({}): the function may describe \
             only {MANDATED_KMS_KEY_ARN} {expected}, so {} names another key, or the key policy \
             does not allow the function's role",
                here.configured(),
                e.aws().code(),
                here.configured()
            ))
        }
        Err(e) if e.aws().code() == "NotFoundException" && !here.form().is_aws_managed_alias() => {
            Err(format!(
                "{MANDATED_KMS_KEY} {} does not exist in {region} ({}), so it cannot be \
                 {MANDATED_KMS_KEY_ARN} {expected}",
                here.configured(),
                e.aws()
            ))
        }
        Err(e) => {
            tracing::warn!(error = %e, key = here.configured(), expected = %expected, "could not check that MANDATED_KMS_KEY names MANDATED_KMS_KEY_ARN; each event resolves the key itself");
            Ok(None)
        }
    }
}
