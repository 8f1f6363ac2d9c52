//! [`LogBackend`] on sled 0.34.7.
//!
//! Three trees in one `sled::Db`: `log` (8-byte big-endian index -> record, so byte order is
//! index order), `meta` (`vote`, `committed`, `last_purged`) and `snapshot` (`meta`, `data`,
//! always written together in one batch). All trees share sled's single log, so one
//! `flush()` makes every earlier write of every tree durable, in order.
//!
//! Must never: hold a second `Db` on the same path (sled allows one open instance per path),
//! or keep sled's 1 GiB default cache (several nodes may share a machine).

use std::ops::Range;
use std::path::Path;

use super::backend::{LogBackend, LogRecord, LogVisitor, MetaKey, SnapshotRecords};
use super::error::StoreError;

/// Tuning for [`SledBackend`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SledConfig {
    /// sled's page cache budget. Default 64 MiB (sled's own default is 1 GiB).
    pub cache_capacity_bytes: u64,
    /// sled's background flush period. Durability never depends on it (the log store
    /// flushes explicitly); it only bounds how long unflushed writes sit in memory.
    pub flush_every_ms: Option<u64>,
}

impl Default for SledConfig {
    fn default() -> Self {
        SledConfig {
            cache_capacity_bytes: 64 * 1024 * 1024,
            flush_every_ms: Some(500),
        }
    }
}

/// The sled-backed [`LogBackend`].
pub struct SledBackend {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    snapshot: sled::Tree,
}

impl SledBackend {
    /// Name of the tree holding log records.
    pub const LOG_TREE: &'static str = "log";
    /// Name of the tree holding the vote, committed and last purged records.
    pub const META_TREE: &'static str = "meta";
    /// Name of the tree holding the snapshot records.
    pub const SNAPSHOT_TREE: &'static str = "snapshot";
    /// Key of the snapshot meta record in the snapshot tree.
    pub const SNAPSHOT_META_KEY: &'static [u8] = b"meta";
    /// Key of the snapshot data record in the snapshot tree.
    pub const SNAPSHOT_DATA_KEY: &'static [u8] = b"data";

    /// Open (or create) the database in `dir`.
    ///
    /// sled's background flusher keeps a just-dropped `Db` of this process alive until
    /// its next tick, holding the directory's file lock. Opening therefore retries a
    /// held lock for up to `LOCK_WAIT`; a lock held longer (another process) is an error.
    pub fn open(dir: impl AsRef<Path>, config: &SledConfig) -> Result<Self, StoreError> {
        const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            let res = sled::Config::new()
                .path(dir.as_ref())
                .cache_capacity(config.cache_capacity_bytes)
                .flush_every_ms(config.flush_every_ms)
                .open();
            match res {
                Err(sled::Error::Io(e))
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.to_string().contains("could not acquire lock") =>
                {
                    if std::time::Instant::now() >= deadline {
                        return Err(StoreError::sled("open")(sled::Error::Io(e)));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other.map_err(StoreError::sled("open"))?,
            }
        };
        let log = db
            .open_tree(Self::LOG_TREE)
            .map_err(StoreError::sled("open log tree"))?;
        let meta = db
            .open_tree(Self::META_TREE)
            .map_err(StoreError::sled("open meta tree"))?;
        let snapshot = db
            .open_tree(Self::SNAPSHOT_TREE)
            .map_err(StoreError::sled("open snapshot tree"))?;
        Ok(SledBackend {
            db,
            log,
            meta,
            snapshot,
        })
    }

    /// The big-endian key of a log index.
    pub fn log_key(index: u64) -> [u8; 8] {
        index.to_be_bytes()
    }

    fn decode_key(key: &[u8]) -> Result<u64, StoreError> {
        let bytes: [u8; 8] = key
            .try_into()
            .map_err(|_| StoreError::BadLogKey { len: key.len() })?;
        Ok(u64::from_be_bytes(bytes))
    }

    fn entry(kv: Option<(sled::IVec, sled::IVec)>) -> Result<Option<LogRecord>, StoreError> {
        match kv {
            None => Ok(None),
            Some((k, v)) => Ok(Some((Self::decode_key(&k)?, v.to_vec()))),
        }
    }

    /// Remove one log record (the failpoint layer's power cut).
    #[cfg(feature = "failpoints")]
    pub(crate) fn remove_log(&self, index: u64) -> Result<(), StoreError> {
        self.remove_range(index..index.saturating_add(1), "remove log")
    }

    /// Remove one metadata record (the failpoint layer's power cut).
    #[cfg(feature = "failpoints")]
    pub(crate) fn remove_meta(&self, key: MetaKey) -> Result<(), StoreError> {
        self.meta
            .remove(key.as_bytes())
            .map_err(StoreError::sled("remove meta"))?;
        Ok(())
    }

    /// Remove every log key in `range` in one atomic batch.
    fn remove_range(&self, range: Range<u64>, op: &'static str) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut any = false;
        for kv in self
            .log
            .range(Self::log_key(range.start)..Self::log_key(range.end))
        {
            let (key, _) = kv.map_err(StoreError::sled(op))?;
            batch.remove(key);
            any = true;
        }
        if any {
            self.log.apply_batch(batch).map_err(StoreError::sled(op))?;
        }
        Ok(())
    }
}

impl LogBackend for SledBackend {
    fn append(&self, records: Vec<LogRecord>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (index, record) in records {
            batch.insert(&Self::log_key(index), record);
        }
        self.log
            .apply_batch(batch)
            .map_err(StoreError::sled("append"))
    }

