//! The Raft state machine: `ratequeue-core`'s `State` in memory, snapshots persisted.
//!
//! Applying an entry calls `State::apply_entry(batch.now_ms, commands)`; nothing here
//! reads a clock. The applied state is shared (behind a lock) with the HTTP layer for
//! authentication lookups and stale reads. Durability comes from the Raft log plus the
//! persisted snapshot: on start the state is restored from the snapshot and openraft
//! re-applies committed entries after it (`save_committed` is implemented by the log
//! store).
//!
//! With the leader's fsync overlapping replication (`--leader-fsync-overlap`), `apply`
//! first waits until the leader's own disk holds what it applies, or a majority did
//! without it ([`StateMachineStore::gate_on`]); a failed flush fails it. Every answer,
//! read and snapshot comes after apply, so none of them shows a commit that fewer than a
//! majority of disks hold.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder, StorageIOError};
use parking_lot::RwLock;
use ratequeue_core::{Outcome, State};

use crate::series::Series;
use crate::storage::Durability;

use super::types::{
    BatchOutcome, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

/// Where snapshots are kept durably (the log store's backend implements it).
pub trait SnapshotStore: Send + Sync + 'static {
    fn save_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError>;
    fn load_snapshot(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StorageError>;
}

/// The applied state, shared with readers.
#[derive(Debug, Default)]
pub struct Applied {
    pub state: State,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

pub type SharedApplied = Arc<RwLock<Applied>>;

/// The last snapshot built or installed, served to lagging followers.
type CurrentSnapshot = Arc<RwLock<Option<(SnapshotMeta, Arc<Vec<u8>>)>>>;

pub struct StateMachineStore {
    applied: SharedApplied,
    snapshots: Arc<dyn SnapshotStore>,
    current: CurrentSnapshot,
    /// Told about every applied grant, after the state's lock is released.
    series: Arc<Series>,
    /// With the leader's fsync overlapping replication: what apply waits for.
    gate: Option<Durability<super::types::NodeId>>,
}

fn sm_error(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(&e).into()
}

impl StateMachineStore {
    /// Restores the state from the persisted snapshot, if any.
    pub fn open(
        snapshots: Arc<dyn SnapshotStore>,
        series: Arc<Series>,
    ) -> Result<Self, StorageError> {
        let mut applied = Applied {
            state: State::new(),
            ..Applied::default()
        };
        let mut current = None;
        if let Some((meta, data)) = snapshots.load_snapshot()? {
            applied.state = State::restore(&data).map_err(sm_error)?;
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership.clone();
            current = Some((meta, Arc::new(data)));
        }
        Ok(StateMachineStore {
            applied: Arc::new(RwLock::new(applied)),
            snapshots,
            current: Arc::new(RwLock::new(current)),
            series,
            gate: None,
        })
    }

    /// Apply only what `durability` reports held by a majority of disks (the leader's
    /// fsync overlapping replication; `LogStore::overlap_leader_fsync`).
    pub fn gate_on(&mut self, durability: Durability<super::types::NodeId>) {
        self.gate = Some(durability);
    }

    pub fn applied(&self) -> SharedApplied {
        self.applied.clone()
    }

    /// Metadata of the current snapshot, for status reports.
    pub fn snapshot_handle(&self) -> SnapshotHandle {
        SnapshotHandle(self.current.clone())
    }
}

/// Read access to the current snapshot's metadata.
#[derive(Clone)]
pub struct SnapshotHandle(CurrentSnapshot);

impl SnapshotHandle {
    pub fn meta(&self) -> Option<SnapshotMeta> {
        self.0.read().as_ref().map(|(m, _)| m.clone())
    }
}

/// Builds one snapshot from a frozen copy of the applied state.
///
/// The copy is taken when openraft asks for the builder, on the state-machine worker
/// between two applies: `State`'s tables are persistent maps, so the copy is O(1) and
/// apply never waits for a snapshot (it only copies, later, the few tree nodes it
/// writes while the snapshot still shares them). Serialising and saving run on a
/// blocking thread with no lock held.
pub struct SnapshotBuilder {
    frozen: Applied,
    snapshots: Arc<dyn SnapshotStore>,
    current: CurrentSnapshot,
}

/// Serialises `state` on a thread of its own at the lowest CPU priority (nice 19).
///
/// Serialising holds no lock (the state is a frozen copy), so only the CPU it takes
/// can slow the request path, and at normal priority it did: on a busy machine the
/// 60-110 ms of CPU each took showed as extra latency on every request in flight
/// (docs/benchmarks.md). At nice 19 it runs on whatever the request path leaves; it
/// still gets a small share of a saturated CPU, so it always ends. The save (the
/// snapshot file's write and fsync) stays at normal priority, so that a snapshot is
/// never held half-written for long.
async fn serialise_at_low_priority(state: State) -> Result<Vec<u8>, StorageError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("rq-snapshot".to_string())
        .spawn(move || {
            if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19)
            {
                tracing::debug!(error = %e, "snapshot thread keeps normal priority");
            }
            let _ = tx.send(state.snapshot());
        })
        .map_err(sm_error)?;
    rx.await.map_err(sm_error)
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let frozen = std::mem::take(&mut self.frozen);
        let last_log_id = frozen.last_applied;
        let membership = frozen.membership.clone();
        let started = std::time::Instant::now();
        let data = serialise_at_low_priority(frozen.state).await?;
        let serialised = started.elapsed();
        let snapshot_id = match last_log_id {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, data.len()),
            None => format!("0-0-{}", data.len()),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership: membership,
            snapshot_id,
        };
        let snapshots = self.snapshots.clone();
        let data = Arc::new(data);
        let (m, d) = (meta.clone(), data.clone());
        tokio::task::spawn_blocking(move || snapshots.save_snapshot(&m, &d))
            .await
            .map_err(sm_error)??;
        tracing::info!(
            snapshot = %meta.snapshot_id,
            bytes = data.len(),
            serialise_ms = serialised.as_millis() as u64,
            save_ms = (started.elapsed() - serialised).as_millis() as u64,
            "snapshot built"
        );
        *self.current.write() = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data.to_vec())),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let a = self.applied.read();
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchOutcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        if let (Some(gate), Some(last)) = (&self.gate, entries.last()) {
            gate.wait_durable(&last.log_id).await.map_err(|reason| {
                StorageIOError::write_logs(AnyError::error(format!("log flush: {reason}")))
            })?;
        }
        let mut a = self.applied.write();
        let mut out = Vec::new();
        for entry in entries {
            tracing::debug!(index = entry.log_id.index, "apply");
            a.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => out.push(BatchOutcome::default()),
                EntryPayload::Normal(batch) => {
                    out.push(BatchOutcome(
                        a.state.apply_entry(batch.now_ms, &batch.commands),
                    ));
                }
                EntryPayload::Membership(m) => {
                    a.membership = StoredMembership::new(Some(entry.log_id), m);
                    out.push(BatchOutcome::default());
                }
            }
        }
        drop(a);
        self.series
            .applied_grants(out.iter().flat_map(|o| &o.0).filter_map(|o| match o {
                Outcome::Granted {
                    lease,
                    duplicate: false,
                    ..
                } => Some((lease.resource.as_str(), lease.load)),
                _ => None,
            }));
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        let frozen = {
            let a = self.applied.read();
            Applied {
                state: a.state.clone(),
                last_applied: a.last_applied,
                membership: a.membership.clone(),
            }
        };
        SnapshotBuilder {
            frozen,
            snapshots: self.snapshots.clone(),
            current: self.current.clone(),
        }
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
        let state = State::restore(&data).map_err(sm_error)?;
        self.snapshots.save_snapshot(meta, &data)?;
        {
            let mut a = self.applied.write();
            a.state = state;
            a.last_applied = meta.last_log_id;
            a.membership = meta.last_membership.clone();
        }
        tracing::info!(snapshot = %meta.snapshot_id, bytes = data.len(), "snapshot installed");
        *self.current.write() = Some((meta.clone(), Arc::new(data)));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.current.read().as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(data.to_vec())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt as _;
    use openraft::{CommittedLeaderId, Entry as RaftEntry};
    use ratequeue_core::Command;

    use super::*;
    use crate::raft::types::Batch;

    /// Snapshots kept in memory.
    #[derive(Default)]
    struct NoSnapshots;

    impl SnapshotStore for NoSnapshots {
        fn save_snapshot(&self, _: &SnapshotMeta, _: &[u8]) -> Result<(), StorageError> {
            Ok(())
        }
        fn load_snapshot(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StorageError> {
            Ok(None)
        }
    }

    fn log_id(term: u64, index: u64) -> LogId {
        openraft::LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn entry(term: u64, index: u64) -> Entry {
        RaftEntry {
            log_id: log_id(term, index),
            payload: EntryPayload::Normal(Batch {
                now_ms: 1_000 + index,
                commands: vec![Command::DeleteResource {
                    name: format!("r{index}"),
                }],
            }),
        }
    }

    fn gated() -> (StateMachineStore, Durability<u64>) {
        let mut sm =
            StateMachineStore::open(Arc::new(NoSnapshots), Arc::new(Series::default())).unwrap();
        let durability = Durability::new();
        sm.gate_on(durability.clone());
        (sm, durability)
    }

    #[tokio::test]
    async fn apply_waits_for_the_leaders_own_flush() {
        let (mut sm, durability) = gated();
        let applied = sm.applied();
        // Not acknowledged early: applied at once.
        assert!(sm.apply([entry(2, 1)]).now_or_never().unwrap().is_ok());
        durability.acknowledged_early(&log_id(2, 3));
        let task = tokio::spawn(async move { sm.apply([entry(2, 2), entry(2, 3)]).await });
        tokio::task::yield_now().await;
        assert!(!task.is_finished(), "applied before the leader's fsync");
        assert_eq!(applied.read().last_applied, Some(log_id(2, 1)));
        durability.flushed(&log_id(2, 3));
        let out = task.await.unwrap().unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(applied.read().last_applied, Some(log_id(2, 3)));
    }

    #[tokio::test]
    async fn a_failed_flush_fails_apply() {
        let (mut sm, durability) = gated();
        let applied = sm.applied();
        durability.acknowledged_early(&log_id(2, 1));
        let task = tokio::spawn(async move { sm.apply([entry(2, 1)]).await });
        tokio::task::yield_now().await;
        assert!(!task.is_finished());
        durability.failed("Input/output error (os error 5)");
        let err = task.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("os error 5"), "{err}");
        assert_eq!(applied.read().last_applied, None, "nothing applied");
    }
}
