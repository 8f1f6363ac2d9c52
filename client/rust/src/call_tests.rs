//! Call-level tests of the client against scripted fake nodes (axum on 127.0.0.1):
//! redirects followed by hand, the leader cache, retries that keep the request_id,
//! ambiguity, and the final errors. The real cluster is in `tests/it/`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ratequeue_api as api;
use ratequeue_api::ErrorCode;
use serde_json::{json, Value};

use crate::{Client, Error, Timing};

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    auth: Option<String>,
    body: Value,
}

type Script = dyn Fn(usize, &Seen) -> Response + Send + Sync;

#[derive(Clone)]
struct FakeState {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Script>,
}

struct Fake {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Fake {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(st): State<FakeState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = Seen {
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        auth: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let n = {
        let mut s = st.seen.lock().unwrap();
        s.push(seen.clone());
        s.len() - 1
    };
    (st.script)(n, &seen)
}

/// A fake node answering request number `n` (from 0) with `script(n, request)`.
async fn fake(script: impl Fn(usize, &Seen) -> Response + Send + Sync + 'static) -> Fake {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = FakeState {
        seen: seen.clone(),
        script: Arc::new(script),
    };
    let app = axum::Router::new().fallback(handle).with_state(state);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Fake { url, seen, task }
}

/// A URL where nothing listens.
fn closed_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

fn error(status: u16, code: &str, retry_after_ms: Option<u64>) -> Response {
    let mut detail = json!({"code": code, "message": format!("fake {code}")});
    if let Some(ms) = retry_after_ms {
        detail["retry_after_ms"] = ms.into();
    }
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({ "error": detail })),
    )
        .into_response()
}

fn redirect(to: &str) -> Response {
    (
        StatusCode::TEMPORARY_REDIRECT,
        [
            ("location", to.to_owned()),
            ("x-ratequeue-leader", "2".into()),
        ],
    )
        .into_response()
}

fn lease(resource: &str) -> Response {
    axum::Json(api::Lease {
        lease_id: "7-abc".into(),
        resource: resource.into(),
        lane: "default".into(),
        load: 1,
        fencing_token: 7,
        ttl_ms: 30_000,
        queued_ms: 0,
        limits: vec![],
        shadow: None,
    })
    .into_response()
}

fn fast() -> Timing {
    Timing {
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(50),
        retry_budget: Duration::from_secs(5),
        ..Timing::default()
    }
}

fn client(urls: &[&str], timing: Timing) -> Client {
    Client::builder()
        .urls(urls.iter().copied())
        .api_key("k3y")
        .timing(timing)
        .ignore_env()
        .build()
        .unwrap()
}

fn acquire_req(wait_ms: u64) -> api::AcquireRequest {
    api::AcquireRequest {
        wait_ms: Some(wait_ms),
        load: Some(5),
        ..Default::default()
    }
}

#[tokio::test]
async fn redirects_are_followed_by_hand_with_method_body_and_token() {
    let leader = fake(|_, s| lease(s.path.split('/').nth(3).unwrap_or("?"))).await;
    let to = leader.url.clone();
    let follower = fake(move |_, s| redirect(&format!("{to}{}", s.path))).await;
    let c = client(&[&follower.url], fast());
    let l = c.acquire_lease("openai", acquire_req(1000)).await.unwrap();
    assert_eq!(l.resource, "openai");

    let f = follower.seen();
    let t = leader.seen();
    assert_eq!((f.len(), t.len()), (1, 1));
    assert_eq!(t[0].method, "POST");
    assert_eq!(t[0].path, "/v1/resources/openai/acquire");
    assert_eq!(
        t[0].auth.as_deref(),
        Some("Bearer k3y"),
        "the token survives the redirect"
    );
    assert_eq!(t[0].body, f[0].body, "the body is re-sent as is");
    assert_eq!(t[0].body["load"], 5);
    assert_eq!(c.leader_url(), Some(leader.url.clone()));

    // The cached leader is asked directly next time.
    c.acquire_lease("openai", acquire_req(1000)).await.unwrap();
    assert_eq!((follower.seen().len(), leader.seen().len()), (1, 2));
}

