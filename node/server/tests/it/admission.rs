//! Issue 4 behaviour against real node processes: limits, queueing, lanes, priority,
//! failover with held leases, redirects, idempotency, errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::cluster::{eventually, Cluster, ADMIN};

/// Concurrency: 50 clients on `concurrency: 3` never hold more than 3 leases at once,
/// judged from the clients' own timeline (a hold is certain from the grant response
/// until the release request is sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_never_exceed_concurrency_three() {
    let c = Arc::new(Cluster::start(3).await);
    c.put_resource("sem", json!({"concurrency": 3})).await;
    let leader = c.wait_leader().await;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..50u64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut spans = Vec::new();
            for _ in 0..3 {
                let (s, v) = c.acquire(leader, "sem", json!({"wait_ms": 60_000})).await;
                assert_eq!(s, 200, "{v}");
                let start = t0.elapsed();
                tokio::time::sleep(Duration::from_millis(2 + i % 5)).await; // holding the slot
                let end = t0.elapsed();
                let (s, v) = c
                    .release(leader, v["lease_id"].as_str().unwrap(), json!({}))
                    .await;
                assert_eq!(s, 200, "{v}");
                spans.push((start, end));
            }
            spans
        }));
    }
    let mut events = Vec::new();
    for t in tasks {
        for (s, e) in t.await.unwrap() {
            events.push((s, 1i32));
            events.push((e, -1i32));
        }
    }
    events.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut held, mut max) = (0, 0);
    for (_, d) in events {
        held += d;
        max = max.max(held);
    }
    assert!(max <= 3, "{max} leases held at once");
    assert!(max >= 2, "the test must actually contend (max {max})");
}

/// Rate: a 60-per-60 s request bucket admits a burst of 60, then one per second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bucket_admits_a_burst_then_one_per_second() {
    let c = Cluster::start(3).await;
    c.put_resource(
        "rpm",
        json!({"rate": [{"per": "request", "limit": 60, "window_ms": 60_000}]}),
    )
    .await;
    let l = c.wait_leader().await;
    for i in 0..60 {
        let (s, v) = c.acquire(l, "rpm", json!({"wait_ms": 0})).await;
        assert_eq!(s, 200, "burst grant {i}: {v}");
    }
    // The burst is spent. On a slow machine a token or two may have refilled meanwhile
    // (one per second): those are granted too, then the next is refused.
    let mut refills = 0;
    let v = loop {
        let (s, v) = c.acquire(l, "rpm", json!({"wait_ms": 0})).await;
        if s == 429 {
            break v;
        }
        assert_eq!(s, 200, "{v}");
        refills += 1;
        assert!(refills <= 10, "the bucket keeps granting: {v}");
    };
    assert_eq!(v["error"]["code"], "would_block");
    assert_eq!(v["error"]["limit"], "request", "{v}");
    assert_eq!(v["error"]["bucket"], 0, "{v}");
    let retry = v["error"]["retry_after_ms"].as_u64().unwrap();
    assert!((1..=1_000).contains(&retry), "retry_after_ms {retry}");
    // A waiting acquire is served when the next token has refilled: two more in a row
    // take about a second each.
    let t = Instant::now();
    for _ in 0..2 {
        let (s, v) = c.acquire(l, "rpm", json!({"wait_ms": 5_000})).await;
        assert_eq!(s, 200, "{v}");
    }
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1_000),
        "two refills took only {took:?}"
    );
}

