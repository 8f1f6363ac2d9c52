//! Corruption is reported when the store is opened (and when a damaged record is read), as
//! a typed error naming the record, never a panic.

use std::path::Path;
use std::sync::Arc;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{RaftLogReader, SnapshotMeta, Vote};
use ratequeue_node::storage::{
    self, LogBackend, MemBackend, RecordKey, SledBackend, StoreError, RECORD_HEADER_LEN,
};

use super::support::{edit_tree, log_id, normal, Store, TestConfig};

/// A healthy store: entries 0..=5, vote, committed, snapshot.
async fn write_sample(dir: &Path) {
    let mut store = storage::open::<TestConfig>(dir).unwrap();
    store
        .blocking_append((0..=5).map(|i| normal(1, i, &format!("value-{i}"))))
        .await
        .unwrap();
    store.save_vote(&Vote::new_committed(1, 1)).await.unwrap();
    store.save_committed(Some(log_id(1, 1, 3))).await.unwrap();
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(1, 1, 2)),
        snapshot_id: "s".to_string(),
        ..SnapshotMeta::default()
    };
    store.save_snapshot(&meta, b"some snapshot bytes").unwrap();
    store.flush().await.unwrap();
}

/// Rewrite the snapshot file in place.
fn edit_snapshot_file(dir: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let path = dir.join(SledBackend::SNAPSHOT_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    edit(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
}

fn open_err(dir: &Path) -> StoreError {
    storage::open::<TestConfig>(dir).expect_err("a corrupt store must not open")
}

#[tokio::test]
async fn flipped_byte_in_a_log_entry_is_a_checksum_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path()).await;
    edit_tree(dir.path(), SledBackend::LOG_TREE, |t| {
        let key = SledBackend::log_key(3);
        let mut value = t.get(key).unwrap().unwrap().to_vec();
        let last = value.len() - 1;
        value[last] ^= 0x01;
        t.insert(key, value).unwrap();
    });
    let err = open_err(dir.path());
    assert!(matches!(err, StoreError::Checksum { .. }), "{err:?}");
    assert_eq!(err.record(), Some(RecordKey::Log(3)));
    assert!(err.is_corruption());
    let msg = err.to_string();
    assert!(
        msg.starts_with("corrupt record log[3]: checksum mismatch"),
        "unclear message: {msg}"
    );
    // Opening again gives the same answer (no half-repaired state, no lock left behind).
    assert_eq!(open_err(dir.path()).record(), Some(RecordKey::Log(3)));
}

#[tokio::test]
async fn unknown_format_version_of_the_vote_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path()).await;
    edit_tree(dir.path(), SledBackend::META_TREE, |t| {
        let mut value = t.get("vote").unwrap().unwrap().to_vec();
        value[0] = 9;
        t.insert("vote", value).unwrap();
    });
    let err = open_err(dir.path());
    assert!(
        matches!(
            err,
            StoreError::Version {
                found: 9,
                expected: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("record vote has format version 9, this build reads version 4"),
        "{err}"
    );
}

/// Record formats 2 (issue 15), 3 and 4 (issue 19) changed the commands' layout: a log
/// entry written by the previous format is refused by its version byte, never decoded as
/// the new layout.
#[tokio::test]
async fn a_log_entry_of_the_previous_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path()).await;
    edit_tree(dir.path(), SledBackend::LOG_TREE, |t| {
        let key = SledBackend::log_key(3);
        let mut value = t.get(key).unwrap().unwrap().to_vec();
        value[0] = 3;
        t.insert(key, value).unwrap();
    });
    let err = open_err(dir.path());
    assert!(
        matches!(
            err,
            StoreError::Version {
                found: 3,
                expected: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("Upgrading"), "{err}");
}

#[tokio::test]
async fn damaged_snapshot_data_and_short_committed_record_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path()).await;
    edit_snapshot_file(dir.path(), |bytes| {
        let meta_len = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
        bytes[SledBackend::SNAPSHOT_HEADER_LEN + meta_len + RECORD_HEADER_LEN] ^= 0xff;
    });
    let err = open_err(dir.path());
    assert_eq!(err.record(), Some(RecordKey::SnapshotData), "{err}");
    assert!(err.to_string().contains("snapshot.data"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path()).await;
    edit_tree(dir.path(), SledBackend::META_TREE, |t| {
        t.insert("committed", &[1u8, 2][..]).unwrap();
    });
    let err = open_err(dir.path());
    assert!(
        matches!(err, StoreError::Truncated { len: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("committed"), "{err}");
}

/// A snapshot file cut short (or overwritten with something else) is refused at open,
/// naming the snapshot, whichever part the damage reaches.
#[tokio::test]
async fn a_torn_or_foreign_snapshot_file_is_reported() {
    type Cut = fn(&mut Vec<u8>);
    let cuts: [(&str, Cut); 4] = [
        ("inside the header", |b| b.truncate(9)),
        ("inside the meta record", |b| {
            b.truncate(SledBackend::SNAPSHOT_HEADER_LEN + 3)
        }),
        ("inside the data record", |b| {
            let len = b.len();
            b.truncate(len - 4)
        }),
        ("a foreign file", |b| b[0] = b'x'),
    ];
    for (what, cut) in cuts {
        let dir = tempfile::tempdir().unwrap();
        write_sample(dir.path()).await;
        edit_snapshot_file(dir.path(), cut);
        let err = open_err(dir.path());
        assert!(err.is_corruption(), "{what}: {err:?}");
        assert!(
            matches!(
                err.record(),
                Some(RecordKey::SnapshotMeta | RecordKey::SnapshotData)
            ),
            "{what}: {err}"
        );
    }
}

#[tokio::test]
async fn a_hole_or_a_misplaced_entry_in_the_log_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path()).await;
    edit_tree(dir.path(), SledBackend::LOG_TREE, |t| {
        t.remove(SledBackend::log_key(2)).unwrap();
    });
    let err = open_err(dir.path());
    assert!(matches!(err, StoreError::LogInconsistent { .. }), "{err:?}");
    assert!(err.to_string().contains("missing log[2..3]"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    write_sample(dir.path()).await;
    edit_tree(dir.path(), SledBackend::LOG_TREE, |t| {
        let four = t.get(SledBackend::log_key(4)).unwrap().unwrap();
        t.insert(SledBackend::log_key(3), four).unwrap();
    });
    let err = open_err(dir.path());
    assert!(
        matches!(err, StoreError::IndexMismatch { found: 4, .. }),
        "{err:?}"
    );
    assert_eq!(err.record(), Some(RecordKey::Log(3)));
}

/// A bad record written through the backend's raw API: reads fail with openraft's
/// `StorageError` (fatal to the node) naming the record, and reopening refuses the store.
#[tokio::test]
async fn a_bad_record_is_an_error_at_read_time_and_at_open() {
    let backend = Arc::new(MemBackend::new());
    let mut store = Store::new(backend.clone()).unwrap();
    store
        .blocking_append((0..3).map(|i| normal(1, i, "ok")))
        .await
        .unwrap();
    let mut record = backend.read_range(1..2).unwrap().remove(0).1;
    record[RECORD_HEADER_LEN + 1] ^= 0x10;
    backend.append(vec![(1, record)]).unwrap();

    let err = store.try_get_log_entries(0..3).await.unwrap_err();
    assert!(err.to_string().contains("log[1]"), "{err}");
    // Entries before the damage are still readable.
    assert_eq!(store.try_get_log_entries(0..1).await.unwrap().len(), 1);

    drop(store);
    let err = Store::new(backend).unwrap_err();
    assert_eq!(err.record(), Some(RecordKey::Log(1)), "{err}");
}
