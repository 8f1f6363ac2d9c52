//! Durable Raft storage: the log, vote, committed id, purge point and snapshot of one node.
//!
//! Layers, bottom up:
//! - `record`: framing of every persisted value, `[format_version u8][crc32 u32 LE][payload]`.
//! - `backend`: the project's storage trait [`LogBackend`]; `sled_backend` ([`SledBackend`],
//!   the production engine) and `mem_backend` ([`MemBackend`], fast tests and crash models).
//! - `log_store`: [`LogStore`], openraft's `RaftLogStorage` + `RaftLogReader` over any
//!   backend, and the snapshot slot the state-machine store writes into; `flusher` (the
//!   fsync thread that completes appends) and `purger` (the thread that deletes purged
//!   entries) keep blocking work off openraft's core task; `durability` ([`Durability`])
//!   is the leader's durable prefix when its fsync overlaps replication
//!   (`--leader-fsync-overlap`, off by default).
//!
//! - `failpoint`: only with the cargo feature `failpoints` (tests and the fault-injection
//!   harness, never a release build): a backend over sled with a durability watermark, a
//!   simulated power cut and injectable disk faults.
//!
//! This module owns durability and corruption detection. It knows nothing about the state
//! machine's contents, HTTP, or the network; openraft types appear only in `log_store`.

mod backend;
mod durability;
mod error;
#[cfg(feature = "failpoints")]
pub mod failpoint;
mod flusher;
mod log_store;
mod mem_backend;
mod purger;
pub mod record;
mod sled_backend;

use std::path::Path;
use std::sync::Arc;

pub use backend::{LogBackend, LogRecord, LogVisitor, MetaKey, SnapshotRecords};
pub use durability::Durability;
pub use error::{RecordKey, StoreError};
pub use log_store::{to_storage_error, LogStore, OpenSummary};
pub use mem_backend::MemBackend;
pub use record::{RECORD_FORMAT_VERSION, RECORD_HEADER_LEN};
pub use sled_backend::{SledBackend, SledConfig};

/// Open (or create) the sled-backed log store in `dir` with the default [`SledConfig`],
/// validating every stored record first.
pub fn open<C: openraft::RaftTypeConfig>(dir: impl AsRef<Path>) -> Result<LogStore<C>, StoreError> {
    open_with(dir, &SledConfig::default())
}

/// [`open`] with explicit sled tuning.
pub fn open_with<C: openraft::RaftTypeConfig>(
    dir: impl AsRef<Path>,
    config: &SledConfig,
) -> Result<LogStore<C>, StoreError> {
    let backend = SledBackend::open(dir, config)?;
    LogStore::new(Arc::new(backend))
}

/// [`open_with`] over the failpoint backend ([`failpoint::FailpointBackend`]): the log
/// store in `data_dir/raft`, the failpoint files in `data_dir/failpoints`.
#[cfg(feature = "failpoints")]
pub fn open_failpoints<C: openraft::RaftTypeConfig>(
    data_dir: impl AsRef<Path>,
    config: &SledConfig,
) -> Result<LogStore<C>, StoreError> {
    let dir = data_dir.as_ref();
    let backend = failpoint::FailpointBackend::open(dir.join("raft"), dir, config)?;
    LogStore::new(Arc::new(backend))
}
