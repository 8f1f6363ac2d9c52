//! [`LogBackend`] on sled 0.34.7.
//!
//! Two trees in one `sled::Db`: `log` (8-byte big-endian index -> record, so byte order is
//! index order) and `meta` (`vote`, `committed`, `last_purged`). Both share sled's single
//! log, so one `flush()` makes every earlier write of either tree durable, in order.
//!
//! The snapshot is a file of its own beside sled's (`raft-snapshot`), replaced whole by
//! write, fsync and rename. It was a third tree: a batch of several megabytes applied under
//! sled's process-wide exclusive lock, which every append waits for, stalled every write of
//! every node for up to 76 ms at each snapshot (docs/benchmarks.md). A file costs the log
//! nothing. A data directory written by an earlier build still has its snapshot in the
//! `snapshot` tree: it is read from there until the first snapshot file replaces it.
//!
//! Must never: hold a second `Db` on the same path (sled allows one open instance per path),
//! or keep sled's 1 GiB default cache (several nodes may share a machine).

use std::io::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::backend::{LogBackend, LogRecord, LogVisitor, MetaKey, SnapshotRecords};
use super::error::{RecordKey, StoreError};

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
    /// Where snapshots lived before [`SledBackend::SNAPSHOT_FILE`]; read only as a fallback.
    legacy_snapshot: sled::Tree,
    dir: PathBuf,
}

