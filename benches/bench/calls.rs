//! Calls per event, counted at the proxies, one container, one event at a time.

use crate::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use support::Emulators;

pub(crate) async fn calls(results: &mut Results) {
    println!("== calls per event");
    let emu = Emulators::start(Duration::from_secs(10), Duration::from_secs(3)).await;
    let key = emu.create_key(&format!("alias/{KEY_ALIAS}")).await;
    let compliant = seed_streams(&emu, "calls-ok", 2, Some(&key)).await;
    let unencrypted = seed_streams(&emu, "calls-plain", 1, None).await;
    emu.create_delivery_stream("calls-delivery", None).await;
    let proxies = [&emu.kinesis_proxy, &emu.moto_proxy];
    let mut container = Container::start(&emu.env(&format!("alias/{KEY_ALIAS}"))).await;
    let mut json_rows = Vec::new();
    let mut measure = async |what: &str, event: Value, before_event: Option<&str>| {
        if let Some(name) = before_event {
            support::create_stream_on(&emu.kinesis, name).await;
        }
        let before = snapshot(&proxies);
        let result = container.invoke(event).await;
        let calls = diff(&before, &snapshot(&proxies));
        json_rows.push(json!({"case": what, "outcome": outcome_of(&result), "calls": calls}));
        (calls, outcome_of(&result))
    };
    let (first, o1) = measure(
        "already compliant, container's first event",
        create_event(&compliant[0]),
        None,
    )
    .await;
    let (warm, o2) = measure(
        "already compliant (warm)",
        create_event(&compliant[1]),
        None,
    )
    .await;
    let (fix, o3) = measure("unencrypted ACTIVE", create_event(&unencrypted[0]), None).await;
    let (repeat, o4) = measure(
        "repeated delivery of that event",
        create_event(&unencrypted[0]),
        None,
    )
    .await;
    let (creating, o5) = measure(
        "still CREATING (10 s), then UPDATING (3 s)",
        create_event("calls-new"),
        Some("calls-new"),
    )
    .await;
    let (delivery, o6) = measure(
        "Firehose DirectPut",
        support::event("firehose-create-delivery-stream", "calls-delivery"),
        None,
    )
    .await;
    let total = |c: &BTreeMap<&str, usize>| c.values().sum::<usize>();
    let exact_one = total(&warm) == 1 && total(&repeat) == 1;
    for (what, calls, outcome, target, met) in [
        (
            "already compliant, first event of a container",
            &first,
            o1,
            "",
            None,
        ),
        (
            "already compliant (warm container)",
            &warm,
            o2,
            "exactly 1",
            Some(total(&warm) == 1),
        ),
        (
            "unencrypted ACTIVE",
            &fix,
            o3,
            "Describe, Start, confirm polls",
            Some(
                fix.get("StartStreamEncryption") == Some(&1)
                    && fix
                        .keys()
                        .all(|op| ["DescribeStreamSummary", "StartStreamEncryption"].contains(op)),
            ),
        ),
        (
            "repeated delivery",
            &repeat,
            o4,
            "exactly 1",
            Some(total(&repeat) == 1),
        ),
        (
            "still CREATING 10 s, UPDATING 3 s",
            &creating,
            o5,
            "Describe, Starts, confirm polls",
            None,
        ),
        (
            "Firehose DirectPut",
            &delivery,
            o6,
            "Describe, Start, confirm polls",
            Some(
                delivery.get("StartDeliveryStreamEncryption") == Some(&1)
                    && delivery.keys().all(|op| {
                        ["DescribeDeliveryStream", "StartDeliveryStreamEncryption"].contains(op)
                    }),
            ),
        ),
    ] {
        results.row(
            "calls per event",
            format!("{what}: {outcome}"),
            show_calls(calls),
            "",
            target,
            met,
        );
    }
    results.record(
        "calls_per_event",
        json!({"cases": json_rows, "compliant_costs_one": exact_one}),
    );
}