    fn scan(&self, range: Range<u64>, visit: LogVisitor<'_>) -> Result<(), StoreError> {
        if range.start >= range.end {
            return Ok(());
        }
        for kv in self
            .log
            .range(Self::log_key(range.start)..Self::log_key(range.end))
        {
            let (key, value) = kv.map_err(StoreError::sled("scan log"))?;
            visit(Self::decode_key(&key)?, &value)?;
        }
        Ok(())
    }

    fn first(&self) -> Result<Option<LogRecord>, StoreError> {
        Self::entry(
            self.log
                .first()
                .map_err(StoreError::sled("read first log"))?,
        )
    }

    fn last(&self) -> Result<Option<LogRecord>, StoreError> {
        Self::entry(self.log.last().map_err(StoreError::sled("read last log"))?)
    }

    fn truncate_from(&self, index: u64) -> Result<(), StoreError> {
        // `..log_key(u64::MAX)` leaves index u64::MAX itself, which Raft never reaches.
        self.remove_range(index..u64::MAX, "truncate log")
    }

    fn purge(&self, upto: u64, last_purged: Vec<u8>) -> Result<(), StoreError> {
        self.put_meta(MetaKey::LastPurged, last_purged)?;
        self.flush()?;
        self.remove_range(0..upto.saturating_add(1), "purge log")
    }

    fn put_meta(&self, key: MetaKey, record: Vec<u8>) -> Result<(), StoreError> {
        self.meta
            .insert(key.as_bytes(), record)
            .map_err(StoreError::sled("write meta"))?;
        Ok(())
    }

    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .meta
            .get(key.as_bytes())
            .map_err(StoreError::sled("read meta"))?
            .map(|v| v.to_vec()))
    }

    fn save_snapshot(&self, meta: Vec<u8>, data: Vec<u8>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        batch.insert(Self::SNAPSHOT_META_KEY, meta);
        batch.insert(Self::SNAPSHOT_DATA_KEY, data);
        self.snapshot
            .apply_batch(batch)
            .map_err(StoreError::sled("write snapshot"))?;
        self.flush()
    }

    fn load_snapshot(&self) -> Result<Option<SnapshotRecords>, StoreError> {
        let meta = self
            .snapshot
            .get(Self::SNAPSHOT_META_KEY)
            .map_err(StoreError::sled("read snapshot"))?;
        let data = self
            .snapshot
            .get(Self::SNAPSHOT_DATA_KEY)
            .map_err(StoreError::sled("read snapshot"))?;
        match (meta, data) {
            (Some(meta), Some(data)) => Ok(Some((meta.to_vec(), data.to_vec()))),
            (None, None) => Ok(None),
            // Written in one batch, so one without the other is damage; report it as a
            // truncated (empty) record under the missing key.
            (Some(_), None) => Err(StoreError::Truncated {
                key: super::error::RecordKey::SnapshotData,
                len: 0,
            }),
            (None, Some(_)) => Err(StoreError::Truncated {
                key: super::error::RecordKey::SnapshotMeta,
                len: 0,
            }),
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(StoreError::sled("flush"))?;
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db
            .size_on_disk()
            .map_err(StoreError::sled("size_on_disk"))
    }
}
