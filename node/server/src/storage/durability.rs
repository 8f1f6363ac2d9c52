//! [`Durability`]: the leader's own durable prefix when its fsync overlaps replication
//! (`--leader-fsync-overlap`, ARCHITECTURE.md "The leader's fsync overlaps replication").
//!
//! With the overlap on, `LogStore::append` completes openraft's callback before the fsync
//! for an append the current leader makes in its own term, so openraft counts the leader's
//! copy towards the commit and starts replicating at once. A commit may then rest on a copy
//! that is not on the leader's disk yet, so every effect of a commit waits here until the
//! leader's fsync is done:
//! - the state machine's `apply` waits ([`Durability::wait_durable`]), hence every answer,
//!   read and snapshot;
//! - the commit index sent in AppendEntries and the one `save_committed` persists are capped
//!   at the leader's durable prefix ([`Durability::cap_commit`]);
//! - a failed flush fails every gate and every later early append.
//!
//! When the flush thread advances the durable prefix past a commit that was held back from
//! the followers, [`Durability::commit_released`] wakes the node, which prompts a heartbeat
//! so the followers learn the commit at once rather than at the next heartbeat.
//!
//! Why the gate is exact (`Marks::covers`): only entries of the leader's current term are
//! acknowledged early, and every vote change is flushed (`save_vote`), which makes every
//! earlier early append durable before a new term begins. So an entry of an earlier term than
//! the last early one, or later than it, was acknowledged only after its fsync (and an fsync
//! covers every write before it); an entry at or below the last early one in the same term is
//! durable once a flush after its append has completed. A commit that has passed a gate is
//! held by a majority of disks and is never truncated, so everything at or below it passes.

use std::sync::Arc;

use openraft::{LogId, NodeId};
use tokio::sync::{watch, Notify};

/// The leader's own durable prefix; cheap to clone (one `Arc`), clones share it.
#[derive(Debug)]
pub struct Durability<NID: NodeId> {
    inner: Arc<Inner<NID>>,
}

impl<NID: NodeId> Clone for Durability<NID> {
    fn clone(&self) -> Self {
        Durability {
            inner: Arc::clone(&self.inner),
        }
    }
}

#[derive(Debug)]
struct Inner<NID: NodeId> {
    marks: watch::Sender<Marks<NID>>,
    /// Woken when a flush advances the durable prefix after a commit was held back.
    released: Notify,
}

#[derive(Debug, Clone)]
struct Marks<NID: NodeId> {
    /// The last entry acknowledged to openraft before its fsync.
    early: Option<LogId<NID>>,
    /// The last early-acknowledged entry whose fsync has completed.
    durable: Option<LogId<NID>>,
    /// The highest commit that has passed a gate (held by a majority of disks).
    safe: Option<LogId<NID>>,
    /// Why a flush failed; every gate fails from then on.
    failed: Option<String>,
    /// A commit was held back from the followers since the last release.
    held: bool,
}

impl<NID: NodeId> Marks<NID> {
    /// Whether `id`, committed in openraft's view, is held by a majority of disks.
    fn covers(&self, id: &LogId<NID>) -> bool {
        if self.failed.is_some() {
            return false;
        }
        if self.safe.as_ref() >= Some(id) {
            return true;
        }
        match &self.early {
            None => true,
            Some(early) => {
                id > early || id.leader_id < early.leader_id || self.durable.as_ref() >= Some(id)
            }
        }
    }

    fn passed(&mut self, id: &LogId<NID>) {
        if self.safe.as_ref() < Some(id) {
            self.safe = Some(id.clone());
        }
    }
}

impl<NID: NodeId> Default for Durability<NID> {
    fn default() -> Self {
        Self::new()
    }
}

impl<NID: NodeId> Durability<NID> {
    pub fn new() -> Self {
        let (marks, _) = watch::channel(Marks {
            early: None,
            durable: None,
            safe: None,
            failed: None,
            held: false,
        });
        Durability {
            inner: Arc::new(Inner {
                marks,
                released: Notify::new(),
            }),
        }
    }

