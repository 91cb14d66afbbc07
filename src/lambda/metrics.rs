//! CloudWatch metrics as embedded metric format (EMF) log lines: one line per outcome, which
//! CloudWatch turns into the `Events` and `WriteCalls` metrics without any API call.

use crate::lambda::Seen;
use crate::model::outcome::Report;
use crate::sweep::plan::PartEnd;
use serde_json::json;

/// The EMF line for what an invocation saw, if it is counted.
pub(super) fn line(namespace: &str, seen: Seen<'_>, timestamp_ms: u64) -> Option<String> {
    Some(match seen {
        Seen::Report(report) => emf_line(namespace, report, timestamp_ms),
        Seen::Missed(report) => counts(
            namespace,
            timestamp_ms,
            &[("MissedByEvents", 1)],
            Some(
                report
                    .service
                    .map_or_else(|| "none".to_owned(), |s| s.to_string()),
            ),
        ),
        // A plan without the organisation's accounts leaves places unswept: one failed place,
        // so that the coverage alarm says so.
        Seen::Planned(places, unread) => counts(
            namespace,
            timestamp_ms,
            &[
                ("PlacesPlanned", places as u64),
                ("PlacesFailed", u64::from(unread)),
            ],
            None,
        ),
        Seen::Part(part) => {
            let one = |end: &str| u64::from(part.end.as_str() == end);
            counts(
                namespace,
                timestamp_ms,
                &[
                    ("PlacesSwept", one(PartEnd::Swept.as_str())),
                    ("PlacesContinued", one("continued")),
                    ("PlacesFailed", one("failed")),
                    ("SweptResources", part.summary.reports.len() as u64),
                ],
                None,
            )
        }
    })
}

/// An EMF line of counts without dimensions (and, with `service`, also by service).
fn counts(
    namespace: &str,
    timestamp_ms: u64,
    metrics: &[(&str, u64)],
    service: Option<String>,
) -> String {
    let dimensions = if service.is_some() {
        json!([[], ["service"]])
    } else {
        json!([[]])
    };
    let mut line = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": dimensions,
                "Metrics": metrics
                    .iter()
                    .map(|(name, _)| json!({"Name": name, "Unit": "Count"}))
                    .collect::<Vec<_>>()
            }]
        }
    });
    for (name, value) in metrics {
        line[*name] = json!(value);
    }
    if let Some(service) = service {
        line["service"] = json!(service);
    }
    line.to_string()
}

/// The EMF line for one report: metric `Events` (1) and `WriteCalls` (the write calls made), with
/// dimensions `service` + `outcome` and `outcome` alone (what the template's alarm watches).
pub(super) fn emf_line(namespace: &str, report: &Report, timestamp_ms: u64) -> String {
    let service = report
        .service
        .map_or_else(|| "none".to_owned(), |s| s.to_string());
    let mut line = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["service", "outcome"], ["outcome"]],
                "Metrics": [
                    {"Name": "Events", "Unit": "Count"},
                    {"Name": "WriteCalls", "Unit": "Count"}
                ]
            }]
        },
        "service": service,
        "outcome": report.outcome.as_str(),
        "Events": 1,
        "WriteCalls": report.attempts
    });
    // A new resource put on the key from its own create event: how long after its creation it
    // was compliant (what the dashboard shows as time to compliance). A sweep's remediation of an
    // old resource is MissedByEvents instead.
    if let Some(seconds) = seconds_to_compliance(report, timestamp_ms)
        && let Some(directives) = line["_aws"]["CloudWatchMetrics"].as_array_mut()
    {
        directives.push(json!({
            "Namespace": namespace,
            "Dimensions": [["service"]],
            "Metrics": [{"Name": "SecondsToCompliance", "Unit": "Seconds"}]
        }));
        line["SecondsToCompliance"] = json!(seconds);
    }
    // The mandated alias now names another key: a second directive of the same line, without
    // dimensions, which MandatedKeyChangedAlarm watches.
    if report.key_changed_from.is_some()
        && let Some(directives) = line["_aws"]["CloudWatchMetrics"].as_array_mut()
    {
        directives.push(json!({
            "Namespace": namespace,
            "Dimensions": [[]],
            "Metrics": [{"Name": "MandatedKeyChanged", "Unit": "Count"}]
        }));
        line["MandatedKeyChanged"] = json!(1);
    }
    line.to_string()
}

