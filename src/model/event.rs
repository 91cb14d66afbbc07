//! Parsing an EventBridge event carrying a CloudTrail record into the resource to act on.
//!
//! Three results: a [`Trigger`] (act on this resource), [`Parsed::Ignored`] (a well-formed event
//! that needs no action, with the reason), or an [`InvalidEvent`] error (malformed, or a value
//! that fails validation). Nothing from the event reaches an ARN or an AWS call unvalidated.

use crate::model::caller::Caller;
use crate::model::exemption::Tags;
use crate::model::resource::{InvalidValue, Location, Resource, Service};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use serde::Deserialize;
use serde_json::Value;

/// EventBridge accepts events of up to 256 KiB; anything much larger did not come from it.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// The `detail-type` of CloudTrail management events delivered to EventBridge.
pub const CLOUDTRAIL_DETAIL_TYPE: &str = "AWS API Call via CloudTrail";

/// The calls the enforcer reacts to, per service.
pub const KINESIS_EVENTS: [&str; 3] = [
    "CreateStream",
    "StartStreamEncryption",
    "StopStreamEncryption",
];
/// The Firehose calls the enforcer reacts to.
pub const FIREHOSE_EVENTS: [&str; 3] = [
    "CreateDeliveryStream",
    "StartDeliveryStreamEncryption",
    "StopDeliveryStreamEncryption",
];

/// An event that asks for the mandated key to be checked on one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// The EventBridge event id (falls back to the CloudTrail `eventID`).
    pub event_id: Option<String>,
    /// The CloudTrail `eventName` (`CreateStream`, ...).
    pub event_name: String,
    /// The stream or delivery stream.
    pub resource: Resource,
    /// Tags given in the create call itself, when the record has them (saves a ListTags call).
    pub tags: Option<Tags>,
    /// Who made the call: the tool, if any, is recognised from this.
    pub caller: Caller,
}

/// The result of parsing a well-formed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Act on this resource.
    Trigger(Trigger),
    /// Nothing to do.
    Ignored {
        /// The event id, when the event has one.
        event_id: Option<String>,
        /// The service the event is about, when known.
        service: Option<Service>,
        /// The CloudTrail `eventName`, when there is one.
        event_name: Option<String>,
        /// Why no action is taken.
        reason: String,
    },
}

