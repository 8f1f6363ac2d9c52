//! The fuzz harness: one entry point per decoder of untrusted bytes, each feeding the
//! bytes to the decoder exactly as the server does and asserting what must hold of any
//! input (no panic, no unbounded allocation, a decoded value encodes back to bytes that
//! decode to the same value). The `cargo fuzz` targets in `fuzz/` call these; the seed
//! corpus in `fuzz/seeds/` is made by [`seeds`] from real encodings, and this crate's
//! tests check that the committed corpus is current and that every seed is accepted.
//!
//! Compiled only with the feature `fuzzing` (the fuzz crate turns it on) and in this
//! crate's tests: nothing here is part of the server.
//!
//! Inputs:
//! - [`peer_message`]: `[kind][peer body]`, the body as it arrives on the peer port
//!   (requests) or as a peer answers (responses): `[wire version][bincode]`.
//! - [`log_store`]: a store's records, `([kind][index u64 LE][len u16 LE][bytes])*`,
//!   put into a `MemBackend` and opened as `LogStore::validate` does on start-up (then
//!   the stored snapshot restored, as the state machine does).
//! - [`snapshot`]: state-machine snapshot bytes (`State::restore`).
//! - [`json_body`]: `[kind][HTTP request body]` through the API's `Body` extractor and
//!   the handler's conversion and validation; the path parameters too.

use std::sync::OnceLock;

use axum::extract::FromRequest;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use ratequeue_api as api;
use ratequeue_core::{ApiKey, Command, LeaseId, State};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::raft::network::wire;
use crate::raft::types::{NodeId, TypeConfig};
use crate::storage::{record, LogBackend, LogStore, MemBackend, MetaKey, RecordKey};

/// The message kinds of [`peer_message`]: the first input byte, modulo their number.
pub const PEER_KINDS: [&str; 11] = [
    "append_entries",
    "vote",
    "install_snapshot",
    "identify",
    "trigger_elect",
    "append_entries_answer",
    "vote_answer",
    "install_snapshot_answer",
    "identify_answer",
    "api_url_answer",
    "trigger_elect_answer",
];

/// Decodes one peer body as the peer server (requests) or the peer client (answers)
/// does. Returns whether it decoded.
pub fn peer_message(data: &[u8]) -> bool {
    let Some((&kind, body)) = data.split_first() else {
        return false;
    };
    match usize::from(kind) % PEER_KINDS.len() {
        0 => match wire_roundtrip::<AppendEntriesRequest<TypeConfig>>(body) {
            Some(rpc) => {
                // A follower appends these entries to its log: they must survive the
                // log record format too.
                for entry in &rpc.entries {
                    record_roundtrip(entry);
                }
                true
            }
            None => false,
        },
        1 => wire_roundtrip::<VoteRequest<NodeId>>(body).is_some(),
        2 => wire_roundtrip::<InstallSnapshotRequest<TypeConfig>>(body).is_some(),
        3 => wire_roundtrip::<wire::IdentifyRequest>(body).is_some(),
        4 => wire_roundtrip::<()>(body).is_some(),
        5 => wire_roundtrip::<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>>(body)
            .is_some(),
        6 => wire_roundtrip::<Result<VoteResponse<NodeId>, RaftError<NodeId>>>(body).is_some(),
        7 => wire_roundtrip::<
            Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
        >(body)
        .is_some(),
        8 => wire_roundtrip::<wire::IdentifyResponse>(body).is_some(),
        9 => wire_roundtrip::<String>(body).is_some(),
        _ => wire_roundtrip::<Result<(), RaftError<NodeId>>>(body).is_some(),
    }
}

/// `wire::decode`, then: what decoded encodes, and that encoding decodes to a value
/// that encodes to the same bytes.
fn wire_roundtrip<T: Serialize + DeserializeOwned>(body: &[u8]) -> Option<T> {
    let value: T = wire::decode(body).ok()?;
    let again = match wire::encode(&value) {
        Ok(bytes) => bytes,
        Err(e) => panic!("a decoded peer message does not encode: {e}"),
    };
    let decoded: T = match wire::decode(&again) {
        Ok(v) => v,
        Err(e) => panic!("a re-encoded peer message does not decode: {e}"),
    };
    match wire::encode(&decoded) {
        Ok(third) => assert_eq!(again, third, "peer message encoding is not stable"),
        Err(e) => panic!("a re-decoded peer message does not encode: {e}"),
    }
    Some(value)
}

/// A value written as a log record reads back as the same value.
fn record_roundtrip<T: Serialize + DeserializeOwned>(value: &T) {
    let bytes = match record::encode(RecordKey::Log(0), value) {
        Ok(b) => b,
        Err(e) => panic!("a decoded value does not encode as a record: {e}"),
    };
    let back: T = match record::decode(RecordKey::Log(0), &bytes) {
        Ok(v) => v,
        Err(e) => panic!("a record does not read back: {e}"),
    };
    match record::encode(RecordKey::Log(0), &back) {
        Ok(again) => assert_eq!(bytes, again, "record encoding is not stable"),
        Err(e) => panic!("a read-back record does not encode: {e}"),
    }
}

