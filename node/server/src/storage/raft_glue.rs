//! Adapter: the state-machine store (`raft::state_machine`) persists its snapshots in the
//! log store's backend, next to the log, through its `SnapshotStore` trait.
//!
//! Only forwarding lives here; the format and atomicity are `LogStore::save_snapshot`'s.

use crate::raft::state_machine::SnapshotStore;
use crate::raft::types::{SnapshotMeta, StorageError, TypeConfig};

use super::LogStore;

impl SnapshotStore for LogStore<TypeConfig> {
    fn save_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        LogStore::save_snapshot(self, meta, data)
    }

    fn load_snapshot(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StorageError> {
        LogStore::load_snapshot(self)
    }
}
