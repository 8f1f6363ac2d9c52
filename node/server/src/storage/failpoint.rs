//! Storage failpoints, for the fault-injection harness only (`jepsen-style-tests`,
//! docs/consistency.md, "Storage and disk faults"). Compiled in only with the cargo
//! feature `failpoints`; a normal (and every release) build has none of this.
//!
//! [`FailpointBackend`] wraps the production [`SledBackend`] and adds two things:
//!
//! - **A durability watermark.** Before every write it appends an *undo record* (the
//!   key's previous value, or "absent") to `<data-dir>/failpoints/undo`; a completed
//!   [`LogBackend::flush`] (fsync) drops the undo records of every write issued before
//!   it and rewrites `<data-dir>/failpoints/watermark` (flush count, last durable log
//!   index). So the undo file always describes exactly what a power cut may take away:
//!   everything written since the last completed fsync. `kill -9` alone keeps the page
//!   cache; [`power_cut`] (the `ratequeue failpoint power-cut` command, run on the data
//!   directory of a killed node) undoes those writes, newest first, as the disk would
//!   after losing power, and can then tear or corrupt the last surviving log record.
//! - **Disk faults**, read from `<data-dir>/failpoints/fault` at every write and flush
//!   (the harness writes and removes that file while the node runs): `fsync-eio` (flush
//!   fails with EIO), `disk-full` (writes and flushes fail with ENOSPC), `slow-fsync MS`
//!   (each flush first sleeps MS milliseconds).
//!
//! One more setting makes a deliberately broken build for the harness's negative
//! control: `RATEQUEUE_FAILPOINT_LYING_FSYNC_MS=N` makes `flush` return at once and sync
//! for real only every N ms, as a store that acknowledges before fsync would. A power
//! cut of a majority then loses acknowledged writes, which the checkers must flag.
//! Two more break the core's admission decisions instead (`set_core_sabotages`):
//! `RATEQUEUE_FAILPOINT_DRY_RUN_UNCHARGED=1` and `RATEQUEUE_FAILPOINT_IGNORE_PAUSE=1`.
//!
//! Snapshots and purges are not journaled: `save_snapshot` is durable when it returns,
//! and a purge persists `last_purged` (journaled, then flushed) before deleting, so a
//! deletion the power cut "brings back" is finished again by the log store's open.
//! Must never: be compiled into a release build, or change what the log store sees
//! while no fault is set.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::backend::{LogBackend, LogRecord, LogVisitor, MetaKey, SnapshotRecords};
use super::error::StoreError;
use super::sled_backend::{SledBackend, SledConfig};

/// The directory, inside a node's data dir, of the failpoint files.
pub const FAILPOINT_DIR: &str = "failpoints";
/// The disk fault the harness sets (one line: `fsync-eio`, `disk-full`, `slow-fsync MS`).
pub const FAULT_FILE: &str = "fault";
/// The undo records of every write since the last completed fsync.
pub const UNDO_FILE: &str = "undo";
/// The durability watermark, rewritten after every completed fsync (JSON).
pub const WATERMARK_FILE: &str = "watermark";
/// Env: sync for real only every N ms and report every flush as done (broken build).
pub const LYING_FSYNC_ENV: &str = "RATEQUEUE_FAILPOINT_LYING_FSYNC_MS";
/// Env `=1`: an injected disk error is logged and then ignored, the flush reported done
/// (broken build: a store that retries past a failed fsync, as in "fsyncgate").
pub const IGNORE_ERRORS_ENV: &str = "RATEQUEUE_FAILPOINT_IGNORE_DISK_ERRORS";
/// Env `=1`: at open, a last log record that fails its checksum is deleted and the node
/// starts (broken build: a store that silently repairs its tail, losing a durable entry).
pub const REPAIR_TAIL_ENV: &str = "RATEQUEUE_FAILPOINT_REPAIR_TAIL";
/// Env `=1`: a dry-run grant charges no bucket (broken build: shadows that forget the
/// traffic they let through; `ratequeue_core::sabotage`).
pub const DRY_RUN_UNCHARGED_ENV: &str = "RATEQUEUE_FAILPOINT_DRY_RUN_UNCHARGED";
/// Env `=1`: a reported 429 is recorded but does not pause grants (broken build).
pub const IGNORE_PAUSE_ENV: &str = "RATEQUEUE_FAILPOINT_IGNORE_PAUSE";

