//! Test-only Raft types and a minimal in-memory state machine, so openraft's storage suite
//! can drive `LogStore`. The state machine keeps its snapshots in the log store, which also
//! exercises `LogStore::save_snapshot` / `load_snapshot`.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::testing::StoreBuilder;
use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use ratequeue_node::storage::{self, LogStore, MemBackend};
use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    pub TestConfig:
        D = String,
        R = String,
);

pub type Store = LogStore<TestConfig>;

/// Edit one sled tree of a closed store directly, as a disk fault, a stray tool or an
/// earlier build would.
pub fn edit_tree(dir: &std::path::Path, tree: &str, edit: impl FnOnce(&sled::Tree)) {
    // A just-dropped store's sled flusher may hold the file lock for a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let db = loop {
        match sled::Config::new().path(dir).open() {
            Ok(db) => break db,
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(e.to_string().contains("lock"), "{e}");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    };
    let tree = db.open_tree(tree).unwrap();
    edit(&tree);
    db.flush().unwrap();
}

pub fn log_id(term: u64, node: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

pub fn blank(term: u64, index: u64) -> Entry<TestConfig> {
    Entry {
        log_id: log_id(term, 1, index),
        payload: EntryPayload::Blank,
    }
}

pub fn normal(term: u64, index: u64, value: &str) -> Entry<TestConfig> {
    Entry {
        log_id: log_id(term, 1, index),
        payload: EntryPayload::Normal(value.to_string()),
    }
}

/// `(index, payload as text)` of entries, for readable comparisons.
pub fn summarize(entries: &[Entry<TestConfig>]) -> Vec<(u64, String)> {
    entries
        .iter()
        .map(|e| {
            let payload = match &e.payload {
                EntryPayload::Blank => "blank".to_string(),
                EntryPayload::Normal(s) => s.clone(),
                EntryPayload::Membership(m) => format!("membership {m}"),
            };
            (e.log_id.index, payload)
        })
        .collect()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SmData {
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    values: Vec<String>,
}

/// A state machine that only records what it applied.
pub struct TestStateMachine {
    data: SmData,
    store: Store,
    snapshots_built: u64,
}

impl TestStateMachine {
    pub fn new(store: Store) -> Self {
        TestStateMachine {
            data: SmData::default(),
            store,
            snapshots_built: 0,
        }
    }
}

fn sm_err(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::write_state_machine(&e).into()
}

pub struct TestSnapshotBuilder {
    data: SmData,
    store: Store,
    seq: u64,
}

impl RaftSnapshotBuilder<TestConfig> for TestSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TestConfig>, StorageError<u64>> {
        let bytes = serde_json::to_vec(&self.data).map_err(sm_err)?;
        let meta = SnapshotMeta {
            last_log_id: self.data.last_applied,
            last_membership: self.data.membership.clone(),
            snapshot_id: format!("{:?}-{}", self.data.last_applied, self.seq),
        };
        self.store.save_snapshot(&meta, &bytes)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TestConfig> for TestStateMachine {
    type SnapshotBuilder = TestSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        Ok((self.data.last_applied, self.data.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<String>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TestConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        for entry in entries {
            self.data.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => out.push(String::new()),
                EntryPayload::Normal(value) => {
                    self.data.values.push(value.clone());
                    out.push(value);
                }
                EntryPayload::Membership(m) => {
                    self.data.membership = StoredMembership::new(Some(entry.log_id), m);
                    out.push(String::new());
                }
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshots_built += 1;
        TestSnapshotBuilder {
            data: self.data.clone(),
            store: self.store.clone(),
            seq: self.snapshots_built,
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let bytes = snapshot.into_inner();
        self.data = serde_json::from_slice(&bytes).map_err(sm_err)?;
        self.store.save_snapshot(meta, &bytes)
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TestConfig>>, StorageError<u64>> {
        Ok(self.store.load_snapshot()?.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

fn open_err(e: storage::StoreError) -> StorageError<u64> {
    StorageIOError::read(&e).into()
}

/// Builds a `LogStore` over a fresh `MemBackend`.
pub struct MemBuilder;

impl StoreBuilder<TestConfig, Store, TestStateMachine> for MemBuilder {
    async fn build(&self) -> Result<((), Store, TestStateMachine), StorageError<u64>> {
        let store = Store::new(Arc::new(MemBackend::new())).map_err(open_err)?;
        Ok(((), store.clone(), TestStateMachine::new(store)))
    }
}

/// Builds a sled-backed `LogStore` in a fresh temporary directory (the guard).
pub struct SledBuilder;

impl StoreBuilder<TestConfig, Store, TestStateMachine, tempfile::TempDir> for SledBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, Store, TestStateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
        let store = storage::open::<TestConfig>(dir.path()).map_err(open_err)?;
        Ok((dir, store.clone(), TestStateMachine::new(store)))
    }
}
