//! Tenant isolation and HTTP hardening against real node processes (issue 15): one test
//! per observation of the issue, each failing on the build before the fix.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use ratequeue_testkit::Block;

use crate::cluster::{eventually, Cluster, ADMIN};

/// Creates a key (admin) and returns its text.
async fn key(c: &Cluster, body: Value) -> String {
    let l = c.wait_leader().await;
    let (s, v) = c.send(l, Method::POST, "/v1/keys", Some(body), ADMIN).await;
    assert_eq!(s, 201, "create key: {v}");
    v["key"].as_str().unwrap().to_owned()
}

async fn acquire_as(c: &Cluster, token: &str, resource: &str, body: Value) -> (u16, Value) {
    let l = c.wait_leader().await;
    let path = format!("/v1/resources/{resource}/acquire");
    c.send(l, Method::POST, &path, Some(body), token).await
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// Observation 1: key B, allowed only on `demo`, reusing key A's `request_id` got A's
/// lease on `other` (its id and fencing token). A `request_id` is now scoped to (key,
/// resource); a reuse with other parameters is `422 request_id_reused`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_scoped_to_key_and_resource() {
    let c = Cluster::start(1).await;
    c.put_resource("demo", json!({"concurrency": 10})).await;
    c.put_resource("other", json!({"concurrency": 10})).await;
    let a = key(
        &c,
        json!({"name": "a", "role": "client", "resources": ["other"]}),
    )
    .await;
    let b = key(
        &c,
        json!({"name": "b", "role": "client", "resources": ["demo"]}),
    )
    .await;
    let (s, la) = acquire_as(&c, &a, "other", json!({"request_id": "job-1"})).await;
    assert_eq!(s, 200, "{la}");
    let (s, lb) = acquire_as(&c, &b, "demo", json!({"request_id": "job-1"})).await;
    assert_eq!(s, 200, "{lb}");
    assert_eq!(lb["resource"], "demo", "key b got key a's lease: {lb}");
    assert_ne!(lb["lease_id"], la["lease_id"]);
    assert_ne!(lb["fencing_token"], la["fencing_token"]);
    // The same key retrying gets its own lease back...
    let (s, again) = acquire_as(&c, &a, "other", json!({"request_id": "job-1"})).await;
    assert_eq!((s, &again["lease_id"]), (200, &la["lease_id"]));
    // ...and reusing the id for another grant is refused, changing nothing.
    let (s, v) = acquire_as(&c, &a, "other", json!({"request_id": "job-1", "load": 2})).await;
    assert_eq!((s, code(&v)), (422, "request_id_reused"), "{v}");
    let l = c.wait_leader().await;
    let (_, r) = c
        .send(l, Method::GET, "/v1/resources/other", None, ADMIN)
        .await;
    assert_eq!(r["stats"]["held"], 1);
}

/// Reads until the server closes the connection (EOF or reset); returns what it sent.
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server kept the connection open for {within:?}"
    );
    out
}

/// A TCP connection to `to` from the local address `from` (any loopback address).
async fn connect_from(from: &str, to: &str) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    sock.connect(to.parse().unwrap()).await.unwrap()
}

