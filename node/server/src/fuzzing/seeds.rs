//! The seed corpus of the fuzz targets, made from real encodings: the peer messages a
//! three-node cluster exchanges, a log store as the log store writes it, snapshots of a
//! state that went through every command, and the API's documented request bodies.
//! Deterministic (fixed nonces, hashes and times), so the committed files can be
//! compared with what this makes.

use std::collections::{BTreeMap, BTreeSet};

use openraft::error::{Fatal, InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{CommittedLeaderId, EntryPayload, Membership, SnapshotSegmentId, Vote};
use ratequeue_api as api;
use ratequeue_core::{ApiKey, Command, Grant, LeaseId, Role, State};
use serde::Serialize;

use super::{
    STORE_COMMITTED, STORE_FRAME, STORE_LAST_PURGED, STORE_LOG, STORE_SNAPSHOT_DATA,
    STORE_SNAPSHOT_META, STORE_VOTE,
};
use crate::raft::network::wire;
use crate::raft::types::{Batch, Entry, LogId, NodeId, NodeInfo, SnapshotMeta, StoredMembership};
use crate::storage::{record, RecordKey};

type Seed = (&'static str, String, Vec<u8>);

pub(super) fn all() -> Vec<Seed> {
    let mut out = Vec::new();
    peer(&mut out);
    store(&mut out);
    snapshots(&mut out);
    json(&mut out);
    out
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn membership() -> Membership<NodeId, NodeInfo> {
    let nodes: BTreeMap<NodeId, NodeInfo> = (1..=3)
        .map(|id| {
            let info = NodeInfo {
                peer_addr: format!("127.0.0.1{id}:7701"),
                api_url: format!("http://127.0.0.1{id}:7700"),
            };
            (id, info)
        })
        .collect();
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes)
}

fn hash(text: &str) -> String {
    crate::http::key_hash(text)
}

/// Commands of every kind, valid in this order from an empty state at 1 000 ms.
fn commands() -> Vec<Command> {
    let spec = api::ResourceSpec {
        concurrency: Some(4),
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
        lanes: BTreeMap::from([("user-facing".to_owned(), api::Lane { weight: 3 })]),
        default_ttl_ms: Some(30_000),
        max_queue: Some(100),
        mode: None,
        feedback: Some(api::Feedback::default()),
    };
    let config = |spec: api::ResourceSpec| match crate::http::resource_config(spec) {
        Ok(c) => c,
        Err(e) => panic!("the seed resource is invalid: {e:?}"),
    };
    let dry_run = config(api::ResourceSpec {
        mode: Some(api::Mode::DryRun),
        ..spec.clone()
    });
    let config = config(spec);
    let grant = |nonce: u64, request_id: Option<&str>| {
        Command::Grant(Grant {
            resource: "openai-gpt4".into(),
            lane: "user-facing".into(),
            load: 2_000,
            ttl_ms: 30_000,
            request_id: request_id.map(str::to_owned),
            nonce,
            holder: Some("worker-1".into()),
            owner: Some("workers".into()),
            wait_ms: 30_000,
        })
    };
    let mut key = ApiKey::new(
        "workers",
        &hash("k1"),
        Role::Client,
        vec!["openai-*".into()],
    );
    key.lanes = vec!["user-*".into()];
    key.priority_max = Some(100);
    vec![
        Command::PutResource {
            name: "openai-gpt4".into(),
            config,
        },
        Command::PutResource {
            name: "export".into(),
            config: dry_run,
        },
        Command::CreateKey {
            key,
            expires_in_ms: Some(86_400_000),
        },
        Command::CreateKey {
            key: ApiKey::new("dash", &hash("k2"), Role::Monitor, Vec::new()),
            expires_in_ms: None,
        },
        grant(0x1111, Some("job-1")),
        grant(0x2222, None),
        grant(0x3333, Some("job-3")),
        // Tokens start at 1: the grants above are leases 1, 2 and 3.
        Command::Release {
            lease: LeaseId {
                token: 1,
                nonce: 0x1111,
            },
            actual_load: Some(1_500),
        },
        Command::Renew {
            lease: LeaseId {
                token: 2,
                nonce: 0x2222,
            },
            ttl_ms: Some(60_000),
        },
        Command::RotateKey {
            name: "dash".into(),
            hash: hash("k3"),
            expires_in_ms: Some(3_600_000),
        },
        Command::DeleteKey {
            name: "dash".into(),
        },
        Command::DeleteResource {
            name: "export".into(),
        },
    ]
}

/// The state after every command, and an empty one.
fn states() -> Vec<(&'static str, State)> {
    let mut busy = State::new();
    let commands = commands();
    let (first, rest) = commands.split_at(7);
    busy.apply_entry(1_000, first);
    busy.apply_entry(2_000, rest);
    if let Err(e) = busy.check_invariants() {
        panic!("the seed state is inconsistent: {e}");
    }
    assert_eq!(busy.lease_count(), 2, "the seed grants did not apply");
    vec![("empty", State::new()), ("busy", busy)]
}

fn entries() -> Vec<Entry> {
    let commands = commands();
    let (first, rest) = commands.split_at(7);
    vec![
        Entry {
            log_id: log_id(1, 1),
            payload: EntryPayload::Membership(membership()),
        },
        Entry {
            log_id: log_id(1, 2),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(1, 3),
            payload: EntryPayload::Normal(Batch {
                now_ms: 1_000,
                commands: first.to_vec(),
            }),
        },
        Entry {
            log_id: log_id(1, 4),
            payload: EntryPayload::Normal(Batch {
                now_ms: 2_000,
                commands: rest.to_vec(),
            }),
        },
    ]
}

fn snapshot_meta() -> SnapshotMeta {
    SnapshotMeta {
        last_log_id: Some(log_id(1, 4)),
        last_membership: StoredMembership::new(Some(log_id(1, 1)), membership()),
        snapshot_id: "1-4-1".into(),
    }
}

fn peer(out: &mut Vec<Seed>) {
    let mut add = |kind: usize, name: &str, body: Result<Vec<u8>, wire::WireError>| {
        let body = match body {
            Ok(b) => b,
            Err(e) => panic!("seed {name} does not encode: {e}"),
        };
        let mut bytes = vec![u8::try_from(kind).unwrap_or(u8::MAX)];
        bytes.extend_from_slice(&body);
        out.push((
            "peer_message",
            format!("{}-{name}", super::PEER_KINDS[kind]),
            bytes,
        ));
    };
    let vote = Vote::new_committed(1, 1);
    let append = |entries: Vec<Entry>, prev: Option<LogId>| AppendEntriesRequest::<TypeConfig> {
        vote,
        prev_log_id: prev,
        entries,
        leader_commit: Some(log_id(1, 2)),
    };
    add(
        0,
        "heartbeat",
        wire::encode(&append(Vec::new(), Some(log_id(1, 4)))),
    );
    add(0, "entries", wire::encode(&append(entries(), None)));
    add(
        1,
        "request",
        wire::encode(&VoteRequest::new(Vote::new(2, 2), Some(log_id(1, 4)))),
    );
    let state = states().pop().map(|(_, s)| s).unwrap_or_default();
    let chunk = |offset: u64, data: Vec<u8>, done: bool| InstallSnapshotRequest::<TypeConfig> {
        vote,
        meta: snapshot_meta(),
        offset,
        data,
        done,
    };
    let data = state.snapshot();
    let half = data.len() / 2;
    add(2, "whole", wire::encode(&chunk(0, data.clone(), true)));
    add(
        2,
        "first-half",
        wire::encode(&chunk(0, data[..half].to_vec(), false)),
    );
    add(
        3,
        "challenge",
        wire::encode(&wire::IdentifyRequest {
            target: 2,
            nonce: [7; 32],
        }),
    );
    add(4, "unit", wire::encode(&()));
    type Answer<T, E = openraft::error::Infallible> = Result<T, RaftError<NodeId, E>>;
    let appended: Answer<AppendEntriesResponse<NodeId>> = Ok(AppendEntriesResponse::Success);
    add(5, "success", wire::encode(&appended));
    let conflict: Answer<AppendEntriesResponse<NodeId>> = Ok(AppendEntriesResponse::Conflict);
    add(5, "conflict", wire::encode(&conflict));
    let fatal: Answer<AppendEntriesResponse<NodeId>> = Err(RaftError::Fatal(Fatal::Panicked));
    add(5, "fatal", wire::encode(&fatal));
    let voted: Answer<VoteResponse<NodeId>> =
        Ok(VoteResponse::new(Vote::new(2, 2), Some(log_id(1, 4)), true));
    add(6, "granted", wire::encode(&voted));
    let installed: Answer<InstallSnapshotResponse<NodeId>, InstallSnapshotError> =
        Ok(InstallSnapshotResponse { vote });
    add(7, "installed", wire::encode(&installed));
    let mismatch: Answer<InstallSnapshotResponse<NodeId>, InstallSnapshotError> = Err(
        RaftError::APIError(InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
            expect: SnapshotSegmentId {
                id: "1-4-1".into(),
                offset: 0,
            },
            got: SnapshotSegmentId {
                id: "1-4-1".into(),
                offset: 64,
            },
        })),
    );
    add(7, "mismatch", wire::encode(&mismatch));
    add(
        8,
        "proof",
        wire::encode(&wire::IdentifyResponse {
            node: 2,
            proof: [9; 32],
        }),
    );
    add(9, "url", wire::encode(&"http://127.0.0.12:7700".to_owned()));
    let elected: Answer<()> = Ok(());
    add(10, "ok", wire::encode(&elected));
}

