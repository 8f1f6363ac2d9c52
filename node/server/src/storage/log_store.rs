//! [`LogStore`]: openraft 0.9 storage-v2 `RaftLogStorage` / `RaftLogReader` over any
//! [`LogBackend`], plus the snapshot slot the state-machine store persists into.
//!
//! Contract kept here (openraft `storage/v2.rs`, design notes):
//! - `append`: entries are written to the backend before it returns (readable at once); its
//!   callback is completed by the flush thread only after `backend.flush()` (fsync).
//! - `save_vote` returns only after the vote is durable. Log and vote writes are issued in
//!   call order and one flush persists everything before it, so they are never reordered.
//! - `purge` records `last_purged` at once and hands the deletion to the purge thread
//!   (`purger.rs`), which persists `last_purged` before deleting; `open` finishes an
//!   interrupted purge. openraft awaits `purge` on its core task: it must not delete there.
//! - `save_committed` / `read_committed` are implemented, so `Raft::new` re-applies committed
//!   entries into the in-memory state machine at startup.
//! - Every error becomes an openraft `StorageError`, which stops this node's Raft for good.
//!
//! With the leader's fsync overlapping replication ([`LogStore::overlap_leader_fsync`],
//! `--leader-fsync-overlap`, off by default) three things differ, and only then:
//! - `append` completes the callback before the fsync for an append the current leader
//!   makes in its own term (its vote is committed and its own, every entry carries that
//!   leader id, none is a membership entry), after registering it with the
//!   [`Durability`]; the flush thread marks it durable. Every other append is as above.
//! - `save_committed` persists the commit capped at the leader's durable prefix.
//! - `read_vote` reads this node's own committed vote back uncommitted, so a restarted
//!   leader (which may have lost an unflushed tail its followers hold) does not resume its
//!   term: it restarts as a follower and a new election truncates what it lost.
//!
//! Must never: panic on bad stored bytes, or complete an append callback before a flush
//! (except the leader's own appends above, with the overlap on).

use std::fmt::Debug;
use std::ops::{Bound, Range, RangeBounds};
use std::sync::{Arc, OnceLock};

use openraft::entry::RaftPayload;
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, LogId, NodeId, OptionalSend, RaftLogId, RaftTypeConfig,
    SnapshotMeta, StorageError, StorageIOError, Vote,
};
use serde::de::DeserializeOwned;

use super::backend::{LogBackend, MetaKey};
use super::durability::Durability;
use super::error::{RecordKey, StoreError};
use super::flusher::Flusher;
use super::purger::Purger;
use super::record::{self, RECORD_HEADER_LEN};

/// The Raft log store. Cheap to clone (one `Arc`); clones share the backend and flush thread.
/// The backend is released (and sled's lock with it) when the last clone is dropped.
pub struct LogStore<C: RaftTypeConfig> {
    inner: Arc<Inner<C>>,
}

struct Inner<C: RaftTypeConfig> {
    // Declared first so they are dropped (threads joined) before the backend below.
    flusher: Flusher<C>,
    purger: Purger,
    backend: Arc<dyn LogBackend>,
    /// Set once by [`LogStore::overlap_leader_fsync`], before Raft starts.
    overlap: OnceLock<Overlap<C>>,
    /// The overlap's durable prefix, shared with the flush thread.
    durability: Arc<OnceLock<Durability<C::NodeId>>>,
}

/// The leader's fsync overlapping replication: who this node is and its current vote.
struct Overlap<C: RaftTypeConfig> {
    id: C::NodeId,
    /// The vote openraft holds: the one `read_vote` returned, then each `save_vote`.
    vote: parking_lot::Mutex<Option<Vote<C::NodeId>>>,
}

impl<C: RaftTypeConfig> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C: RaftTypeConfig> Debug for LogStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