/// Why an event could not be used. Retrying cannot help; the event is kept by the on-failure
/// destination for an operator.
#[derive(Debug, thiserror::Error)]
pub enum InvalidEvent {
    /// The payload is larger than any EventBridge event.
    #[error("event is {0} bytes; EventBridge events are at most 256 KiB")]
    TooLarge(usize),
    /// Not JSON, or not an EventBridge envelope.
    #[error("not an EventBridge event: {0}")]
    Envelope(#[source] serde_json::Error),
    /// The CloudTrail record in `detail` is not shaped as CloudTrail writes it.
    #[error("detail is not a CloudTrail record: {0}")]
    Detail(#[source] serde_json::Error),
    /// A field the handled call always has is missing.
    #[error("{event_name} record has no {field}")]
    Missing {
        /// The CloudTrail event name.
        event_name: String,
        /// The missing field.
        field: &'static str,
    },
    /// A value failed validation.
    #[error("{0}")]
    Invalid(#[from] InvalidValue),
    /// Two parts of the event disagree.
    #[error("inconsistent event: {0}")]
    Inconsistent(String),
}

/// The fields of a CloudTrail record the enforcer reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CloudTrailRecord {
    event_source: String,
    event_name: String,
    aws_region: Option<String>,
    recipient_account_id: Option<String>,
    #[serde(rename = "eventID")]
    event_id: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
    #[serde(default)]
    request_parameters: Option<Value>,
    #[serde(default)]
    response_elements: Option<Value>,
    user_agent: Option<Value>,
    user_identity: Option<Value>,
}

/// The caller as the record names it. Fields that are absent or not strings are left out: they
/// only ever inform a settle period and a report, never which resource is acted on.
fn caller_of(record: &CloudTrailRecord) -> Caller {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let identity = record.user_identity.as_ref();
    Caller {
        user_agent: text(record.user_agent.as_ref()),
        invoked_by: text(identity.and_then(|i| i.get("invokedBy"))),
        principal: text(identity.and_then(|i| i.pointer("/sessionContext/sessionIssuer/arn")))
            .or_else(|| text(identity.and_then(|i| i.get("arn")))),
    }
}

/// Whether an event is EventBridge's scheduled event (`aws.events`, `Scheduled Event`), which
/// starts a sweep.
pub fn is_scheduled(value: &Value) -> bool {
    value.get("source").and_then(Value::as_str) == Some("aws.events")
        && value.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
}

/// Parses a payload as the Lambda or the CLI receives it.
pub fn parse_bytes(bytes: &[u8]) -> Result<Parsed, InvalidEvent> {
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(InvalidEvent::TooLarge(bytes.len()));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(InvalidEvent::Envelope)?;
    parse(value)
}

/// Parses an event already decoded as JSON.
pub fn parse(value: Value) -> Result<Parsed, InvalidEvent> {
    let envelope: EventBridgeEvent<Value> =
        serde_json::from_value(value).map_err(InvalidEvent::Envelope)?;
    let event_id = envelope.id.clone();
    let service = match envelope.source.as_str() {
        "aws.kinesis" => Some(Service::Kinesis),
        "aws.firehose" => Some(Service::Firehose),
        _ => None,
    };
    if envelope.detail_type != CLOUDTRAIL_DETAIL_TYPE {
        return Ok(Parsed::Ignored {
            event_id,
            service,
            event_name: None,
            reason: format!("detail-type {:?} is not handled", envelope.detail_type),
        });
    }
    let Some(service) = service else {
        return Ok(Parsed::Ignored {
            event_id,
            service: None,
            event_name: None,
            reason: format!(
                "source {:?} is not aws.kinesis or aws.firehose",
                envelope.source
            ),
        });
    };
    let record: CloudTrailRecord =
        serde_json::from_value(envelope.detail).map_err(InvalidEvent::Detail)?;
    let event_id = event_id.or(record.event_id.clone());
    let expected_source = match service {
        Service::Kinesis => "kinesis.amazonaws.com",
        Service::Firehose => "firehose.amazonaws.com",
    };
    if record.event_source != expected_source {
        return Err(InvalidEvent::Inconsistent(format!(
            "source {} but eventSource {:?}",
            envelope.source, record.event_source
        )));
    }
    let ignored = |reason: String| Parsed::Ignored {
        event_id: event_id.clone(),
        service: Some(service),
        event_name: Some(record.event_name.clone()),
        reason,
    };
    let handled = match service {
        Service::Kinesis => KINESIS_EVENTS.contains(&record.event_name.as_str()),
        Service::Firehose => FIREHOSE_EVENTS.contains(&record.event_name.as_str()),
    };
    if !handled {
        return Ok(ignored(format!(
            "{} is not a call that changes encryption",
            record.event_name
        )));
    }
    if let Some(code) = &record.error_code {
        let message = record.error_message.as_deref().unwrap_or("");
        return Ok(ignored(format!(
            "the call failed ({code}: {message}); nothing changed"
        )));
    }
    let missing = |field| InvalidEvent::Missing {
        event_name: record.event_name.clone(),
        field,
    };
    let account = record
        .recipient_account_id
        .as_deref()
        .or(envelope.account.as_deref())
        .ok_or_else(|| missing("recipientAccountId"))?;
    let region = record
        .aws_region
        .as_deref()
        .or(envelope.region.as_deref())
        .ok_or_else(|| missing("awsRegion"))?;
    let location = Location::new(account, region)?;
    // EventBridge sets the envelope's account and region from where the event happened and
    // keeps them when a rule forwards it; the record says the same of the call. A record that
    // names another place than its envelope was put together by someone: no AWS call for it.
    for (field, recorded, envelope_field, delivered) in [
        (
            "detail.recipientAccountId",
            account,
            "account",
            envelope.account.as_deref(),
        ),
        (
            "detail.awsRegion",
            region,
            "region",
            envelope.region.as_deref(),
        ),
    ] {
        if let Some(delivered) = delivered.filter(|d| *d != recorded) {
            return Err(InvalidEvent::Inconsistent(format!(
                "{field} {recorded:?} is not the event's {envelope_field} {delivered:?}"
            )));
        }
    }
    let params = record.request_parameters.as_ref();
    let resource = match service {
        Service::Kinesis => {
            let name = string_field(params, "streamName")?;
            let arn = string_field(params, "streamARN")?;
            target(
                service,
                &location,
                name,
                arn,
                "requestParameters.streamName",
                &record.event_name,
            )?
        }
        Service::Firehose => {
            let name = string_field(params, "deliveryStreamName")?;
            let arn = string_field(record.response_elements.as_ref(), "deliveryStreamARN")?;
            target(
                service,
                &location,
                name,
                arn,
                "requestParameters.deliveryStreamName",
                &record.event_name,
            )?
        }
    };
    let tags = params.and_then(|p| p.get("tags")).and_then(record_tags);
    let caller = caller_of(&record);
    Ok(Parsed::Trigger(Trigger {
        event_id,
        event_name: record.event_name,
        resource,
        tags,
        caller,
    }))
}

/// Tags as CloudTrail records them: a map for Kinesis (`{"team": "a"}`), a list of
/// `{"key", "value"}` for Firehose. Anything else is no hint (the tags are then listed).
fn record_tags(value: &Value) -> Option<Tags> {
    match value {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| Some((k.clone(), Some(v.as_str()?.to_owned()))))
            .collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let key = item.get("key")?.as_str()?.to_owned();
                let value = item.get("value").and_then(Value::as_str).map(str::to_owned);
                Some((key, value))
            })
            .collect(),
        _ => None,
    }
}