/// Sets the core's broken decisions from the environment (each only with its variable
/// `=1`), for the harness's dry-run and provider-report controls.
pub fn set_core_sabotages() {
    let dry_run_uncharged = env_flag(DRY_RUN_UNCHARGED_ENV);
    let ignore_pause = env_flag(IGNORE_PAUSE_ENV);
    if dry_run_uncharged || ignore_pause {
        tracing::warn!(
            dry_run_uncharged,
            ignore_pause,
            "broken admission decisions set (a negative control of the test harness)"
        );
    }
    ratequeue_core::sabotage::set(dry_run_uncharged, ignore_pause);
}

const EIO: i32 = 5;
const ENOSPC: i32 = 28;
/// The longest injected fsync delay, so a typo cannot hang a node for hours.
const SLOW_FSYNC_MS_MAX: u64 = 10_000;

/// A disk fault read from the fault file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFault {
    FsyncEio,
    DiskFull,
    SlowFsync(u64),
}

impl DiskFault {
    /// Parses the fault file's line; `None` for an empty or unknown line.
    pub fn parse(line: &str) -> Option<DiskFault> {
        let mut words = line.split_whitespace();
        match words.next()? {
            "fsync-eio" => Some(DiskFault::FsyncEio),
            "disk-full" => Some(DiskFault::DiskFull),
            "slow-fsync" => {
                let ms = words.next().and_then(|w| w.parse().ok()).unwrap_or(200);
                Some(DiskFault::SlowFsync(std::cmp::min(ms, SLOW_FSYNC_MS_MAX)))
            }
            _ => None,
        }
    }
}

/// Undo record tags.
const TAG_LOG: u8 = 1;
const TAG_META: u8 = 2;

/// What to restore for one key when the power is cut.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Undo {
    /// Log record `index` had this value (`None`: absent).
    Log(u64, Option<Vec<u8>>),
    /// Metadata record had this value.
    Meta(MetaKey, Option<Vec<u8>>),
}

fn meta_tag(key: MetaKey) -> u8 {
    match key {
        MetaKey::Vote => 0,
        MetaKey::Committed => 1,
        MetaKey::LastPurged => 2,
    }
}

fn meta_of(tag: u8) -> Option<MetaKey> {
    MetaKey::ALL.into_iter().find(|k| meta_tag(*k) == tag)
}

impl Undo {
    fn encode(&self, out: &mut Vec<u8>) {
        let (tag, key, old) = match self {
            Undo::Log(i, old) => (TAG_LOG, *i, old),
            Undo::Meta(k, old) => (TAG_META, u64::from(meta_tag(*k)), old),
        };
        out.push(tag);
        out.extend_from_slice(&key.to_le_bytes());
        match old {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                out.extend_from_slice(v);
            }
        }
    }

    /// Decodes the records of an undo file. A torn last record (the node was killed
    /// while writing it) is dropped: its write had not been issued yet.
    fn decode_all(mut b: &[u8]) -> Vec<Undo> {
        let mut out = Vec::new();
        loop {
            let Some((&tag, rest)) = b.split_first() else {
                return out;
            };
            let Some((key, rest)) = rest.split_first_chunk::<8>() else {
                return out;
            };
            let key = u64::from_le_bytes(*key);
            let Some((&present, rest)) = rest.split_first() else {
                return out;
            };
            let (old, rest) = if present == 1 {
                let Some((len, rest)) = rest.split_first_chunk::<4>() else {
                    return out;
                };
                let len = u32::from_le_bytes(*len) as usize;
                if rest.len() < len {
                    return out;
                }
                let (v, rest) = rest.split_at(len);
                (Some(v.to_vec()), rest)
            } else {
                (None, rest)
            };
            let undo = match tag {
                TAG_LOG => Undo::Log(key, old),
                TAG_META => match u8::try_from(key).ok().and_then(meta_of) {
                    Some(k) => Undo::Meta(k, old),
                    None => return out,
                },
                _ => return out,
            };
            out.push(undo);
            b = rest;
        }
    }
}

