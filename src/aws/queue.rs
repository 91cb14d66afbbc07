//! The product's own queues, reached with the function's own credentials: the sweep queue
//! (`SWEEP_QUEUE_URL`: a sweep's plan and a place's follow-up), the events queue
//! (`EVENTS_QUEUE_URL`: CloudTrail events routed to their account and region's message group)
//! and the failed-events queue (`FAILED_EVENTS_QUEUE_URL`: what an event from the events queue
//! failed with, as Lambda's on-failure destination would keep it).

use crate::aws::error::AwsError;

/// The most messages one SendMessageBatch takes
/// (<https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html>).
pub const BATCH: usize = 10;

/// Which of the product's queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueKind {
    /// `SWEEP_QUEUE_URL`.
    Sweep,
    /// `EVENTS_QUEUE_URL`.
    Events,
    /// `FAILED_EVENTS_QUEUE_URL`.
    Failed,
    /// `RECHECK_QUEUE_URL`.
    Recheck,
}

impl QueueKind {
    /// The variable that names the queue.
    pub fn variable(self) -> &'static str {
        match self {
            Self::Sweep => crate::config::SWEEP_QUEUE_URL,
            Self::Events => crate::config::EVENTS_QUEUE_URL,
            Self::Failed => crate::config::FAILED_EVENTS_QUEUE_URL,
            Self::Recheck => crate::config::RECHECK_QUEUE_URL,
        }
    }
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The body.
    pub body: String,
    /// The message group of a FIFO queue: one account and region
    /// ([`crate::model::resource::Location::group`]).
    pub group: Option<String>,
    /// The deduplication id of a FIFO queue: the same id within 5 minutes is taken once.
    pub dedup: Option<String>,
    /// Seconds (0 to 900) before a standard queue hands the message out.
    pub delay: Option<i32>,
}

impl Outgoing {
    /// A message of `group`, deduplicated by its body.
    pub fn grouped(body: String, group: String) -> Self {
        let dedup = format!("{:016x}", fnv1a(body.as_bytes()));
        Self {
            body,
            group: Some(group),
            dedup: Some(dedup),
            delay: None,
        }
    }

    /// A message of a standard queue, handed out after `delay` seconds.
    pub fn plain(body: String, delay: Option<i32>) -> Self {
        Self {
            body,
            group: None,
            dedup: None,
            delay,
        }
    }
}

/// FNV-1a, 64 bits: a deduplication id that is the same for the same body in every container.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A message SQS did not take, by its index in the batch.
#[derive(Debug)]
pub struct Refused {
    /// The index of the message in the batch sent.
    pub index: usize,
    /// Why, with SQS's code.
    pub error: AwsError,
}

/// One queue over the SDK's SQS client.
#[derive(Debug, Clone)]
pub struct Queue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl Queue {
    /// The queue at `url`, reached with `client`.
    pub fn new(client: aws_sdk_sqs::Client, url: &str) -> Self {
        Self {
            client,
            url: url.to_owned(),
        }
    }

    /// Whether it is a FIFO queue (its name ends in `.fifo`), whose messages need a group and a
    /// deduplication id.
    pub fn is_fifo(&self) -> bool {
        self.url.ends_with(".fifo")
    }

    /// Sends at most [`BATCH`] messages in one call. `Err`: the call failed and no message was
    /// taken; `Ok` lists the messages SQS refused (the others were taken). A FIFO queue's
    /// messages carry their group and deduplication id; a standard queue's, neither.
    pub async fn send(&self, messages: &[Outgoing]) -> Result<Vec<Refused>, AwsError> {
        use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
        let fifo = self.is_fifo();
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let mut entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&m.body);
                if fifo {
                    let (Some(group), Some(dedup)) = (&m.group, &m.dedup) else {
                        return Err(AwsError::unsent(
                            "Enforcer.InvalidMessage",
                            format!("{} is a FIFO queue: a message needs a group", self.url),
                        ));
                    };
                    entry = entry
                        .message_group_id(group)
                        .message_deduplication_id(dedup);
                } else if let Some(delay) = m.delay {
                    entry = entry.delay_seconds(delay);
                }
                entry
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_body_is_deduplicated_by_the_same_id_and_another_by_another() {
        let a = Outgoing::grouped("{\"a\":1}".into(), "111111111111:eu-west-1".into());
        let again = Outgoing::grouped("{\"a\":1}".into(), "111111111111:eu-west-1".into());
        let b = Outgoing::grouped("{\"a\":2}".into(), "111111111111:eu-west-1".into());
        assert_eq!(a.dedup, again.dedup);
        assert_ne!(a.dedup, b.dedup);
        // FNV-1a's published test vector: the id is the same in every build.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