impl SledBackend {
    /// Name of the tree holding log records.
    pub const LOG_TREE: &'static str = "log";
    /// Name of the tree holding the vote, committed and last purged records.
    pub const META_TREE: &'static str = "meta";
    /// Name of the tree that held the snapshot records before the snapshot file.
    pub const SNAPSHOT_TREE: &'static str = "snapshot";
    /// Key of the snapshot meta record in the snapshot tree.
    pub const SNAPSHOT_META_KEY: &'static [u8] = b"meta";
    /// Key of the snapshot data record in the snapshot tree.
    pub const SNAPSHOT_DATA_KEY: &'static [u8] = b"data";
    /// Name of the snapshot file, in sled's directory (sled reads only its own `conf`,
    /// `db`, `blobs/` and `snap.*` there). Layout: [`SledBackend::SNAPSHOT_MAGIC`], the meta
    /// record's length (u64 little-endian), the meta record, the data record; both records
    /// are framed and checksummed (`record.rs`).
    pub const SNAPSHOT_FILE: &'static str = "raft-snapshot";
    /// The first 8 bytes of the snapshot file (the last byte is the layout's version).
    pub const SNAPSHOT_MAGIC: &'static [u8; 8] = b"rqsnap\0\x01";
    /// The snapshot file's header: magic and meta length.
    pub const SNAPSHOT_HEADER_LEN: usize = 16;
    const SNAPSHOT_TMP: &'static str = "raft-snapshot.tmp";

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
        let legacy_snapshot = db
            .open_tree(Self::SNAPSHOT_TREE)
            .map_err(StoreError::sled("open snapshot tree"))?;
        let dir = dir.as_ref().to_path_buf();
        // A crash while writing a snapshot leaves its temporary file; the snapshot it was
        // to replace is still whole.
        match std::fs::remove_file(dir.join(Self::SNAPSHOT_TMP)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(StoreError::io("remove snapshot.tmp")(e));
            }
            _ => {}
        }
        Ok(SledBackend {
            db,
            log,
            meta,
            legacy_snapshot,
            dir,
        })
    }

    /// Write the snapshot file: to a temporary file, fsync, rename over the old one, fsync
    /// the directory. A crash at any point leaves the old snapshot or the new one, whole.
    fn write_snapshot_file(&self, meta: &[u8], data: &[u8]) -> std::io::Result<()> {
        let tmp = self.dir.join(Self::SNAPSHOT_TMP);
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(Self::SNAPSHOT_MAGIC)?;
        file.write_all(&(meta.len() as u64).to_le_bytes())?;
        file.write_all(meta)?;
        file.write_all(data)?;
        file.sync_data()?;
        drop(file);
        std::fs::rename(&tmp, self.dir.join(Self::SNAPSHOT_FILE))?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    /// Split the snapshot file into its two records.
    fn parse_snapshot_file(mut bytes: Vec<u8>) -> Result<SnapshotRecords, StoreError> {
        let damaged = |reason: String| StoreError::Decode {
            key: RecordKey::SnapshotMeta,
            reason: format!("snapshot file {}: {reason}", Self::SNAPSHOT_FILE),
        };
        if bytes.len() < Self::SNAPSHOT_HEADER_LEN {
            return Err(damaged(format!(
                "{} bytes, shorter than its header",
                bytes.len()
            )));
        }
        if &bytes[..8] != Self::SNAPSHOT_MAGIC {
            return Err(damaged(
                "does not start with the snapshot file's magic".to_string(),
            ));
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&bytes[8..Self::SNAPSHOT_HEADER_LEN]);
        let meta_len = u64::from_le_bytes(len);
        let rest = (bytes.len() - Self::SNAPSHOT_HEADER_LEN) as u64;
        if meta_len > rest {
            return Err(damaged(format!(
                "meta record of {meta_len} bytes but only {rest} follow the header"
            )));
        }
        let data = bytes.split_off(Self::SNAPSHOT_HEADER_LEN + meta_len as usize);
        let meta = bytes.split_off(Self::SNAPSHOT_HEADER_LEN);
        Ok((meta, data))
    }

    /// The snapshot an earlier build kept in the `snapshot` tree.
    fn load_legacy_snapshot(&self) -> Result<Option<SnapshotRecords>, StoreError> {
        let tree = &self.legacy_snapshot;
        let meta = tree
            .get(Self::SNAPSHOT_META_KEY)
            .map_err(StoreError::sled("read snapshot"))?;
        let data = tree
            .get(Self::SNAPSHOT_DATA_KEY)
            .map_err(StoreError::sled("read snapshot"))?;
        match (meta, data) {
            (Some(meta), Some(data)) => Ok(Some((meta.to_vec(), data.to_vec()))),
            (None, None) => Ok(None),
            // Written in one batch, so one without the other is damage; report it as a
            // truncated (empty) record under the missing key.
            (Some(_), None) => Err(StoreError::Truncated {
                key: RecordKey::SnapshotData,
                len: 0,
            }),
            (None, Some(_)) => Err(StoreError::Truncated {
                key: RecordKey::SnapshotMeta,
                len: 0,
            }),
        }
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

    /// The deletion is one `remove` per key, lowest index first, not one batch: sled
    /// applies a batch under its process-wide exclusive lock, which every append (itself
    /// a batch) waits for, so deleting the ~10 000 entries a snapshot covers in one batch
    /// held every write for 110-230 ms (measured, docs/benchmarks.md). A single remove
    /// takes that lock shared, so appends interleave with the deletion. Atomicity is not
    /// needed: `last_purged` is durable first, and whatever a crash leaves at or below it
    /// the log store removes on open.
    fn purge(&self, upto: u64, last_purged: Vec<u8>) -> Result<(), StoreError> {
        self.put_meta(MetaKey::LastPurged, last_purged)?;
        self.flush()?;
        let Some((first, _)) = self.first()? else {
            return Ok(());
        };
        for index in first..=upto {
            self.log
                .remove(Self::log_key(index))
                .map_err(StoreError::sled("purge log"))?;
        }
        Ok(())
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
        self.write_snapshot_file(&meta, &data)
            .map_err(StoreError::io("write snapshot"))?;
        if !self.legacy_snapshot.is_empty() {
            // The file is read first, so this needs no flush of its own.
            self.legacy_snapshot
                .clear()
                .map_err(StoreError::sled("clear snapshot tree"))?;
        }
        Ok(())
    }

    fn load_snapshot(&self) -> Result<Option<SnapshotRecords>, StoreError> {
        match std::fs::read(self.dir.join(Self::SNAPSHOT_FILE)) {
            Ok(bytes) => Self::parse_snapshot_file(bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.load_legacy_snapshot(),
            Err(e) => Err(StoreError::io("read snapshot")(e)),
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(StoreError::sled("flush"))?;
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        let sled = self
            .db
            .size_on_disk()
            .map_err(StoreError::sled("size_on_disk"))?;
        let snapshot = match std::fs::metadata(self.dir.join(Self::SNAPSHOT_FILE)) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(StoreError::io("size_on_disk")(e)),
        };
        Ok(sled + snapshot)
    }
}
