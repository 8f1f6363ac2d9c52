//! Crash/reopen with sled: write everything, drop the store (and with it the `sled::Db`),
//! reopen the same directory, and find the same state.

use std::collections::BTreeSet;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{
    Entry, EntryPayload, Membership, RaftLogReader, SnapshotMeta, StoredMembership, Vote,
};
use ratequeue_node::storage;

use super::support::{edit_tree, log_id, normal, summarize, TestConfig};

fn snapshot_meta(index: u64) -> SnapshotMeta<u64, openraft::BasicNode> {
    SnapshotMeta {
        last_log_id: Some(log_id(1, 1, index)),
        last_membership: StoredMembership::new(
            Some(log_id(1, 1, 0)),
            Membership::new(vec![BTreeSet::from([1, 2, 3])], None),
        ),
        snapshot_id: format!("snap-{index}"),
    }
}

#[tokio::test]
async fn log_vote_committed_snapshot_purge_and_truncate_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let meta = snapshot_meta(4);
    {
        let mut store = storage::open::<TestConfig>(dir.path()).unwrap();
        let membership = Entry::<TestConfig> {
            log_id: log_id(1, 1, 0),
            payload: EntryPayload::Membership(Membership::new(
                vec![BTreeSet::from([1, 2, 3])],
                None,
            )),
        };
        store.blocking_append([membership]).await.unwrap();
        store
            .blocking_append((1..=10).map(|i| normal(1, i, &format!("v{i}"))))
            .await
            .unwrap();
        store.save_vote(&Vote::new_committed(2, 1)).await.unwrap();
        store.save_committed(Some(log_id(1, 1, 7))).await.unwrap();
        store.save_snapshot(&meta, b"state at 4").unwrap();
        store.purge(log_id(1, 1, 4)).await.unwrap();
        // A new leader in term 2 overwrites the uncommitted tail from index 9 on.
        store.truncate(log_id(1, 1, 9)).await.unwrap();
        store
            .blocking_append([normal(2, 9, "v9-term2")])
            .await
            .unwrap();
        assert!(store.size_on_disk().unwrap() > 0);
    }

    let mut store = storage::open::<TestConfig>(dir.path()).unwrap();
    assert_eq!(
        store.read_vote().await.unwrap(),
        Some(Vote::new_committed(2, 1))
    );
    assert_eq!(store.read_committed().await.unwrap(), Some(log_id(1, 1, 7)));
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 4)));
    assert_eq!(state.last_log_id, Some(log_id(2, 1, 9)));
    let entries = store.try_get_log_entries(0..100).await.unwrap();
    let expected: Vec<(u64, String)> =
        [(5, "v5"), (6, "v6"), (7, "v7"), (8, "v8"), (9, "v9-term2")]
            .iter()
            .map(|(i, v)| (*i, v.to_string()))
            .collect();
    assert_eq!(summarize(&entries), expected);
    assert_eq!(entries[4].log_id, log_id(2, 1, 9));
    assert_eq!(
        store.load_snapshot().unwrap(),
        Some((meta, b"state at 4".to_vec()))
    );
}

#[tokio::test]
async fn repeated_reopen_accumulates_and_an_empty_store_stays_empty() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = storage::open::<TestConfig>(dir.path()).unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!((state.last_purged_log_id, state.last_log_id), (None, None));
        assert_eq!(store.read_vote().await.unwrap(), None);
        assert_eq!(store.read_committed().await.unwrap(), None);
        assert_eq!(store.load_snapshot().unwrap(), None);
    }
    for round in 0..3u64 {
        let mut store = storage::open::<TestConfig>(dir.path()).unwrap();
        let have = store.try_get_log_entries(..).await.unwrap();
        assert_eq!(have.len() as u64, round * 2, "round {round}");
        store
            .blocking_append([
                normal(1, round * 2, &format!("r{round}a")),
                normal(1, round * 2 + 1, &format!("r{round}b")),
            ])
            .await
            .unwrap();
        store.save_vote(&Vote::new(round + 1, 1)).await.unwrap();
    }
    let mut store = storage::open::<TestConfig>(dir.path()).unwrap();
    assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
    assert_eq!(
        store.get_log_state().await.unwrap().last_log_id,
        Some(log_id(1, 1, 5))
    );
}