/// What `open` found in the store; logged at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSummary<NID: NodeId> {
    /// Number of log entries present.
    pub entries: u64,
    /// First and last present entry.
    pub first_log_id: Option<LogId<NID>>,
    pub last_log_id: Option<LogId<NID>>,
    pub last_purged_log_id: Option<LogId<NID>>,
    pub vote: Option<Vote<NID>>,
    pub committed: Option<LogId<NID>>,
    /// The last log id covered by the stored snapshot, if there is a snapshot.
    pub snapshot_last_log_id: Option<Option<LogId<NID>>>,
}

impl<C: RaftTypeConfig> LogStore<C> {
    /// Validate every record in `backend` (checksums, decoding, log contiguity), finish an
    /// interrupted purge, and start the flush thread.
    ///
    /// Corruption is reported as a [`StoreError`] naming the record, never a panic.
    pub fn new(backend: Arc<dyn LogBackend>) -> Result<Self, StoreError> {
        let summary = validate::<C>(backend.as_ref())?;
        tracing::info!(
            entries = summary.entries,
            first = ?summary.first_log_id,
            last = ?summary.last_log_id,
            last_purged = ?summary.last_purged_log_id,
            vote = ?summary.vote,
            committed = ?summary.committed,
            snapshot = ?summary.snapshot_last_log_id,
            "raft log store opened"
        );
        let durability = Arc::new(OnceLock::new());
        let flusher = Flusher::start(Arc::clone(&backend), Arc::clone(&durability))?;
        let purger = Purger::start(Arc::clone(&backend))?;
        Ok(LogStore {
            inner: Arc::new(Inner {
                flusher,
                purger,
                backend,
                overlap: OnceLock::new(),
                durability,
            }),
        })
    }

    /// Let the leader's own fsync overlap replication (`--leader-fsync-overlap`): from
    /// now on the leader `id`'s own appends are acknowledged before their fsync, and the
    /// returned [`Durability`] is what the state machine's apply and the network's commit
    /// index must wait for. Call it once, before `Raft::new` (which reads the vote).
    pub fn overlap_leader_fsync(&self, id: C::NodeId) -> Result<Durability<C::NodeId>, StoreError> {
        let taken = || StoreError::Flush {
            reason: "the leader's fsync overlap is already on".to_string(),
        };
        self.inner
            .overlap
            .set(Overlap {
                id,
                vote: parking_lot::Mutex::new(None),
            })
            .map_err(|_| taken())?;
        let durability = Durability::new();
        self.inner
            .durability
            .set(durability.clone())
            .map_err(|_| taken())?;
        tracing::info!("the leader's own fsync overlaps replication (--leader-fsync-overlap)");
        Ok(durability)
    }

    /// Whether an append of entries with these log ids (`membership`: one of them is a
    /// membership entry) is the current leader's own in its own term, to be acknowledged
    /// before its fsync. Always false without the overlap.
    fn acknowledge_early(&self, ids: &[LogId<C::NodeId>], membership: bool) -> bool {
        let Some(overlap) = self.inner.overlap.get() else {
            return false;
        };
        if membership || ids.is_empty() {
            return false;
        }
        let vote = overlap.vote.lock();
        let Some(vote) = vote.as_ref() else {
            return false;
        };
        vote.is_committed()
            && vote.leader_id().voted_for().as_ref() == Some(&overlap.id)
            && ids.iter().all(|id| id.leader_id == *vote.leader_id())
    }

    /// Check every record without opening a store (used by `new`; exposed for `status`-like
    /// tools and tests).
    pub fn validate(backend: &dyn LogBackend) -> Result<OpenSummary<C::NodeId>, StoreError> {
        validate::<C>(backend)
    }

    /// The backend, for status and tests.
    pub fn backend(&self) -> &Arc<dyn LogBackend> {
        &self.inner.backend
    }

