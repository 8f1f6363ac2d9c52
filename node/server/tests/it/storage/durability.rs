//! Durability against a crash that loses every unflushed write (`MemBackend`'s crash model:
//! the storage failpoint that `kill -9` cannot provide), and finishing an interrupted purge.

use std::sync::Arc;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{RaftLogReader, SnapshotMeta, Vote};
use ratequeue_node::storage::record;
use ratequeue_node::storage::{LogBackend, MemBackend, MetaKey, RecordKey};

use super::support::{blank, log_id, normal, summarize, Store};

#[tokio::test]
async fn acknowledged_writes_survive_losing_unflushed_writes() {
    let backend = Arc::new(MemBackend::with_crash_model());
    let mut store = Store::new(backend.clone()).unwrap();

    // Nothing acknowledged yet: a crash leaves nothing.
    let crashed = Store::new(Arc::new(backend.crash_copy())).unwrap();
    assert!(crashed
        .clone()
        .try_get_log_entries(..)
        .await
        .unwrap()
        .is_empty());

    store
        .blocking_append([blank(1, 0), normal(1, 1, "a"), normal(1, 2, "b")])
        .await
        .unwrap();
    let mut crashed = Store::new(Arc::new(backend.crash_copy())).unwrap();
    let entries = crashed.try_get_log_entries(..).await.unwrap();
    assert_eq!(entries.len(), 3, "an acknowledged append was lost");

    store.save_vote(&Vote::new(4, 2)).await.unwrap();
    let mut crashed = Store::new(Arc::new(backend.crash_copy())).unwrap();
    assert_eq!(crashed.read_vote().await.unwrap(), Some(Vote::new(4, 2)));

    let meta = SnapshotMeta {
        last_log_id: Some(log_id(1, 1, 1)),
        snapshot_id: "s1".to_string(),
        ..SnapshotMeta::default()
    };
    store.save_snapshot(&meta, b"snap").unwrap();
    let crashed = Store::new(Arc::new(backend.crash_copy())).unwrap();
    assert_eq!(
        crashed.load_snapshot().unwrap(),
        Some((meta, b"snap".to_vec()))
    );

    // A purge's deletion runs on the purge thread; `flush` waits for it.
    store.purge(log_id(1, 1, 1)).await.unwrap();
    store.flush().await.unwrap();
    let mut crashed = Store::new(Arc::new(backend.crash_copy())).unwrap();
    let state = crashed.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 1)));
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 2)));
    let entries = crashed.try_get_log_entries(..).await.unwrap();
    assert_eq!(summarize(&entries), vec![(2, "b".to_string())]);
}

#[tokio::test]
async fn open_finishes_a_purge_interrupted_after_last_purged_was_persisted() {
    let backend = Arc::new(MemBackend::new());
    {
        let mut store = Store::new(backend.clone()).unwrap();
        store
            .blocking_append((0..10).map(|i| normal(1, i, &format!("v{i}"))))
            .await
            .unwrap();
    }
    // The crash: `last_purged` is durable, the deletion of entries 0..=5 never happened.
    let record = record::encode(RecordKey::LastPurged, &log_id(1, 1, 5)).unwrap();
    backend.put_meta(MetaKey::LastPurged, record).unwrap();

    let mut store = Store::new(backend.clone()).unwrap();
    let entries = store.try_get_log_entries(..).await.unwrap();
    assert_eq!(entries.first().map(|e| e.log_id.index), Some(6));
    assert_eq!(entries.len(), 4);
    assert_eq!(backend.first().unwrap().map(|(i, _)| i), Some(6));
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 5)));
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 9)));
}
