//! A [`Connector`] for tests that hand the enforcer their own adapters.

use stream_encryption_enforcer::aws::connector::{Adapters, Connector, Organization};
use stream_encryption_enforcer::aws::error::AwsError;
use stream_encryption_enforcer::aws::firehose::FirehoseApi;
use stream_encryption_enforcer::aws::kinesis::KinesisApi;
use stream_encryption_enforcer::aws::kms::KmsApi;
use stream_encryption_enforcer::model::resource::Location;

/// A connector with one set of adapters (mocked SDK clients, or fakes) for the function's own
/// account, and no role: every other account and region is out of its reach.
pub struct OwnAccount<K, F, M> {
    kinesis: K,
    firehose: F,
    kms: M,
}

impl<K, F, M> OwnAccount<K, F, M> {
    /// Always these adapters.
    pub fn new(kinesis: K, firehose: F, kms: M) -> Self {
        Self {
            kinesis,
            firehose,
            kms,
        }
    }
}

const NO_ROLE: &str = "Enforcer.NoTargetRole";

impl<K, F, M> Connector for OwnAccount<K, F, M>
where
    K: KinesisApi + Clone,
    F: FirehoseApi + Clone,
    M: KmsApi + Clone,
{
    type Kinesis = K;
    type Firehose = F;
    type Kms = M;

    fn connect(&self, _: &Location, own: bool) -> Result<Adapters<K, F, M>, AwsError> {
        if !own {
            return Err(AwsError::new(NO_ROLE, "no role to reach another account"));
        }
        Ok(Adapters {
            kinesis: self.kinesis.clone(),
            firehose: self.firehose.clone(),
            kms: self.kms.clone(),
        })
    }

    async fn assume(&self, _: &Location) -> Result<(), AwsError> {
        Err(AwsError::new(NO_ROLE, "no role to reach another account"))
    }

    async fn organization(&self) -> Result<Organization, AwsError> {
        Err(AwsError::new(
            NO_ROLE,
            "no organisation in single-account mode",
        ))
    }
}
