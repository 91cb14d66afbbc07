//! A [`Connector`] for tests that hand the enforcer their own port.

use stream_encryption_enforcer::aws::connector::{Connector, Organization};
use stream_encryption_enforcer::aws::error::AwsError;
use stream_encryption_enforcer::aws::{Aws, SdkAws};
use stream_encryption_enforcer::model::resource::Location;

/// A connector with one port (mocked SDK clients, or a fake) for the function's own account,
/// and no role: every other account and region is out of its reach. Its sweep queue keeps
/// what is sent to it.
pub struct OwnAccount<A> {
    aws: A,
    queue: std::sync::Mutex<Vec<String>>,
}

impl<A> OwnAccount<A> {
    /// Always this port.
    pub fn new(aws: A) -> Self {
        Self {
            aws,
            queue: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The messages sent to the sweep queue since the last call, oldest first.
    pub fn take_sent(&self) -> Vec<String> {
        std::mem::take(&mut *self.queue.lock().unwrap())
    }
}

const NO_ROLE: &str = "Enforcer.NoTargetRole";

impl<A: Aws + Clone> Connector for OwnAccount<A> {
    type Aws = A;

    fn connect(&self, _: &Location, own: bool) -> Result<A, AwsError> {
        if !own {
            return Err(AwsError::new(NO_ROLE, "no role to reach another account"));
        }
        Ok(self.aws.clone())
    }

    async fn assume(&self, _: &Location) -> Result<(), AwsError> {
        Err(AwsError::new(NO_ROLE, "no role to reach another account"))
    }

    async fn enqueue(
        &self,
        _: stream_encryption_enforcer::aws::queue::QueueKind,
        messages: &[stream_encryption_enforcer::aws::queue::Outgoing],
    ) -> Result<Vec<stream_encryption_enforcer::aws::queue::Refused>, AwsError> {
        self.queue
            .lock()
            .unwrap()
            .extend(messages.iter().map(|m| m.body.clone()));
        Ok(Vec::new())
    }

    async fn organization(&self) -> Result<Organization, AwsError> {
        Err(AwsError::new(
            NO_ROLE,
            "no organisation in single-account mode",
        ))
    }
}

impl OwnAccount<SdkAws> {
    /// Always a port over these SDK clients (mocked ones, or an emulator's), with no ledger.
    pub fn sdk(
        kinesis: aws_sdk_kinesis::Client,
        firehose: aws_sdk_firehose::Client,
        kms: aws_sdk_kms::Client,
    ) -> Self {
        Self::new(SdkAws::new(kinesis, firehose, kms, None))
    }
}
