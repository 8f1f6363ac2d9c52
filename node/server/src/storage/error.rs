//! The storage layer's own error type, and the name of every persisted record.
//!
//! Every variant that concerns one record names it (`log[42]`, `vote`, `snapshot.data`), so a
//! corrupt store is reported at startup with the key to look at instead of a panic loop.
//! Conversion into openraft's `StorageError` lives in `log_store.rs`: there a storage error is
//! fatal to the node, as intended.

use std::fmt;

/// The name of one persisted record, used in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKey {
    /// A log entry, by its Raft log index.
    Log(u64),
    /// The last saved vote.
    Vote,
    /// The last saved committed log id.
    Committed,
    /// The id of the last purged log entry.
    LastPurged,
    /// The metadata of the current snapshot.
    SnapshotMeta,
    /// The bytes of the current snapshot.
    SnapshotData,
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordKey::Log(index) => write!(f, "log[{index}]"),
            RecordKey::Vote => f.write_str("vote"),
            RecordKey::Committed => f.write_str("committed"),
            RecordKey::LastPurged => f.write_str("last_purged"),
            RecordKey::SnapshotMeta => f.write_str("snapshot.meta"),
            RecordKey::SnapshotData => f.write_str("snapshot.data"),
        }
    }
}

/// Everything that can go wrong below the Raft log store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled itself failed (I/O error, corrupt sled file, unsupported sled version).
    #[error("sled {op} failed: {source}")]
    Sled {
        op: &'static str,
        #[source]
        source: sled::Error,
    },

    /// A file the store keeps beside sled (the snapshot) could not be read or written.
    #[error("{op} failed: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// A record is shorter than its header.
    #[error("corrupt record {key}: {len} bytes, shorter than the 5-byte record header")]
    Truncated { key: RecordKey, len: usize },

    /// A record was written by an unknown format version.
    #[error("record {key} has format version {found}, this build reads version {expected} (written by another build, or corrupt; see docs/operations.md, \"Upgrading\")")]
    Version {
        key: RecordKey,
        found: u8,
        expected: u8,
    },

    /// A record's checksum does not match its payload.
    #[error("corrupt record {key}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        key: RecordKey,
        stored: u32,
        computed: u32,
    },

    /// A record's payload passed its checksum but does not decode (or has trailing bytes).
    #[error("corrupt record {key}: cannot decode payload: {reason}")]
    Decode { key: RecordKey, reason: String },

    /// A value could not be encoded (a bug in a type's `Serialize`, never expected).
    #[error("cannot encode record {key}: {reason}")]
    Encode { key: RecordKey, reason: String },

    /// A log entry is stored under a key that differs from its own log index.
    #[error("corrupt record {key}: it holds the entry with log index {found}")]
    IndexMismatch { key: RecordKey, found: u64 },

    /// The log has a hole, starts after a gap from the purged prefix, or its terms go
    /// backwards.
    #[error("corrupt log: {reason}")]
    LogInconsistent { reason: String },

    /// A key in the log tree is not an 8-byte big-endian index.
    #[error("corrupt log: key of {len} bytes in the log tree, expected 8")]
    BadLogKey { len: usize },

    /// The background flush thread is gone, or an earlier fsync failed (the store is then
    /// poisoned: after a failed fsync nothing written since the last good one can be trusted).
    #[error("flush failed: {reason}")]
    Flush { reason: String },

    /// A blocking storage task panicked or was cancelled.
    #[error("storage task failed: {reason}")]
    Task { reason: String },
}

impl StoreError {
    /// Whether this error means the stored data is damaged (as opposed to an I/O failure).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            StoreError::Truncated { .. }
                | StoreError::Version { .. }
                | StoreError::Checksum { .. }
                | StoreError::Decode { .. }
                | StoreError::IndexMismatch { .. }
                | StoreError::LogInconsistent { .. }
                | StoreError::BadLogKey { .. }
        )
    }

    /// The record this error is about, if it is about one record.
    pub fn record(&self) -> Option<RecordKey> {
        match self {
            StoreError::Truncated { key, .. }
            | StoreError::Version { key, .. }
            | StoreError::Checksum { key, .. }
            | StoreError::Decode { key, .. }
            | StoreError::Encode { key, .. }
            | StoreError::IndexMismatch { key, .. } => Some(*key),
            _ => None,
        }
    }

    pub(crate) fn sled(op: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
        move |source| StoreError::Sled { op, source }
    }

    pub(crate) fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> StoreError {
        move |source| StoreError::Io { op, source }
    }
}
