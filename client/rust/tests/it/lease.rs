//! Permits: acquire/release, auto-renewal past the TTL, release on drop, loss, redirects,
//! the holder label.

use std::time::{Duration, Instant};

use ratequeue_client::api::{self, ReleaseState};
use ratequeue_client::{Client, Error, ErrorCode};
use reqwest::Method;

use crate::cluster::{concurrency, eventually, timing, Cluster, ADMIN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_and_release() {
    let c = Cluster::start(3).await;
    let client = c.client();
    c.put_resource("openai", concurrency(2)).await;

    let p = client
        .acquire("openai")
        .load(3)
        .priority(100)
        .lane("user-facing")
        .ttl(Duration::from_secs(20))
        .timeout(Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(p.resource(), "openai");
    assert_eq!(p.lane(), "user-facing");
    assert_eq!(p.load(), 3);
    assert_eq!(p.ttl(), Duration::from_secs(20));
    assert!(p.lease_id().starts_with(&format!("{}-", p.fencing_token())));
    assert_eq!(p.request_id().len(), 32);
    let q = client.acquire("openai").await.unwrap();
    assert!(
        q.fencing_token() > p.fencing_token(),
        "fencing tokens increase"
    );
    assert_eq!(c.held(&client, "openai").await, 2);

    // Full: a try-once acquire is refused with a typed, definite rejection.
    let e = client.acquire("openai").try_once().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::WouldBlock), "{e:?}");
    assert!(e.is_definite() && e.is_rejection());
    assert!(e.retry_after().is_some());
    // A short wait ends as wait_timeout.
    let e = client
        .acquire("openai")
        .timeout(Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::WaitTimeout), "{e:?}");

    p.set_actual_load(1);
    assert_eq!(p.release().await.unwrap(), ReleaseState::Released);
    assert_eq!(q.release().await.unwrap(), ReleaseState::Released);
    assert_eq!(c.held(&client, "openai").await, 0);

    // Unknown resources and impossible loads are definite, typed errors.
    let e = client.acquire("nope").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ResourceNotFound));
    let spec = api::ResourceSpec {
        rate: vec![api::Rate {
            per: api::Per::Load,
            limit: 100,
            window_ms: 1000,
        }],
        ..Default::default()
    };
    c.put_resource("tokens", spec).await;
    let e = client.acquire("tokens").load(101).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::LoadExceedsLimit));
}

/// TTL 1 s, held 3 s: the background renewal keeps the lease; meanwhile the resource
/// (concurrency 1) stays full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_renew_keeps_a_lease_past_its_ttl() {
    let c = Cluster::start(3).await;
    let client = c.client();
    c.put_resource("sem", concurrency(1)).await;
    let p = client
        .acquire("sem")
        .ttl(Duration::from_secs(1))
        .await
        .unwrap();
    let token = p.fencing_token();

    let hold_until = Instant::now() + Duration::from_secs(3);
    let mut probes = 0;
    while Instant::now() < hold_until {
        let e = client.acquire("sem").try_once().await.unwrap_err();
        assert_eq!(
            e.code(),
            Some(ErrorCode::WouldBlock),
            "the slot must stay held: {e:?}"
        );
        probes += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(probes >= 5);
    assert!(!p.is_lost());
    assert!(p.check().is_ok());

    // Still valid after three TTLs: a renew answers 200 with the same token.
    let r = client.renew_lease(p.lease_id(), None).await.unwrap();
    assert_eq!(r.fencing_token, token);
    assert_eq!(r.ttl_ms, 1000);
    assert_eq!(p.release().await.unwrap(), ReleaseState::Released);
    client
        .acquire("sem")
        .try_once()
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_permit_releases_it() {
    let c = Cluster::start(3).await;
    let client = c.client();
    c.put_resource("sem", concurrency(1)).await;
    // A long TTL: only the release on drop can free the slot within the deadline.
    let p = client
        .acquire("sem")
        .ttl(Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(c.held(&client, "sem").await, 1);
    drop(p);
    eventually(
        Duration::from_secs(5),
        "the dropped permit's release",
        || async { (c.held(&client, "sem").await == 0).then_some(()) },
    )
    .await;
    client
        .acquire("sem")
        .try_once()
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

/// A renewal answered 410 makes the loss visible: `lost()` resolves, `is_lost()` is true.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_is_reported() {
    let c = Cluster::start(3).await;
    let client = c.client();
    c.put_resource("doomed", concurrency(1)).await;
    let p = client
        .acquire("doomed")
        .ttl(Duration::from_millis(600))
        .await
        .unwrap();
    let lost = p.lost();
    assert!(!p.is_lost());
    // Deleting the resource ends its leases; the next renewal gets 410 lease_expired.
    client.delete_resource("doomed").await.unwrap();
    let l = tokio::time::timeout(Duration::from_secs(5), lost)
        .await
        .expect("lost() resolves");
    assert_eq!(l.lease_id, p.lease_id());
    assert!(!l.is_presumed(), "the cluster said so: {l:?}");
    assert_eq!(l.cause.code(), Some(ErrorCode::LeaseExpired));
    assert!(p.is_lost());
    assert!(p.check().is_err());
    // A lost() future made after the loss resolves at once.
    tokio::time::timeout(Duration::from_secs(1), p.lost())
        .await
        .unwrap();
    // The explicit release reports the cluster's answer.
    let e = p.release().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::LeaseExpired), "{e:?}");
}

