//! When each node builds its snapshots: every `snapshot_every` entries, at an offset of
//! its own.
//!
//! openraft's `SnapshotPolicy::LogsSinceLast(n)` puts every node's snapshot at the same
//! log index (n, 2n, ...), so all of them serialise, save and purge at once, and the
//! leader and the follower it needs for a quorum slow down together: the open-loop
//! cycle's worst pauses came at exactly those indexes (docs/benchmarks.md). Here node `id`
//! snapshots at the indexes `≡ (id mod 5) · n / 5 (mod n)`, so up to five nodes with
//! consecutive ids never snapshot at the same point, and a majority is never busy
//! snapshotting together. Raft is set to `SnapshotPolicy::Never` and
//! [`build_on_schedule`] triggers the builds.
//!
//! After a snapshot installed from the leader (at the leader's offset) the next build
//! waits for this node's own offset at least `n / 2` entries later, so the log between
//! snapshots stays within 1.5 n entries.

use std::time::Duration;

use super::types::Raft;

/// The log indexes at which one node builds its snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotSchedule {
    every: u64,
    offset: u64,
}

impl SnapshotSchedule {
    /// Node `id`'s schedule for a snapshot every `every` entries.
    pub fn new(id: u64, every: u64) -> SnapshotSchedule {
        let every = every.max(1);
        SnapshotSchedule {
            every,
            offset: (id % 5) * every / 5,
        }
    }

    /// The applied index at which to build the snapshot after one at `last` (its last
    /// log index; `None`: no snapshot yet): the first index of this node's offset at
    /// least `every / 2` past `last`.
    pub fn next_after(&self, last: Option<u64>) -> u64 {
        let earliest = last.map_or(0, |l| l.saturating_add(1)) + self.every / 2;
        let periods = earliest.saturating_sub(self.offset).div_ceil(self.every);
        self.offset + periods * self.every
    }
}

/// How long a requested build may take to show in the metrics before it is requested
/// again (openraft ignores a request while a build is running).
const RETRY: Duration = Duration::from_secs(1);

/// Trigger a snapshot build whenever the applied index reaches the schedule's next
/// point. Ends when Raft has stopped.
pub(crate) async fn build_on_schedule(raft: Raft, schedule: SnapshotSchedule) {
    let mut metrics = raft.metrics();
    let mut requested: Option<(u64, tokio::time::Instant)> = None;
    loop {
        let (applied, last) = {
            let m = metrics.borrow_and_update();
            (
                m.last_applied.as_ref().map(|l| l.index),
                m.snapshot.as_ref().map(|l| l.index),
            )
        };
        let next = schedule.next_after(last);
        let due = applied.is_some_and(|a| a >= next);
        let pending = requested.is_some_and(|(at, when)| at == next && when.elapsed() < RETRY);
        if due && !pending {
            tracing::debug!(next, ?applied, ?last, "building the scheduled snapshot");
            if raft.trigger().snapshot().await.is_err() {
                return;
            }
            requested = Some((next, tokio::time::Instant::now()));
        }
        // A timeout only re-checks (a request openraft ignored is made again).
        if let Ok(Err(_)) = tokio::time::timeout(RETRY, metrics.changed()).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_and_five_nodes_snapshot_at_distinct_points() {
        for nodes in [3u64, 5] {
            let firsts: Vec<u64> = (1..=nodes)
                .map(|id| SnapshotSchedule::new(id, 10_000).next_after(None) % 10_000)
                .collect();
            let mut distinct = firsts.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), firsts.len(), "{nodes} nodes: {firsts:?}");
        }
    }

    #[test]
    fn the_next_point_keeps_the_offset_and_the_spacing() {
        let s = SnapshotSchedule::new(2, 10_000); // offset 4 000
        assert_eq!(s.next_after(None), 14_000);
        assert_eq!(s.next_after(Some(14_000)), 24_000);
        assert_eq!(s.next_after(Some(14_003)), 24_000);
        // Installed from a leader at another offset: the own offset, >= n / 2 later.
        assert_eq!(s.next_after(Some(30_000)), 44_000);
        assert_eq!(s.next_after(Some(33_000)), 44_000);
        assert_eq!(s.next_after(Some(39_000)), 54_000);
        for last in (0..100_000).step_by(997) {
            let next = s.next_after(Some(last));
            assert_eq!(next % 10_000, 4_000);
            assert!(
                next > last + 5_000 && next <= last + 15_001,
                "{last} -> {next}"
            );
        }
    }

    #[test]
    fn tiny_periods_still_snapshot() {
        let s = SnapshotSchedule::new(3, 1);
        assert_eq!(s.next_after(None), 0);
        assert_eq!(s.next_after(Some(7)), 8);
        let s = SnapshotSchedule::new(4, 10); // offset 8
        assert_eq!(s.next_after(None), 8);
        assert_eq!(s.next_after(Some(8)), 18);
    }
}
