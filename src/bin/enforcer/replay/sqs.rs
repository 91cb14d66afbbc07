//! [`Queue`] on SQS: ReceiveMessage, DeleteMessage, ChangeMessageVisibility, GetQueueAttributes.

use super::walk::{BATCH, Queue, Received, WAIT};
use std::time::Duration;
use stream_encryption_enforcer::aws::error::AwsError;

/// [`Queue`] on an SQS queue.
pub struct Sqs {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl Sqs {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }
}

impl Queue for Sqs {
    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Received>, AwsError> {
        use aws_sdk_sqs::types::MessageSystemAttributeName;
        let answer = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, BATCH) as i32)
            .visibility_timeout(visibility.as_secs() as i32)
            .wait_time_seconds(WAIT.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_attribute_names("ERROR_CODE")
            .send()
            .await
            .map_err(AwsError::from_sdk)?;
        Ok(answer
            .messages()
            .iter()
            .filter_map(|m| {
                Some(Received {
                    id: m.message_id()?.to_owned(),
                    receipt: m.receipt_handle()?.to_owned(),
                    body: m.body().unwrap_or_default().to_owned(),
                    receive_count: m
                        .attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                        .and_then(|c| c.parse().ok()),
                    error_code: m
                        .message_attributes()
                        .and_then(|a| a.get("ERROR_CODE"))
                        .and_then(|v| v.string_value())
                        .map(str::to_owned),
                })
            })
            .collect())
    }

    async fn delete(&self, receipt: &str) -> Result<(), AwsError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map(|_| ())
            .map_err(AwsError::from_sdk)
    }

    async fn release(&self, receipt: &str) -> Result<(), AwsError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await
            .map(|_| ())
            .map_err(AwsError::from_sdk)
    }

    async fn approximate_len(&self) -> Option<u64> {
        use aws_sdk_sqs::types::QueueAttributeName;
        let answer = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .ok()?;
        answer
            .attributes()?
            .get(&QueueAttributeName::ApproximateNumberOfMessages)?
            .parse()
            .ok()
    }
}
