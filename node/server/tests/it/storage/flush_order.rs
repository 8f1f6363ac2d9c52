//! An append's callback, and `save_vote`'s return, come only after a flush (fsync).
//!
//! `GatedBackend` blocks inside `flush` until the test releases it. The tests run on
//! tokio's current-thread runtime, so when the test resumes after "flush entered", the
//! appending task has run as far as it can: if the callback had been completed before the
//! flush, that task would already have finished.
//!
//! With the leader's fsync overlapping replication (`LogStore::overlap_leader_fsync`), the
//! current leader's own append in its own term is the one exception: acknowledged before
//! its flush, and its `Durability` gate holds until the flush is done. Every other append
//! keeps the order above.

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{Entry, EntryPayload, Membership, RaftLogReader, Vote};
use ratequeue_node::storage::{
    LogBackend, LogRecord, LogVisitor, MemBackend, MetaKey, SnapshotRecords, StoreError,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::support::{log_id, normal, Store, TestConfig};

type Events = Arc<Mutex<Vec<&'static str>>>;

struct GatedBackend {
    inner: MemBackend,
    entered: UnboundedSender<()>,
    release: Mutex<mpsc::Receiver<()>>,
    events: Events,
    /// Every released flush fails (an EIO from fsync) once set.
    fail: AtomicBool,
}

impl LogBackend for GatedBackend {
    fn append(&self, records: Vec<LogRecord>) -> Result<(), StoreError> {
        self.inner.append(records)
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
        self.inner.truncate_from(index)
    }
    /// The backend contract: `last_purged` made durable (the gated flush), then deleted.
    fn purge(&self, upto: u64, last_purged: Vec<u8>) -> Result<(), StoreError> {
        self.inner
            .put_meta(MetaKey::LastPurged, last_purged.clone())?;
        self.flush()?;
        self.inner.purge(upto, last_purged)
    }
    fn put_meta(&self, key: MetaKey, record: Vec<u8>) -> Result<(), StoreError> {
        self.inner.put_meta(key, record)
    }
    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_meta(key)
    }
    fn save_snapshot(&self, meta: Vec<u8>, data: Vec<u8>) -> Result<(), StoreError> {
        self.inner.save_snapshot(meta, data)
    }
    fn load_snapshot(&self) -> Result<Option<SnapshotRecords>, StoreError> {
        self.inner.load_snapshot()
    }
    fn flush(&self) -> Result<(), StoreError> {
        let _ = self.entered.send(());
        self.release.lock().unwrap().recv().unwrap();
        if self.fail.load(Ordering::SeqCst) {
            self.events.lock().unwrap().push("flush failed");
            return Err(StoreError::Flush {
                reason: "Input/output error (os error 5)".to_string(),
            });
        }
        self.inner.flush()?;
        self.events.lock().unwrap().push("flushed");
        Ok(())
    }
    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.inner.size_on_disk()
    }
}

fn gated() -> (
    Arc<GatedBackend>,
    UnboundedReceiver<()>,
    mpsc::Sender<()>,
    Events,
) {
    let (entered, entered_rx) = unbounded_channel();
    let (release_tx, release) = mpsc::channel();
    let events = Events::default();
    let backend = Arc::new(GatedBackend {
        inner: MemBackend::new(),
        entered,
        release: Mutex::new(release),
        events: events.clone(),
        fail: AtomicBool::new(false),
    });
    (backend, entered_rx, release_tx, events)
}

/// Guard against a hang if the store never flushes; not a synchronisation device.
const NEVER: Duration = Duration::from_secs(30);

#[tokio::test]
async fn append_callback_is_completed_only_after_the_flush() {
    let (backend, mut entered, release, events) = gated();
    let store = Store::new(backend.clone()).unwrap();

    let mut appender = store.clone();
    let task_events = events.clone();
    let task = tokio::spawn(async move {
        appender
            .blocking_append([normal(1, 0, "a"), normal(1, 1, "b")])
            .await
            .unwrap();
        task_events.lock().unwrap().push("acked");
    });

    tokio::time::timeout(NEVER, entered.recv())
        .await
        .expect("append never asked for a flush")
        .unwrap();
    // `append` has returned: the entries are readable, but not yet acknowledged.
    let readable = store.clone().try_get_log_entries(..).await.unwrap();
    assert_eq!(readable.len(), 2);
    assert!(
        events.lock().unwrap().is_empty(),
        "acknowledged before the flush"
    );
    assert!(!task.is_finished());

    release.send(()).unwrap();
    tokio::time::timeout(NEVER, task).await.unwrap().unwrap();
    assert_eq!(*events.lock().unwrap(), ["flushed", "acked"]);
    assert_eq!(backend.inner.flush_count(), 1);
}