/// An h2 frame: 24-bit length, type, flags, stream id.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Observation 3: unfinished headers and idle keep-alives stayed open 40 s, and 300
/// half-open requests were all held. Now: header-read and idle timeouts on HTTP/1.1 and
/// h2c, connection caps in total and per source address, a 503 at the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_and_connections_are_capped() {
    let c = Cluster::start_with(1, |c| {
        c.args([
            "--header-read-timeout-ms",
            "1000",
            "--idle-timeout-ms",
            "2000",
            "--connections-max",
            "6",
            "--connections-per-source-max",
            "4",
        ])
    })
    .await;
    let api = c.block().api_addr(1).to_string();
    let bound = Duration::from_secs(20);

    // HTTP/1.1: headers begun and never finished.
    let mut s = TcpStream::connect(&api).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    read_until_closed(&mut s, bound).await;
    // A connection that says nothing.
    let mut s = TcpStream::connect(&api).await.unwrap();
    read_until_closed(&mut s, bound).await;
    // Keep-alive: a finished request, then silence.
    let mut s = TcpStream::connect(&api).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut s, bound).await;
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    // A second request begun on a kept-alive connection, never finished.
    let mut s = TcpStream::connect(&api).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    read_until_closed(&mut s, bound).await;

    // h2c (prior knowledge): a preface and no request...
    let mut s = TcpStream::connect(&api).await.unwrap();
    s.write_all(H2_PREFACE).await.unwrap();
    s.write_all(&h2_frame(0x4, 0, 0, &[])).await.unwrap();
    read_until_closed(&mut s, bound).await;
    // ...and a request, then idle: the server says GOAWAY and closes.
    let mut s = TcpStream::connect(&api).await.unwrap();
    s.write_all(H2_PREFACE).await.unwrap();
    s.write_all(&h2_frame(0x4, 0, 0, &[])).await.unwrap();
    // HPACK: :method GET, :scheme http, :path "/healthz" (literal), :authority "x".
    let mut block = vec![0x82, 0x86, 0x44, 8];
    block.extend_from_slice(b"/healthz");
    block.extend_from_slice(&[0x41, 1, b'x']);
    s.write_all(&h2_frame(0x1, 0x5, 1, &block)).await.unwrap();
    let frames = read_until_closed(&mut s, bound).await;
    let mut kinds = Vec::new();
    let mut rest = &frames[..];
    while rest.len() >= 9 {
        let len = (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
        kinds.push(rest[3]);
        rest = &rest[(9 + len).min(rest.len())..];
    }
    assert!(kinds.contains(&0x1), "a response HEADERS frame: {kinds:?}");
    assert!(kinds.contains(&0x7), "a GOAWAY before closing: {kinds:?}");

    // Caps: 4 connections from one address are held, the 5th is refused with a 503.
    let here = "127.0.0.1";
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = connect_from(here, &api).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(s);
    }
    let mut s = connect_from(here, &api).await;
    let refused = String::from_utf8(read_until_closed(&mut s, bound).await).unwrap();
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(
        refused.contains("too_many_connections") && refused.contains("connections_per_source_max"),
        "{refused}"
    );
    // Another address may open 2 more (6 in all), then the total cap refuses a third.
    let there = "127.0.0.2";
    for _ in 0..2 {
        held.push(connect_from(there, &api).await);
    }
    let mut s = connect_from("127.0.0.3", &api).await;
    let refused = String::from_utf8(read_until_closed(&mut s, bound).await).unwrap();
    assert!(refused.contains("connections_max reached"), "{refused}");
    // Closing them frees the places.
    drop(held);
    eventually(
        Duration::from_secs(20),
        "a connection is accepted again",
        || async {
            let r = c
                .http()
                .get(format!("{}/healthz", c.url(1)))
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;
    let (_, m) = c.send(1, Method::GET, "/metrics", None, ADMIN).await;
    let m = m.as_str().unwrap();
    for reason in [
        "connections_max",
        "connections_per_source_max",
        "header_read_timeout",
        "idle_timeout",
    ] {
        let line = format!("ratequeue_api_connections_closed_total{{reason=\"{reason}\"}} ");
        let n: u64 = m
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("{line} missing"))
            .parse()
            .unwrap();
        assert!(n >= 1, "{reason}: {n}");
    }
}

