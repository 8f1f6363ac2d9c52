//! Transport security and membership validation against real node processes: TLS on
//! both ports with node identity from the certificate, plain HTTP kept to loopback,
//! and members checked before they join.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::cluster::{resource, Cluster, ADMIN};

/// An HTTP server at `addr` answering 404 to everything (a web server at a wrong
/// member address); returns the `Authorization` headers it saw.
async fn web_server_at(addr: &str) -> Arc<parking_lot::Mutex<Vec<Option<String>>>> {
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let log = log.clone();
        async move {
            log.lock().push(
                headers
                    .get("authorization")
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            );
            (axum::http::StatusCode::NOT_FOUND, "no such page")
        }
    });
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_at_a_wrong_address_is_refused_before_it_joins() {
    let c = Cluster::start(1).await;
    let seen = web_server_at(&c.peer_addr(9)).await;
    let body = json!({"id": 2, "peer_addr": c.peer_addr(9), "api_url": c.url(9)});
    let (s, v) = c
        .send(1, Method::POST, "/v1/cluster/members", Some(body), ADMIN)
        .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"]["code"], "member_unverified", "{v}");
    let status = c.status(1).await.unwrap();
    assert_eq!(status.members.len(), 1, "{status:?}");
    let seen = seen.lock().clone();
    assert!(!seen.is_empty(), "the address was never checked");
    assert!(
        seen.iter().all(Option::is_none),
        "the cluster secret went to an unverified address: {seen:?}"
    );
    assert!(!c.log(1).contains(&c.config().cluster_secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_serves_https_and_checks_node_identity() {
    let mut c = Cluster::start_tls(3, 4).await;
    c.put_resource("tls-demo", resource(2)).await;
    let leader = c.wait_leader().await;
    let (s, v) = c.acquire(leader, "tls-demo", json!({})).await;
    assert_eq!(s, 200, "{v}");

    // Plain HTTP to the API port gets no answer from the node.
    let plain = c.url(leader).replace("https://", "http://");
    let r = reqwest::Client::new()
        .get(format!("{plain}/healthz"))
        .send()
        .await;
    assert!(r.is_err(), "{r:?}");

    // A fourth node whose certificate names node 5 cannot join as node 4...
    let ip = c.block().ip(4).to_string();
    let names = |id: u64| vec![format!("node-{id}.ratequeue"), ip.clone()];
    c.pki().unwrap().write_node(4, &names(5)).unwrap();
    c.spawn_extra(4);
    let body = json!({"id": 4, "peer_addr": c.peer_addr(4), "api_url": c.url(4)});
    let (s, v) = c
        .send(
            leader,
            Method::POST,
            "/v1/cluster/members",
            Some(body.clone()),
            ADMIN,
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"]["code"], "member_unverified", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("certificate"),
        "{v}"
    );

    // ...with its own certificate it can.
    c.pki().unwrap().write_node(4, &names(4)).unwrap();
    c.restart(4);
    let (s, v) = c
        .send(
            leader,
            Method::POST,
            "/v1/cluster/members",
            Some(body),
            ADMIN,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    c.add_to_members(4);
    let leader = c.wait_leader().await;
    let status = c.status(leader).await.unwrap();
    assert_eq!(
        status.members.iter().filter(|m| m.voter).count(),
        4,
        "{status:?}"
    );
}

#[test]
fn plain_http_beyond_loopback_needs_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ratequeue"))
        .args(["serve", "--id", "1", "--api-addr", "0.0.0.0:0"])
        .args(["--peer-addr", "127.0.0.1:0", "--peers", "1=127.0.0.1:1"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("RATEQUEUE_ADMIN_TOKEN", ADMIN)
        .env("RATEQUEUE_CLUSTER_SECRET", "a-cluster-secret")
        .env_remove("RATEQUEUE_INSECURE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It must refuse at once; one that serves instead is killed and the test fails
    // (rather than hanging on a node that never exits).
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the node served plain HTTP on 0.0.0.0 without --insecure");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("--insecure"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "it opened storage first");
}

/// The OpenAPI description is served without a token and names the routes; and the
/// errors schemathesis holds to it are JSON: a member id that is not a number was
/// answered with axum's plain-text rejection, not the API's error body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_description_is_public_and_errors_are_json() {
    let c = Cluster::start(1).await;
    let r = c
        .http()
        .get(format!("{}/v1/openapi.json", c.url(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/resources/{name}/acquire"]["post"].is_object());

    let (s, v) = c
        .send(1, Method::DELETE, "/v1/cluster/members/abc", None, ADMIN)
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["code"], "invalid_request", "{v}");
    // Authentication still comes first.
    let (s, v) = c
        .send(
            1,
            Method::DELETE,
            "/v1/cluster/members/abc",
            None,
            "not-a-key",
        )
        .await;
    assert_eq!(s, 401, "{v}");
}