#[tokio::test]
async fn save_vote_returns_only_after_the_flush() {
    let (backend, mut entered, release, events) = gated();
    let store = Store::new(backend.clone()).unwrap();

    let mut voter = store.clone();
    let task_events = events.clone();
    let task = tokio::spawn(async move {
        voter.save_vote(&Vote::new(7, 3)).await.unwrap();
        task_events.lock().unwrap().push("voted");
    });

    tokio::time::timeout(NEVER, entered.recv())
        .await
        .expect("save_vote never asked for a flush")
        .unwrap();
    assert!(
        events.lock().unwrap().is_empty(),
        "vote returned before the flush"
    );
    assert!(!task.is_finished());

    release.send(()).unwrap();
    tokio::time::timeout(NEVER, task).await.unwrap().unwrap();
    assert_eq!(*events.lock().unwrap(), ["flushed", "voted"]);
    assert_eq!(
        store.clone().read_vote().await.unwrap(),
        Some(Vote::new(7, 3))
    );
}

/// Appends queued while a flush is running are covered by one following flush (group
/// commit), and every callback is still completed after a flush that covers it.
#[tokio::test]
async fn appends_queued_during_a_flush_share_the_next_flush() {
    let (backend, mut entered, release, events) = gated();
    let store = Store::new(backend.clone()).unwrap();

    let mut first = store.clone();
    let first_events = events.clone();
    let first_task = tokio::spawn(async move {
        first.blocking_append([normal(1, 0, "a")]).await.unwrap();
        first_events.lock().unwrap().push("acked");
    });
    tokio::time::timeout(NEVER, entered.recv())
        .await
        .unwrap()
        .unwrap();

    let mut tasks = Vec::new();
    for i in 1..=3u64 {
        let mut s = store.clone();
        let ev = events.clone();
        tasks.push(tokio::spawn(async move {
            s.blocking_append([normal(1, i, "b")]).await.unwrap();
            ev.lock().unwrap().push("acked");
        }));
    }
    // An append queues its flush job before it returns (no await in between), so once all
    // three entries are readable, all three jobs wait behind the running flush.
    let mut reader = store.clone();
    while reader.try_get_log_entries(1..4).await.unwrap().len() < 3 {
        tokio::task::yield_now().await;
    }
    release.send(()).unwrap();
    tokio::time::timeout(NEVER, first_task)
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(NEVER, entered.recv())
        .await
        .unwrap()
        .unwrap();
    release.send(()).unwrap();
    for t in tasks {
        tokio::time::timeout(NEVER, t).await.unwrap().unwrap();
    }
    assert_eq!(backend.inner.flush_count(), 2);
    assert_eq!(
        *events.lock().unwrap(),
        ["flushed", "acked", "flushed", "acked", "acked", "acked"]
    );
}

/// `purge` returns at once (openraft awaits it on its core task): the deletion runs on
/// the purge thread, which makes `last_purged` durable (a flush) before it deletes.
#[tokio::test]
async fn purge_returns_before_its_deletion_which_follows_a_flush() {
    let (backend, mut entered, release, events) = gated();
    let store = Store::new(backend.clone()).unwrap();
    let mut appender = store.clone();
    let append = tokio::spawn(async move {
        appender
            .blocking_append((0..4).map(|i| normal(1, i, "x")))
            .await
            .unwrap();
    });
    tokio::time::timeout(NEVER, entered.recv())
        .await
        .unwrap()
        .unwrap();
    release.send(()).unwrap();
    tokio::time::timeout(NEVER, append).await.unwrap().unwrap();

    let mut purger = store.clone();
    tokio::time::timeout(NEVER, purger.purge(log_id(1, 1, 2)))
        .await
        .expect("purge waited for its deletion")
        .unwrap();
    // The purge point is visible at once.
    let state = purger.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 2)));
    // The purge thread is now inside its flush: nothing is deleted yet.
    tokio::time::timeout(NEVER, entered.recv())
        .await
        .expect("the purge never flushed")
        .unwrap();
    assert_eq!(backend.inner.read_range(0..10).unwrap().len(), 4);
    release.send(()).unwrap();
    // `flush` waits for the purge, then flushes once more itself.
    let flusher = store.clone();
    let flushed = tokio::spawn(async move { flusher.flush().await });
    tokio::time::timeout(NEVER, entered.recv())
        .await
        .unwrap()
        .unwrap();
    release.send(()).unwrap();
    tokio::time::timeout(NEVER, flushed)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let left: Vec<u64> = backend
        .inner
        .read_range(0..10)
        .unwrap()
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    assert_eq!(left, [3]);
    assert_eq!(*events.lock().unwrap(), ["flushed", "flushed", "flushed"]);
}

