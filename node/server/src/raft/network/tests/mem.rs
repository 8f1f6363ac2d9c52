//! A minimal in-memory log store and state machine, only for the transport tests: the
//! state machine records every applied `Batch`, so replicas can be compared, and counts
//! the snapshots it installed.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftLogReader, RaftSnapshotBuilder, StorageIOError, Vote};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::raft::types::{
    Batch, BatchOutcome, Entry, LogId, NodeId, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};

#[derive(Clone, Default)]
pub struct MemLog(Arc<Mutex<LogInner>>);

#[derive(Default)]
struct LogInner {
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
    log: BTreeMap<u64, Entry>,
}

impl RaftLogReader<TypeConfig> for MemLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self
            .0
            .lock()
            .log
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for MemLog {
    type LogReader = MemLog;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let g = self.0.lock();
        let last = g
            .log
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(g.last_purged);
        Ok(LogState {
            last_purged_log_id: g.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> MemLog {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.0.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        Ok(self.0.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.0.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.0.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        {
            let mut g = self.0.lock();
            for e in entries {
                g.log.insert(e.log_id.index, e);
            }
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.0.lock().log.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut g = self.0.lock();
        g.last_purged = Some(log_id);
        g.log = g.log.split_off(&(log_id.index + 1));
        Ok(())
    }
}

#[derive(Clone, Default)]
pub struct MemSm(Arc<Mutex<SmInner>>);

#[derive(Default)]
struct SmInner {
    image: Image,
    current: Option<(SnapshotMeta, Vec<u8>)>,
    snapshots_built: u64,
    snapshots_installed: u64,
}

/// What a snapshot holds.
#[derive(Clone, Default, Serialize, Deserialize)]
struct Image {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    batches: Vec<Batch>,
}

fn io_error(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(&e).into()
}

impl MemSm {
    pub fn batches(&self) -> Vec<Batch> {
        self.0.lock().image.batches.clone()
    }

    pub fn snapshots_installed(&self) -> u64 {
        self.0.lock().snapshots_installed
    }
}

impl RaftSnapshotBuilder<TypeConfig> for MemSm {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let mut g = self.0.lock();
        let data = serde_json::to_vec(&g.image).map_err(io_error)?;
        g.snapshots_built += 1;
        let meta = SnapshotMeta {
            last_log_id: g.image.last_applied,
            last_membership: g.image.membership.clone(),
            snapshot_id: format!(
                "{:?}-{}",
                g.image.last_applied.map(|l| l.index),
                g.snapshots_built
            ),
        };
        g.current = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for MemSm {
    type SnapshotBuilder = MemSm;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let g = self.0.lock();
        Ok((g.image.last_applied, g.image.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchOutcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut g = self.0.lock();
        let mut out = Vec::new();
        for entry in entries {
            g.image.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(batch) => g.image.batches.push(batch),
                EntryPayload::Membership(m) => {
                    g.image.membership = StoredMembership::new(Some(entry.log_id), m);
                }
            }
            out.push(BatchOutcome::default());
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> MemSm {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let image: Image = serde_json::from_slice(&data).map_err(io_error)?;
        let mut g = self.0.lock();
        g.image = image;
        g.current = Some((meta.clone(), data));
        g.snapshots_installed += 1;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.0.lock().current.as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(data.clone())),
        }))
    }
}