    /// Bytes used by the store on disk, for `/v1/cluster/status`.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.inner.backend.size_on_disk()
    }

    /// Wait until every write issued so far, purges included, is durable (graceful
    /// shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.inner.purger.drain().await?;
        self.inner.flusher.flush().await
    }

    /// Replace the stored snapshot (meta and data atomically) and make it durable before
    /// returning. For the state-machine store's `build_snapshot` / `install_snapshot`.
    ///
    /// Blocking (it fsyncs, and a snapshot may be large): call it from `spawn_blocking` or at
    /// startup, not on an async worker in a hot path.
    #[allow(clippy::result_large_err)] // openraft's StorageError, what the SM store returns
    pub fn save_snapshot(
        &self,
        meta: &SnapshotMeta<C::NodeId, C::Node>,
        data: &[u8],
    ) -> Result<(), StorageError<C::NodeId>> {
        let err = |e| {
            sto_err(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
                e,
            )
        };
        let meta_record = record::encode(RecordKey::SnapshotMeta, meta).map_err(err)?;
        let data_record = record::frame_bytes(data);
        self.inner
            .backend
            .save_snapshot(meta_record, data_record)
            .map_err(err)
    }

    /// The stored snapshot, checked against its checksums. Blocking, like `save_snapshot`.
    #[allow(clippy::type_complexity, clippy::result_large_err)]
    pub fn load_snapshot(
        &self,
    ) -> Result<Option<(SnapshotMeta<C::NodeId, C::Node>, Vec<u8>)>, StorageError<C::NodeId>> {
        let load = || -> Result<_, StoreError> {
            let Some((meta_record, mut data_record)) = self.inner.backend.load_snapshot()? else {
                return Ok(None);
            };
            let meta: SnapshotMeta<C::NodeId, C::Node> =
                record::decode(RecordKey::SnapshotMeta, &meta_record)?;
            record::payload(RecordKey::SnapshotData, &data_record)?;
            data_record.drain(..RECORD_HEADER_LEN);
            Ok(Some((meta, data_record)))
        };
        load().map_err(|e| sto_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))
    }

    fn read_meta<T: DeserializeOwned>(&self, key: MetaKey) -> Result<Option<T>, StoreError> {
        read_meta(self.inner.backend.as_ref(), key)
    }
}

fn read_meta<T: DeserializeOwned>(
    backend: &dyn LogBackend,
    key: MetaKey,
) -> Result<Option<T>, StoreError> {
    backend
        .get_meta(key)?
        .map(|r| record::decode(key.record_key(), &r))
        .transpose()
}

fn decode_entry<C: RaftTypeConfig>(index: u64, record: &[u8]) -> Result<C::Entry, StoreError> {
    let entry: C::Entry = record::decode(RecordKey::Log(index), record)?;
    let found = entry.get_log_id().index;
    if found != index {
        return Err(StoreError::IndexMismatch {
            key: RecordKey::Log(index),
            found,
        });
    }
    Ok(entry)
}