/// Node 1's entry at `index`, appended by the leader `leader` of `term`.
fn entry_of(
    term: u64,
    leader: u64,
    index: u64,
    payload: EntryPayload<TestConfig>,
) -> Entry<TestConfig> {
    Entry {
        log_id: log_id(term, leader, index),
        payload,
    }
}

fn membership() -> EntryPayload<TestConfig> {
    EntryPayload::Membership(Membership::new(vec![BTreeSet::from([1, 2, 3])], None))
}

/// A store over a gated backend with the overlap on for node 1, whose durable vote is
/// `vote` (its flush released here).
async fn overlapping(
    vote: Vote<u64>,
) -> (
    Store,
    ratequeue_node::storage::Durability<u64>,
    Arc<GatedBackend>,
    UnboundedReceiver<()>,
    mpsc::Sender<()>,
    Events,
) {
    let (backend, mut entered, release, events) = gated();
    let store = Store::new(backend.clone()).unwrap();
    let durability = store.overlap_leader_fsync(1).unwrap();
    assert_eq!(store.clone().read_vote().await.unwrap(), None);
    let mut voter = store.clone();
    let saved = tokio::spawn(async move { voter.save_vote(&vote).await });
    tokio::time::timeout(NEVER, entered.recv())
        .await
        .unwrap()
        .unwrap();
    release.send(()).unwrap();
    tokio::time::timeout(NEVER, saved)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    events.lock().unwrap().clear();
    (store, durability, backend, entered, release, events)
}

#[tokio::test]
async fn overlap_acknowledges_the_leaders_own_append_before_its_flush_and_gates_it() {
    let (store, durability, _backend, mut entered, release, events) =
        overlapping(Vote::new_committed(2, 1)).await;
    // Before anything was acknowledged early, a commit passes.
    assert_eq!(
        durability.cap_commit(Some(log_id(1, 1, 0))),
        Some(log_id(1, 1, 0))
    );

    let mut appender = store.clone();
    tokio::time::timeout(
        NEVER,
        appender.blocking_append([normal(2, 1, "a"), normal(2, 2, "b")]),
    )
    .await
    .expect("the leader's own append waited for its flush")
    .unwrap();
    events.lock().unwrap().push("acked");
    tokio::time::timeout(NEVER, entered.recv())
        .await
        .expect("the early append never asked for a flush")
        .unwrap();
    // Acknowledged, readable, not durable: every gate holds.
    assert_eq!(
        store.clone().try_get_log_entries(..).await.unwrap().len(),
        2
    );
    assert_eq!(*events.lock().unwrap(), ["acked"]);
    let committed = Some(log_id(2, 1, 2));
    assert_eq!(durability.cap_commit(committed), Some(log_id(1, 1, 0)));
    let gate = durability.clone();
    let apply = tokio::spawn(async move { gate.wait_durable(&log_id(2, 1, 2)).await });
    tokio::task::yield_now().await;
    assert!(
        !apply.is_finished(),
        "apply passed before the leader's fsync"
    );
    // save_committed persists the capped commit.
    store.clone().save_committed(committed).await.unwrap();
    assert_eq!(
        store.clone().read_committed().await.unwrap(),
        Some(log_id(1, 1, 0))
    );

    release.send(()).unwrap();
    tokio::time::timeout(NEVER, apply)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(*events.lock().unwrap(), ["acked", "flushed"]);
    assert_eq!(durability.cap_commit(committed), committed);
    // The flush thread wakes the gate first and the heartbeat after it: wait for it.
    tokio::time::timeout(NEVER, durability.commit_released())
        .await
        .expect("the flush released the held-back commit");
}