/// A string field of an object that may be absent or null; a non-string value is an error.
fn string_field<'a>(
    object: Option<&'a Value>,
    field: &'static str,
) -> Result<Option<&'a str>, InvalidEvent> {
    match object.and_then(|o| o.get(field)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(InvalidEvent::Inconsistent(format!(
            "{field} is not a string"
        ))),
    }
}

/// The resource named by a name and/or an ARN; when both are given they must agree, and the
/// ARN must be in the account and region the record comes from.
fn target(
    service: Service,
    location: &Location,
    name: Option<&str>,
    arn: Option<&str>,
    name_field: &'static str,
    event_name: &str,
) -> Result<Resource, InvalidEvent> {
    let from_name = name
        .map(|n| Resource::named(service, location.clone(), n))
        .transpose()?;
    let from_arn = arn.map(|a| Resource::from_arn(service, a)).transpose()?;
    match (from_name, from_arn) {
        (Some(by_name), Some(by_arn)) if by_name != by_arn => {
            Err(InvalidEvent::Inconsistent(format!(
                "name {:?} and ARN {:?} name different streams",
                by_name.name,
                by_arn.arn()
            )))
        }
        (_, Some(by_arn)) if by_arn.location != *location => {
            Err(InvalidEvent::Inconsistent(format!(
                "ARN {:?} is not in account {} region {} where the call was recorded",
                by_arn.arn(),
                location.account,
                location.region
            )))
        }
        (Some(resource), _) | (None, Some(resource)) => Ok(resource),
        (None, None) => Err(InvalidEvent::Missing {
            event_name: event_name.to_owned(),
            field: name_field,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> Value {
        let text = match name {
            "kinesis-create-stream" => include_str!("../../events/kinesis-create-stream.json"),
            "kinesis-create-stream-failed" => {
                include_str!("../../events/kinesis-create-stream-failed.json")
            }
            "kinesis-stop-stream-encryption" => {
                include_str!("../../events/kinesis-stop-stream-encryption.json")
            }
            "kinesis-start-stream-encryption-foreign-key" => {
                include_str!("../../events/kinesis-start-stream-encryption-foreign-key.json")
            }
            "kinesis-delete-stream" => include_str!("../../events/kinesis-delete-stream.json"),
            "firehose-create-delivery-stream" => {
                include_str!("../../events/firehose-create-delivery-stream.json")
            }
            "firehose-create-delivery-stream-kinesis-source" => {
                include_str!("../../events/firehose-create-delivery-stream-kinesis-source.json")
            }
            "firehose-start-delivery-stream-encryption" => {
                include_str!("../../events/firehose-start-delivery-stream-encryption.json")
            }
            "firehose-stop-delivery-stream-encryption" => {
                include_str!("../../events/firehose-stop-delivery-stream-encryption.json")
            }
            other => panic!("no fixture {other}"),
        };
        serde_json::from_str(text).unwrap()
    }

    fn trigger(name: &str) -> Trigger {
        match parse(fixture(name)).unwrap() {
            Parsed::Trigger(t) => t,
            other => panic!("{name}: {other:?}"),
        }
    }

    fn ignored_reason(value: Value) -> String {
        match parse(value).unwrap() {
            Parsed::Ignored { reason, .. } => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_handled_fixture_names_its_resource() {
        let cases = [
            (
                "kinesis-create-stream",
                "CreateStream",
                "arn:aws:kinesis:us-east-1:123456789012:stream/orders",
            ),
            (
                "kinesis-stop-stream-encryption",
                "StopStreamEncryption",
                "arn:aws:kinesis:us-east-1:123456789012:stream/orders",
            ),
            (
                "kinesis-start-stream-encryption-foreign-key",
                "StartStreamEncryption",
                "arn:aws:kinesis:us-east-1:123456789012:stream/orders",
            ),
            (
                "firehose-create-delivery-stream",
                "CreateDeliveryStream",
                "arn:aws:firehose:us-east-1:123456789012:deliverystream/clickstream",
            ),
            (
                "firehose-create-delivery-stream-kinesis-source",
                "CreateDeliveryStream",
                "arn:aws:firehose:us-east-1:123456789012:deliverystream/orders-archive",
            ),
            (
                "firehose-start-delivery-stream-encryption",
                "StartDeliveryStreamEncryption",
                "arn:aws:firehose:us-east-1:123456789012:deliverystream/clickstream",
            ),
            (
                "firehose-stop-delivery-stream-encryption",
                "StopDeliveryStreamEncryption",
                "arn:aws:firehose:us-east-1:123456789012:deliverystream/clickstream",
            ),
        ];
        for (name, event_name, arn) in cases {
            let t = trigger(name);
            assert_eq!(t.event_name, event_name, "{name}");
            assert_eq!(t.resource.arn(), arn, "{name}");
            assert!(
                t.event_id
                    .as_deref()
                    .is_some_and(|id| id.starts_with("7bf73129")),
                "{name}"
            );
        }
    }

    #[test]
    fn failed_calls_and_other_calls_are_ignored_with_the_reason() {
        let reason = ignored_reason(fixture("kinesis-create-stream-failed"));
        assert!(reason.contains("ResourceInUseException"), "{reason}");
        let reason = ignored_reason(fixture("kinesis-delete-stream"));
        assert!(reason.contains("DeleteStream"), "{reason}");
        let mut scheduled = fixture("kinesis-create-stream");
        scheduled["detail-type"] = json!("Scheduled Event");
        assert!(ignored_reason(scheduled).contains("Scheduled Event"));
        let mut other = fixture("kinesis-create-stream");
        other["source"] = json!("aws.s3");
        assert!(ignored_reason(other).contains("aws.s3"));
    }

    #[test]
    fn a_record_naming_another_account_or_region_than_its_envelope_is_refused() {
        for (field, value, envelope) in [
            ("recipientAccountId", "210987654321", "account"),
            ("awsRegion", "eu-west-1", "region"),
        ] {
            let mut event = fixture("kinesis-create-stream");
            event["detail"][field] = json!(value);
            let error = parse(event).unwrap_err();
            assert!(
                matches!(error, InvalidEvent::Inconsistent(_)),
                "{field}: {error}"
            );
            let message = error.to_string();
            assert!(
                message.contains(field) && message.contains(value) && message.contains(envelope),
                "{message}"
            );
        }
        // Both parts moved together: the place the event names.
        let mut event = fixture("kinesis-create-stream");
        event["detail"]["recipientAccountId"] = json!("210987654321");
        event["account"] = json!("210987654321");
        let Parsed::Trigger(t) = parse(event).unwrap() else {
            panic!()
        };
        assert_eq!(t.resource.location.account, "210987654321");
    }

    #[test]
    fn partition_comes_from_the_region() {
        let mut event = fixture("kinesis-create-stream");
        event["detail"]["awsRegion"] = json!("cn-north-1");
        event["region"] = json!("cn-north-1");
        let Parsed::Trigger(t) = parse(event).unwrap() else {
            panic!()
        };
        assert_eq!(
            t.resource.arn(),
            "arn:aws-cn:kinesis:cn-north-1:123456789012:stream/orders"
        );
    }

    #[test]
    fn malformed_events_are_errors_with_a_reason() {
        type Edit = Box<dyn Fn(&mut Value)>;
        let edits: Vec<(&str, Edit, &str)> = vec![
            (
                "no detail-type",
                Box::new(|e| drop(e.as_object_mut().unwrap().remove("detail-type"))),
                "EventBridge",
            ),
            (
                "detail not a record",
                Box::new(|e| e["detail"] = json!("text")),
                "CloudTrail",
            ),
            (
                "no stream name",
                Box::new(|e| e["detail"]["requestParameters"] = json!({})),
                "streamName",
            ),
            (
                "null parameters",
                Box::new(|e| e["detail"]["requestParameters"] = Value::Null),
                "streamName",
            ),
            (
                "bad name",
                Box::new(|e| e["detail"]["requestParameters"]["streamName"] = json!("a/b")),
                "may contain only",
            ),
            (
                "long name",
                Box::new(|e| {
                    e["detail"]["requestParameters"]["streamName"] = json!("x".repeat(129))
                }),
                "1 to 128",
            ),
            (
                "name not string",
                Box::new(|e| e["detail"]["requestParameters"]["streamName"] = json!(7)),
                "not a string",
            ),
            (
                "bad account",
                Box::new(|e| e["detail"]["recipientAccountId"] = json!("12345")),
                "12 digits",
            ),
            (
                "bad region",
                Box::new(|e| e["detail"]["awsRegion"] = json!("../../etc")),
                "region",
            ),
            (
                "source mismatch",
                Box::new(|e| e["detail"]["eventSource"] = json!("s3.amazonaws.com")),
                "eventSource",
            ),
            (
                "ARN elsewhere",
                Box::new(|e| {
                    e["detail"]["requestParameters"] =
                        json!({"streamARN": "arn:aws:kinesis:us-east-1:210987654321:stream/orders"})
                }),
                "not in account",
            ),
            (
                "ARN and name disagree",
                Box::new(|e| {
                    e["detail"]["requestParameters"]["streamARN"] =
                        json!("arn:aws:kinesis:us-east-1:123456789012:stream/other")
                }),
                "different streams",
            ),
        ];
        for (what, edit, expected) in edits {
            let mut event = fixture("kinesis-create-stream");
            edit(&mut event);
            let err = parse(event).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{what}: {err:?} does not mention {expected:?}"
            );
        }
        assert!(matches!(
            parse_bytes(b"not json"),
            Err(InvalidEvent::Envelope(_))
        ));
        assert!(matches!(
            parse_bytes(&vec![b' '; MAX_EVENT_BYTES + 1]),
            Err(InvalidEvent::TooLarge(_))
        ));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse_bytes(deep.as_bytes()).is_err());
    }

    #[test]
    fn tags_in_the_create_call_are_kept_for_the_exemption_check() {
        let mut event = fixture("kinesis-create-stream");
        event["detail"]["requestParameters"]["tags"] =
            json!({"team": "data", "compliance": "exempt"});
        let Parsed::Trigger(t) = parse(event).unwrap() else {
            panic!()
        };
        let mut tags = t.tags.unwrap();
        tags.sort();
        assert_eq!(
            tags,
            vec![
                ("compliance".into(), Some("exempt".into())),
                ("team".into(), Some("data".into()))
            ]
        );
        let mut event = fixture("firehose-create-delivery-stream");
        event["detail"]["requestParameters"]["tags"] =
            json!([{"key": "compliance", "value": "exempt"}, {"key": "bare"}]);
        let Parsed::Trigger(t) = parse(event).unwrap() else {
            panic!()
        };
        assert_eq!(
            t.tags.unwrap(),
            vec![
                ("compliance".into(), Some("exempt".into())),
                ("bare".into(), None)
            ]
        );
        assert_eq!(trigger("kinesis-create-stream").tags, None);
        let mut odd = fixture("kinesis-create-stream");
        odd["detail"]["requestParameters"]["tags"] = json!("not tags");
        let Parsed::Trigger(t) = parse(odd).unwrap() else {
            panic!()
        };
        assert_eq!(t.tags, None);
    }

    #[test]
    fn firehose_arn_must_agree_with_the_name() {
        let mut event = fixture("firehose-create-delivery-stream");
        event["detail"]["responseElements"]["deliveryStreamARN"] =
            json!("arn:aws:firehose:us-east-1:123456789012:deliverystream/another");
        assert!(
            parse(event)
                .unwrap_err()
                .to_string()
                .contains("different streams")
        );
    }
}