/// Load: a 10 000/min load bucket admits loads summing to ≤ 10 000 (plus refill), and
/// settling with a smaller `actual_load` lets the next request in sooner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_bucket_and_settle() {
    let c = Cluster::start(3).await;
    c.put_resource(
        "tpm",
        json!({"rate": [{"per": "load", "limit": 10_000, "window_ms": 60_000}]}),
    )
    .await;
    let l = c.wait_leader().await;
    let (s, v) = c.acquire(l, "tpm", json!({"load": 20_000})).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"]["code"], "load_exceeds_limit");

    let mut leases = Vec::new();
    for _ in 0..4 {
        let (s, v) = c
            .acquire(l, "tpm", json!({"load": 2_500, "wait_ms": 0}))
            .await;
        assert_eq!(s, 200, "{v}");
        leases.push(v["lease_id"].as_str().unwrap().to_owned());
    }
    let (s, v) = c
        .acquire(l, "tpm", json!({"load": 2_500, "wait_ms": 0}))
        .await;
    assert_eq!(s, 429, "bucket is spent: {v}");
    assert_eq!(v["error"]["limit"], "load", "{v}");
    assert_eq!(v["error"]["bucket"], 0, "{v}");
    let retry = v["error"]["retry_after_ms"].as_u64().unwrap();
    assert!(
        retry > 10_000,
        "2 500 tokens take ~15 s to refill, got {retry} ms"
    );

    // The first request really used only 100: 2 400 come back at once.
    let (s, v) = c.release(l, &leases[0], json!({"actual_load": 100})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "released");
    let (s, v) = c
        .acquire(l, "tpm", json!({"load": 2_400, "wait_ms": 0}))
        .await;
    assert_eq!(s, 200, "settle refunded the bucket: {v}");
    // Another used more than reserved: the debt delays later grants.
    let (s, _) = c
        .release(l, &leases[1], json!({"actual_load": 5_000}))
        .await;
    assert_eq!(s, 200);
    let (s, v) = c.acquire(l, "tpm", json!({"load": 1, "wait_ms": 0})).await;
    assert_eq!(s, 429, "the bucket is in debt: {v}");
    let (s, v) = c
        .send(l, Method::GET, "/v1/resources/tpm", None, ADMIN)
        .await;
    assert_eq!(s, 200);
    let remaining = v["stats"]["limits"][0]["remaining"].as_i64().unwrap();
    assert!(remaining < 0, "{v}");
}

/// Priority and lanes end to end: on a concurrency-1 resource, a priority-100 waiter
/// overtakes earlier priority-10 waiters of its lane, and lanes of weight 3 and 1 split
/// grants about 3:1 while both are backlogged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_and_lanes() {
    let c = Arc::new(Cluster::start(3).await);
    c.put_resource(
        "one",
        json!({"concurrency": 1, "lanes": {"fast": {"weight": 3}, "slow": {"weight": 1}}}),
    )
    .await;
    let l = c.wait_leader().await;
    let (s, blocker) = c.acquire(l, "one", json!({})).await;
    assert_eq!(s, 200);

    // Priority within a lane.
    let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (name, prio) in [("a", 10), ("b", 10), ("c", 100)] {
        // Enqueue in order: wait until the previous waiter is visible in the queue.
        let c2 = c.clone();
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let (s, v) = c2
                .acquire(l, "one", json!({"priority": prio, "wait_ms": 30_000}))
                .await;
            assert_eq!(s, 200, "{v}");
            order.lock().push(name);
            let (s, _) = c2
                .release(l, v["lease_id"].as_str().unwrap(), json!({}))
                .await;
            assert_eq!(s, 200);
        }));
        let want = tasks.len() as u64;
        let c3 = c.clone();
        eventually(Duration::from_secs(10), "waiter queued", || {
            let c3 = c3.clone();
            async move {
                let (_, v) = c3
                    .send(l, Method::GET, "/v1/resources/one", None, ADMIN)
                    .await;
                (v["stats"]["queued"]["default"].as_u64() == Some(want)).then_some(())
            }
        })
        .await;
    }
    let (s, _) = c
        .release(l, blocker["lease_id"].as_str().unwrap(), json!({}))
        .await;
    assert_eq!(s, 200);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock(), vec!["c", "a", "b"]);

    // Lanes by weight: 40 waiters in each lane, served one at a time.
    let (s, blocker) = c.acquire(l, "one", json!({})).await;
    assert_eq!(s, 200);
    let served = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..80 {
        let lane = if i % 2 == 0 { "fast" } else { "slow" };
        let c2 = c.clone();
        let served = served.clone();
        tasks.push(tokio::spawn(async move {
            let (s, v) = c2
                .acquire(l, "one", json!({"lane": lane, "wait_ms": 60_000}))
                .await;
            assert_eq!(s, 200, "{v}");
            served.lock().push(lane);
            let (s, _) = c2
                .release(l, v["lease_id"].as_str().unwrap(), json!({}))
                .await;
            assert_eq!(s, 200);
        }));
    }
    let c3 = c.clone();
    eventually(Duration::from_secs(20), "80 waiters queued", || {
        let c3 = c3.clone();
        async move {
            let (_, v) = c3
                .send(l, Method::GET, "/v1/resources/one", None, ADMIN)
                .await;
            let q = &v["stats"]["queued"];
            (q["fast"].as_u64() == Some(40) && q["slow"].as_u64() == Some(40)).then_some(())
        }
    })
    .await;
    let (s, _) = c
        .release(l, blocker["lease_id"].as_str().unwrap(), json!({}))
        .await;
    assert_eq!(s, 200);
    for t in tasks {
        t.await.unwrap();
    }
    let served = served.lock().clone();
    // While both lanes are backlogged (the first 40 grants), fast gets ~3 of every 4.
    let fast = served[..40].iter().filter(|l| **l == "fast").count();
    assert!(
        (28..=32).contains(&fast),
        "fast got {fast} of the first 40: {served:?}"
    );
}