use crate::raft::types::TypeConfig;

fn encoded<T: Serialize>(key: RecordKey, value: &T) -> Vec<u8> {
    match record::encode(key, value) {
        Ok(r) => r,
        Err(e) => panic!("seed record does not encode: {e}"),
    }
}

/// A store as the log store writes it: vote, committed id, entries, and (in the second
/// seed) a snapshot with the entries up to it purged. The first seed stores whole
/// records; the others store payloads that the harness frames.
fn store(out: &mut Vec<Seed>) {
    let vote = encoded(RecordKey::Vote, &Vote::<NodeId>::new_committed(1, 1));
    let committed = encoded(RecordKey::Committed, &Some(log_id(1, 4)));
    let records: Vec<(u64, Vec<u8>)> = entries()
        .iter()
        .map(|e| (e.log_id.index, encoded(RecordKey::Log(e.log_id.index), e)))
        .collect();
    let payload = |r: &[u8]| r[crate::storage::RECORD_HEADER_LEN..].to_vec();

    let mut whole = super::store_item(STORE_VOTE, 0, &vote);
    whole.extend(super::store_item(STORE_COMMITTED, 0, &committed));
    for (index, r) in &records {
        whole.extend(super::store_item(STORE_LOG, *index, r));
    }
    out.push(("log_store", "records".into(), whole));

    let mut framed = super::store_item(STORE_VOTE | STORE_FRAME, 0, &payload(&vote));
    for (index, r) in &records {
        framed.extend(super::store_item(
            STORE_LOG | STORE_FRAME,
            *index,
            &payload(r),
        ));
    }
    out.push(("log_store", "payloads".into(), framed));

    let state = states().pop().map(|(_, s)| s).unwrap_or_default();
    let meta = encoded(RecordKey::SnapshotMeta, &snapshot_meta());
    let purged = encoded(RecordKey::LastPurged, &log_id(1, 3));
    let mut snap = super::store_item(STORE_VOTE | STORE_FRAME, 0, &payload(&vote));
    snap.extend(super::store_item(
        STORE_LAST_PURGED | STORE_FRAME,
        0,
        &payload(&purged),
    ));
    snap.extend(super::store_item(
        STORE_SNAPSHOT_META | STORE_FRAME,
        0,
        &payload(&meta),
    ));
    snap.extend(super::store_item(
        STORE_SNAPSHOT_DATA | STORE_FRAME,
        0,
        &state.snapshot(),
    ));
    let (index, last) = &records[3];
    snap.extend(super::store_item(
        STORE_LOG | STORE_FRAME,
        *index,
        &payload(last),
    ));
    out.push(("log_store", "snapshot".into(), snap));
}