#[tokio::test]
async fn every_acquire_sends_its_holder_label_with_host_and_pid() {
    let node = fake(|_, s| lease(s.path.split('/').nth(3).unwrap_or("?"))).await;
    let place = format!("{}:{}", crate::config::host_name(), std::process::id());
    // No label: host and pid.
    let c = client(&[&node.url], fast());
    assert_eq!(c.holder_label(), None);
    c.acquire_lease("r", acquire_req(0)).await.unwrap();
    // The client's label, then one given for a single acquire.
    let c = Client::builder()
        .url(&node.url)
        .holder("nightly-export")
        .ignore_env()
        .build()
        .unwrap();
    c.acquire_lease("r", acquire_req(0)).await.unwrap();
    let p = c
        .acquire("r")
        .holder("job 42")
        .try_once()
        .auto_renew(false)
        .await
        .unwrap();
    let sent: Vec<Value> = node
        .seen()
        .iter()
        .map(|s| s.body["holder"].clone())
        .collect();
    assert_eq!(
        sent,
        [
            Value::from(place.clone()),
            Value::from(format!("nightly-export@{place}")),
            Value::from(format!("job 42@{place}")),
        ]
    );
    drop(p);
    // A label the server would refuse fails before any I/O.
    let bad = Client::builder().url(&node.url).holder("tab\t").build();
    assert!(matches!(bad, Err(Error::InvalidArgument(_))), "{bad:?}");
    let e = c.acquire("r").holder("").await.unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
}

#[tokio::test]
async fn a_redirect_loop_ends_as_unavailable() {
    // A node that redirects to itself: never a leader.
    let me = Arc::new(Mutex::new(String::new()));
    let me2 = me.clone();
    let looping = fake(move |_, s| redirect(&format!("{}{}", me2.lock().unwrap(), s.path))).await;
    *me.lock().unwrap() = looping.url.clone();
    let t = Timing {
        retry_budget: Duration::from_millis(200),
        ..fast()
    };
    let c = client(&[&looping.url], t);
    let e = c.list_resources().await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    assert!(looping.seen().len() >= 2);
}

#[tokio::test]
async fn acquire_retries_keep_the_request_id_and_shrink_the_wait() {
    let node = fake(|n, s| match n {
        0 => error(504, "commit_timeout", None),
        1 => error(503, "no_leader", Some(20)),
        _ => lease(s.path.split('/').nth(3).unwrap_or("?")),
    })
    .await;
    let c = client(&[&node.url], fast());
    let l = c.acquire_lease("r", acquire_req(5_000)).await.unwrap();
    assert_eq!(l.fencing_token, 7);
    let seen = node.seen();
    assert_eq!(seen.len(), 3);
    let ids: Vec<&Value> = seen.iter().map(|s| &s.body["request_id"]).collect();
    assert!(ids[0].as_str().is_some_and(|id| id.len() == 32), "{ids:?}");
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one request_id for every attempt: {ids:?}"
    );
    let waits: Vec<u64> = seen
        .iter()
        .map(|s| s.body["wait_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(waits[0], 5_000);
    assert!(waits[1] <= 5_000 && waits[2] <= waits[1], "{waits:?}");
}

#[tokio::test]
async fn a_given_request_id_is_sent_as_is() {
    let node = fake(|_, _| lease("r")).await;
    let c = client(&[&node.url], fast());
    let p = c
        .acquire("r")
        .request_id("my-id-1")
        .auto_renew(false)
        .await
        .unwrap();
    assert_eq!(p.request_id(), "my-id-1");
    assert_eq!(node.seen()[0].body["request_id"], "my-id-1");
    std::mem::forget(p); // no release call against the fake
}

#[tokio::test]
async fn ambiguity_ends_non_idempotent_calls_and_is_retried_by_idempotent_ones() {
    let node = fake(|_, _| error(504, "commit_timeout", None)).await;
    let c = client(
        &[&node.url],
        Timing {
            retry_budget: Duration::from_millis(300),
            ..fast()
        },
    );

    let req = api::AddMember {
        id: 4,
        peer_addr: "h:1".into(),
        api_url: "http://h:2".into(),
        voter: true,
    };
    let e = c.add_member(&req).await.unwrap_err();
    assert!(e.is_ambiguous(), "{e:?}");
    assert_eq!(
        node.seen().len(),
        1,
        "a membership change is not retried after ambiguity"
    );

    let req = api::AcquireRequest {
        request_id: Some("rid-9".into()),
        wait_ms: Some(0),
        ..Default::default()
    };
    let e = c.acquire_lease("r", req).await.unwrap_err();
    match &e {
        Error::Ambiguous { request_id, .. } => assert_eq!(request_id.as_deref(), Some("rid-9")),
        e => panic!("{e:?}"),
    }
    assert!(node.seen().len() > 2, "the acquire was retried");
}

#[tokio::test]
async fn no_leader_for_the_whole_budget_is_a_definite_no_leader() {
    let node = fake(|_, _| error(503, "no_leader", Some(10))).await;
    let c = client(
        &[&node.url],
        Timing {
            retry_budget: Duration::from_millis(300),
            ..fast()
        },
    );
    let start = Instant::now();
    let e = c.acquire_lease("r", acquire_req(0)).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NoLeader), "{e:?}");
    assert!(e.is_definite());
    assert!(node.seen().len() >= 3, "retried: {}", node.seen().len());
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "bounded by the budget"
    );
}

