//! Dry-run mode (issue 19) against real node processes: a dry-run resource grants every
//! acquire at once and says in each answer and in `/metrics` what enforce would have
//! done; switching the resource to enforce is one PUT, after which the same traffic is
//! refused; the mode survives a leader change.

use reqwest::Method;
use serde_json::{json, Value};

use crate::cluster::{Cluster, ADMIN};

async fn metrics(c: &Cluster, id: u64) -> String {
    c.http()
        .get(format!("{}/metrics", c.url(id)))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_resource_grants_everything_and_reports_what_enforce_would_do() {
    let mut c = Cluster::start(3).await;
    let spec = json!({
        "concurrency": 1,
        "rate": [{"per": "load", "limit": 100, "window_ms": 3_600_000}],
        "mode": "dry_run",
    });
    c.put_resource("llm", spec.clone()).await;
    let l = c.wait_leader().await;
    let (s, v) = c
        .send(l, Method::GET, "/v1/resources/llm", None, ADMIN)
        .await;
    assert_eq!(
        (s, v["config"]["mode"].as_str()),
        (200, Some("dry_run")),
        "{v}"
    );

    // Fits: granted, and enforce would have granted it too.
    let (s, first) = c.acquire(l, "llm", json!({"load": 60, "wait_ms": 0})).await;
    assert_eq!(s, 200, "{first}");
    assert_eq!(first["shadow"], json!({"decision": "grant", "wait_ms": 0}));
    // The one slot is held: enforce would refuse a try-once request, and make a patient
    // one wait for the holder's TTL (30 s by default).
    let (s, v) = c.acquire(l, "llm", json!({"load": 10, "wait_ms": 0})).await;
    assert_eq!(s, 200, "granted anyway: {v}");
    assert_eq!(v["shadow"]["decision"], "would_block", "{v}");
    assert_eq!(v["shadow"]["limit"], "concurrency", "{v}");
    let (s, v) = c
        .acquire(l, "llm", json!({"load": 10, "wait_ms": 60_000}))
        .await;
    assert_eq!(s, 200, "granted at once: {v}");
    assert!(v["queued_ms"].as_u64().unwrap() < 5_000, "{v}");
    assert_eq!(v["shadow"]["decision"], "wait", "{v}");
    let wait = v["shadow"]["wait_ms"].as_u64().unwrap();
    assert!(
        (20_000..=30_000).contains(&wait),
        "the holder's TTL binds: {v}"
    );
    // A load no bucket can ever hold: enforce refuses it outright.
    let (s, v) = c.acquire(l, "llm", json!({"load": 101})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["shadow"]["decision"], "load_exceeds_limit", "{v}");
    assert_eq!(v["shadow"]["limit"], "load", "{v}");
    // Only what enforce would have granted was charged: 60 + 10 of 100.
    let load = v["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["kind"] == "load")
        .unwrap()["remaining"]
        .as_i64()
        .unwrap();
    assert_eq!(load, 30, "{v}");

    let text = metrics(&c, l).await;
    for line in [
        r#"ratequeue_dry_run_grants_total{resource="llm",decision="grant",limit="none"} 1"#,
        r#"ratequeue_dry_run_grants_total{resource="llm",decision="would_block",limit="concurrency"} 1"#,
        r#"ratequeue_dry_run_grants_total{resource="llm",decision="wait",limit="concurrency"} 1"#,
        r#"ratequeue_dry_run_grants_total{resource="llm",decision="load_exceeds_limit",limit="load"} 1"#,
        r#"ratequeue_dry_run_wait_ms_count{resource="llm"} 2"#,
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }

    // The mode is replicated state: it survives the leader's death.
    let (l, v) = c
        .kill_leader_until_acquire(l, "llm", json!({"wait_ms": 0}), 200)
        .await;
    assert_eq!(v["shadow"]["decision"], "would_block", "{v}");

    // Enforce is one PUT away: the same request is now refused.
    let mut enforce = spec;
    enforce["mode"] = json!("enforce");
    c.put_resource("llm", enforce).await;
    let (s, v): (u16, Value) = c.acquire(l, "llm", json!({"wait_ms": 0})).await;
    assert_eq!(s, 429, "{v}");
    assert_eq!(v["error"]["code"], "would_block", "{v}");
    assert!(v.get("shadow").is_none());
}

/// A retry of a dry-run acquire (the same `request_id`) gets the first attempt's lease
/// and its shadow: the lease keeps it (snapshot format 8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_dry_run_acquire_gets_its_first_shadow() {
    let c = Cluster::start(3).await;
    c.put_resource("dup", json!({"concurrency": 1, "mode": "dry_run"}))
        .await;
    let l = c.wait_leader().await;
    let (s, holder) = c.acquire(l, "dup", json!({"request_id": "h"})).await;
    assert_eq!(
        (s, holder["shadow"]["decision"].as_str()),
        (200, Some("grant"))
    );
    let body = json!({"request_id": "r1", "wait_ms": 60_000});
    let (s, first) = c.acquire(l, "dup", body.clone()).await;
    assert_eq!(s, 200, "{first}");
    assert_eq!(first["shadow"]["decision"], "wait", "{first}");
    // Asked on a follower: redirected, and answered from the idempotency window.
    let follower = (1..=3).find(|&n| n != l).unwrap();
    let (s, again) = c.acquire(follower, "dup", body).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["lease_id"], first["lease_id"]);
    assert_eq!(again["shadow"], first["shadow"], "{again}");
    let (_, retry) = c.acquire(l, "dup", json!({"request_id": "h"})).await;
    assert_eq!(retry["shadow"], holder["shadow"]);
}