/// Seconds from a resource's creation to its remediation, for a `remediated` report of the
/// resource's own create event (`CreateStream`, `CreateDeliveryStream`) that knows when it was
/// created.
fn seconds_to_compliance(report: &Report, timestamp_ms: u64) -> Option<u64> {
    let created = report.found.as_ref()?.created?;
    let create_event = matches!(
        report.event_name.as_deref(),
        Some("CreateStream" | "CreateDeliveryStream")
    );
    if report.outcome != crate::model::outcome::Outcome::Remediated || !create_event {
        return None;
    }
    u64::try_from(created)
        .ok()
        .map(|created| (timestamp_ms / 1000).saturating_sub(created))
}

/// Milliseconds since the Unix epoch, as EMF wants its timestamp.
pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::outcome::Outcome;
    use crate::model::resource::Service;

    #[test]
    fn a_created_resource_remediated_from_its_create_event_counts_its_time_to_compliance() {
        use crate::model::outcome::InitialState;
        let found = InitialState {
            status: "CREATING".into(),
            encryption: "NONE".into(),
            key: None,
            created: Some(1_796_302_500),
        };
        let report = |outcome, event: &str| Report {
            service: Some(Service::Kinesis),
            event_name: Some(event.into()),
            found: Some(found.clone()),
            ..Report::new(outcome)
        };
        let now_ms = 1_796_302_541_900;
        let v: serde_json::Value = serde_json::from_str(&emf_line(
            "NS",
            &report(Outcome::Remediated, "CreateStream"),
            now_ms,
        ))
        .unwrap();
        assert_eq!(v["SecondsToCompliance"], 41, "{v}");
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][1]["Dimensions"],
            json!([["service"]])
        );
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][1]["Metrics"][0]["Unit"],
            "Seconds"
        );
        // Not for a change of an old stream's encryption, a sweep, or an outcome without a write.
        for (outcome, event) in [
            (Outcome::Remediated, "StopStreamEncryption"),
            (Outcome::Remediated, "Sweep"),
            (Outcome::AlreadyCompliant, "CreateStream"),
        ] {
            let v: serde_json::Value =
                serde_json::from_str(&emf_line("NS", &report(outcome, event), now_ms)).unwrap();
            assert!(v.get("SecondsToCompliance").is_none(), "{event}: {v}");
        }
    }

    #[test]
    fn a_re_pointed_alias_is_counted_without_dimensions_beside_the_outcome() {
        let report = Report {
            service: Some(Service::Kinesis),
            key: Some("arn:aws:kms:us-east-1:111111111111:key/new".into()),
            key_changed_from: Some("arn:aws:kms:us-east-1:111111111111:key/old".into()),
            ..Report::new(Outcome::Remediated)
        };
        let v: serde_json::Value = serde_json::from_str(&emf_line("NS", &report, 1)).unwrap();
        let directives = v["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 2, "{v}");
        assert_eq!(directives[1]["Dimensions"], json!([[]]));
        assert_eq!(directives[1]["Metrics"][0]["Name"], "MandatedKeyChanged");
        assert_eq!(v["MandatedKeyChanged"], 1);
        assert_eq!(v["Events"], 1);
        // Without a change, no such metric at all.
        let plain: serde_json::Value =
            serde_json::from_str(&emf_line("NS", &Report::new(Outcome::Remediated), 1)).unwrap();
        assert_eq!(
            plain["_aws"]["CloudWatchMetrics"].as_array().unwrap().len(),
            1
        );
        assert!(plain.get("MandatedKeyChanged").is_none());
    }

    #[test]
    fn one_line_with_both_dimension_sets() {
        let report = Report {
            service: Some(Service::Firehose),
            attempts: 2,
            ..Report::new(Outcome::Remediated)
        };
        let line = emf_line("Security/Streams", &report, 1_700_000_000_000);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Security/Streams");
        assert_eq!(
            directive["Dimensions"],
            json!([["service", "outcome"], ["outcome"]])
        );
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000u64);
        assert_eq!(
            (&v["service"], &v["outcome"], &v["Events"], &v["WriteCalls"]),
            (
                &json!("firehose"),
                &json!("remediated"),
                &json!(1),
                &json!(2)
            )
        );
    }
}
