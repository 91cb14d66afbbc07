//! Organisation scale: one container serving 150 accounts in 4 regions.

use crate::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{ACCOUNT, Proxy, REGION, RuntimeApi};

/// Central mode: one container serving 150 accounts in 4 regions (600 places, each with its own
/// key under the mandated alias and one new stream), twice over. Memory must stay bounded (the
/// container keeps at most `CACHED_PLACES` enforcers), and each account costs one AssumeRole.
pub(crate) async fn organisation(results: &mut Results) {
    println!("== organisation");
    const ACCOUNTS: usize = 150;
    const REGIONS: [&str; 4] = ["us-east-1", "eu-west-1", "ap-south-1", "us-west-2"];
    let (_moto, moto_url) = support::start_moto();
    let proxy = Proxy::start(&moto_url).await;
    let accounts: Vec<String> = (0..ACCOUNTS)
        .map(|i| format!("{:012}", 200_000_000_000u64 + i as u64))
        .collect();
    let mut places = Vec::new();
    for account in &accounts {
        for region in REGIONS {
            let config = support::sdk_config_in(&moto_url, account, region).await;
            let (kinesis, kms) = (
                aws_sdk_kinesis::Client::new(&config),
                aws_sdk_kms::Client::new(&config),
            );
            support::create_key_on(&kms, &format!("alias/{KEY_ALIAS}")).await;
            support::create_stream_on(&kinesis, "orders").await;
            places.push((account.clone(), region));
        }
    }
    let event_at = |account: &str, region: &str| {
        let text = create_event("orders")
            .to_string()
            .replace(ACCOUNT, account)
            .replace(REGION, region);
        serde_json::from_str::<Value>(&text).expect("JSON")
    };
    let vars: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", proxy.url.as_str()),
        ("AWS_ACCESS_KEY_ID", ACCOUNT),
        ("AWS_SECRET_ACCESS_KEY", "test-secret"),
        ("AWS_REGION", REGION),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("MANDATED_KMS_KEY", &format!("alias/{KEY_ALIAS}")),
        ("TARGET_ROLE_NAME", "StreamEncryptionEnforcerMember"),
        ("ALLOWED_ACCOUNTS", &accounts.join(",")),
        ("ALLOWED_REGIONS", &REGIONS.join(",")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let api = RuntimeApi::start().await;
    let process = start_container(&api, &vars);
    let mut rounds = Vec::new();
    for round in 0..2 {
        let started = Instant::now();
        for (i, (account, region)) in places.iter().enumerate() {
            api.push(
                &format!("org-{round}-{i}"),
                event_at(account, region),
                Duration::from_secs(120),
            );
        }
        let done = api
            .results((round + 1) * places.len(), Duration::from_secs(1800))
            .await;
        let (now, _) = rss(process.id());
        rounds.push((
            started.elapsed().as_secs_f64(),
            now,
            count_outcomes(&done[round * places.len()..]),
        ));
    }
    let (_, peak) = rss(process.id());
    drop(process);
    let assumed = proxy.calls("AssumeRole");
    let mb = |kb: u64| kb as f64 / 1024.0;
    for (round, (seconds, now, outcomes)) in rounds.iter().enumerate() {
        results.row(
            "organisation",
            format!(
                "{} events, one per place ({ACCOUNTS} accounts x {} regions), {}",
                places.len(),
                REGIONS.len(),
                if round == 0 { "new streams" } else { "again" }
            ),
            format!(
                "{seconds:.1} s ({:.1} ms per event), RSS {:.1} MB, {}",
                seconds * 1000.0 / places.len() as f64,
                mb(*now),
                serde_json::to_string(outcomes).unwrap_or_default()
            ),
            "",
            "",
            None,
        );
    }
    results.row(
        "organisation",
        "peak RSS of the container; sts:AssumeRole calls",
        format!(
            "{:.1} MB; {assumed} AssumeRole for {ACCOUNTS} accounts",
            mb(peak)
        ),
        "",
        "< 32 MB; one per account",
        Some(mb(peak) < 32.0 && assumed == ACCOUNTS),
    );
    results.record(
        "organisation",
        json!({
            "places": places.len(),
            "rounds": rounds.iter().map(|(s, rss, o)| json!({"seconds": s, "rss_kb": rss, "outcomes": o})).collect::<Vec<_>>(),
            "peak_rss_kb": peak,
            "assume_role_calls": assumed,
        }),
    );
}