struct Journal {
    file: File,
    /// Undo records with their sequence number, oldest first.
    pending: Vec<(u64, Undo)>,
    next_seq: u64,
    /// The highest log index written so far (the watermark's candidate).
    last_written: Option<u64>,
    flushes: u64,
}

/// [`SledBackend`] with a durability watermark and injectable disk faults.
pub struct FailpointBackend {
    inner: SledBackend,
    dir: PathBuf,
    journal: Mutex<Journal>,
    lying_fsync: Option<Duration>,
    ignore_errors: bool,
    last_real_flush: Mutex<Instant>,
}

fn io_error(code: i32, op: &'static str) -> StoreError {
    StoreError::Sled {
        op,
        source: sled::Error::Io(std::io::Error::from_raw_os_error(code)),
    }
}

fn file_error(op: &'static str, e: std::io::Error) -> StoreError {
    StoreError::Sled {
        op,
        source: sled::Error::Io(e),
    }
}

impl FailpointBackend {
    /// Opens sled in `raft_dir` and the failpoint files in `data_dir/failpoints`.
    pub fn open(
        raft_dir: impl AsRef<Path>,
        data_dir: impl AsRef<Path>,
        config: &SledConfig,
    ) -> Result<Self, StoreError> {
        let inner = SledBackend::open(raft_dir, config)?;
        let dir = data_dir.as_ref().join(FAILPOINT_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| file_error("create failpoint dir", e))?;
        let undo = dir.join(UNDO_FILE);
        if undo.exists() {
            // Writes of an earlier run that were never fsynced (a plain kill -9, no power
            // cut): they survived, so they are durable now as far as this model goes.
            inner.flush()?;
        }
        // Append mode: after `set_len(0)` the next write lands at offset 0 again.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&undo)
            .map_err(|e| file_error("open undo journal", e))?;
        file.set_len(0)
            .map_err(|e| file_error("clear undo journal", e))?;
        if env_flag(REPAIR_TAIL_ENV) {
            if let Some((index, record)) = inner.last()? {
                if super::record::payload(super::error::RecordKey::Log(index), &record).is_err() {
                    tracing::warn!(
                        index,
                        "failpoint: REPAIR TAIL, deleting a damaged last log record \
                         (a deliberately broken build for the harness)"
                    );
                    inner.remove_log(index)?;
                    inner.flush()?;
                }
            }
        }
        let ignore_errors = env_flag(IGNORE_ERRORS_ENV);
        let lying_fsync = std::env::var(LYING_FSYNC_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis);
        if let Some(every) = lying_fsync {
            tracing::warn!(
                every_ms = every.as_millis() as u64,
                "failpoint: LYING FSYNC, flushes are acknowledged before they are durable \
                 (a deliberately broken build for the harness)"
            );
        }
        Ok(FailpointBackend {
            inner,
            dir,
            journal: Mutex::new(Journal {
                file,
                pending: Vec::new(),
                next_seq: 0,
                last_written: None,
                flushes: 0,
            }),
            lying_fsync,
            ignore_errors,
            last_real_flush: Mutex::new(Instant::now()),
        })
    }

    /// An injected error, or (in the broken build that ignores them) `Ok` after logging.
    fn inject(&self, code: i32, op: &'static str) -> Result<(), StoreError> {
        if self.ignore_errors {
            tracing::warn!(
                op,
                code,
                "failpoint: IGNORING an injected disk error (broken build)"
            );
            return Ok(());
        }
        Err(io_error(code, op))
    }

    fn fault(&self) -> Option<DiskFault> {
        let line = std::fs::read_to_string(self.dir.join(FAULT_FILE)).ok()?;
        DiskFault::parse(&line)
    }