/// Kill -9 the leader while clients hold leases: every held lease can be renewed and
/// released on the new leader, nothing is double-granted, and retrying waiters are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_leases_survive_leader_failover() {
    let mut c = Cluster::start(3).await;
    c.put_resource("gpu", json!({"concurrency": 4})).await;
    let old = c.wait_leader().await;
    let mut held = Vec::new();
    for i in 0..4 {
        let (s, v) = c
            .acquire(
                old,
                "gpu",
                json!({"ttl_ms": 120_000, "request_id": format!("h{i}")}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        held.push(v);
    }
    let (s, v) = c.acquire(old, "gpu", json!({"wait_ms": 0})).await;
    assert_eq!(s, 429, "full: {v}");
    c.kill(old);
    let new = c.wait_leader().await;
    let (s, v) = c.acquire(new, "gpu", json!({"wait_ms": 0})).await;
    assert_eq!(s, 429, "still full after failover, no double grant: {v}");
    // Retried acquires with the same request id return the same leases.
    for (i, h) in held.iter().enumerate() {
        let (s, v) = c
            .acquire(
                new,
                "gpu",
                json!({"ttl_ms": 120_000, "request_id": format!("h{i}")}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["lease_id"], h["lease_id"]);
        assert_eq!(v["fencing_token"], h["fencing_token"]);
    }
    for h in &held {
        let id = h["lease_id"].as_str().unwrap();
        let (s, v) = c.renew(new, id, json!({"ttl_ms": 60_000})).await;
        assert_eq!(s, 200, "{v}");
        let (s, v) = c.release(new, id, json!({})).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["state"], "released");
        let (s, v) = c.release(new, id, json!({})).await;
        assert_eq!(s, 200);
        assert_eq!(v["state"], "already_released");
        let (s, v) = c.renew(new, id, json!({})).await;
        assert_eq!(s, 410, "{v}");
    }
    let (s, v) = c.acquire(new, "gpu", json!({"wait_ms": 0})).await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v["fencing_token"].as_u64().unwrap() > held[3]["fencing_token"].as_u64().unwrap(),
        "fencing tokens only grow"
    );
}

