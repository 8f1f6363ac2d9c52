//! Retries across a leader kill: the acquire keeps its request_id, so however many
//! attempts it takes, exactly one lease exists for it.

use std::future::IntoFuture;
use std::time::Duration;

use ratequeue_client::api::{self, ReleaseState};
use ratequeue_client::{new_request_id, Client};

use crate::cluster::{concurrency, eventually, Cluster};

/// Exactly one lease for `request_id`: re-acquiring with it (and the same TTL, as a
/// retry must) returns the same lease, and the resource holds exactly one.
async fn assert_one_lease(
    client: &Client,
    resource: &str,
    request_id: &str,
    ttl_ms: Option<u64>,
    lease_id: &str,
) {
    let again = client
        .acquire_lease(
            resource,
            api::AcquireRequest {
                request_id: Some(request_id.to_owned()),
                wait_ms: Some(0),
                ttl_ms,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        again.lease_id, lease_id,
        "a retry with the same request_id returns the same lease"
    );
    assert_eq!(client.get_resource(resource).await.unwrap().stats.held, 1);
}

/// kill -9 the leader while an acquire waits in its queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inflight_acquire_survives_a_leader_kill() {
    let mut c = Cluster::start(3).await;
    let client = c.client();
    c.put_resource("sem", concurrency(1)).await;
    // Fill the slot, so the acquire under test waits in the leader's queue.
    let blocker = client
        .acquire_lease(
            "sem",
            api::AcquireRequest {
                ttl_ms: Some(600_000),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    let request_id = new_request_id();
    let waiter = tokio::spawn(
        client
            .acquire("sem")
            .request_id(request_id.clone())
            .ttl(Duration::from_secs(60))
            .timeout(Duration::from_secs(60))
            .into_future(),
    );
    eventually(
        Duration::from_secs(10),
        "the acquire to queue on the leader",
        || async {
            let r = client.get_resource("sem").await.ok()?;
            (r.stats.queued.values().sum::<u64>() == 1).then_some(())
        },
    )
    .await;

    let old = c.leader().await;
    c.kill(old);
    // The slot is still held (the blocker's grant is replicated); free it through the
    // new leader. The waiter, cut off by the kill, retries with its request_id.
    let r = client.release_lease(&blocker.lease_id, None).await.unwrap();
    assert_eq!(r.state, ReleaseState::Released);

    let permit = tokio::time::timeout(Duration::from_secs(60), waiter)
        .await
        .expect("the acquire finishes")
        .unwrap()
        .expect("the acquire succeeds across the leader kill");
    assert_eq!(permit.request_id(), request_id);
    assert_ne!(client.leader_url(), Some(c.url(old)));
    assert_one_lease(&client, "sem", &request_id, Some(60_000), permit.lease_id()).await;
    assert_eq!(permit.release().await.unwrap(), ReleaseState::Released);
}

/// kill -9 the leader right before an acquire from a client that has it cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_right_after_a_leader_kill_finds_the_new_leader() {
    let mut c = Cluster::start(3).await;
    let client = c.client();
    client.put_resource("sem", &concurrency(1)).await.unwrap();
    let old = c.leader().await;
    assert_eq!(
        client.leader_url(),
        Some(c.url(old)),
        "the leader is cached"
    );

    c.kill(old);
    let request_id = new_request_id();
    let permit = client
        .acquire("sem")
        .request_id(request_id.clone())
        .timeout(Duration::from_secs(30))
        .await
        .expect("the acquire succeeds after the leader kill");
    let new = c.leader().await;
    assert_ne!(new, old);
    assert_eq!(client.leader_url(), Some(c.url(new)));
    assert_one_lease(&client, "sem", &request_id, None, permit.lease_id()).await;

    // The permit renews through the new leader.
    let r = client.renew_lease(permit.lease_id(), None).await.unwrap();
    assert_eq!(r.fencing_token, permit.fencing_token());
    assert_eq!(permit.release().await.unwrap(), ReleaseState::Released);
}