    /// Refuses a write on a full disk.
    fn check_write(&self, op: &'static str) -> Result<(), StoreError> {
        if self.fault() == Some(DiskFault::DiskFull) {
            tracing::warn!(op, "failpoint: injecting ENOSPC");
            return self.inject(ENOSPC, op);
        }
        Ok(())
    }

    /// Journals the undo records of a write that is about to be issued, under the lock
    /// the write itself is issued in (so journal order is write order).
    fn journaled<T>(
        &self,
        undo: Vec<Undo>,
        last_index: Option<u64>,
        write: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut j = self.journal.lock();
        let mut buf = Vec::new();
        for u in &undo {
            u.encode(&mut buf);
        }
        j.file
            .write_all(&buf)
            .map_err(|e| file_error("write undo journal", e))?;
        for u in undo {
            let seq = j.next_seq;
            j.next_seq += 1;
            j.pending.push((seq, u));
        }
        if let Some(i) = last_index {
            j.last_written = Some(i);
        }
        write()
    }

    fn old_log(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .inner
            .read_range(index..index.saturating_add(1))?
            .pop()
            .map(|(_, v)| v))
    }

    /// A real fsync, then drop the undo records of every write issued before it.
    fn real_flush(&self) -> Result<(), StoreError> {
        let (upto, last) = {
            let j = self.journal.lock();
            (j.next_seq, j.last_written)
        };
        self.inner.flush()?;
        *self.last_real_flush.lock() = Instant::now();
        let mut j = self.journal.lock();
        j.pending.retain(|(seq, _)| *seq >= upto);
        j.flushes += 1;
        let mut buf = Vec::new();
        for (_, u) in &j.pending {
            u.encode(&mut buf);
        }
        j.file
            .set_len(0)
            .and_then(|()| j.file.write_all(&buf))
            .map_err(|e| file_error("rewrite undo journal", e))?;
        let mark = format!(
            "{{\"flushes\":{},\"last_durable_log_index\":{},\"pending_undo\":{}}}\n",
            j.flushes,
            last.map_or("null".to_owned(), |i| i.to_string()),
            j.pending.len()
        );
        drop(j);
        std::fs::write(self.dir.join(WATERMARK_FILE), mark)
            .map_err(|e| file_error("write watermark", e))
    }
}

impl LogBackend for FailpointBackend {
    fn append(&self, records: Vec<LogRecord>) -> Result<(), StoreError> {
        self.check_write("append")?;
        let mut undo = Vec::with_capacity(records.len());
        for (index, _) in &records {
            undo.push(Undo::Log(*index, self.old_log(*index)?));
        }
        let last = records.last().map(|(i, _)| *i);
        self.journaled(undo, last, || self.inner.append(records))
    }

    fn scan(&self, range: Range<u64>, visit: LogVisitor<'_>) -> Result<(), StoreError> {
        self.inner.scan(range, visit)
    }

    fn first(&self) -> Result<Option<LogRecord>, StoreError> {
        self.inner.first()
    }

    fn last(&self) -> Result<Option<LogRecord>, StoreError> {
        self.inner.last()
    }

    fn truncate_from(&self, index: u64) -> Result<(), StoreError> {
        self.check_write("truncate log")?;
        let undo = self
            .inner
            .read_range(index..u64::MAX)?
            .into_iter()
            .map(|(i, v)| Undo::Log(i, Some(v)))
            .collect();
        let last = index.checked_sub(1);
        self.journaled(undo, last, || self.inner.truncate_from(index))
    }

    fn purge(&self, upto: u64, last_purged: Vec<u8>) -> Result<(), StoreError> {
        self.put_meta(MetaKey::LastPurged, last_purged.clone())?;
        self.flush()?;
        self.inner.purge(upto, last_purged)
    }