/// A follower redirects acquire with method and body preserved; a retry with the same
/// request id gets the same lease; errors are the documented ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_idempotency_and_errors() {
    let c = Cluster::start(3).await;
    c.put_resource("r", json!({"concurrency": 2})).await;
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    let body = json!({"load": 1, "lane": "batch", "request_id": "req-1"});
    let (s, a) = c.acquire(follower, "r", body.clone()).await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["lane"], "batch", "the body survived the redirect");
    let (s, b) = c.acquire(follower, "r", body.clone()).await;
    assert_eq!(s, 200);
    assert_eq!(a["lease_id"], b["lease_id"], "same request id, same lease");
    let (_, v) = c
        .send(leader, Method::GET, "/v1/resources/r", None, ADMIN)
        .await;
    assert_eq!(v["stats"]["held"], 1, "no second lease");
    // Once that lease has ended, a late retry is told so: neither the dead lease nor a
    // second one.
    let (s, _) = c
        .release(leader, a["lease_id"].as_str().unwrap(), json!({}))
        .await;
    assert_eq!(s, 200);
    let (s, v) = c.acquire(leader, "r", body).await;
    assert_eq!(
        (s, v["error"]["code"].as_str().unwrap()),
        (410, "lease_expired"),
        "{v}"
    );

    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "/v1/resources/r/acquire",
            json!({"lode": 1}),
            400,
            "invalid_request",
        ),
        (
            "/v1/resources/r/acquire",
            json!({"load": -1}),
            400,
            "invalid_request",
        ),
        (
            "/v1/resources/r/acquire",
            json!({"ttl_ms": 1}),
            400,
            "invalid_request",
        ),
        (
            "/v1/resources/no-such/acquire",
            json!({}),
            404,
            "resource_not_found",
        ),
        (
            "/v1/resources/bad name/acquire",
            json!({}),
            400,
            "invalid_request",
        ),
        // A live token with the wrong nonce is not that lease.
        (
            "/v1/leases/1-0000000000000000/release",
            json!({}),
            404,
            "lease_not_found",
        ),
        (
            "/v1/leases/999999-0000000000000000/release",
            json!({}),
            404,
            "lease_not_found",
        ),
        (
            "/v1/leases/garbage/renew",
            json!({}),
            404,
            "lease_not_found",
        ),
    ];
    for (path, body, status, code) in cases {
        let (s, v) = c.send(leader, Method::POST, path, Some(body), ADMIN).await;
        assert_eq!(
            (s, v["error"]["code"].as_str().unwrap_or("")),
            (status, code),
            "{path}: {v}"
        );
    }
    let r = c
        .http()
        .post(format!("{}/v1/resources/r/acquire", c.url(leader)))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = c
        .http()
        .post(format!("{}/v1/resources/r/acquire", c.url(leader)))
        .bearer_auth(ADMIN)
        .body(vec![b' '; 1 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413, "huge bodies are refused");

    // Queue bound and wait timeout.
    c.put_resource("tiny", json!({"concurrency": 1, "max_queue": 1}))
        .await;
    let (s, _) = c.acquire(leader, "tiny", json!({})).await;
    assert_eq!(s, 200);
    let url = c.url(leader);
    let http = c.http().clone();
    let waiting = tokio::spawn(async move {
        let r = http
            .post(format!("{url}/v1/resources/tiny/acquire"))
            .bearer_auth(ADMIN)
            .json(&json!({"wait_ms": 1_500}))
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.headers().get("retry-after").is_some(),
            r.json::<Value>().await.unwrap(),
        )
    });
    eventually(Duration::from_secs(10), "one waiter queued", || async {
        let (_, v) = c
            .send(leader, Method::GET, "/v1/resources/tiny", None, ADMIN)
            .await;
        (v["stats"]["queued"]["default"].as_u64() == Some(1)).then_some(())
    })
    .await;
    let (s, v) = c.acquire(leader, "tiny", json!({})).await;
    assert_eq!(s, 429, "{v}");
    assert_eq!(v["error"]["code"], "queue_full");
    let (s, has_retry_after, v) = waiting.await.unwrap();
    assert_eq!(s, 429, "{v}");
    assert!(has_retry_after);
    assert_eq!(v["error"]["code"], "wait_timeout");
}

/// A concurrency refusal names its limit, and its `retry_after_ms` comes from how long
/// leases are really held (here a few milliseconds), not from the holder's 30 s TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_refusal_names_the_limit_and_waits_for_hold_times_not_the_ttl() {
    let c = Cluster::start(3).await;
    c.put_resource("conc", json!({"concurrency": 1, "default_ttl_ms": 30_000}))
        .await;
    let l = c.wait_leader().await;
    for _ in 0..5 {
        let (s, v) = c.acquire(l, "conc", json!({})).await;
        assert_eq!(s, 200, "{v}");
        let (s, v) = c
            .release(l, v["lease_id"].as_str().unwrap(), json!({}))
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let (s, held) = c.acquire(l, "conc", json!({})).await;
    assert_eq!(s, 200, "{held}");
    for body in [json!({"wait_ms": 0}), json!({"wait_ms": 100})] {
        let (s, v) = c.acquire(l, "conc", body).await;
        assert_eq!(s, 429, "{v}");
        assert_eq!(v["error"]["limit"], "concurrency", "{v}");
        assert!(v["error"].get("bucket").is_none(), "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("concurrency"),
            "{v}"
        );
        let retry = v["error"]["retry_after_ms"].as_u64().unwrap();
        assert!(
            retry < 10_000,
            "releases came within milliseconds; retry_after_ms {retry} looks like the TTL"
        );
    }
}

