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

async fn create_key(c: &Cluster, body: Value) -> String {
    let l = c.wait_leader().await;
    let (s, v) = c.send(l, Method::POST, "/v1/keys", Some(body), ADMIN).await;
    assert_eq!(s, 201, "create key: {v}");
    v["key"].as_str().unwrap().to_owned()
}

/// What each key sees through the dashboard's views is its scope (`ratequeue_core::scope`),
/// decided by the server: a client key with a resource glob, lanes and a highest priority
/// sees its resources and its own leases only; a monitor sees everything and may change
/// nothing; a key allowed on nothing sees nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_sees_exactly_its_scope() {
    let c = Cluster::start(1).await;
    let l = c.wait_leader().await;
    for r in ["team-a-gpt", "team-a-embed", "team-b-gpt"] {
        c.put_resource(r, json!({"concurrency": 10})).await;
    }
    let scoped = create_key(
        &c,
        json!({"name": "team-a", "role": "client", "resources": ["team-a-*"],
               "lanes": ["batch*"], "max_priority": 5, "max_waiters": 10}),
    )
    .await;
    let monitor = create_key(&c, json!({"name": "watch", "role": "monitor"})).await;
    let nothing = create_key(&c, json!({"name": "none", "role": "client"})).await;
    let get = |token: &str, path: &str| {
        let (c, token, path) = (&c, token.to_owned(), path.to_owned());
        async move { c.send(l, Method::GET, &path, None, &token).await }
    };

    // The session says who the key is and what the server lets it do.
    let (s, me) = get(&scoped, "/v1/dashboard/session").await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["name"], "team-a");
    assert_eq!(me["key"]["resources"], json!(["team-a-*"]));
    assert_eq!(me["key"]["lanes"], json!(["batch*"]));
    assert_eq!(me["key"]["max_priority"], 5);
    assert_eq!(me["key"]["max_waiters"], 10);
    assert_eq!(
        me["may"],
        json!({"manage": false, "read_cluster": false, "hold_leases": true,
               "see_every_resource": false, "see_every_lease": false})
    );
    assert_eq!(me["members"][0]["id"], 1);
    assert!(me["members"][0]["api_url"]
        .as_str()
        .unwrap()
        .starts_with("http"));
    let (_, m) = get(&monitor, "/v1/dashboard/session").await;
    assert_eq!(
        m["may"],
        json!({"manage": false, "read_cluster": true, "hold_leases": false,
               "see_every_resource": true, "see_every_lease": true})
    );
    let (_, a) = get(ADMIN, "/v1/dashboard/session").await;
    assert_eq!(
        (a["name"].as_str(), &a["key"]),
        (Some("admin"), &Value::Null)
    );
    assert_eq!(a["may"]["manage"], true);

    // Leases: one of the scoped key's own, one of the admin's, on its resource.
    let path = "/v1/resources/team-a-gpt/acquire";
    let body = json!({"lane": "batch-1", "priority": 5, "holder": "a-worker", "ttl_ms": 60000});
    let (s, own) = c.send(l, Method::POST, path, Some(body), &scoped).await;
    assert_eq!(s, 200, "{own}");
    let (s, theirs) = c
        .acquire(
            l,
            "team-a-gpt",
            json!({"holder": "admin-job", "ttl_ms": 60000}),
        )
        .await;
    assert_eq!(s, 200, "{theirs}");
    // Its lanes and priority bound it (the API's scope, not the page's).
    for body in [
        json!({"lane": "interactive"}),
        json!({"lane": "batch", "priority": 6}),
    ] {
        let (s, v) = c.send(l, Method::POST, path, Some(body), &scoped).await;
        assert_eq!(s, 403, "{v}");
    }

    // The list: exactly the resources each key may see.
    let names = |page: &Value| -> Vec<String> {
        page["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (s, page) = get(&scoped, "/v1/dashboard/resources").await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(names(&page), ["team-a-embed", "team-a-gpt"]);
    assert_eq!(page["total"], 2);
    let (_, page) = get(&scoped, "/v1/dashboard/resources?filter=gpt").await;
    assert_eq!(
        names(&page),
        ["team-a-gpt"],
        "the filter never widens the scope"
    );
    let (_, page) = get(&monitor, "/v1/dashboard/resources").await;
    assert_eq!(page["total"], 3);
    let (s, page) = get(&nothing, "/v1/dashboard/resources").await;
    assert_eq!((s, &page["total"]), (200, &json!(0)), "{page}");
    assert_eq!(page["rows"], json!([]));

    // One resource: another team's is refused; its own shows its own leases only.
    let (s, v) = get(&scoped, "/v1/dashboard/resources/team-b-gpt").await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")));
    let (s, v) = get(&nothing, "/v1/dashboard/resources/team-a-gpt").await;
    assert_eq!(s, 403, "{v}");
    let (s, d) = get(&scoped, "/v1/dashboard/resources/team-a-gpt").await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["leases"]["held"], 2);
    assert_eq!(d["leases"]["others"], 1, "{d}");
    let shown = d["leases"]["shown"].as_array().unwrap();
    assert_eq!(shown.len(), 1, "{d}");
    assert_eq!(shown[0]["holder"], "a-worker");
    assert_eq!(shown[0]["owner"], "team-a");
    assert_eq!(shown[0]["fencing_token"], own["fencing_token"]);
    assert!(!d.to_string().contains("admin-job"), "{d}");
    let (s, d) = get(&monitor, "/v1/dashboard/resources/team-a-gpt").await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["leases"]["others"], 0);
    let holders: Vec<_> = d["leases"]["shown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["holder"].clone(), l["owner"].clone()))
        .collect();
    assert_eq!(holders.len(), 2, "{d}");
    assert!(holders.contains(&(json!("admin-job"), Value::Null)));
    assert!(holders.contains(&(json!("a-worker"), json!("team-a"))));

    // The cluster view needs the read scope; changes need an admin.
    let (s, _) = get(&scoped, "/v1/dashboard/cluster").await;
    assert_eq!(s, 403);
    let (s, _) = get(&nothing, "/v1/dashboard/cluster").await;
    assert_eq!(s, 403);
    let (s, v) = get(&monitor, "/v1/dashboard/cluster").await;
    assert_eq!(s, 200, "{v}");
    for token in [&monitor, &scoped] {
        let spec = Some(json!({"concurrency": 99}));
        let (s, _) = c
            .send(l, Method::PUT, "/v1/resources/team-a-gpt", spec, token)
            .await;
        assert_eq!(s, 403);
        let (s, _) = get(token, "/v1/keys").await;
        assert_eq!(s, 403);
    }
    let (s, _) = c
        .send(
            l,
            Method::DELETE,
            "/v1/resources/team-a-gpt",
            None,
            &monitor,
        )
        .await;
    assert_eq!(s, 403);
}