/// Observation 4: any key could pick any lane and priority, and one key could fill
/// `max_queue` for everyone. Keys are now bound to lanes and a highest priority, and
/// have a waiter quota (`429 quota_exceeded`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_bound_to_lanes_priority_and_a_waiter_quota() {
    let c = Cluster::start(1).await;
    c.put_resource(
        "shared",
        json!({"concurrency": 1, "lanes": {"user-facing": {"weight": 10}}}),
    )
    .await;
    let k = key(
        &c,
        json!({"name": "batch", "role": "client", "resources": ["shared"],
               "lanes": ["batch*"], "max_priority": 20, "max_waiters": 2}),
    )
    .await;
    let (s, v) = acquire_as(
        &c,
        &k,
        "shared",
        json!({"lane": "user-facing", "priority": 2147483647}),
    )
    .await;
    assert_eq!((s, code(&v)), (403, "forbidden"), "{v}");
    let (s, v) = acquire_as(&c, &k, "shared", json!({"lane": "user-facing"})).await;
    assert_eq!((s, code(&v)), (403, "forbidden"), "lane: {v}");
    let (s, v) = acquire_as(&c, &k, "shared", json!({"lane": "batch", "priority": 21})).await;
    assert_eq!((s, code(&v)), (403, "forbidden"), "priority: {v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 20"),
        "{v}"
    );
    let (s, held) = acquire_as(&c, &k, "shared", json!({"lane": "batch", "priority": 20})).await;
    assert_eq!(s, 200, "{held}");

    // Two waiters of the key queue; the third is over its quota. Others still queue.
    let url = format!("{}/v1/resources/shared/acquire", c.url(1));
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let http = c.http().clone();
        let (url, k) = (url.clone(), k.clone());
        tasks.push(tokio::spawn(async move {
            http.post(&url)
                .bearer_auth(k)
                .json(&json!({"lane": "batch", "wait_ms": 60_000}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    eventually(Duration::from_secs(20), "two waiters queued", || async {
        let (_, v) = c
            .send(1, Method::GET, "/v1/resources/shared", None, ADMIN)
            .await;
        (v["stats"]["queued"]["batch"] == 2).then_some(())
    })
    .await;
    let (s, v) = acquire_as(
        &c,
        &k,
        "shared",
        json!({"lane": "batch", "wait_ms": 60_000}),
    )
    .await;
    assert_eq!((s, code(&v)), (429, "quota_exceeded"), "{v}");
    assert!(v["error"]["retry_after_ms"].as_u64().is_some(), "{v}");
    let admin = tokio::spawn({
        let http = c.http().clone();
        let url = url.clone();
        async move {
            http.post(&url)
                .bearer_auth(ADMIN)
                .json(&json!({"wait_ms": 60_000}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    eventually(
        Duration::from_secs(20),
        "the admin's waiter queued too",
        || async {
            let (_, v) = c
                .send(1, Method::GET, "/v1/resources/shared", None, ADMIN)
                .await;
            (v["stats"]["queued"]["default"] == 1).then_some(())
        },
    )
    .await;
    c.put_resource(
        "shared",
        json!({"concurrency": 10, "lanes": {"user-facing": {"weight": 10}}}),
    )
    .await;
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 200);
    }
    assert_eq!(admin.await.unwrap().unwrap(), 200);
}

/// `/metrics` text with `token`, or the status if refused.
async fn metrics(c: &Cluster, url: &str, token: Option<&str>) -> Result<String, u16> {
    let mut req = c.http().get(format!("{url}/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    if r.status() != 200 {
        return Err(r.status().as_u16());
    }
    Ok(r.text().await.unwrap())
}

/// Observation 5: `/metrics` was open and 300 made-up lane names made 300 series. It
/// now needs an admin or monitor key on the API port (open on the separate
/// `--metrics-addr` listener), and its labels are bounded: unconfigured lanes are
/// counted under `(other)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_a_read_scope_and_their_labels_are_bounded() {
    let block = Block::pick(1);
    let c = Cluster::start_with(1, |c| {
        c.block(block)
            .node_arg(1, "--metrics-addr")
            .node_arg(1, format!("{}:7702", block.ip(1)))
    })
    .await;
    c.put_resource(
        "r",
        json!({"concurrency": 1000, "lanes": {"user-facing": {"weight": 10}}}),
    )
    .await;
    let client = key(
        &c,
        json!({"name": "w", "role": "client", "resources": ["r"]}),
    )
    .await;
    let monitor = key(&c, json!({"name": "prom", "role": "monitor"})).await;
    let api = c.url(1);
    assert_eq!(metrics(&c, &api, None).await.unwrap_err(), 401);
    assert_eq!(metrics(&c, &api, Some(&client)).await.unwrap_err(), 403);
    assert!(metrics(&c, &api, Some(&monitor)).await.is_ok());
    let open = format!("http://{}:7702", c.block().ip(1));
    assert!(
        metrics(&c, &open, None).await.is_ok(),
        "the metrics listener is open"
    );

    for i in 0..300 {
        let (s, v) = acquire_as(&c, &client, "r", json!({"lane": format!("made-up-{i}")})).await;
        assert_eq!(s, 200, "{v}");
    }
    let (s, _) = acquire_as(&c, &client, "r", json!({"lane": "user-facing"})).await;
    assert_eq!(s, 200);
    let (s, _) = acquire_as(&c, &client, "no-such-resource", json!({})).await;
    assert_eq!(s, 403);
    let (s, _) = acquire_as(&c, ADMIN, "no-such-resource", json!({})).await;
    assert_eq!(s, 404);
    let text = metrics(&c, &api, Some(&monitor)).await.unwrap();
    let grants: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ratequeue_grants_total{"))
        .collect();
    assert_eq!(
        grants,
        vec![
            "ratequeue_grants_total{resource=\"r\",lane=\"(other)\"} 300",
            "ratequeue_grants_total{resource=\"r\",lane=\"user-facing\"} 1",
        ],
        "{text}"
    );
    assert!(
        text.contains(
            "ratequeue_refusals_total{resource=\"(other)\",code=\"resource_not_found\"} 1"
        ),
        "{text}"
    );
    assert!(!text.contains("no-such-resource"), "{text}");
}

async fn last_log_index(c: &Cluster) -> u64 {
    c.status(c.wait_leader().await)
        .await
        .unwrap()
        .last_log_index
        .unwrap()
}

/// Observation 6: any key, even one allowed on nothing, wrote to the Raft log: 50
/// releases and 50 renews of made-up leases each appended entries; failed auth was
/// neither throttled nor logged. Now refused commands append nothing, answers stay
/// exact, and a source failing authentication is throttled and logged (never the token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_commands_write_nothing_and_failed_auth_is_throttled() {
    let c = Cluster::start(1).await;
    c.put_resource("r", json!({"concurrency": 10})).await;
    let nothing = key(
        &c,
        json!({"name": "nothing", "role": "client", "resources": []}),
    )
    .await;
    let owner = key(
        &c,
        json!({"name": "owner", "role": "client", "resources": ["r"]}),
    )
    .await;
    let thief = key(
        &c,
        json!({"name": "thief", "role": "client", "resources": ["r"]}),
    )
    .await;
    let (s, lease) = acquire_as(&c, &owner, "r", json!({})).await;
    assert_eq!(s, 200);
    let lease_id = lease["lease_id"].as_str().unwrap().to_owned();
    let (s, gone) = acquire_as(&c, &owner, "r", json!({})).await;
    assert_eq!(s, 200);
    let gone_id = gone["lease_id"].as_str().unwrap().to_owned();
    let (s, _) = c
        .send(
            1,
            Method::POST,
            &format!("/v1/leases/{gone_id}/release"),
            None,
            &owner,
        )
        .await;
    assert_eq!(s, 200);

    let before = last_log_index(&c).await;
    for i in 0..50u64 {
        let made_up = format!("{}-{:016x}", 1_000_000 + i, i);
        for op in ["release", "renew"] {
            let (s, v) = c
                .send(
                    1,
                    Method::POST,
                    &format!("/v1/leases/{made_up}/{op}"),
                    None,
                    &nothing,
                )
                .await;
            assert_eq!((s, code(&v)), (404, "lease_not_found"), "{op}: {v}");
        }
    }
    // Another key's lease: refused, not written, and still held.
    for op in ["release", "renew"] {
        let (s, v) = c
            .send(
                1,
                Method::POST,
                &format!("/v1/leases/{lease_id}/{op}"),
                None,
                &thief,
            )
            .await;
        assert_eq!((s, code(&v)), (403, "forbidden"), "{op}: {v}");
    }
    // Answers that are final in the applied state are exact without a write.
    let (s, v) = c
        .send(
            1,
            Method::POST,
            &format!("/v1/leases/{gone_id}/release"),
            None,
            &owner,
        )
        .await;
    assert_eq!((s, &v["state"]), (200, &json!("already_released")), "{v}");
    let (s, v) = c
        .send(
            1,
            Method::POST,
            &format!("/v1/leases/{gone_id}/renew"),
            None,
            &owner,
        )
        .await;
    assert_eq!((s, code(&v)), (410, "lease_expired"), "{v}");
    assert_eq!(
        last_log_index(&c).await,
        before,
        "refused commands appended entries"
    );
    let (_, r) = c.send(1, Method::GET, "/v1/resources/r", None, ADMIN).await;
    assert_eq!(r["stats"]["held"], 1);
    // The owner (and an admin) may still renew and release it.
    let (s, _) = c
        .send(
            1,
            Method::POST,
            &format!("/v1/leases/{lease_id}/renew"),
            None,
            &owner,
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = c
        .send(
            1,
            Method::POST,
            &format!("/v1/leases/{lease_id}/release"),
            None,
            ADMIN,
        )
        .await;
    assert_eq!(s, 200);

    // 500 bad tokens from one address: throttled after a burst, each failure logged
    // with the source address and without the token.
    let bad = "bad-token-4f1d2c";
    let attacker = reqwest::Client::builder()
        .local_address("127.0.0.9".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..500 {
        let r = attacker
            .get(format!("{}/v1/resources", c.url(1)))
            .bearer_auth(bad)
            .send()
            .await
            .unwrap();
        *statuses.entry(r.status().as_u16()).or_insert(0) += 1;
    }
    assert!(
        statuses.get(&429).copied().unwrap_or(0) >= 400,
        "{statuses:?}"
    );
    assert!(
        statuses.get(&401).copied().unwrap_or(0) >= 1,
        "{statuses:?}"
    );
    let log = c.log(1);
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("authentication failed"))
        .collect();
    assert!(
        !failures.is_empty() && failures.len() < 100,
        "{} lines",
        failures.len()
    );
    assert!(
        failures.iter().all(|l| l.contains("source=127.0.0.9:")),
        "{failures:?}"
    );
    assert!(!log.contains(bad), "a token was logged");
    // The throttle is per source: others are not affected.
    let (s, _) = c.send(1, Method::GET, "/v1/resources", None, ADMIN).await;
    assert_eq!(s, 200);
    let (_, m) = c.send(1, Method::GET, "/metrics", None, ADMIN).await;
    assert!(
        m.as_str()
            .unwrap()
            .contains("ratequeue_auth_throttled_total"),
        "{m}"
    );
}

/// Observation 9: `POST /v1/keys` with an existing name replaced the key (a client key
/// became admin); keys could not expire; the admin token needed a restart to rotate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_lifecycle_create_rotate_expire_and_admin_token_reload() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{ADMIN}\n")).unwrap();
    let file_arg = token_file.to_str().unwrap().to_owned();
    let c = Cluster::start_with(1, |c| c.args(["--admin-token-file", &file_arg])).await;
    c.put_resource("r", json!({"concurrency": 10})).await;
    let k = key(
        &c,
        json!({"name": "w", "role": "client", "resources": ["r"]}),
    )
    .await;
    let (s, v) = c
        .send(
            1,
            Method::POST,
            "/v1/keys",
            Some(json!({"name": "w", "role": "admin"})),
            ADMIN,
        )
        .await;
    assert_eq!((s, code(&v)), (409, "key_exists"), "{v}");
    let (s, _) = c.send(1, Method::GET, "/v1/keys", None, &k).await;
    assert_eq!(s, 403, "the key is still a client key");

    // Rotate: a new text, same scope; the old text stops working.
    let (s, v) = c
        .send(1, Method::POST, "/v1/keys/w/rotate", Some(json!({})), ADMIN)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["role"], "client");
    let rotated = v["key"].as_str().unwrap().to_owned();
    assert_ne!(rotated, k);
    assert_eq!(acquire_as(&c, &k, "r", json!({})).await.0, 401);
    assert_eq!(acquire_as(&c, &rotated, "r", json!({})).await.0, 200);
    let (s, v) = c
        .send(1, Method::POST, "/v1/keys/nobody/rotate", None, ADMIN)
        .await;
    assert_eq!((s, code(&v)), (404, "key_not_found"));

    // Expiry in cluster time.
    let temp = key(
        &c,
        json!({"name": "temp", "role": "client", "resources": ["r"], "expires_in_ms": 1500}),
    )
    .await;
    let (_, keys) = c.send(1, Method::GET, "/v1/keys", None, ADMIN).await;
    let listed = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "temp")
        .unwrap()
        .clone();
    assert!(
        listed["expires_in_ms"].as_u64().unwrap() <= 1500,
        "{listed}"
    );
    assert_eq!(acquire_as(&c, &temp, "r", json!({})).await.0, 200);
    eventually(Duration::from_secs(30), "the key expired", || async {
        let (s, v) = c.send(1, Method::GET, "/v1/resources/r", None, &temp).await;
        (s == 401).then_some(v)
    })
    .await;

    // The admin token rotates without a restart: both for a while, then the new one.
    let new_admin = "rotated-admin-token-0123456789";
    std::fs::write(&token_file, format!("{ADMIN}\n{new_admin}\n")).unwrap();
    eventually(
        Duration::from_secs(30),
        "the new admin token works",
        || async {
            let (s, _) = c.send(1, Method::GET, "/v1/keys", None, new_admin).await;
            (s == 200).then_some(())
        },
    )
    .await;
    let (s, _) = c.send(1, Method::GET, "/v1/keys", None, ADMIN).await;
    assert_eq!(s, 200, "the old token works until it leaves the file");
    std::fs::write(&token_file, format!("{new_admin}\n")).unwrap();
    let pid = c.pid(1).unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "the old admin token is refused",
        || async {
            let (s, _) = c.send(1, Method::GET, "/v1/keys", None, ADMIN).await;
            (s == 401).then_some(())
        },
    )
    .await;
    assert!(c.log(1).contains("admin token file reloaded"));
    assert!(!c.log(1).contains(new_admin), "a token was logged");
}

/// Observation 10: a key allowed on nothing listed every resource with its config and
/// stats; any key read the cluster status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_and_status_follow_the_scope() {
    let c = Cluster::start(3).await;
    for r in ["demo", "other", "openai-gpt4"] {
        c.put_resource(r, json!({"concurrency": 1})).await;
    }
    let l = c.wait_leader().await;
    let nothing = key(&c, json!({"name": "nothing", "role": "client"})).await;
    let demo = key(
        &c,
        json!({"name": "demo", "role": "client", "resources": ["demo", "openai-*"]}),
    )
    .await;
    let monitor = key(&c, json!({"name": "mon", "role": "monitor"})).await;
    let names = |v: &Value| -> Vec<String> {
        v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (s, v) = c
        .send(l, Method::GET, "/v1/resources", None, &nothing)
        .await;
    assert_eq!((s, names(&v)), (200, Vec::<String>::new()), "{v}");
    let (s, v) = c.send(l, Method::GET, "/v1/resources", None, &demo).await;
    assert_eq!(
        (s, names(&v)),
        (200, vec!["demo".to_owned(), "openai-gpt4".to_owned()])
    );
    let (s, _) = c
        .send(l, Method::GET, "/v1/resources/other", None, &demo)
        .await;
    assert_eq!(s, 403);
    let (s, v) = c
        .send(l, Method::GET, "/v1/resources", None, &monitor)
        .await;
    assert_eq!((s, names(&v).len()), (200, 3));
    for id in 1..=3 {
        let (s, v) = c
            .send(id, Method::GET, "/v1/cluster/status", None, &demo)
            .await;
        assert_eq!((s, code(&v)), (403, "forbidden"), "{v}");
        let (s, _) = c
            .send(id, Method::GET, "/v1/cluster/status", None, &monitor)
            .await;
        assert_eq!(s, 200);
    }
    let (s, _) = c
        .send(
            l,
            Method::PUT,
            "/v1/resources/x",
            Some(json!({"concurrency": 1})),
            &monitor,
        )
        .await;
    assert_eq!(s, 403, "monitor keys are read-only");
    let (s, _) = acquire_as(&c, &monitor, "demo", json!({})).await;
    assert_eq!(s, 403);
}

/// Observation 11: a JSON array body was read by position, `bearer` in lower case was
/// refused, and the per-request span did not exist. Now arrays are refused, the scheme
/// is case-insensitive, and `--access-log` writes one line per request with the span's
/// fields (JSON with `--log-format json`), never a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_bearer_scheme_and_the_access_log() {
    let c = Cluster::start_with(1, |c| c.args(["--access-log", "--log-format", "json"])).await;
    c.put_resource(
        "r",
        json!({"concurrency": 10, "lanes": {"batch": {"weight": 2}}}),
    )
    .await;
    let k = key(
        &c,
        json!({"name": "logged", "role": "client", "resources": ["r"]}),
    )
    .await;
    let url = format!("{}/v1/resources/r/acquire", c.url(1));
    let r = c
        .http()
        .post(&url)
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body("[5, 10, \"default\"]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("JSON object"),
        "{v}"
    );
    let r = c
        .http()
        .post(&url)
        .header("authorization", format!("bearer {k}"))
        .json(&json!({"lane": "batch", "request_id": "traced-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let lease: Value = r.json().await.unwrap();
    let lease_id = lease["lease_id"].as_str().unwrap().to_owned();
    let (s, _) = c
        .send(
            1,
            Method::POST,
            &format!("/v1/leases/{lease_id}/release"),
            None,
            &k,
        )
        .await;
    assert_eq!(s, 200);

    let access = eventually(Duration::from_secs(10), "the access log lines", || async {
        let lines: Vec<Value> = c
            .log(1)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "ratequeue::access")
            .collect();
        let acquire = lines
            .iter()
            .find(|v| v["span"]["request_id"] == "traced-1")?
            .clone();
        let release = lines
            .iter()
            .find(|v| {
                v["span"]["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("/release"))
                    && v["span"]["lease_id"] == lease_id.as_str()
            })?
            .clone();
        Some((acquire, release))
    })
    .await;
    let (acquire, release) = access;
    let span = &acquire["span"];
    assert_eq!(span["method"], "POST");
    assert_eq!(span["path"], "/v1/resources/r/acquire");
    assert_eq!(span["resource"], "r");
    assert_eq!(span["lane"], "batch");
    assert_eq!(span["lease_id"], lease_id.as_str());
    assert_eq!(span["key"], "logged");
    assert_eq!(span["status"], 200);
    assert!(
        span["source"].as_str().unwrap().starts_with("127."),
        "{span}"
    );
    assert!(span["duration_ms"].is_u64(), "{span}");
    assert_eq!(release["span"]["status"], 200);
    let log = c.log(1);
    assert!(
        !log.contains(&k) && !log.contains(ADMIN),
        "a token was logged"
    );
}

/// A follower whose applied state does not have a key yet (created a moment ago on the
/// leader) sends the request on to the leader instead of answering 401; a token unknown
/// to the leader too is refused there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_lags_a_new_key_defers_to_the_leader() {
    let mut c = Cluster::start(3).await;
    c.put_resource("r", json!({"concurrency": 10})).await;
    let l = c.wait_leader().await;
    let f = (1..=3).find(|i| *i != l).unwrap();
    // The follower is stopped while the key is created, so it cannot know it yet when
    // the first request reaches it.
    c.pause(f).unwrap();
    let k = key(
        &c,
        json!({"name": "fresh", "role": "client", "resources": ["r"]}),
    )
    .await;
    c.resume(f).unwrap();
    let (s, v) = c
        .send(
            f,
            Method::POST,
            "/v1/resources/r/acquire",
            Some(json!({})),
            &k,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = c
        .send(f, Method::GET, "/v1/resources/r", None, "no-such-token-123")
        .await;
    assert_eq!((s, code(&v)), (401, "unauthorized"), "{v}");
}

/// The server's first SETTINGS frame on a fresh h2c connection: (identifier, value).
async fn h2_server_settings(api: &str) -> Vec<(u16, u32)> {
    let mut s = TcpStream::connect(api).await.unwrap();
    s.write_all(H2_PREFACE).await.unwrap();
    s.write_all(&h2_frame(0x4, 0, 0, &[])).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            // A frame: 9 bytes of header, then its payload.
            if got.len() >= 9 {
                let len = (got[0] as usize) << 16 | (got[1] as usize) << 8 | got[2] as usize;
                if got.len() >= 9 + len {
                    return;
                }
            }
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before its SETTINGS");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(read.is_ok(), "no SETTINGS frame from the server");
    assert_eq!(
        got[3], 0x4,
        "the server's first frame is not SETTINGS: {got:?}"
    );
    let len = (got[0] as usize) << 16 | (got[1] as usize) << 8 | got[2] as usize;
    got[9..9 + len]
        .chunks(6)
        .map(|p| {
            (
                u16::from_be_bytes([p[0], p[1]]),
                u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
            )
        })
        .collect()
}

/// Observation 7: waiters cost ~40 KB each over HTTP/1.1 and were capped only
/// cluster-wide (1 M), so one key could park enough to exhaust a node. A key now has at
/// most `max_in_flight` requests in flight on a node (and `max_waiters` queued:
/// observation 4), a source address at most 256 connections (observation 3), and an
/// HTTP/2 connection at most 128 requests in flight, which its SETTINGS announce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_and_a_connection_bound_what_they_park() {
    let c = Cluster::start(1).await;
    c.put_resource("full", json!({"concurrency": 1})).await;
    let (s, v) = c.acquire(1, "full", json!({})).await;
    assert_eq!(s, 200, "{v}");
    let k = key(
        &c,
        json!({"name": "parker", "role": "client", "resources": ["full"], "max_in_flight": 2}),
    )
    .await;

    // Two waiting acquires fill the key's in-flight quota on this node...
    let url = format!("{}/v1/resources/full/acquire", c.url(1));
    let parked: Vec<_> = (0..2)
        .map(|_| {
            let req = c
                .http()
                .post(&url)
                .bearer_auth(&k)
                .json(&json!({"wait_ms": 60_000}));
            tokio::spawn(async move { req.send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    let waiters = |text: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix("ratequeue_waiters ")?.parse().ok())
    };
    eventually(Duration::from_secs(20), "both acquires queued", || async {
        let text = metrics(&c, &c.url(1), Some(ADMIN)).await.ok()?;
        (waiters(&text)? == 2.0).then_some(())
    })
    .await;
    // ...so its next request, of any kind, is refused before it is read...
    let (s, v) = c
        .send(1, Method::GET, "/v1/dashboard/session", None, &k)
        .await;
    assert_eq!(s, 429, "{v}");
    assert_eq!(code(&v), "quota_exceeded", "{v}");
    assert!(v["error"]["retry_after_ms"].as_u64().unwrap() > 0, "{v}");
    let (s, v) = acquire_as(&c, &k, "full", json!({"wait_ms": 60_000})).await;
    assert_eq!(s, 429, "{v}");
    assert_eq!(code(&v), "quota_exceeded", "{v}");
    let text = metrics(&c, &c.url(1), Some(ADMIN)).await.unwrap();
    assert_eq!(waiters(&text), Some(2.0), "a refused request queued");
    // ...while other callers are not held back.
    let (s, v) = c
        .send(1, Method::GET, "/v1/dashboard/session", None, ADMIN)
        .await;
    assert_eq!(s, 200, "{v}");

    // Once the slot frees, the parked acquires are answered and the quota is given back.
    let (s, v) = c
        .send(1, Method::DELETE, "/v1/resources/full", None, ADMIN)
        .await;
    assert_eq!(s, 204, "{v}");
    for p in parked {
        assert_eq!(p.await.unwrap().unwrap(), 404);
    }
    let (s, v) = c
        .send(1, Method::GET, "/v1/dashboard/session", None, &k)
        .await;
    assert_eq!(s, 200, "{v}");

    // An HTTP/2 connection: at most 128 concurrent streams (SETTINGS_MAX_CONCURRENT_STREAMS).
    let settings = h2_server_settings(&c.block().api_addr(1).to_string()).await;
    assert!(
        settings.contains(&(0x3, 128)),
        "SETTINGS without MAX_CONCURRENT_STREAMS 128: {settings:?}"
    );
}