/// API keys: a client key may use only matching resources, never admin endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_scope_resources() {
    let c = Cluster::start(3).await;
    c.put_resource("openai-gpt4", json!({"concurrency": 2}))
        .await;
    c.put_resource("anthropic", json!({"concurrency": 2})).await;
    let l = c.wait_leader().await;
    let body = json!({"name": "workers", "role": "client", "resources": ["openai-*"]});
    let (s, k) = c.send(l, Method::POST, "/v1/keys", Some(body), ADMIN).await;
    assert_eq!(s, 201, "{k}");
    let key = k["key"].as_str().unwrap().to_owned();
    let (s, v) = c
        .send(
            l,
            Method::POST,
            "/v1/resources/openai-gpt4/acquire",
            Some(json!({})),
            &key,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let lease = v["lease_id"].as_str().unwrap().to_owned();
    let (s, v) = c
        .send(
            l,
            Method::POST,
            "/v1/resources/anthropic/acquire",
            Some(json!({})),
            &key,
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str().unwrap()),
        (403, "forbidden")
    );
    let (s, _) = c
        .send(
            l,
            Method::PUT,
            "/v1/resources/x",
            Some(json!({"concurrency": 1})),
            &key,
        )
        .await;
    assert_eq!(s, 403);
    let (s, v) = c.send(l, Method::GET, "/v1/keys", None, ADMIN).await;
    assert_eq!(s, 200);
    assert_eq!(v["keys"][0]["name"], "workers");
    assert!(
        v["keys"][0].get("key").is_none(),
        "key text is never shown again"
    );
    let (s, _) = c
        .send(
            l,
            Method::POST,
            &format!("/v1/leases/{lease}/release"),
            Some(json!({})),
            &key,
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = c
        .send(l, Method::DELETE, "/v1/keys/workers", None, ADMIN)
        .await;
    assert_eq!(s, 204);
    let (s, _) = c
        .send(
            l,
            Method::POST,
            "/v1/resources/openai-gpt4/acquire",
            Some(json!({})),
            &key,
        )
        .await;
    assert_eq!(s, 401, "deleted keys stop working");
}

/// A client that disconnects while waiting leaves the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnected_waiters_leave_the_queue() {
    let c = Cluster::start(3).await;
    c.put_resource("one", json!({"concurrency": 1})).await;
    let l = c.wait_leader().await;
    let (s, holder) = c.acquire(l, "one", json!({})).await;
    assert_eq!(s, 200);
    let short = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let r = short
        .post(format!("{}/v1/resources/one/acquire", c.url(l)))
        .bearer_auth(ADMIN)
        .json(&json!({"wait_ms": 60_000}))
        .send()
        .await;
    assert!(r.is_err(), "the client gave up");
    eventually(Duration::from_secs(10), "the waiter left", || async {
        let (_, v) = c
            .send(l, Method::GET, "/v1/resources/one", None, ADMIN)
            .await;
        v["stats"]["queued"]
            .as_object()
            .is_some_and(|q| q.is_empty())
            .then_some(())
    })
    .await;
    let (s, _) = c
        .release(l, holder["lease_id"].as_str().unwrap(), json!({}))
        .await;
    assert_eq!(s, 200);
    let (s, v) = c.acquire(l, "one", json!({"wait_ms": 0})).await;
    assert_eq!(s, 200, "nobody took the slot: {v}");
}

