//! The dashboard's server side against real node processes: the embedded page, the
//! aggregated views, a holder label carried from acquire to the lease list, and a
//! follower forwarding the page's leader-only calls (writes included) to the leader.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::cluster::{eventually, Cluster, ADMIN};

const FORWARD: &str = ratequeue_api::FORWARD_HEADER;

async fn call(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
    forward: bool,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = http
        .request(method, format!("{base}{path}"))
        .bearer_auth(ADMIN);
    if forward {
        req = req.header(FORWARD, "1");
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_serves_the_page_and_a_follower_forwards_the_pages_calls() {
    let c = Cluster::start(3).await;
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let f = c.url(follower);

    // The page, from a follower, with its security headers; `/` leads to it.
    let page = http.get(format!("{f}/ui/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    let etag = page.headers()["etag"].clone();
    assert!(page.text().await.unwrap().contains("app.js"));
    let again = http
        .get(format!("{f}/ui/"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    let js = http
        .get(format!("{f}/ui/vendor/uplot/uPlot.esm.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let missing = http.get(format!("{f}/ui/nope.js")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let root = http.get(format!("{f}/")).send().await.unwrap();
    assert_eq!(root.status(), 308);
    assert_eq!(root.headers()["location"], "/ui/");

    // A write from the page on a follower: forwarded, answered by the leader.
    let spec =
        json!({"concurrency": 1, "rate": [{"per": "request", "limit": 1000, "window_ms": 60000}]});
    let (s, _, v) = call(
        &http,
        &f,
        Method::PUT,
        "/v1/resources/dash",
        Some(spec.clone()),
        false,
    )
    .await;
    assert_eq!(s, 307, "without the header a follower redirects: {v}");
    let (s, _, v) = call(
        &http,
        &f,
        Method::PUT,
        "/v1/resources/dash",
        Some(spec),
        true,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    // The API's own validation error comes back through the forward.
    let bad = json!({"concurrency": 0});
    let (s, _, v) = call(
        &http,
        &f,
        Method::PUT,
        "/v1/resources/dash",
        Some(bad),
        true,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("concurrency"),
        "{v}"
    );
    // Acquire is never forwarded: clients follow the 307 themselves.
    let (s, _, _) = call(
        &http,
        &f,
        Method::POST,
        "/v1/resources/dash/acquire",
        Some(json!({})),
        true,
    )
    .await;
    assert_eq!(s, 307);

    // A holder label travels from acquire to the lease list; a bad one is refused.
    let (s, v) = c
        .acquire(leader, "dash", json!({"holder": "bad\u{7f}label"}))
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let (s, lease) = c
        .acquire(
            leader,
            "dash",
            json!({"holder": "worker-7 pid 12", "ttl_ms": 60000}),
        )
        .await;
    assert_eq!(s, 200, "{lease}");
    // A second acquire waits behind the held slot: the view names the binding limit.
    let url = format!("{}/v1/resources/dash/acquire", c.url(leader));
    let waiter = tokio::spawn({
        let http = http.clone();
        async move {
            http.post(url)
                .bearer_auth(ADMIN)
                .json(&json!({"wait_ms": 20000, "lane": "batch", "priority": 3}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    let detail = eventually(Duration::from_secs(10), "the waiter in the view", || {
        let (http, f) = (&http, &f);
        async move {
            let (s, _, d) = call(
                http,
                f,
                Method::GET,
                "/v1/dashboard/resources/dash",
                None,
                true,
            )
            .await;
            (s == 200 && d["queue"]["waiting"] == 1).then_some(d)
        }
    })
    .await;
    assert_eq!(
        detail["node_id"], leader,
        "answered by the leader: {detail}"
    );
    assert_eq!(
        detail["queue"]["binding"]["kind"], "concurrency",
        "{detail}"
    );
    assert_eq!(detail["queue"]["head"]["lane"], "batch");
    assert_eq!(detail["queue"]["lanes"][0]["priorities"][0]["priority"], 3);
    assert_eq!(detail["leases"]["shown"][0]["holder"], "worker-7 pid 12");
    assert_eq!(
        detail["leases"]["shown"][0]["fencing_token"],
        lease["fencing_token"]
    );
    let (s, _) = c
        .release(leader, lease["lease_id"].as_str().unwrap(), json!({}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        waiter.await.unwrap().unwrap(),
        200,
        "the waiter got the slot"
    );

    // The list: filtered, sorted, paginated by the server; the series sees the grants.
    let page = eventually(Duration::from_secs(10), "grants in the list", || {
        let (http, f) = (&http, &f);
        async move {
            let (s, _, p) = call(
                http,
                f,
                Method::GET,
                "/v1/dashboard/resources?filter=DA&sort=rate&desc=true&limit=10",
                None,
                true,
            )
            .await;
            (s == 200 && p["rows"][0]["grants_per_s"].as_f64() > Some(0.0)).then_some(p)
        }
    })
    .await;
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(page["rows"][0]["name"], "dash");
    let (s, _, v) = call(
        &http,
        &f,
        Method::GET,
        "/v1/dashboard/resources?limit=0",
        None,
        true,
    )
    .await;
    assert_eq!(s, 400, "{v}");

    // The cluster view from a follower: every member's own status and readiness.
    let (s, _, cl) = call(&http, &f, Method::GET, "/v1/dashboard/cluster", None, false).await;
    assert_eq!(s, 200, "{cl}");
    let members = cl["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    for m in members {
        assert_eq!(m["ready"], true, "{m}");
        assert_eq!(m["status"]["id"], m["id"]);
    }

    // The key never reaches a log, forwarded or not.
    for id in 1..=3 {
        assert!(
            !c.log(id).contains(ADMIN),
            "node {id} logged the admin token"
        );
    }
}