/// Record kinds of a [`log_store`] input. Bit 7 set: the bytes are a payload to be
/// framed with a correct header and checksum (so that mutations reach the decoder
/// instead of stopping at the checksum); clear: the bytes are the whole stored record.
pub const STORE_LOG: u8 = 0;
pub const STORE_VOTE: u8 = 1;
pub const STORE_COMMITTED: u8 = 2;
pub const STORE_LAST_PURGED: u8 = 3;
pub const STORE_SNAPSHOT_META: u8 = 4;
pub const STORE_SNAPSHOT_DATA: u8 = 5;
const STORE_KINDS: u8 = 6;
pub const STORE_FRAME: u8 = 0x80;
/// At most this many records per input (a store of a few entries finds what a large
/// one would, faster).
const STORE_RECORDS_MAX: usize = 64;

/// One record of a [`log_store`] input, as the seeds write it.
pub fn store_item(kind: u8, index: u64, bytes: &[u8]) -> Vec<u8> {
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    let mut out = vec![kind];
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&bytes[..usize::from(len)]);
    out
}

/// Builds a store from the input's records and opens it as a node does on start-up:
/// every record validated (`LogStore::validate`), then the snapshot the state machine
/// would restore. Returns whether the store opened.
pub fn log_store(data: &[u8]) -> bool {
    let backend = MemBackend::new();
    let mut snapshot: (Option<Vec<u8>>, Option<Vec<u8>>) = (None, None);
    let mut rest = data;
    let mut records = 0;
    while rest.len() >= 11 && records < STORE_RECORDS_MAX {
        records += 1;
        let kind = rest[0];
        let mut index = [0u8; 8];
        index.copy_from_slice(&rest[1..9]);
        let index = u64::from_le_bytes(index);
        let len = usize::from(u16::from_le_bytes([rest[9], rest[10]]));
        let bytes = &rest[11..(11 + len).min(rest.len())];
        rest = &rest[(11 + len).min(rest.len())..];
        let stored = if kind & STORE_FRAME != 0 {
            record::frame_bytes(bytes)
        } else {
            bytes.to_vec()
        };
        let meta = |key: MetaKey| backend.put_meta(key, stored.clone());
        let put = match (kind & !STORE_FRAME) % STORE_KINDS {
            STORE_LOG => backend.append(vec![(index, stored)]),
            STORE_VOTE => meta(MetaKey::Vote),
            STORE_COMMITTED => meta(MetaKey::Committed),
            STORE_LAST_PURGED => meta(MetaKey::LastPurged),
            STORE_SNAPSHOT_META => {
                snapshot.0 = Some(stored);
                Ok(())
            }
            _ => {
                snapshot.1 = Some(stored);
                Ok(())
            }
        };
        assert!(put.is_ok(), "the in-memory backend refused a write");
    }
    if let (Some(meta), Some(data)) = snapshot {
        assert!(backend.save_snapshot(meta, data).is_ok());
    }
    if LogStore::<TypeConfig>::validate(&backend).is_err() {
        return false;
    }
    // Opened: the state machine restores the stored snapshot (a refusal is a clean
    // error at start-up, never a panic).
    if let Ok(Some((_, data))) = backend.load_snapshot() {
        if let Ok(payload) = record::payload(RecordKey::SnapshotData, &data) {
            snapshot_checks(payload);
        }
    }
    true
}

/// Restores a state-machine snapshot as a node does (start-up, install-snapshot).
/// Returns whether it restored.
pub fn snapshot(data: &[u8]) -> bool {
    snapshot_checks(data)
}

fn snapshot_checks(data: &[u8]) -> bool {
    let Ok(mut state) = State::restore(data) else {
        return false;
    };
    // A restored state snapshots to bytes that restore to a state with the same bytes
    // (replicas that restore the same snapshot agree, DESIGN.md §7.3).
    let bytes = state.snapshot();
    match State::restore(&bytes) {
        Ok(again) => assert_eq!(bytes, again.snapshot(), "snapshot bytes are not stable"),
        Err(e) => panic!("a restored state's snapshot does not restore: {e}"),
    }
    // And it runs: time passes (expiries, tombstones, the idempotency window), then an
    // empty entry is applied; the invariants still hold.
    let now = state.now_ms();
    state.tick(now.saturating_add(ratequeue_core::TTL_MS_MAX));
    state.apply_entry(now.saturating_add(2 * ratequeue_core::TTL_MS_MAX), &[]);
    if let Err(e) = state.check_invariants() {
        panic!("a restored state broke its invariants when time passed: {e}");
    }
    true
}

