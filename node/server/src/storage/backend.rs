//! The project's own storage trait: what the Raft log store needs from a key-value engine.
//!
//! A backend stores opaque, already framed records (see `record.rs`) and never interprets
//! them: log records keyed by Raft index, three metadata records, and one snapshot (meta +
//! data). It owns durability ordering (a purge persists `last_purged` before deleting, a
//! snapshot is replaced atomically) but knows nothing about openraft types. sled is one
//! implementation (`SledBackend`); `MemBackend` is another for fast tests. Keeping sled behind
//! this trait is what lets us replace it (see the sled caveats in the design notes).

use std::ops::Range;

use super::error::{RecordKey, StoreError};

/// The three single-value metadata records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetaKey {
    /// The last saved vote. Must be durable before `save_vote` returns.
    Vote,
    /// The last saved committed log id (may lag; losing it only means re-applying more).
    Committed,
    /// The id of the last purged entry; persisted before entries are deleted.
    LastPurged,
}

impl MetaKey {
    /// Every metadata key, for validation.
    pub const ALL: [MetaKey; 3] = [MetaKey::Vote, MetaKey::Committed, MetaKey::LastPurged];

    /// The key bytes used by on-disk backends.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            MetaKey::Vote => b"vote",
            MetaKey::Committed => b"committed",
            MetaKey::LastPurged => b"last_purged",
        }
    }

    /// The record name used in error messages.
    pub fn record_key(self) -> RecordKey {
        match self {
            MetaKey::Vote => RecordKey::Vote,
            MetaKey::Committed => RecordKey::Committed,
            MetaKey::LastPurged => RecordKey::LastPurged,
        }
    }
}

/// One log record: `(index, framed record)`.
pub type LogRecord = (u64, Vec<u8>);

/// The snapshot's two records: `(framed meta, framed data)`.
pub type SnapshotRecords = (Vec<u8>, Vec<u8>);

/// A visitor over log records, in index order: `(index, framed record)`.
pub type LogVisitor<'a> = &'a mut dyn FnMut(u64, &[u8]) -> Result<(), StoreError>;

/// A key-value engine holding the Raft log, vote, committed id, last purged id and snapshot.
///
/// All methods are synchronous and may block on I/O; the async log store decides which of
/// them run on a blocking thread. Writes become visible to readers when the call returns and
/// durable only after a later [`LogBackend::flush`] (unless documented otherwise).
pub trait LogBackend: Send + Sync + 'static {
    /// Insert (or overwrite) log records keyed by index, atomically if the engine allows.
    fn append(&self, records: Vec<LogRecord>) -> Result<(), StoreError>;

    /// Visit the log records whose index is in `range`, in ascending order.
    fn scan(&self, range: Range<u64>, visit: LogVisitor<'_>) -> Result<(), StoreError>;

    /// The record with the lowest index, if any.
    fn first(&self) -> Result<Option<LogRecord>, StoreError>;

    /// The record with the highest index, if any.
    fn last(&self) -> Result<Option<LogRecord>, StoreError>;

    /// Delete every log record with index `>= index` (conflicting entries).
    fn truncate_from(&self, index: u64) -> Result<(), StoreError>;

    /// Purge every log record with index `<= upto`: first write `last_purged` and make it
    /// durable, then delete. A crash between the two leaves records at or below `upto`, which
    /// the log store removes on open.
    fn purge(&self, upto: u64, last_purged: Vec<u8>) -> Result<(), StoreError>;

    /// Write one metadata record.
    fn put_meta(&self, key: MetaKey, record: Vec<u8>) -> Result<(), StoreError>;

    /// Read one metadata record.
    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError>;

    /// Replace the current snapshot (meta and data together, atomically) and make it durable.
    fn save_snapshot(&self, meta: Vec<u8>, data: Vec<u8>) -> Result<(), StoreError>;

    /// The current snapshot as `(meta record, data record)`.
    fn load_snapshot(&self) -> Result<Option<SnapshotRecords>, StoreError>;

    /// Make every write issued before this call durable (fsync).
    fn flush(&self) -> Result<(), StoreError>;

    /// Bytes used on disk (or in memory, for an in-memory backend), for status reporting.
    fn size_on_disk(&self) -> Result<u64, StoreError>;

    /// Read the log records in `range` into a vector (convenience over [`LogBackend::scan`]).
    fn read_range(&self, range: Range<u64>) -> Result<Vec<LogRecord>, StoreError> {
        let mut out = Vec::new();
        self.scan(range, &mut |index, record| {
            out.push((index, record.to_vec()));
            Ok(())
        })?;
        Ok(out)
    }
}