/// A client that knows only a follower follows its 307 (keeping method, body and the
/// bearer token) and caches the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_redirects_from_a_follower() {
    let c = Cluster::start(3).await;
    let leader = c.leader().await;
    let follower = c.follower().await;
    // The follower really redirects.
    let (status, _) = c
        .raw_post(follower, "/v1/resources/x/acquire", serde_json::json!({}))
        .await;
    assert_eq!(status, 307);

    let client = c.client_of(&[c.url(follower)]);
    assert_eq!(client.leader_url(), None);
    let r = client
        .put_resource("via-follower", &concurrency(1))
        .await
        .unwrap();
    assert!(r.created);
    assert_eq!(client.leader_url(), Some(c.url(leader)));

    let p = client
        .acquire("via-follower")
        .load(2)
        .ttl(Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(p.load(), 2, "the body survived the redirect");
    assert_eq!(
        client
            .get_resource("via-follower")
            .await
            .unwrap()
            .stats
            .held,
        1
    );
    assert_eq!(p.release().await.unwrap(), ReleaseState::Released);

    // A raw lease call through a follower works the same way.
    let lease = client
        .acquire_lease(
            "via-follower",
            api::AcquireRequest {
                wait_ms: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let fresh = c.client_of(&[c.url(follower)]);
    let r = fresh.release_lease(&lease.lease_id, Some(1)).await.unwrap();
    assert_eq!(r.state, ReleaseState::Released);
    let r = fresh.release_lease(&lease.lease_id, None).await.unwrap();
    assert_eq!(r.state, ReleaseState::AlreadyReleased);
}

/// The wrong key is a definite `unauthorized`, also behind a redirect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_are_refused_definitely() {
    let c = Cluster::start(3).await;
    let follower = c.follower().await;
    let bad = ratequeue_client::Client::builder()
        .url(c.url(follower))
        .api_key("wrong")
        .timing(crate::cluster::timing())
        .build()
        .unwrap();
    let e = bad.acquire("x").await.unwrap_err();
    assert!(
        matches!(&e, Error::Api(a) if a.code == ErrorCode::Unauthorized && a.status == 401),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holder_label_reaches_the_lease_list() {
    let c = Cluster::start(3).await;
    c.put_resource("labelled", concurrency(2)).await;
    let client = Client::builder()
        .urls(c.urls())
        .api_key(ADMIN)
        .timing(timing())
        .holder("it-worker")
        .ignore_env()
        .build()
        .unwrap();
    let _a = client.acquire("labelled").await.unwrap();
    let _b = client.acquire("labelled").holder("job 7").await.unwrap();

    let view = c
        .admin(Method::GET, "/v1/dashboard/resources/labelled", None)
        .await
        .unwrap();
    let mut holders: Vec<String> = view["leases"]["shown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["holder"].as_str().unwrap().to_owned())
        .collect();
    holders.sort();
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let place = format!("{host}:{}", std::process::id());
    assert_eq!(
        holders,
        [format!("it-worker@{place}"), format!("job 7@{place}")]
    );
}