/// Waiting acquires multiplexed on one HTTP/2 connection (up to its stream bound, 128
/// by default): all of them queue (the leader's gauges show it), and all are granted
/// once the resource grows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_waiters_share_one_http2_connection() {
    const WAITERS: usize = 120;
    let c = Cluster::start(3).await;
    c.put_resource("h2", json!({"concurrency": 1})).await;
    let l = c.wait_leader().await;
    let (s, _) = c.acquire(l, "h2", json!({})).await;
    assert_eq!(s, 200);
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let url = format!("{}/v1/resources/h2/acquire", c.url(l));
    let waiting: Vec<_> = (0..WAITERS)
        .map(|_| {
            let req = h2
                .post(&url)
                .bearer_auth(ADMIN)
                .json(&json!({"wait_ms": 60_000}));
            tokio::spawn(async move {
                let r = req.send().await.unwrap();
                assert_eq!(r.version(), reqwest::Version::HTTP_2);
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let gauge = |text: &str, name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
    };
    let metrics = eventually(Duration::from_secs(20), "every waiter queued", || async {
        let text = c
            .http()
            .get(format!("{}/metrics", c.url(l)))
            .bearer_auth(ADMIN)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (gauge(&text, "ratequeue_waiters") == WAITERS as f64).then_some(text)
    })
    .await;
    assert!(gauge(&metrics, "process_resident_memory_bytes") > 0.0);
    // The applied state's tables: the holder's lease (and its expiry entry), one resource.
    for (table, n) in [("leases", 1.0), ("expiry", 1.0), ("resources", 1.0)] {
        let name = format!("ratequeue_state_entries{{table=\"{table}\"}}");
        assert_eq!(gauge(&metrics, &name), n, "{table}");
    }
    assert!(
        gauge(&metrics, "ratequeue_raft_snapshot_index")
            >= gauge(&metrics, "ratequeue_raft_purged_index")
    );
    c.put_resource("h2", json!({"concurrency": 1 + WAITERS}))
        .await;
    let mut leases = std::collections::BTreeSet::new();
    for w in waiting {
        let (s, v) = w.await.unwrap();
        assert_eq!(s, 200, "{v}");
        assert!(leases.insert(v["lease_id"].as_str().unwrap().to_owned()));
    }
    assert_eq!(leases.len(), WAITERS);
}

/// A retry of a request id that is still waiting joins the first attempt: one waiter,
/// one lease, both attempts answered with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_while_waiting_joins_the_first_attempt() {
    let c = Arc::new(Cluster::start(3).await);
    c.put_resource("one", json!({"concurrency": 1})).await;
    let l = c.wait_leader().await;
    let (s, holder) = c.acquire(l, "one", json!({})).await;
    assert_eq!(s, 200);
    let mut attempts = Vec::new();
    for _ in 0..2 {
        let c2 = c.clone();
        attempts.push(tokio::spawn(async move {
            c2.acquire(
                l,
                "one",
                json!({"request_id": "join-me", "wait_ms": 30_000}),
            )
            .await
        }));
    }
    let c3 = c.clone();
    eventually(Duration::from_secs(10), "both attempts arrived", || {
        let c3 = c3.clone();
        async move {
            let m = c3
                .http()
                .get(format!("{}/metrics", c3.url(l)))
                .bearer_auth(ADMIN)
                .send()
                .await
                .ok()?;
            let text = m.text().await.ok()?;
            // Both attempts reached the leader (3 lease requests with the holder's)...
            let seen: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix("ratequeue_http_requests_total "))?
                .trim()
                .parse()
                .ok()?;
            // ...yet only one waiter is queued.
            let (_, v) = c3
                .send(l, Method::GET, "/v1/resources/one", None, ADMIN)
                .await;
            let queued = v["stats"]["queued"]["default"].as_u64();
            (seen >= 3 && queued == Some(1)).then_some(())
        }
    })
    .await;
    let (s, _) = c
        .release(l, holder["lease_id"].as_str().unwrap(), json!({}))
        .await;
    assert_eq!(s, 200);
    let mut ids = Vec::new();
    for a in attempts {
        let (s, v) = a.await.unwrap();
        assert_eq!(s, 200, "{v}");
        ids.push(v["lease_id"].clone());
    }
    assert_eq!(ids[0], ids[1], "both attempts got the same lease");
    let (_, v) = c
        .send(l, Method::GET, "/v1/resources/one", None, ADMIN)
        .await;
    assert_eq!(v["stats"]["held"], 1);
}