fn snapshots(out: &mut Vec<Seed>) {
    for (name, state) in states() {
        out.push(("snapshot", name.into(), state.snapshot()));
    }
}

fn json(out: &mut Vec<Seed>) {
    let mut add = |kind: usize, name: &str, text: &str| {
        let mut bytes = vec![u8::try_from(kind).unwrap_or(u8::MAX)];
        bytes.extend_from_slice(text.as_bytes());
        out.push((
            "json_body",
            format!("{}-{name}", super::JSON_KINDS[kind]),
            bytes,
        ));
    };
    // The bodies of docs/api.md.
    add(
        0,
        "full",
        r#"{"load": 2000, "priority": 100, "lane": "user-facing", "ttl_ms": 30000, "wait_ms": 30000, "request_id": "6f1c-uuid", "holder": "worker-1"}"#,
    );
    add(0, "empty", "");
    add(1, "settle", r#"{"actual_load": 1500}"#);
    add(2, "ttl", r#"{"ttl_ms": 60000}"#);
    add(
        3,
        "full",
        r#"{"concurrency": 10, "rate": [{"per": "request", "limit": 60, "window_ms": 60000}, {"per": "load", "limit": 100000, "window_ms": 60000}], "lanes": {"user-facing": {"weight": 3}}, "default_ttl_ms": 30000, "max_queue": 10000}"#,
    );
    add(3, "concurrency", r#"{"concurrency": 1}"#);
    add(3, "dry-run", r#"{"concurrency": 2, "mode": "dry_run"}"#);
    add(
        4,
        "client",
        r#"{"name": "workers", "role": "client", "resources": ["openai-*"], "lanes": ["batch"], "max_priority": 50, "max_waiters": 100, "max_in_flight": 200, "expires_in_ms": 86400000}"#,
    );
    add(4, "admin", r#"{"name": "ops", "role": "admin"}"#);
    add(5, "expiry", r#"{"expires_in_ms": 3600000}"#);
    add(
        6,
        "learner",
        r#"{"id": 4, "peer_addr": "127.0.0.14:7701", "api_url": "http://127.0.0.14:7700", "voter": false}"#,
    );
    add(7, "lease", "3-0000000000003333");
    add(7, "name", "openai-gpt4");
}
