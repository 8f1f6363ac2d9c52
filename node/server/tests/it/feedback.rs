//! Provider feedback (issue 19) against real node processes: a holder's report lowers
//! the resource's budget to the provider's figure (never above the configured limit),
//! and a reported 429 pauses grants until the provider's reset; the pause is in the
//! replicated state, so a new leader keeps it; only the lease's key may report.

use reqwest::Method;
use serde_json::{json, Value};

use crate::cluster::{Cluster, ADMIN};

fn remaining(v: &Value, kind: &str) -> i64 {
    v["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["kind"] == kind)
        .unwrap()["remaining"]
        .as_i64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_lowers_the_budget_and_a_429_pauses_grants() {
    let mut c = Cluster::start(3).await;
    c.put_resource(
        "llm",
        json!({
            "rate": [{"per": "request", "limit": 100, "window_ms": 3_600_000},
                     {"per": "load", "limit": 10_000, "window_ms": 3_600_000}],
            "feedback": {},
        }),
    )
    .await;
    let l = c.wait_leader().await;
    let (s, lease) = c.acquire(l, "llm", json!({"load": 100})).await;
    assert_eq!(s, 200, "{lease}");
    let id = lease["lease_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/leases/{id}/report");
    // Another application spent most of the provider's budget: lower ours to its figure.
    let body = json!({"remaining_requests": 5, "remaining_tokens": 50_000});
    let (s, v) = c.send(l, Method::POST, &path, Some(body), ADMIN).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(remaining(&v, "request"), 5, "{v}");
    assert_eq!(
        remaining(&v, "load"),
        9_900,
        "never raised above what we count: {v}"
    );
    assert_eq!(v["paused_ms"], 0);
    // A 429 with retry-after: grants pause, refusals name the provider.
    let body = json!({"rate_limited": true, "retry_after_ms": 60_000});
    let (s, v) = c.send(l, Method::POST, &path, Some(body), ADMIN).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["paused_ms"].as_u64().unwrap() > 55_000, "{v}");
    let (s, v) = c.acquire(l, "llm", json!({"wait_ms": 0})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (429, Some("would_block")),
        "{v}"
    );
    assert_eq!(v["error"]["limit"], "provider", "{v}");
    // Replicated: the next leader keeps the pause.
    let (_, v) = c
        .kill_leader_until_acquire(l, "llm", json!({"wait_ms": 0}), 429)
        .await;
    assert_eq!(v["error"]["limit"], "provider", "{v}");
    // Bad figures are refused before anything is written.
    let l = c.wait_leader().await;
    let (s, v) = c
        .send(
            l,
            Method::POST,
            &path,
            Some(json!({"retry_after_ms": 3_600_001})),
            ADMIN,
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );
}
