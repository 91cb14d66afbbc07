//! An SQS event (a batch from the sweep queue's event source mapping) and the answer that names
//! the messages to keep, as Lambda's `ReportBatchItemFailures` reads it
//! (<https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html>).

use serde::Serialize;
use serde_json::Value;

/// One message of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `messageId`: what an item failure names.
    pub message_id: String,
    /// `body`.
    pub body: String,
}

/// Whether `event` is an SQS batch: `Records` whose every entry has `eventSource` `aws:sqs`.
pub fn is_sqs(event: &Value) -> bool {
    event
        .get("Records")
        .and_then(Value::as_array)
        .is_some_and(|records| {
            !records.is_empty()
                && records
                    .iter()
                    .all(|r| r.get("eventSource").and_then(Value::as_str) == Some("aws:sqs"))
        })
}

/// The batch's messages. `Err` when one has no `messageId` or `body`: no item failure could
/// name it, so the whole batch must fail and come back.
pub fn records(event: &Value) -> Result<Vec<Record>, String> {
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .ok_or("no Records")?;
    records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let field = |name: &str| {
                r.get(name)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .ok_or_else(|| format!("Records[{i}] has no {name}"))
            };
            Ok(Record {
                message_id: field("messageId")?,
                body: field("body")?,
            })
        })
        .collect()
}

/// The answer to an SQS batch: the messages to keep (every other one is deleted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BatchResponse {
    /// The messages that failed.
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<ItemFailure>,
}

/// One message that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemFailure {
    /// Its `messageId`.
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_batch_is_read_and_answered_as_lambda_expects() {
        let event = json!({"Records": [
            {"messageId": "m1", "body": "{}", "eventSource": "aws:sqs"},
            {"messageId": "m2", "body": "x", "eventSource": "aws:sqs"}
        ]});
        assert!(is_sqs(&event));
        let read = records(&event).unwrap();
        assert_eq!(read[1].message_id, "m2");
        assert_eq!(read[1].body, "x");
        let answer = BatchResponse {
            batch_item_failures: vec![ItemFailure {
                item_identifier: "m2".into(),
            }],
        };
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            json!({"batchItemFailures": [{"itemIdentifier": "m2"}]})
        );
        assert_eq!(
            serde_json::to_value(BatchResponse::default()).unwrap(),
            json!({"batchItemFailures": []})
        );
    }

    #[test]
    fn a_record_without_an_id_fails_the_batch_and_other_events_are_not_batches() {
        let event = json!({"Records": [{"body": "{}", "eventSource": "aws:sqs"}]});
        assert!(records(&event).unwrap_err().contains("messageId"));
        assert!(!is_sqs(&json!({"Records": []})));
        assert!(!is_sqs(&json!({"Records": [{"eventSource": "aws:s3"}]})));
        assert!(!is_sqs(&json!({"source": "aws.kinesis"})));
    }
}
