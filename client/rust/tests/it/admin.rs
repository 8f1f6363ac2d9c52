//! Typed admin calls: resources, keys, cluster status, members.

use std::time::Duration;

use ratequeue_client::api::{self, AddMember, CreateKeyRequest, NodeRole, Role};
use ratequeue_client::{Client, ErrorCode};

use crate::cluster::{concurrency, eventually, timing, Cluster, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_and_keys() {
    let c = Cluster::start(3).await;
    let client = c.client();

    let spec = api::ResourceSpec {
        concurrency: Some(10),
        rate: vec![
            api::Rate {
                per: api::Per::Request,
                limit: 60,
                window_ms: 60_000,
            },
            api::Rate {
                per: api::Per::Load,
                limit: 100_000,
                window_ms: 60_000,
            },
        ],
        lanes: [("user-facing".to_owned(), api::Lane { weight: 3 })].into(),
        default_ttl_ms: Some(10_000),
        max_queue: Some(100),
        mode: Some(api::Mode::DryRun),
        feedback: None,
    };
    let r = client.put_resource("openai-gpt4", &spec).await.unwrap();
    assert!(r.created);
    let r = client.put_resource("openai-gpt4", &spec).await.unwrap();
    assert!(!r.created);
    let got = client.get_resource("openai-gpt4").await.unwrap();
    assert_eq!(got.config, spec);
    assert_eq!(got.stats.held, 0);
    client.put_resource("other", &concurrency(1)).await.unwrap();
    let names: Vec<String> = client
        .list_resources()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["openai-gpt4", "other"]);

    // A client key limited to openai-*.
    let key = client
        .create_key(&CreateKeyRequest::new(
            "workers",
            Role::Client,
            vec!["openai-*".into()],
        ))
        .await
        .unwrap();
    assert!(!key.key.is_empty());
    let keys = client.list_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].name, "workers");
    let worker = Client::builder()
        .urls(c.urls())
        .api_key(key.key.clone())
        .timing(timing())
        .build()
        .unwrap();
    worker
        .acquire("openai-gpt4")
        .load(10)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    let e = worker.acquire("other").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{e:?}");
    let e = worker
        .put_resource("openai-x", &concurrency(1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{e:?}");

    client.delete_key("workers").await.unwrap();
    let e = client.delete_key("workers").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::KeyNotFound));
    let e = worker.acquire("openai-gpt4").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Unauthorized));

    client.delete_resource("other").await.unwrap();
    let e = client.delete_resource("other").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ResourceNotFound));
    let e = client.get_resource("other").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ResourceNotFound));
    // Invalid specs are refused by the server with its message.
    let e = client
        .put_resource("bad", &api::ResourceSpec::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidRequest), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_status_and_membership() {
    let mut c = Cluster::start(3).await;
    let client = c.client();
    let leader = c.leader().await;
    let s = client.cluster_status().await.unwrap();
    assert_eq!(s.leader_id, Some(leader));
    assert_eq!(s.members.len(), 3);
    let own = client
        .node_status(&c.url(leader), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(own.role, NodeRole::Leader);

    c.spawn_extra(4);
    let s = client
        .add_member(&AddMember {
            id: 4,
            peer_addr: c.peer_addr(4),
            api_url: c.url(4),
            voter: true,
        })
        .await
        .unwrap();
    assert!(s.members.iter().any(|m| m.id == 4 && m.voter), "{s:?}");
    eventually(DEADLINE, "node 4 to follow", || async {
        let s = c.status(4).await?;
        (s.role == NodeRole::Follower && s.leader_id == Some(leader)).then_some(())
    })
    .await;

    let s = client.remove_member(4).await.unwrap();
    assert!(s.members.iter().all(|m| m.id != 4), "{s:?}");
    let e = client.remove_member(4).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::MemberNotFound), "{e:?}");
}
