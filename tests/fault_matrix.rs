//! The fault table in README.md, run through the recording proxy in front of the real emulators
//! with the real `enforcer` binary: a fault the default policy retries is injected twice and
//! must be retried before the event is `remediated`; one it does not retry is injected once and
//! must end in the table's outcome after exactly one call.

mod readme;
mod support;

use serde_json::json;
use std::time::Duration;
use support::*;

const ALIAS: &str = "alias/org-streams";

#[derive(Debug)]
struct Row {
    call: String,
    fault: String,
    retried: bool,
    outcome: String,
}

fn table() -> Vec<Row> {
    readme::table("fault-table")
        .into_iter()
        .map(|cells| Row {
            call: cells[0].clone(),
            fault: cells[1].clone(),
            retried: match cells[2].as_str() {
                "yes" => true,
                "no" => false,
                other => panic!("retried must be yes or no, got {other:?} in {cells:?}"),
            },
            outcome: cells[3].clone(),
        })
        .collect()
}

fn fault(name: &str) -> Fault {
    match name {
        "HTTP 500" => Fault::Raw {
            status: 500,
            body: String::new(),
        },
        "HTTP 503" => Fault::Raw {
            status: 503,
            body: String::new(),
        },
        "connection reset" => Fault::Reset,
        code => Fault::error(code, "injected by the fault matrix"),
    }
}

/// The error name the enforcer logs for a fault.
fn logged_name(fault: &str) -> Vec<&str> {
    match fault {
        "HTTP 500" | "HTTP 503" => vec!["Enforcer.ServerError"],
        "connection reset" => vec!["Enforcer.ConnectionError", "Enforcer.ResponseError"],
        code => vec![code],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_of_the_fault_table_holds() {
    let rows = table();
    assert!(rows.len() >= 14, "{rows:?}");
    let emu = Emulators::start(Duration::from_millis(300), Duration::from_millis(300)).await;
    emu.create_key(ALIAS).await;
    let env = emu.env(ALIAS);
    for (i, row) in rows.iter().enumerate() {
        let name = format!("row-{i}");
        let (event, proxy, operation, needle) = match row.call.as_str() {
            "DescribeStreamSummary" => {
                emu.create_stream(&name).await;
                emu.wait_active(&name).await;
                let e = event("kinesis-create-stream", &name);
                (
                    e,
                    &emu.kinesis_proxy,
                    "DescribeStreamSummary",
                    format!("stream/{name}\""),
                )
            }
            "DescribeDeliveryStream" => {
                emu.create_delivery_stream(&name, None).await;
                let e = event("firehose-create-delivery-stream", &name);
                (
                    e,
                    &emu.moto_proxy,
                    "DescribeDeliveryStream",
                    format!("\"{name}\""),
                )
            }
            "kms:DescribeKey" => {
                emu.create_stream(&name).await;
                emu.wait_active(&name).await;
                let e = event("kinesis-create-stream", &name);
                (e, &emu.moto_proxy, "DescribeKey", ALIAS.to_owned())
            }
            other => panic!("the fault table names an unknown call {other}"),
        };
        let times = if row.retried { 2 } else { 1 };
        let before = proxy.calls(operation);
        proxy.inject_for(operation, &needle, times, fault(&row.fault));
        let inv = invoke(&env, &event, &["--timeout", "120"]).await;
        let calls = proxy.calls(operation) - before;
        if row.retried {
            assert_eq!(
                inv.report["outcome"],
                json!("remediated"),
                "{row:?}: {inv:?}"
            );
            let retries = inv
                .stderr
                .lines()
                .filter(|l| l.contains("retrying"))
                .filter(|l| logged_name(&row.fault).iter().any(|n| l.contains(n)))
                .count();
            assert_eq!(retries, 2, "{row:?}: {}", inv.stderr);
            assert!(calls >= 3, "{row:?}: {calls} calls");
        } else {
            assert_eq!(
                inv.report["outcome"],
                json!(row.outcome),
                "{row:?}: {inv:?}"
            );
            assert_eq!(inv.report["error_code"], json!(row.fault), "{row:?}");
            assert_eq!(calls, 1, "{row:?}: not retried");
            let exit = if row.outcome == "failed" { 1 } else { 0 };
            assert_eq!(inv.code, Some(exit), "{row:?}");
        }
    }
}