fn validate<C: RaftTypeConfig>(
    backend: &dyn LogBackend,
) -> Result<OpenSummary<C::NodeId>, StoreError> {
    let vote: Option<Vote<C::NodeId>> = read_meta(backend, MetaKey::Vote)?;
    let committed: Option<Option<LogId<C::NodeId>>> = read_meta(backend, MetaKey::Committed)?;
    let last_purged: Option<LogId<C::NodeId>> = read_meta(backend, MetaKey::LastPurged)?;

    let snapshot_last_log_id = match backend.load_snapshot()? {
        None => None,
        Some((meta, data)) => {
            let meta: SnapshotMeta<C::NodeId, C::Node> =
                record::decode(RecordKey::SnapshotMeta, &meta)?;
            record::payload(RecordKey::SnapshotData, &data)?;
            Some(meta.last_log_id)
        }
    };

    // A crash between persisting `last_purged` and deleting leaves purged entries behind.
    if let Some(purged) = &last_purged {
        if let Some((first, _)) = backend.first()? {
            if first <= purged.index {
                tracing::info!(
                    first,
                    upto = purged.index,
                    "finishing an interrupted log purge"
                );
                let record = record::encode(RecordKey::LastPurged, purged)?;
                backend.purge(purged.index, record)?;
            }
        }
    }

    let mut entries = 0u64;
    let mut first: Option<LogId<C::NodeId>> = None;
    let mut prev: Option<LogId<C::NodeId>> = None;
    backend.scan(0..u64::MAX, &mut |index, record| {
        let entry = decode_entry::<C>(index, record)?;
        let id = entry.get_log_id().clone();
        match &prev {
            None => {
                if let Some(purged) = &last_purged {
                    if index != purged.index + 1 {
                        return Err(StoreError::LogInconsistent {
                            reason: format!(
                                "first entry is log[{index}] but entries up to {} were purged \
                                 (missing log[{}..{index}])",
                                purged.index,
                                purged.index + 1
                            ),
                        });
                    }
                }
                first = Some(id.clone());
            }
            Some(p) => {
                if index != p.index + 1 {
                    return Err(StoreError::LogInconsistent {
                        reason: format!(
                            "hole between log[{}] and log[{index}] (missing log[{}..{index}])",
                            p.index,
                            p.index + 1
                        ),
                    });
                }
                if id.leader_id < p.leader_id {
                    return Err(StoreError::LogInconsistent {
                        reason: format!(
                            "term goes backwards at log[{index}]: {} after {}",
                            id.leader_id, p.leader_id
                        ),
                    });
                }
            }
        }
        entries += 1;
        prev = Some(id);
        Ok(())
    })?;

    Ok(OpenSummary {
        entries,
        first_log_id: first,
        last_log_id: prev,
        last_purged_log_id: last_purged,
        vote,
        committed: committed.flatten(),
        snapshot_last_log_id,
    })
}

/// Turn a storage-layer error into openraft's (fatal to the node).
pub fn to_storage_error<NID: NodeId>(
    subject: ErrorSubject<NID>,
    verb: ErrorVerb,
    error: StoreError,
) -> StorageError<NID> {
    StorageIOError::new(subject, verb, AnyError::new(&error)).into()
}

use to_storage_error as sto_err;

fn to_range(range: &impl RangeBounds<u64>) -> Range<u64> {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    start..end
}

impl<C: RaftTypeConfig> RaftLogReader<C> for LogStore<C> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        let mut out = Vec::new();
        self.inner
            .backend
            .scan(to_range(&range), &mut |index, record| {
                out.push(decode_entry::<C>(index, record)?);
                Ok(())
            })
            .map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        Ok(out)
    }
}