/// The body kinds of [`json_body`]: the first input byte, modulo their number.
pub const JSON_KINDS: [&str; 8] = [
    "acquire",
    "release",
    "renew",
    "resource",
    "create_key",
    "rotate_key",
    "add_member",
    "path",
];

/// Reads an HTTP request body through the API's `Body` extractor as the handler for
/// that kind does, then the handler's conversion and validation; `path` checks the
/// path parameters (a lease id, a resource or key name). Returns whether the body was
/// accepted.
pub fn json_body(data: &[u8]) -> bool {
    let Some((&kind, body)) = data.split_first() else {
        return false;
    };
    match usize::from(kind) % JSON_KINDS.len() {
        0 => extract::<api::AcquireRequest>(body).is_some(),
        1 => extract::<api::ReleaseRequest>(body).is_some(),
        2 => extract::<api::RenewRequest>(body).is_some(),
        3 => match extract::<api::ResourceSpec>(body) {
            Some(spec) => resource(spec),
            None => false,
        },
        4 => match extract::<api::CreateKeyRequest>(body) {
            Some(req) => create_key(req),
            None => false,
        },
        5 => extract::<api::RotateKeyRequest>(body).is_some(),
        6 => extract::<api::AddMember>(body).is_some(),
        _ => path(body),
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("no tokio runtime: {e}"),
        }
    })
}

/// The `Body` extractor over `body`; what it accepts serialises back to JSON that it
/// accepts again as the same value.
fn extract<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(
    body: &[u8],
) -> Option<T> {
    let read = |bytes: Vec<u8>| {
        let request = axum::http::Request::new(axum::body::Body::from(bytes));
        runtime().block_on(crate::http::Body::<T>::from_request(request, &()))
    };
    let crate::http::Body(value) = read(body.to_vec()).ok()?;
    let json = match serde_json::to_vec(&value) {
        Ok(j) => j,
        Err(e) => panic!("an accepted body does not serialise: {e}"),
    };
    match read(json) {
        Ok(crate::http::Body(again)) => assert_eq!(value, again, "JSON body is not stable"),
        Err(e) => panic!("an accepted body, serialised again, is refused: {e:?}"),
    }
    Some(value)
}

/// `PUT /v1/resources/{name}`: the spec converted into a config, validated, and applied
/// as the state machine applies it; the config converts back to the same spec.
fn resource(spec: api::ResourceSpec) -> bool {
    let Ok(config) = crate::http::resource_config(spec) else {
        return false;
    };
    let back = crate::http::resource_spec(&config);
    match crate::http::resource_config(back) {
        Ok(again) => assert_eq!(config, again, "resource config does not round-trip"),
        Err(e) => panic!("a valid config's spec is refused: {e:?}"),
    }
    let mut state = State::new();
    let put = Command::PutResource {
        name: "fuzz".into(),
        config,
    };
    state.apply_entry(1, std::slice::from_ref(&put));
    state.apply_entry(2, &[put]);
    if let Err(e) = state.check_invariants() {
        panic!("a valid resource broke the state's invariants: {e}");
    }
    true
}

/// `POST /v1/keys`: the key record built and validated as the handler does, then
/// applied.
fn create_key(req: api::CreateKeyRequest) -> bool {
    let role = match req.role {
        api::Role::Admin => ratequeue_core::Role::Admin,
        api::Role::Client => ratequeue_core::Role::Client,
        api::Role::Monitor => ratequeue_core::Role::Monitor,
    };
    let hash = crate::http::key_hash("fuzz");
    let mut key = ApiKey::new(&req.name, &hash, role, req.resources);
    key.lanes = req.lanes;
    key.priority_max = req.max_priority;
    key.waiters_max = req.max_waiters.unwrap_or(key.waiters_max);
    key.in_flight_max = req.max_in_flight.unwrap_or(key.in_flight_max);
    let valid = ratequeue_core::config::validate_name(&req.name).is_ok()
        && key.validate().is_ok()
        && req
            .expires_in_ms
            .is_none_or(|ms| (1..=ratequeue_core::KEY_EXPIRES_IN_MS_MAX).contains(&ms));
    if !valid {
        return false;
    }
    let mut state = State::new();
    state.apply_entry(
        u64::MAX / 2,
        &[Command::CreateKey {
            key,
            expires_in_ms: req.expires_in_ms,
        }],
    );
    if let Err(e) = state.check_invariants() {
        panic!("a valid key broke the state's invariants: {e}");
    }
    true
}

/// A path parameter: a lease id parses only from its canonical form, and a name is
/// checked as the handlers check it.
fn path(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let lease = text.parse::<LeaseId>();
    if let Ok(id) = lease {
        assert_eq!(
            id.to_string(),
            text,
            "a lease id parsed from a non-canonical form"
        );
    }
    lease.is_ok() | ratequeue_core::config::validate_name(text).is_ok()
}

/// The seed corpus: `(target, file name, bytes)`, from real encodings.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    seeds::all()
}

mod seeds;

#[cfg(test)]
mod tests;