/// Appends that are not the current leader's own in its own term keep the order: their
/// callbacks come only after their flush, with the overlap on.
#[tokio::test]
async fn overlap_acknowledges_every_other_append_only_after_its_flush() {
    // Leader of term 3: an entry of its earlier term 2, and a membership entry.
    // Then, as follower of node 2 in term 4: node 2's entry.
    let cases: [(Option<Vote<u64>>, Entry<TestConfig>); 3] = [
        (
            None,
            entry_of(2, 1, 1, EntryPayload::Normal("earlier term".into())),
        ),
        (None, entry_of(3, 1, 2, membership())),
        (
            Some(Vote::new_committed(4, 2)),
            entry_of(4, 2, 3, EntryPayload::Normal("follower".into())),
        ),
    ];
    let (store, durability, _backend, mut entered, release, events) =
        overlapping(Vote::new_committed(3, 1)).await;
    for (vote, entry) in cases {
        if let Some(vote) = vote {
            let mut voter = store.clone();
            let saved = tokio::spawn(async move { voter.save_vote(&vote).await });
            tokio::time::timeout(NEVER, entered.recv())
                .await
                .unwrap()
                .unwrap();
            release.send(()).unwrap();
            tokio::time::timeout(NEVER, saved)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
        events.lock().unwrap().clear();
        let what = format!("{:?}", entry.payload);
        let mut appender = store.clone();
        let task_events = events.clone();
        let task = tokio::spawn(async move {
            appender.blocking_append([entry]).await.unwrap();
            task_events.lock().unwrap().push("acked");
        });
        tokio::time::timeout(NEVER, entered.recv())
            .await
            .expect("append never asked for a flush")
            .unwrap();
        assert!(
            events.lock().unwrap().is_empty(),
            "{what}: acknowledged before its flush"
        );
        assert!(!task.is_finished(), "{what}");
        release.send(()).unwrap();
        tokio::time::timeout(NEVER, task).await.unwrap().unwrap();
        assert_eq!(*events.lock().unwrap(), ["flushed", "acked"], "{what}");
    }
    // Nothing was acknowledged early: no gate holds.
    assert_eq!(
        durability.cap_commit(Some(log_id(4, 2, 3))),
        Some(log_id(4, 2, 3))
    );
}

#[tokio::test]
async fn overlap_reads_the_nodes_own_committed_vote_back_uncommitted() {
    let backend = Arc::new(MemBackend::new());
    for (saved, read_with_overlap) in [
        (Vote::new_committed(5, 1), Vote::new(5, 1)),
        (Vote::new_committed(6, 2), Vote::new_committed(6, 2)),
        (Vote::new(7, 1), Vote::new(7, 1)),
    ] {
        {
            let mut store = Store::new(backend.clone()).unwrap();
            store.save_vote(&saved).await.unwrap();
        }
        // Without the overlap, the vote is read back as saved.
        {
            let store = Store::new(backend.clone()).unwrap();
            assert_eq!(store.clone().read_vote().await.unwrap(), Some(saved));
        }
        let store = Store::new(backend.clone()).unwrap();
        store.overlap_leader_fsync(1).unwrap();
        assert_eq!(
            store.clone().read_vote().await.unwrap(),
            Some(read_with_overlap),
            "saved {saved}"
        );
        // The same term: the vote never goes backwards, and node 1 can lead again only
        // after an election, under a higher term.
        assert_eq!(read_with_overlap.leader_id().term, saved.leader_id().term);
    }
}

#[tokio::test]
async fn overlap_a_failed_flush_fails_the_gate_and_every_later_early_append() {
    let (store, durability, backend, mut entered, release, _events) =
        overlapping(Vote::new_committed(2, 1)).await;
    let mut appender = store.clone();
    tokio::time::timeout(NEVER, appender.blocking_append([normal(2, 1, "a")]))
        .await
        .unwrap()
        .unwrap();
    let gate = durability.clone();
    let apply = tokio::spawn(async move { gate.wait_durable(&log_id(2, 1, 1)).await });
    tokio::time::timeout(NEVER, entered.recv())
        .await
        .unwrap()
        .unwrap();
    backend.fail.store(true, Ordering::SeqCst);
    release.send(()).unwrap();
    let failed = tokio::time::timeout(NEVER, apply).await.unwrap().unwrap();
    assert!(failed.unwrap_err().contains("os error 5"));
    assert!(durability.failure().is_some());
    assert_eq!(durability.cap_commit(Some(log_id(2, 1, 1))), None);
    let later = appender.blocking_append([normal(2, 2, "b")]).await;
    assert!(
        later.is_err(),
        "an early append after a failed flush: {later:?}"
    );
}