    fn put_meta(&self, key: MetaKey, record: Vec<u8>) -> Result<(), StoreError> {
        self.check_write("write meta")?;
        let old = self.inner.get_meta(key)?;
        self.journaled(vec![Undo::Meta(key, old)], None, || {
            self.inner.put_meta(key, record)
        })
    }

    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_meta(key)
    }

    fn save_snapshot(&self, meta: Vec<u8>, data: Vec<u8>) -> Result<(), StoreError> {
        self.check_write("write snapshot")?;
        // Durable when it returns (it flushes everything before it, too).
        self.inner.save_snapshot(meta, data)
    }

    fn load_snapshot(&self) -> Result<Option<SnapshotRecords>, StoreError> {
        self.inner.load_snapshot()
    }

    fn flush(&self) -> Result<(), StoreError> {
        match self.fault() {
            // In the broken build the flush is then reported done without syncing: the
            // writes stay in the undo journal, as a page cache that dropped them would.
            Some(DiskFault::FsyncEio) => {
                tracing::warn!("failpoint: injecting EIO on fsync");
                return self.inject(EIO, "flush");
            }
            Some(DiskFault::DiskFull) => {
                tracing::warn!("failpoint: injecting ENOSPC on fsync");
                return self.inject(ENOSPC, "flush");
            }
            Some(DiskFault::SlowFsync(ms)) => std::thread::sleep(Duration::from_millis(ms)),
            None => {}
        }
        if let Some(every) = self.lying_fsync {
            // The broken build: report the flush as done, sync only now and then.
            if self.last_real_flush.lock().elapsed() < every {
                return Ok(());
            }
        }
        self.real_flush()
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.inner.size_on_disk()
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

/// What a tail fault does to the last log record surviving a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailFault {
    /// Leave it.
    Keep,
    /// Cut it to half its length (a torn write).
    Torn,
    /// Flip one byte of its payload (a sector that reads back wrong).
    Corrupt,
}

/// What [`power_cut`] did, printed as JSON by `ratequeue failpoint power-cut`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PowerCutReport {
    /// Writes since the last completed fsync, undone.
    pub undone_writes: usize,
    /// The last log index before and after.
    pub last_log_before: Option<u64>,
    pub last_log_after: Option<u64>,
    /// The log record torn or corrupted, if any.
    pub damaged_log_index: Option<u64>,
}

