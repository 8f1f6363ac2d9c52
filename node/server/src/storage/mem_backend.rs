//! [`LogBackend`] in memory, for fast tests.
//!
//! Optionally models durability: with [`MemBackend::with_crash_model`], every `flush` takes a
//! copy of the state, and [`MemBackend::crash_copy`] returns what a power loss would leave
//! (only flushed writes). That is the storage failpoint that discards unflushed writes, which
//! `kill -9` on a real disk cannot provide. Never used by a production node.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Mutex, MutexGuard};

use super::backend::{LogBackend, LogRecord, LogVisitor, MetaKey, SnapshotRecords};
use super::error::StoreError;

#[derive(Debug, Clone, Default)]
struct MemState {
    log: BTreeMap<u64, Vec<u8>>,
    meta: BTreeMap<MetaKey, Vec<u8>>,
    snapshot: Option<(Vec<u8>, Vec<u8>)>,
}

impl MemState {
    fn size_bytes(&self) -> u64 {
        let log: usize = self.log.values().map(|v| v.len() + 8).sum();
        let meta: usize = self.meta.values().map(Vec::len).sum();
        let snap = self.snapshot.as_ref().map_or(0, |(m, d)| m.len() + d.len());
        (log + meta + snap) as u64
    }
}

#[derive(Debug, Default)]
struct MemInner {
    live: MemState,
    /// `Some` when modelling crashes: the state as of the last flush.
    durable: Option<MemState>,
    flushes: u64,
}

/// The in-memory [`LogBackend`].
#[derive(Debug, Default)]
pub struct MemBackend {
    inner: Mutex<MemInner>,
}

impl MemBackend {
    /// An empty backend; `flush` only counts.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty backend whose `flush` also records the durable state, for crash tests.
    pub fn with_crash_model() -> Self {
        MemBackend {
            inner: Mutex::new(MemInner {
                durable: Some(MemState::default()),
                ..MemInner::default()
            }),
        }
    }

    /// A new backend holding what a crash now would leave: the flushed state if crashes are
    /// modelled, else everything written so far. The copy models crashes too.
    pub fn crash_copy(&self) -> MemBackend {
        let inner = self.lock();
        let state = inner.durable.clone().unwrap_or_else(|| inner.live.clone());
        MemBackend {
            inner: Mutex::new(MemInner {
                durable: inner.durable.as_ref().map(|_| state.clone()),
                live: state,
                flushes: 0,
            }),
        }
    }

    /// How many times `flush` was called.
    pub fn flush_count(&self) -> u64 {
        self.lock().flushes
    }

    // A poisoned lock only means a test panicked mid-write; the maps are still valid.
    fn lock(&self) -> MutexGuard<'_, MemInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn flush_locked(inner: &mut MemInner) {
        inner.flushes += 1;
        if inner.durable.is_some() {
            inner.durable = Some(inner.live.clone());
        }
    }
}

impl LogBackend for MemBackend {
    fn append(&self, records: Vec<LogRecord>) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.live.log.extend(records);
        Ok(())
    }

    fn scan(&self, range: Range<u64>, visit: LogVisitor<'_>) -> Result<(), StoreError> {
        if range.start >= range.end {
            return Ok(());
        }
        let inner = self.lock();
        for (index, record) in inner.live.log.range(range) {
            visit(*index, record)?;
        }
        Ok(())
    }

    fn first(&self) -> Result<Option<LogRecord>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .live
            .log
            .first_key_value()
            .map(|(k, v)| (*k, v.clone())))
    }

    fn last(&self) -> Result<Option<LogRecord>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .live
            .log
            .last_key_value()
            .map(|(k, v)| (*k, v.clone())))
    }

    fn truncate_from(&self, index: u64) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.live.log.split_off(&index);
        Ok(())
    }

    fn purge(&self, upto: u64, last_purged: Vec<u8>) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.live.meta.insert(MetaKey::LastPurged, last_purged);
        Self::flush_locked(&mut inner);
        let keep = match upto.checked_add(1) {
            Some(from) => inner.live.log.split_off(&from),
            None => BTreeMap::new(),
        };
        inner.live.log = keep;
        Ok(())
    }

    fn put_meta(&self, key: MetaKey, record: Vec<u8>) -> Result<(), StoreError> {
        self.lock().live.meta.insert(key, record);
        Ok(())
    }

    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().live.meta.get(&key).cloned())
    }

    fn save_snapshot(&self, meta: Vec<u8>, data: Vec<u8>) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.live.snapshot = Some((meta, data));
        Self::flush_locked(&mut inner);
        Ok(())
    }

    fn load_snapshot(&self) -> Result<Option<SnapshotRecords>, StoreError> {
        Ok(self.lock().live.snapshot.clone())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Self::flush_locked(&mut self.lock());
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.lock().live.size_bytes())
    }
}
