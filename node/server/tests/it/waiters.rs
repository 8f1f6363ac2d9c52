//! Waiter progress against real node processes (issue 19):
//! `GET /v1/resources/{name}/waiters/{request_id}` shows waiters in two lanes their
//! positions, the waiters served before them and the binding limit, the positions move
//! as grants are made, a granted waiter is `404 waiter_not_found`, and only the key that
//! queued the request (or an admin naming it) sees it.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::cluster::{eventually, Cluster, ADMIN};

async fn key(c: &Cluster, name: &str, resources: &[&str]) -> String {
    let l = c.wait_leader().await;
    let body = json!({"name": name, "role": "client", "resources": resources});
    let (s, v) = c.send(l, Method::POST, "/v1/keys", Some(body), ADMIN).await;
    assert_eq!(s, 201, "{v}");
    v["key"].as_str().unwrap().to_owned()
}

async fn progress(c: &Cluster, node: u64, id: &str, token: &str) -> (u16, Value) {
    let path = format!("/v1/resources/prog/waiters/{id}");
    c.send(node, Method::GET, &path, None, token).await
}

/// Queues an acquire of `workers` in `lane` and returns once the leader shows it waiting.
async fn queue(c: &Arc<Cluster>, workers: &str, lane: &str, id: &str) {
    let (c2, token, body) = (
        c.clone(),
        workers.to_owned(),
        json!({"lane": lane, "request_id": id, "wait_ms": 120_000}),
    );
    tokio::spawn(async move {
        let l = c2.wait_leader().await;
        c2.send(
            l,
            Method::POST,
            "/v1/resources/prog/acquire",
            Some(body),
            &token,
        )
        .await
    });
    eventually(Duration::from_secs(20), &format!("{id} queued"), || async {
        let l = c.wait_leader().await;
        let (s, v) = progress(c, l, id, workers).await;
        (s == 200).then_some(v)
    })
    .await;
}

fn stand(v: &Value) -> (u64, u64, u64) {
    (
        v["position"].as_u64().unwrap(),
        v["ahead_in_resource"].as_u64().unwrap(),
        v["queued_in_resource"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_in_two_lanes_see_their_positions_move_and_the_binding_limit() {
    let c = Arc::new(Cluster::start(3).await);
    c.put_resource(
        "prog",
        json!({"concurrency": 1, "lanes": {"batch": {"weight": 1}, "interactive": {"weight": 3}}}),
    )
    .await;
    let workers = key(&c, "workers", &["prog"]).await;
    let other = key(&c, "other", &["prog"]).await;
    let outsider = key(&c, "outsider", &["elsewhere"]).await;
    let l = c.wait_leader().await;
    // One release seen by the leader: its hold-time average is then fixed, and the
    // concurrency estimates are exact multiples of it.
    let (s, v) = c.acquire(l, "prog", json!({})).await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = c
        .release(l, v["lease_id"].as_str().unwrap(), json!({}))
        .await;
    assert_eq!(s, 200);
    let (s, holder) = c.acquire(l, "prog", json!({"ttl_ms": 600_000})).await;
    assert_eq!(s, 200, "{holder}");

    for (lane, id) in [
        ("batch", "b0"),
        ("interactive", "i0"),
        ("interactive", "i1"),
        ("batch", "b1"),
        ("batch", "b2"),
    ] {
        queue(&c, &workers, lane, id).await;
    }
    // Stride order (batch wins the first tie by name): b0, i0, i1, b1, b2.
    let follower = (1..=3).find(|&n| n != l).unwrap();
    let mut seen = Vec::new();
    for id in ["b0", "i0", "i1", "b1", "b2"] {
        // Asked on a follower: it sends the client to the leader (307, followed).
        let (s, v) = progress(&c, follower, id, &workers).await;
        assert_eq!(s, 200, "{id}: {v}");
        assert_eq!(v["request_id"], id);
        assert_eq!(v["binding_limit"], "concurrency", "{id}: {v}");
        assert_eq!(v["position_exact"], true);
        assert!(v["waited_ms"].as_u64().is_some());
        seen.push((stand(&v), v["estimated_wait_ms"].as_u64().unwrap()));
    }
    let stands: Vec<(u64, u64, u64)> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        stands,
        vec![(1, 0, 5), (1, 1, 5), (2, 2, 5), (2, 3, 5), (3, 4, 5)],
        "(position in lane, ahead in resource, queued)"
    );
    // Each needs one release more than the one before it: n hold times.
    let unit = seen[0].1;
    let waits: Vec<u64> = seen.iter().map(|(_, w)| *w).collect();
    assert_eq!(waits, vec![unit, 2 * unit, 3 * unit, 4 * unit, 5 * unit]);

    // Only the key that queued it sees it; an admin names that key.
    let (s, v) = progress(&c, l, "b2", &other).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("waiter_not_found"))
    );
    let (s, v) = progress(&c, l, "b2", ADMIN).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("waiter_not_found"))
    );
    let (s, v) = progress(&c, l, "b2?key=workers", ADMIN).await;
    assert_eq!((s, stand(&v)), (200, (3, 4, 5)), "{v}");
    let (s, v) = progress(&c, l, "b2?key=workers", &other).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")));
    let (s, v) = progress(&c, l, "b2", &outsider).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")));
    let (s, v) = progress(&c, l, "never-sent", &workers).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("waiter_not_found"))
    );

    // A release grants the head of line; everyone behind it moves up.
    let (s, _) = c
        .release(l, holder["lease_id"].as_str().unwrap(), json!({}))
        .await;
    assert_eq!(s, 200);
    eventually(Duration::from_secs(20), "b0 granted", || async {
        let (s, v) = progress(&c, l, "b0", &workers).await;
        (s == 404 && v["error"]["code"] == "waiter_not_found").then_some(())
    })
    .await;
    let mut after = Vec::new();
    for id in ["i0", "i1", "b1", "b2"] {
        let (s, v) = progress(&c, l, id, &workers).await;
        assert_eq!(s, 200, "{id}: {v}");
        after.push(stand(&v));
    }
    // i0 and i1 go next (their lane's pass is behind batch's), then b1 and b2.
    assert_eq!(after, vec![(1, 0, 4), (2, 1, 4), (1, 2, 4), (2, 3, 4)]);
}