    /// `last` (and every entry of its append) is acknowledged to openraft before its
    /// fsync. Called before the callback is completed.
    pub(crate) fn acknowledged_early(&self, last: &LogId<NID>) {
        self.inner.marks.send_modify(|m| {
            if m.early.as_ref() < Some(last) {
                m.early = Some(last.clone());
            }
        });
    }

    /// A flush issued after the early append ending at `last` has completed.
    pub(crate) fn flushed(&self, last: &LogId<NID>) {
        let mut release = false;
        self.inner.marks.send_if_modified(|m| {
            if m.durable.as_ref() >= Some(last) {
                return false;
            }
            m.durable = Some(last.clone());
            release = std::mem::take(&mut m.held);
            true
        });
        if release {
            self.inner.released.notify_one();
        }
    }

    /// A flush failed: every gate fails from now on.
    pub(crate) fn failed(&self, reason: &str) {
        self.inner.marks.send_if_modified(|m| {
            if m.failed.is_some() {
                return false;
            }
            m.failed = Some(reason.to_owned());
            true
        });
    }

    /// Why a flush failed, if one did.
    pub fn failure(&self) -> Option<String> {
        self.inner.marks.borrow().failed.clone()
    }

    /// The commit index that may leave this node (in AppendEntries, or persisted by
    /// `save_committed`): `committed` if the leader's disk holds it or a majority did
    /// without it, else the highest lower commit known to be held by a majority of disks
    /// (the leader's durable prefix in that term, or a commit that passed a gate before).
    pub fn cap_commit(&self, committed: Option<LogId<NID>>) -> Option<LogId<NID>> {
        let id = committed?;
        let mut out = None;
        self.inner.marks.send_if_modified(|m| {
            if m.covers(&id) {
                let moved = m.safe.as_ref() < Some(&id);
                m.passed(&id);
                out = Some(id.clone());
                moved
            } else {
                // The leader's durable prefix inside this commit's term is committed too
                // (a prefix of it) and on the leader's disk: it may leave.
                m.held = true;
                let mut moved = false;
                if let Some(durable) = m.durable.clone() {
                    if durable.leader_id == id.leader_id && durable < id {
                        moved = m.safe.as_ref() < Some(&durable);
                        m.passed(&durable);
                    }
                }
                out = m.safe.clone();
                moved
            }
        });
        if out.as_ref() != Some(&id) {
            tracing::debug!(committed = %id, sent = ?out, "commit held back until the leader's own fsync");
        }
        out
    }

    /// Wait until `id`, committed in openraft's view, is held by a majority of disks (the
    /// apply gate). Fails if a flush failed.
    pub async fn wait_durable(&self, id: &LogId<NID>) -> Result<(), String> {
        let mut rx = self.inner.marks.subscribe();
        let waited = {
            let m = rx.borrow_and_update();
            if let Some(reason) = &m.failed {
                return Err(reason.clone());
            }
            !m.covers(id)
        };
        if waited {
            tracing::debug!(index = id.index, "apply waits for the leader's own fsync");
            let m = rx
                .wait_for(|m| m.failed.is_some() || m.covers(id))
                .await
                .map_err(|_| "the log store is gone".to_string())?;
            if let Some(reason) = &m.failed {
                return Err(reason.clone());
            }
        }
        self.inner.marks.send_if_modified(|m| {
            let moved = m.safe.as_ref() < Some(id);
            m.passed(id);
            moved
        });
        Ok(())
    }

    /// Resolves once a flush has advanced the durable prefix after a commit was held back
    /// from the followers (a wake-up is kept if nobody waits yet).
    pub async fn commit_released(&self) {
        self.inner.released.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    fn id(term: u64, node: u64, index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(term, node), index)
    }

    fn now<F: std::future::Future>(f: F) -> Option<F::Output> {
        futures::FutureExt::now_or_never(f)
    }

