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
//! Must never: panic on bad stored bytes, or complete an append callback before a flush.

use std::fmt::Debug;
use std::ops::{Bound, Range, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, LogId, NodeId, OptionalSend, RaftLogId, RaftTypeConfig,
    SnapshotMeta, StorageError, StorageIOError, Vote,
};
use serde::de::DeserializeOwned;

use super::backend::{LogBackend, MetaKey};
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
        let flusher = Flusher::start(Arc::clone(&backend))?;
        let purger = Purger::start(Arc::clone(&backend))?;
        Ok(LogStore {
            inner: Arc::new(Inner {
                flusher,
                purger,
                backend,
            }),
        })
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
        self.inner.flusher.flush().await.map_err(err)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        self.read_meta(MetaKey::Vote)
            .map_err(|e| sto_err(ErrorSubject::Vote, ErrorVerb::Read, e))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<C::NodeId>>,
    ) -> Result<(), StorageError<C::NodeId>> {
        // Not flushed on its own: a lost update only means re-applying a few more entries at
        // startup. The next append or vote flush persists it.
        let err = |e| sto_err(ErrorSubject::Store, ErrorVerb::Write, e);
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
        let mut records = Vec::new();
        for entry in entries {
            let id = entry.get_log_id();
            let record = record::encode(RecordKey::Log(id.index), &entry)
                .map_err(|e| sto_err(ErrorSubject::Log(id.clone()), ErrorVerb::Write, e))?;
            records.push((id.index, record));
        }
        let err = |e| sto_err(ErrorSubject::Logs, ErrorVerb::Write, e);
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
