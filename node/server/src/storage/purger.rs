//! The log store's purge thread: deleting purged log entries off the Raft core.
//!
//! openraft awaits `purge` on its core task, so a purge that deletes thousands of sled
//! keys there (70–150 ms after each snapshot, measured) stalls every write behind it.
//! `LogStore::purge` therefore only records the new purge point (`last_purged`, which
//! is all openraft reads back) and queues the deletion here. The thread coalesces
//! queued purges into the highest one and runs the backend's `purge`, which makes
//! `last_purged` durable before deleting anything: a crash at any point leaves entries
//! at or below the purge point behind, and the log store removes them on open.
//! Deleting below the purge point never races an append or a truncate: Raft never
//! writes at or below a purged (committed, snapshotted) index again.
//!
//! A failed purge poisons nothing: the entries stay, are retried with the next purge,
//! and are removed on the next open at the latest. It is logged at error level.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::backend::LogBackend;
use super::error::StoreError;

enum PurgeJob {
    /// Every log index `<= upto`, and the framed `last_purged` record saying so.
    Purge { upto: u64, last_purged: Vec<u8> },
    /// Wake a waiter once every purge queued before it has run.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

pub(crate) struct Purger {
    // Option so Drop can close the channel before joining the thread.
    tx: Option<mpsc::Sender<PurgeJob>>,
    thread: Option<JoinHandle<()>>,
}

impl Purger {
    pub(crate) fn start(backend: Arc<dyn LogBackend>) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel::<PurgeJob>();
        let thread = std::thread::Builder::new()
            .name("rq-log-purge".to_string())
            .spawn(move || run(backend.as_ref(), rx))
            .map_err(|e| StoreError::Flush {
                reason: format!("cannot start the purge thread: {e}"),
            })?;
        Ok(Purger {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    fn send(&self, job: PurgeJob) -> Result<(), StoreError> {
        self.tx
            .as_ref()
            .ok_or_else(gone)?
            .send(job)
            .map_err(|_| gone())
    }

    /// Queues the deletion of every log index `<= upto`.
    pub(crate) fn purge(&self, upto: u64, last_purged: Vec<u8>) -> Result<(), StoreError> {
        self.send(PurgeJob::Purge { upto, last_purged })
    }

    /// Waits until every purge queued before this call has run.
    pub(crate) async fn drain(&self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(PurgeJob::Barrier(tx))?;
        rx.await.map_err(|_| gone())
    }
}

impl Drop for Purger {
    fn drop(&mut self) {
        // Closing the channel ends the thread after the queued purges; joining releases
        // the backend (and sled's file lock) with the store.
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the log purge thread panicked");
            }
        }
    }
}

fn gone() -> StoreError {
    StoreError::Flush {
        reason: "the purge thread has stopped".to_string(),
    }
}

fn run(backend: &dyn LogBackend, rx: mpsc::Receiver<PurgeJob>) {
    let mut barriers = Vec::new();
    while let Ok(first) = rx.recv() {
        // Only the highest queued purge matters: it covers the others.
        let mut highest: Option<(u64, Vec<u8>)> = None;
        let mut job = Some(first);
        while let Some(j) = job.take().or_else(|| rx.try_recv().ok()) {
            match j {
                PurgeJob::Purge { upto, last_purged } => {
                    if highest.as_ref().is_none_or(|(h, _)| upto >= *h) {
                        highest = Some((upto, last_purged));
                    }
                }
                PurgeJob::Barrier(tx) => barriers.push(tx),
            }
        }
        if let Some((upto, last_purged)) = highest {
            let started = std::time::Instant::now();
            match backend.purge(upto, last_purged) {
                Ok(()) => tracing::debug!(
                    upto,
                    took_ms = started.elapsed().as_millis() as u64,
                    "log purged"
                ),
                Err(e) => {
                    tracing::error!(upto, error = %e, "log purge failed; retried with the next one")
                }
            }
        }
        for tx in barriers.drain(..) {
            // The waiter may have gone; nothing to do then.
            let _ = tx.send(());
        }
    }
}