#[tokio::test]
async fn definite_errors_are_not_retried() {
    let node = fake(|_, _| error(429, "queue_full", Some(1500))).await;
    let c = client(&[&node.url], fast());
    let e = c.acquire_lease("r", acquire_req(100)).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::QueueFull));
    assert_eq!(e.retry_after(), Some(Duration::from_millis(1500)));
    assert_eq!(node.seen().len(), 1);
}

#[tokio::test]
async fn an_unreachable_node_fails_over_at_once() {
    let node = fake(|_, _| axum::Json(json!({"resources": []})).into_response()).await;
    let dead = closed_url();
    let c = client(&[&dead, &node.url], fast());
    for _ in 0..3 {
        assert!(c.list_resources().await.unwrap().is_empty());
    }
    assert_eq!(node.seen().len(), 3);

    let c = client(
        &[&closed_url(), &closed_url()],
        Timing {
            retry_budget: Duration::from_millis(200),
            ..fast()
        },
    );
    let e = c.list_resources().await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    assert!(e.is_definite() && e.is_temporary());
}

#[tokio::test]
async fn a_delete_answered_404_after_an_ambiguous_attempt_succeeded() {
    let node = fake(|n, _| match n {
        0 => error(504, "commit_timeout", None),
        _ => error(404, "resource_not_found", None),
    })
    .await;
    let c = client(&[&node.url], fast());
    c.delete_resource("r").await.unwrap();
    assert_eq!(node.seen().len(), 2);
    assert_eq!(node.seen()[1].method, "DELETE");
    // Without the ambiguous attempt, a 404 is an error.
    let e = c.delete_resource("r").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ResourceNotFound));
}

#[tokio::test]
async fn would_block_after_the_wait_ran_out_is_a_wait_timeout() {
    // First attempt: no leader for longer than the caller's wait; the retry is sent with
    // no wait left and finds no room.
    let node = fake(|n, _| match n {
        0 => error(503, "no_leader", Some(150)),
        _ => error(429, "would_block", Some(40)),
    })
    .await;
    let c = client(&[&node.url], fast());
    let e = c.acquire_lease("r", acquire_req(100)).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::WaitTimeout), "{e:?}");
    assert_eq!(node.seen()[1].body["wait_ms"], 0);
    // A try-once acquire keeps its would_block.
    let e = c.acquire_lease("r", acquire_req(0)).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::WouldBlock));
}

#[tokio::test]
async fn foreign_and_malformed_answers() {
    let node = fake(|n, _| match n {
        0 => (StatusCode::BAD_GATEWAY, "upstream down").into_response(),
        1 => (StatusCode::OK, "not json").into_response(),
        _ => (StatusCode::IM_A_TEAPOT, "short and stout").into_response(),
    })
    .await;
    let c = client(&[&node.url], fast());
    // 502 from a proxy: retried (a read is idempotent); then a 200 that is not JSON.
    let e = c.list_resources().await.unwrap_err();
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
    let e = c.list_resources().await.unwrap_err();
    assert_eq!(e.status(), Some(418));
    assert!(e.to_string().contains("short and stout"), "{e}");
}

#[tokio::test]
async fn a_permit_renews_at_a_third_of_its_ttl_and_reports_a_410() {
    let node = fake(|n, s| {
        if s.path.ends_with("/acquire") {
            let l = api::Lease {
                lease_id: "9-f00".into(),
                resource: "r".into(),
                lane: "default".into(),
                load: 1,
                fencing_token: 9,
                ttl_ms: 300,
                queued_ms: 0,
                limits: vec![],
                shadow: None,
            };
            return axum::Json(l).into_response();
        }
        if n < 4 {
            axum::Json(api::RenewResponse {
                lease_id: "9-f00".into(),
                fencing_token: 9,
                ttl_ms: 300,
            })
            .into_response()
        } else {
            error(410, "lease_expired", None)
        }
    })
    .await;
    let c = client(&[&node.url], fast());
    let p = c.acquire("r").await.unwrap();
    let lost = tokio::time::timeout(Duration::from_secs(5), p.lost())
        .await
        .expect("lost");
    assert!(!lost.is_presumed());
    assert!(p.is_lost());
    let renewals: Vec<Seen> = node
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with("/renew"))
        .collect();
    assert_eq!(renewals.len(), 4);
    assert!(renewals
        .iter()
        .all(|s| s.path == "/v1/leases/9-f00/renew" && s.method == "POST"));
    drop(p); // a lost lease is not released on drop
    tokio::task::yield_now().await;
    assert!(node.seen().iter().all(|s| !s.path.ends_with("/release")));
}