impl<C: RaftTypeConfig> RaftLogStorage<C> for LogStore<C> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        let read_err = |e| sto_err(ErrorSubject::Logs, ErrorVerb::Read, e);
        let last_purged_log_id: Option<LogId<C::NodeId>> =
            self.read_meta(MetaKey::LastPurged).map_err(read_err)?;
        let last_present = match self.inner.backend.last().map_err(read_err)? {
            Some((index, record)) => Some(
                decode_entry::<C>(index, &record)
                    .map_err(read_err)?
                    .get_log_id()
                    .clone(),
            ),
            None => None,
        };
        // Option orders None first, so this is "the last present entry, else last purged".
        let last_log_id = std::cmp::max(last_present, last_purged_log_id.clone());
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let err = |e| sto_err(ErrorSubject::Vote, ErrorVerb::Write, e);
        let record = record::encode(RecordKey::Vote, vote).map_err(err)?;
        self.inner
            .backend
            .put_meta(MetaKey::Vote, record)
            .map_err(err)?;
        self.inner.flusher.flush().await.map_err(err)?;
        if let Some(overlap) = self.inner.overlap.get() {
            *overlap.vote.lock() = Some(vote.clone());
        }
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        let vote: Option<Vote<C::NodeId>> = self
            .read_meta(MetaKey::Vote)
            .map_err(|e| sto_err(ErrorSubject::Vote, ErrorVerb::Read, e))?;
        let Some(overlap) = self.inner.overlap.get() else {
            return Ok(vote);
        };
        // A leader's own appends were acknowledged before their fsync, so after a crash
        // this node may lack entries its followers hold under its term. Resuming that term
        // would write different entries under the same log ids: read the vote back
        // uncommitted (the same term, so the vote never goes backwards). The node then
        // starts as a follower; it can lead again only after an election, under a higher
        // term, whose first entry truncates what it lost wherever it differs.
        let vote = vote.map(|v| {
            if v.is_committed() && v.leader_id().voted_for().as_ref() == Some(&overlap.id) {
                tracing::info!(vote = %v, "this node led before it stopped: restarting as a follower");
                Vote::new(v.leader_id().term, overlap.id.clone())
            } else {
                v
            }
        });
        *overlap.vote.lock() = vote.clone();
        Ok(vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<C::NodeId>>,
    ) -> Result<(), StorageError<C::NodeId>> {
        // Not flushed on its own: a lost update only means re-applying a few more entries at
        // startup. The next append or vote flush persists it.
        let err = |e| sto_err(ErrorSubject::Store, ErrorVerb::Write, e);
        // With the overlap on, never persist a commit the leader's own disk may lack.
        let committed = match self.inner.durability.get() {
            Some(durability) => durability.cap_commit(committed),
            None => committed,
        };
        let record = record::encode(RecordKey::Committed, &committed).map_err(err)?;
        self.inner
            .backend
            .put_meta(MetaKey::Committed, record)
            .map_err(err)
    }

    async fn read_committed(
        &mut self,
    ) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        let committed: Option<Option<LogId<C::NodeId>>> = self
            .read_meta(MetaKey::Committed)
            .map_err(|e| sto_err(ErrorSubject::Store, ErrorVerb::Read, e))?;
        Ok(committed.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let overlap = self.inner.overlap.get().is_some();
        let mut records = Vec::new();
        let mut ids = Vec::new();
        let mut membership = false;
        for entry in entries {
            let id = entry.get_log_id();
            let record = record::encode(RecordKey::Log(id.index), &entry)
                .map_err(|e| sto_err(ErrorSubject::Log(id.clone()), ErrorVerb::Write, e))?;
            records.push((id.index, record));
            if overlap {
                ids.push(id.clone());
                membership |= entry.get_membership().is_some();
            }
        }
        let err = |e| sto_err(ErrorSubject::Logs, ErrorVerb::Write, e);
        if let (Some(durability), Some(last), true) = (
            self.inner.durability.get(),
            ids.last(),
            self.acknowledge_early(&ids, membership),
        ) {
            // The leader's own append: acknowledged now, durable after the next flush;
            // every effect of its commit waits for that (`Durability`).
            if let Some(reason) = durability.failure() {
                return Err(err(StoreError::Flush {
                    reason: format!("an earlier flush failed: {reason}"),
                }));
            }
            tracing::debug!(
                first = ids[0].index,
                last = last.index,
                "log append (acknowledged before its fsync)"
            );
            self.inner.backend.append(records).map_err(err)?;
            durability.acknowledged_early(last);
            self.inner
                .flusher
                .mark_after_flush(last.clone())
                .map_err(err)?;
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        if let (Some(first), Some(last)) = (records.first(), records.last()) {
            tracing::debug!(first = first.0, last = last.0, "log append");
            self.inner.backend.append(records).map_err(err)?;
        }
        self.inner
            .flusher
            .complete_after_flush(callback)
            .map_err(err)
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        // Not flushed on its own: a crash before the next flush brings the conflicting
        // entries back, which is the same as crashing before the truncate (nothing about them
        // was acknowledged). The append that follows a truncate flushes both, in order.
        self.inner
            .backend
            .truncate_from(log_id.index)
            .map_err(|e| sto_err(ErrorSubject::Log(log_id), ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let err = |e| sto_err(ErrorSubject::Log(log_id.clone()), ErrorVerb::Delete, e);
        let record = record::encode(RecordKey::LastPurged, &log_id).map_err(err)?;
        // Visible to `get_log_state` at once; durable before the purge thread deletes.
        self.inner
            .backend
            .put_meta(MetaKey::LastPurged, record.clone())
            .map_err(err)?;
        self.inner.purger.purge(log_id.index, record).map_err(err)
    }
}