#[tokio::test]
async fn purge_past_the_last_entry_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = storage::open::<TestConfig>(dir.path()).unwrap();
        store
            .blocking_append((0..5).map(|i| normal(1, i, "x")))
            .await
            .unwrap();
        // Installing a snapshot ahead of the log purges everything up to its last log id.
        store.purge(log_id(3, 1, 20)).await.unwrap();
    }
    let mut store = storage::open::<TestConfig>(dir.path()).unwrap();
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(3, 1, 20)));
    assert_eq!(state.last_log_id, Some(log_id(3, 1, 20)));
    assert!(store.try_get_log_entries(..).await.unwrap().is_empty());
    // The log continues right after the purge point.
    store
        .blocking_append([normal(3, 21, "next")])
        .await
        .unwrap();
    drop(store);
    let mut store = storage::open::<TestConfig>(dir.path()).unwrap();
    let entries = store.try_get_log_entries(..).await.unwrap();
    assert_eq!(summarize(&entries), vec![(21, "next".to_string())]);
}

/// The server's real entry type (batches of core commands, `NodeInfo` members) must
/// round-trip through bincode and sled.
#[tokio::test]
async fn the_servers_own_entries_round_trip() {
    use ratequeue_core::Command;
    use ratequeue_node::raft::types::{Batch, NodeInfo, TypeConfig as ServerConfig};

    let members = std::collections::BTreeMap::from([(
        1u64,
        NodeInfo {
            peer_addr: "127.0.0.11:7701".to_string(),
            api_url: "http://127.0.0.11:7700".to_string(),
        },
    )]);
    let entries = vec![
        Entry::<ServerConfig> {
            log_id: log_id(1, 1, 0),
            payload: EntryPayload::Membership(Membership::new(vec![BTreeSet::from([1])], members)),
        },
        Entry::<ServerConfig> {
            log_id: log_id(1, 1, 1),
            payload: EntryPayload::Normal(Batch {
                now_ms: 1234,
                commands: vec![
                    Command::DeleteResource {
                        name: "openai-gpt4".to_string(),
                    },
                    Command::DeleteKey {
                        name: "workers".to_string(),
                    },
                ],
            }),
        },
    ];
    let expected = format!("{entries:?}");
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = storage::open::<ServerConfig>(dir.path()).unwrap();
        store.blocking_append(entries).await.unwrap();
    }
    let mut store = storage::open::<ServerConfig>(dir.path()).unwrap();
    let read = store.try_get_log_entries(..).await.unwrap();
    assert_eq!(format!("{read:?}"), expected);
}

/// A data directory from a build that kept the snapshot in sled's `snapshot` tree: the
/// snapshot is read from there, and the first snapshot saved replaces it with the file.
/// A temporary file left by a crash mid-save is ignored and removed.
#[tokio::test]
async fn a_snapshot_in_the_old_sled_tree_is_read_until_the_file_replaces_it() {
    use ratequeue_node::storage::{LogBackend, SledBackend, SledConfig};

    let dir = tempfile::tempdir().unwrap();
    {
        let store = storage::open::<TestConfig>(dir.path()).unwrap();
        store
            .save_snapshot(&snapshot_meta(3), b"old layout")
            .unwrap();
    }
    // Move the saved records into the tree where an earlier build kept them.
    let file = dir.path().join(SledBackend::SNAPSHOT_FILE);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    let meta_len = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
    let (meta, data) = bytes[SledBackend::SNAPSHOT_HEADER_LEN..].split_at(meta_len);
    {
        let backend = SledBackend::open(dir.path(), &SledConfig::default()).unwrap();
        assert_eq!(backend.load_snapshot().unwrap(), None);
        drop(backend);
    }
    edit_tree(dir.path(), SledBackend::SNAPSHOT_TREE, |t| {
        t.insert(SledBackend::SNAPSHOT_META_KEY, meta).unwrap();
        t.insert(SledBackend::SNAPSHOT_DATA_KEY, data).unwrap();
    });
    std::fs::write(dir.path().join("raft-snapshot.tmp"), b"half a snapshot").unwrap();

    {
        let store = storage::open::<TestConfig>(dir.path()).unwrap();
        let (got, data) = store.load_snapshot().unwrap().expect("the old snapshot");
        assert_eq!(got, snapshot_meta(3));
        assert_eq!(data, b"old layout");
        assert!(!dir.path().join("raft-snapshot.tmp").exists());
        store
            .save_snapshot(&snapshot_meta(5), b"new layout")
            .unwrap();
    }
    let store = storage::open::<TestConfig>(dir.path()).unwrap();
    let (got, data) = store.load_snapshot().unwrap().expect("the new snapshot");
    assert_eq!(got, snapshot_meta(5));
    assert_eq!(data, b"new layout");
    drop(store);
    // The old tree is empty: removing the file leaves no snapshot at all.
    std::fs::remove_file(&file).unwrap();
    let store = storage::open::<TestConfig>(dir.path()).unwrap();
    assert!(store.load_snapshot().unwrap().is_none());
}