    #[test]
    fn without_early_appends_everything_passes() {
        let d = Durability::<u64>::new();
        assert_eq!(d.cap_commit(Some(id(1, 1, 5))), Some(id(1, 1, 5)));
        assert_eq!(d.cap_commit(None), None);
        assert_eq!(now(d.wait_durable(&id(1, 1, 7))), Some(Ok(())));
    }

    #[test]
    fn an_early_entry_is_held_back_until_its_flush() {
        let d = Durability::<u64>::new();
        assert_eq!(d.cap_commit(Some(id(2, 1, 3))), Some(id(2, 1, 3)));
        d.acknowledged_early(&id(2, 1, 5));
        // 4 and 5 were acknowledged early: the cap falls back to the last safe commit.
        assert_eq!(d.cap_commit(Some(id(2, 1, 4))), Some(id(2, 1, 3)));
        assert_eq!(d.cap_commit(Some(id(2, 1, 5))), Some(id(2, 1, 3)));
        assert_eq!(now(d.wait_durable(&id(2, 1, 5))), None, "apply must wait");
        // Below the safe commit, and entries of earlier terms, pass.
        assert_eq!(now(d.wait_durable(&id(2, 1, 3))), Some(Ok(())));
        assert_eq!(now(d.wait_durable(&id(1, 2, 9))), Some(Ok(())));
        // A later entry of the same term was acknowledged after its own fsync.
        assert_eq!(d.cap_commit(Some(id(2, 1, 6))), Some(id(2, 1, 6)));
    }

    #[tokio::test]
    async fn the_flush_releases_apply_and_the_followers_commit() {
        let d = Durability::<u64>::new();
        d.acknowledged_early(&id(3, 1, 10));
        assert_eq!(d.cap_commit(Some(id(3, 1, 10))), None);
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.wait_durable(&id(3, 1, 10)).await }
        });
        let released = tokio::spawn({
            let d = d.clone();
            async move { d.commit_released().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        d.flushed(&id(3, 1, 9));
        assert_eq!(d.cap_commit(Some(id(3, 1, 10))), Some(id(3, 1, 9)));
        d.flushed(&id(3, 1, 10));
        assert_eq!(waiter.await.unwrap(), Ok(()));
        released.await.unwrap();
        assert_eq!(d.cap_commit(Some(id(3, 1, 10))), Some(id(3, 1, 10)));
    }

    #[test]
    fn no_release_without_a_held_commit() {
        let d = Durability::<u64>::new();
        d.acknowledged_early(&id(1, 1, 2));
        d.flushed(&id(1, 1, 2));
        assert_eq!(now(d.commit_released()), None);
    }

    #[test]
    fn a_new_term_after_a_flushed_vote_is_not_gated_by_the_old_one() {
        let d = Durability::<u64>::new();
        d.acknowledged_early(&id(4, 1, 20));
        d.flushed(&id(4, 1, 20));
        // Term 6: the log was truncated to 15 and the node leads again; its new early
        // entry 16 is not covered by term 4's durable 20.
        d.acknowledged_early(&id(6, 1, 16));
        assert_eq!(now(d.wait_durable(&id(6, 1, 16))), None);
        assert_eq!(d.cap_commit(Some(id(6, 1, 16))), None);
    }

    #[tokio::test]
    async fn a_failed_flush_fails_every_gate() {
        let d = Durability::<u64>::new();
        d.acknowledged_early(&id(1, 1, 4));
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.wait_durable(&id(1, 1, 4)).await }
        });
        tokio::task::yield_now().await;
        d.failed("EIO");
        assert_eq!(waiter.await.unwrap(), Err("EIO".to_string()));
        assert_eq!(d.failure().as_deref(), Some("EIO"));
        assert_eq!(
            now(d.wait_durable(&id(0, 1, 1))),
            Some(Err("EIO".to_string()))
        );
        assert_eq!(d.cap_commit(Some(id(1, 1, 5))), None);
    }
}
