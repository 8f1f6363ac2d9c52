//! The log store's flush thread: group commit of fsyncs, and the only place that completes
//! openraft's append callbacks.
//!
//! `append` writes entries to the backend (readable at once) and queues its `LogFlushed`
//! callback here; the thread takes every queued job, calls `backend.flush()` once, and only
//! then completes the callbacks, in queue order. Vote saves queue a barrier and wait for it.
//! After one failed flush the thread is poisoned and fails every later job without flushing
//! again: once fsync has failed, nothing written since the last good one can be trusted.
//! With `--leader-fsync-overlap` (`durability`), an append acknowledged before its fsync
//! queues a mark instead of a callback: the flush that covers it advances the leader's
//! durable prefix, and a failed flush fails every gate at once.
//! A dedicated OS thread (not a tokio task) because `flush` blocks on fsync.

use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use openraft::storage::LogFlushed;
use openraft::{LogId, RaftTypeConfig};

use super::backend::LogBackend;
use super::durability::Durability;
use super::error::StoreError;

/// Jobs taken per flush at most, so callbacks are not delayed behind an unbounded drain.
const FLUSH_BATCH_JOBS_MAX: usize = 1024;

enum FlushJob<C: RaftTypeConfig> {
    /// Complete an append's callback once its entries are durable.
    Append(LogFlushed<C>),
    /// Mark an append already acknowledged (ending at this entry) durable once flushed.
    Early(LogId<C::NodeId>),
    /// Wake a waiter once everything written before the job was queued is durable.
    Barrier(tokio::sync::oneshot::Sender<Result<(), String>>),
}

pub(crate) struct Flusher<C: RaftTypeConfig> {
    // Option so Drop can close the channel before joining the thread.
    tx: Option<mpsc::Sender<FlushJob<C>>>,
    thread: Option<JoinHandle<()>>,
}

impl<C: RaftTypeConfig> Flusher<C> {
    /// `durability` is set once the overlap is turned on (before Raft starts).
    pub(crate) fn start(
        backend: Arc<dyn LogBackend>,
        durability: Arc<OnceLock<Durability<C::NodeId>>>,
    ) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel::<FlushJob<C>>();
        let thread = std::thread::Builder::new()
            .name("rq-log-flush".to_string())
            .spawn(move || run(backend.as_ref(), &durability, rx))
            .map_err(|e| StoreError::Flush {
                reason: format!("cannot start the flush thread: {e}"),
            })?;
        Ok(Flusher {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    fn send(&self, job: FlushJob<C>) -> Result<(), StoreError> {
        let gone = || StoreError::Flush {
            reason: "the flush thread has stopped".to_string(),
        };
        self.tx
            .as_ref()
            .ok_or_else(gone)?
            .send(job)
            .map_err(|_| gone())
    }

    /// Queue an append callback: it is completed after the next flush.
    pub(crate) fn complete_after_flush(&self, callback: LogFlushed<C>) -> Result<(), StoreError> {
        self.send(FlushJob::Append(callback))
    }

    /// Queue the mark of an early-acknowledged append ending at `last`: the leader's
    /// durable prefix reaches it after the next flush.
    pub(crate) fn mark_after_flush(&self, last: LogId<C::NodeId>) -> Result<(), StoreError> {
        self.send(FlushJob::Early(last))
    }

    /// Wait until everything written before this call is durable.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(FlushJob::Barrier(tx))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(StoreError::Flush { reason }),
            Err(_) => Err(StoreError::Flush {
                reason: "the flush thread dropped the request".to_string(),
            }),
        }
    }
}

impl<C: RaftTypeConfig> Drop for Flusher<C> {
    fn drop(&mut self) {
        // Closing the channel ends the thread after it has served every queued job; joining
        // guarantees the backend (and sled's file lock) is released when the store is dropped.
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the log flush thread panicked");
            }
        }
    }
}

fn run<C: RaftTypeConfig>(
    backend: &dyn LogBackend,
    durability: &OnceLock<Durability<C::NodeId>>,
    rx: mpsc::Receiver<FlushJob<C>>,
) {
    let mut poisoned: Option<String> = None;
    let mut jobs = Vec::new();
    while let Ok(first) = rx.recv() {
        jobs.push(first);
        while jobs.len() < FLUSH_BATCH_JOBS_MAX {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let result = match &poisoned {
            Some(reason) => Err(format!("an earlier flush failed: {reason}")),
            None => {
                let r = backend.flush().map_err(|e| e.to_string());
                tracing::debug!(jobs = jobs.len(), "log flushed");
                r
            }
        };
        if let Err(reason) = &result {
            if poisoned.is_none() {
                tracing::error!(error = %reason, "log flush failed; the log store is now unusable");
                poisoned = Some(reason.clone());
            }
            if let Some(d) = durability.get() {
                d.failed(reason);
            }
        }
        for job in jobs.drain(..) {
            match job {
                FlushJob::Append(callback) => callback.log_io_completed(
                    result
                        .clone()
                        .map_err(|reason| std::io::Error::other(format!("log flush: {reason}"))),
                ),
                FlushJob::Early(last) => {
                    if let (Ok(()), Some(d)) = (&result, durability.get()) {
                        d.flushed(&last);
                    }
                }
                FlushJob::Barrier(tx) => {
                    // The waiter may have been cancelled; nothing to do then.
                    let _ = tx.send(result.clone());
                }
            }
        }
    }
}