/// Simulates a power cut of a killed node: undoes, newest first, every write its undo
/// journal holds (everything since its last completed fsync), then damages the tail as
/// asked, and makes the result durable. Run only on the data dir of a stopped node.
pub fn power_cut(data_dir: &Path, tail: TailFault) -> Result<PowerCutReport, StoreError> {
    let raft_dir = data_dir.join("raft");
    let undo_path = data_dir.join(FAILPOINT_DIR).join(UNDO_FILE);
    let mut bytes = Vec::new();
    match File::open(&undo_path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)
                .map_err(|e| file_error("read undo journal", e))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(file_error("open undo journal", e)),
    }
    let undo = Undo::decode_all(&bytes);
    let db = SledBackend::open(&raft_dir, &SledConfig::default())?;
    let last_log_before = db.last()?.map(|(i, _)| i);
    for u in undo.iter().rev() {
        match u {
            Undo::Log(i, Some(v)) => db.append(vec![(*i, v.clone())])?,
            Undo::Log(i, None) => db.remove_log(*i)?,
            Undo::Meta(k, Some(v)) => db.put_meta(*k, v.clone())?,
            Undo::Meta(k, None) => db.remove_meta(*k)?,
        }
    }
    let mut damaged_log_index = None;
    if tail != TailFault::Keep {
        if let Some((i, mut v)) = db.last()? {
            match tail {
                TailFault::Torn => v.truncate(v.len() / 2),
                _ => {
                    if let Some(b) = v.last_mut() {
                        *b ^= 0x5a;
                    }
                }
            }
            db.append(vec![(i, v)])?;
            damaged_log_index = Some(i);
        }
    }
    db.flush()?;
    let last_log_after = db.last()?.map(|(i, _)| i);
    drop(db);
    std::fs::write(&undo_path, b"").map_err(|e| file_error("clear undo journal", e))?;
    Ok(PowerCutReport {
        undone_writes: undo.len(),
        last_log_before,
        last_log_after,
        damaged_log_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(dir: &Path) -> FailpointBackend {
        FailpointBackend::open(dir.join("raft"), dir, &SledConfig::default()).unwrap()
    }

    fn log(b: &dyn LogBackend) -> Vec<u64> {
        b.read_range(0..u64::MAX)
            .unwrap()
            .into_iter()
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn undo_records_round_trip_and_a_torn_last_record_is_dropped() {
        let all = vec![
            Undo::Log(7, None),
            Undo::Log(8, Some(b"old".to_vec())),
            Undo::Meta(MetaKey::Vote, Some(vec![1, 2])),
            Undo::Meta(MetaKey::LastPurged, None),
        ];
        let mut buf = Vec::new();
        for u in &all {
            u.encode(&mut buf);
        }
        assert_eq!(Undo::decode_all(&buf), all);
        assert_eq!(Undo::decode_all(&buf[..buf.len() - 1]), all[..3].to_vec());
    }

    #[test]
    fn a_power_cut_drops_exactly_what_came_after_the_last_fsync() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let b = backend(tmp.path());
            b.append(vec![(1, b"a".to_vec()), (2, b"b".to_vec())])
                .unwrap();
            b.put_meta(MetaKey::Vote, b"v1".to_vec()).unwrap();
            b.flush().unwrap();
            b.append(vec![(3, b"c".to_vec())]).unwrap();
            b.truncate_from(2).unwrap();
            b.append(vec![(2, b"B".to_vec())]).unwrap();
            b.put_meta(MetaKey::Vote, b"v2".to_vec()).unwrap();
            assert_eq!(log(&b), vec![1, 2]);
        }
        let r = power_cut(tmp.path(), TailFault::Keep).unwrap();
        assert_eq!(r.undone_writes, 5);
        let db = SledBackend::open(tmp.path().join("raft"), &SledConfig::default()).unwrap();
        let recs = db.read_range(0..u64::MAX).unwrap();
        assert_eq!(recs, vec![(1, b"a".to_vec()), (2, b"b".to_vec())]);
        assert_eq!(db.get_meta(MetaKey::Vote).unwrap(), Some(b"v1".to_vec()));
    }

    #[test]
    fn a_torn_tail_is_cut_and_a_corrupt_tail_flipped() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let b = backend(tmp.path());
            b.append(vec![(1, b"aaaa".to_vec()), (2, b"bbbb".to_vec())])
                .unwrap();
            b.flush().unwrap();
        }
        let r = power_cut(tmp.path(), TailFault::Torn).unwrap();
        assert_eq!((r.undone_writes, r.damaged_log_index), (0, Some(2)));
        {
            let db = SledBackend::open(tmp.path().join("raft"), &SledConfig::default()).unwrap();
            assert_eq!(db.last().unwrap(), Some((2, b"bb".to_vec())));
        }
        power_cut(tmp.path(), TailFault::Corrupt).unwrap();
        let db = SledBackend::open(tmp.path().join("raft"), &SledConfig::default()).unwrap();
        assert_ne!(db.last().unwrap(), Some((2, b"bb".to_vec())));
    }

    #[test]
    fn disk_faults_come_from_the_fault_file() {
        let tmp = tempfile::tempdir().unwrap();
        let b = backend(tmp.path());
        let fault = tmp.path().join(FAILPOINT_DIR).join(FAULT_FILE);
        std::fs::write(&fault, "fsync-eio\n").unwrap();
        b.append(vec![(1, b"a".to_vec())]).unwrap();
        let e = b.flush().unwrap_err().to_string();
        assert!(e.contains("os error 5"), "{e}");
        std::fs::write(&fault, "disk-full").unwrap();
        let e = b.append(vec![(2, b"b".to_vec())]).unwrap_err().to_string();
        assert!(e.contains("os error 28"), "{e}");
        std::fs::write(&fault, "slow-fsync 1").unwrap();
        b.flush().unwrap();
        std::fs::remove_file(&fault).unwrap();
        b.flush().unwrap();
        assert_eq!(
            DiskFault::parse("slow-fsync 99999999"),
            Some(DiskFault::SlowFsync(10_000))
        );
        assert_eq!(DiskFault::parse("nonsense"), None);
    }
}
