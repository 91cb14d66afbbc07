//! The sweep queue (`SWEEP_QUEUE_URL`): sqs:SendMessageBatch with the function's own
//! credentials, for a sweep's plan and a place's follow-up message.

use crate::aws::error::AwsError;

/// The most messages one SendMessageBatch takes
/// (<https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html>).
pub const BATCH: usize = 10;

/// A message SQS did not take, by its index in the batch.
#[derive(Debug)]
pub struct Refused {
    /// The index of the message in the batch sent.
    pub index: usize,
    /// Why, with SQS's code.
    pub error: AwsError,
}

/// The sweep queue over the SDK's SQS client.
#[derive(Debug, Clone)]
pub struct SweepQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SweepQueue {
    /// The queue at `url`, reached with `client`.
    pub fn new(client: aws_sdk_sqs::Client, url: &str) -> Self {
        Self {
            client,
            url: url.to_owned(),
        }
    }

    /// Sends at most [`BATCH`] bodies in one call. `Err`: the call failed and no message was
    /// taken; `Ok` lists the messages SQS refused (the others were taken).
    pub async fn send(&self, bodies: &[String]) -> Result<Vec<Refused>, AwsError> {
        use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
        let entries = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .map_err(|e| AwsError::unsent("Enforcer.InvalidMessage", e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(AwsError::from_sdk)?;
        Ok(out
            .failed()
            .iter()
            .map(|f| Refused {
                index: f.id().parse().unwrap_or(usize::MAX),
                error: AwsError::new(f.code(), f.message().unwrap_or_default()),
            })
            .collect())
    }
}
