//! Per-resource time series for the dashboard: one point per second for the last
//! `SERIES_SECONDS`, for at most `SERIES_RESOURCES_MAX` resources with recent activity.
//!
//! Fed from two sides. The state machine reports every applied grant (resource and
//! load) on every node, so a follower that becomes leader already has the grant and
//! load history. The leader's admission loop reports what only it knows: the wait of
//! each answered grant and each refusal; the sampler adds the queue lengths it asks the
//! loop for once a second. A follower has no such figures: its points carry `None`.
//!
//! The sampler closes a point per second on a monotonic interval and stamps the series
//! with the wall clock, for display only: nothing here is cluster time and nothing here
//! decides anything. Losing it (restart) loses only the charts.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use ratequeue_api::dashboard as ui;

/// Points kept per resource: 5 minutes at one per second.
pub const SERIES_SECONDS: usize = 300;
/// Resources with a series at once; a resource idle for `SERIES_SECONDS` gives its slot
/// back. Past the bound new resources get none (the dashboard says so).
pub const SERIES_RESOURCES_MAX: usize = 1_000;
/// The list's "grants per second" averages this many recent points.
const RATE_POINTS: usize = 10;
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Waiters per lane of every resource with waiters (leader's queue).
pub type Waiting = Vec<(String, Vec<(String, u64)>)>;

/// Wait-time histogram of one second: values below 8 ms exact, then 8 buckets per
/// power of two (at most 12.5 % above the true value).
const WAIT_BUCKETS: usize = 8 + 29 * 8;

struct WaitHist {
    counts: [u32; WAIT_BUCKETS],
    n: u32,
}

fn wait_bucket(ms: u64) -> usize {
    let v = ms.min(u64::from(u32::MAX));
    if v < 8 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros() as usize; // >= 3
    let m = (v >> (e - 3)) as usize - 8; // 0..8
    (8 + (e - 3) * 8 + m).min(WAIT_BUCKETS - 1)
}

/// The largest value that falls into bucket `i`.
fn wait_bucket_top(i: usize) -> u32 {
    if i < 8 {
        return i as u32;
    }
    let e = (i - 8) / 8 + 3;
    let m = ((i - 8) % 8 + 8) as u64;
    let top = ((m + 1) << (e - 3)) - 1;
    u32::try_from(top).unwrap_or(u32::MAX)
}

impl WaitHist {
    fn new() -> Box<Self> {
        Box::new(WaitHist {
            counts: [0; WAIT_BUCKETS],
            n: 0,
        })
    }

    fn add(&mut self, ms: u64) {
        let b = wait_bucket(ms);
        self.counts[b] = self.counts[b].saturating_add(1);
        self.n = self.n.saturating_add(1);
    }

    /// The `q`-quantile (0 < q <= 1) as its bucket's upper bound.
    fn quantile(&self, q: f64) -> Option<u32> {
        if self.n == 0 {
            return None;
        }
        let rank = ((f64::from(self.n) * q).ceil() as u32).clamp(1, self.n);
        let mut seen = 0u32;
        for (i, c) in self.counts.iter().enumerate() {
            seen = seen.saturating_add(*c);
            if seen >= rank {
                return Some(wait_bucket_top(i));
            }
        }
        None
    }
}

/// What happened to a resource during the open second.
#[derive(Default)]
struct Acc {
    grants: u32,
    load: u64,
    rejections: u32,
    waits: Option<Box<WaitHist>>,
}

#[derive(Clone, Copy, Default)]
struct Point {
    grants: u32,
    load: u64,
    rejections: Option<u32>,
    waiting: Option<u32>,
    wait_p50_ms: Option<u32>,
    wait_p99_ms: Option<u32>,
}

impl Point {
    fn is_idle(&self) -> bool {
        self.grants == 0 && self.rejections.unwrap_or(0) == 0 && self.waiting.unwrap_or(0) == 0
    }
}

#[derive(Default)]
struct Track {
    points: VecDeque<Point>,
    acc: Acc,
    /// Consecutive idle points at the end.
    idle: usize,
}

#[derive(Default)]
struct Inner {
    tracks: HashMap<String, Track>,
    /// Figures the admission loop reported since the last point (leader only).
    leader_seen: bool,
    end_unix_ms: u64,
    board: Arc<Board>,
}

impl Inner {
    /// The track of `resource`, created while there is room.
    fn track(&mut self, resource: &str) -> Option<&mut Track> {
        if !self.tracks.contains_key(resource) {
            if self.tracks.len() >= SERIES_RESOURCES_MAX {
                return None;
            }
            self.tracks.insert(resource.to_owned(), Track::default());
        }
        self.tracks.get_mut(resource)
    }
}

/// What the resources list shows from the series, replaced whole at each point so
/// readers take it without holding any lock.
#[derive(Debug, Default)]
pub struct Board {
    /// Whether the queue figures are known (this node leads).
    pub leader: bool,
    /// Waiters per lane, resources with waiters only.
    pub waiting: HashMap<String, BTreeMap<String, u64>>,
    /// Grants per second over the last `RATE_POINTS` points.
    pub grants_per_s: HashMap<String, f64>,
}

/// The series of every tracked resource; shared by the state machine, the admission
/// loop, the sampler and the dashboard handlers. One short lock per call.
#[derive(Default)]
pub struct Series {
    inner: Mutex<Inner>,
}

impl Series {
    /// Grants applied by the state machine: `(resource, load)` each.
    pub fn applied_grants<'a>(&self, grants: impl Iterator<Item = (&'a str, u64)>) {
        let mut grants = grants.peekable();
        if grants.peek().is_none() {
            return;
        }
        let mut inner = self.inner.lock();
        for (resource, load) in grants {
            if let Some(t) = inner.track(resource) {
                t.acc.grants = t.acc.grants.saturating_add(1);
                t.acc.load = t.acc.load.saturating_add(load);
            }
        }
    }

    /// Grants the leader answered, with how long each waited: `(resource, queued_ms)`.
    pub fn waits<'a>(&self, waits: impl Iterator<Item = (&'a str, u64)>) {
        let mut waits = waits.peekable();
        if waits.peek().is_none() {
            return;
        }
        let mut inner = self.inner.lock();
        inner.leader_seen = true;
        for (resource, ms) in waits {
            if let Some(t) = inner.track(resource) {
                t.acc.waits.get_or_insert_with(WaitHist::new).add(ms);
            }
        }
    }

    /// An acquire the leader refused (queue full, would block, wait timeout, too large).
    pub fn refused(&self, resource: &str) {
        let mut inner = self.inner.lock();
        inner.leader_seen = true;
        if let Some(t) = inner.track(resource) {
            t.acc.rejections = t.acc.rejections.saturating_add(1);
        }
    }

    /// Closes the open second: one point per tracked resource. `waiting` is the leader's
    /// queue (`None` on a node that does not lead).
    pub fn tick(&self, waiting: Option<Waiting>, end_unix_ms: u64) {
        let leader = waiting.is_some();
        let waiting: HashMap<String, BTreeMap<String, u64>> = waiting
            .unwrap_or_default()
            .into_iter()
            .map(|(r, lanes)| (r, lanes.into_iter().collect()))
            .collect();
        let mut inner = self.inner.lock();
        let leader_figures = leader || std::mem::take(&mut inner.leader_seen);
        for r in waiting.keys() {
            inner.track(r);
        }
        let mut grants_per_s = HashMap::with_capacity(inner.tracks.len());
        inner.tracks.retain(|name, t| {
            let acc = std::mem::take(&mut t.acc);
            let queued = waiting
                .get(name)
                .map(|l| u32::try_from(l.values().sum::<u64>()).unwrap_or(u32::MAX));
            let p = Point {
                grants: acc.grants,
                load: acc.load,
                rejections: leader_figures.then_some(acc.rejections),
                waiting: if leader {
                    Some(queued.unwrap_or(0))
                } else {
                    None
                },
                wait_p50_ms: acc.waits.as_ref().and_then(|h| h.quantile(0.5)),
                wait_p99_ms: acc.waits.as_ref().and_then(|h| h.quantile(0.99)),
            };
            t.idle = if p.is_idle() { t.idle + 1 } else { 0 };
            t.points.push_back(p);
            while t.points.len() > SERIES_SECONDS {
                t.points.pop_front();
            }
            let recent: u64 = t
                .points
                .iter()
                .rev()
                .take(RATE_POINTS)
                .map(|p| u64::from(p.grants))
                .sum();
            let n = t.points.len().min(RATE_POINTS);
            grants_per_s.insert(name.clone(), recent as f64 / n as f64);
            t.idle < SERIES_SECONDS
        });
        inner.end_unix_ms = end_unix_ms;
        inner.board = Arc::new(Board {
            leader,
            waiting,
            grants_per_s,
        });
    }

    /// The latest board (one `Arc` clone).
    pub fn board(&self) -> Arc<Board> {
        self.inner.lock().board.clone()
    }

    /// The series of `resource`: empty when it had no activity in the window, `None`
    /// when it may have had some but the table was full.
    pub fn of(&self, resource: &str) -> Option<ui::Series> {
        let inner = self.inner.lock();
        let mut s = ui::Series {
            step_ms: SAMPLE_EVERY.as_millis() as u64,
            end_unix_ms: inner.end_unix_ms,
            ..ui::Series::default()
        };
        let Some(t) = inner.tracks.get(resource) else {
            return (inner.tracks.len() < SERIES_RESOURCES_MAX).then_some(s);
        };
        for p in &t.points {
            s.grants.push(p.grants);
            s.load.push(p.load);
            s.rejections.push(p.rejections);
            s.waiting.push(p.waiting);
            s.wait_p50_ms.push(p.wait_p50_ms);
            s.wait_p99_ms.push(p.wait_p99_ms);
        }
        Some(s)
    }

    /// Resources with a series now.
    pub fn tracked(&self) -> usize {
        self.inner.lock().tracks.len()
    }
}

/// Milliseconds since the Unix epoch (display only), from the node's one clock module.
pub fn unix_ms() -> u64 {
    crate::clock::unix_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_buckets_are_monotonic_and_within_an_eighth() {
        let mut last = 0;
        for v in (0..100_000u64).chain([u64::from(u32::MAX), u64::MAX]) {
            let b = wait_bucket(v);
            assert!(b >= last, "bucket of {v}");
            last = b;
            let top = u64::from(wait_bucket_top(b));
            let v32 = v.min(u64::from(u32::MAX));
            assert!(top >= v32, "{v}: top {top}");
            assert!(
                top <= v32 + v32 / 8,
                "{v}: top {top} more than 12.5 % above"
            );
        }
    }

    #[test]
    fn quantiles_of_a_second() {
        let mut h = WaitHist::new();
        assert_eq!(h.quantile(0.5), None);
        for v in 0..100 {
            h.add(v);
        }
        // The 50th value is 49; its bucket (48..=51) reports its top.
        assert_eq!(h.quantile(0.5), Some(51));
        let p99 = h.quantile(0.99).unwrap();
        assert!((98..=111).contains(&p99), "{p99}");
    }

    #[test]
    fn a_point_per_second_leader_figures_only_on_the_leader() {
        let s = Series::default();
        s.applied_grants([("a", 5), ("a", 7), ("b", 1)].into_iter());
        s.tick(None, 1_000);
        let a = s.of("a").unwrap();
        assert_eq!((a.grants, a.load), (vec![2], vec![12]));
        assert_eq!(a.waiting, vec![None], "a follower does not know the queue");
        assert_eq!(a.rejections, vec![None]);
        s.waits([("a", 3), ("a", 40)].into_iter());
        s.refused("a");
        let waiting = vec![("a".to_owned(), vec![("default".to_owned(), 4)])];
        s.tick(Some(waiting), 2_000);
        let a = s.of("a").unwrap();
        assert_eq!(a.end_unix_ms, 2_000);
        assert_eq!(a.grants, vec![2, 0]);
        assert_eq!(a.waiting, vec![None, Some(4)]);
        assert_eq!(a.rejections, vec![None, Some(1)]);
        assert_eq!(a.wait_p50_ms, vec![None, Some(3)]);
        assert_eq!(
            a.wait_p99_ms.last().copied().flatten().map(|v| v >= 40),
            Some(true)
        );
        let board = s.board();
        assert!(board.leader);
        assert_eq!(board.waiting["a"]["default"], 4);
        assert_eq!(board.grants_per_s["a"], 1.0);
        assert_eq!(s.of("never").unwrap().grants, Vec::<u32>::new());
    }

    #[test]
    fn the_table_is_bounded_and_idle_resources_give_their_slot_back() {
        let s = Series::default();
        for i in 0..SERIES_RESOURCES_MAX + 10 {
            let name = format!("r{i}");
            s.applied_grants([(name.as_str(), 1)].into_iter());
        }
        assert_eq!(s.tracked(), SERIES_RESOURCES_MAX);
        assert!(s.of("r5").is_some());
        assert_eq!(
            s.of("untracked").map(|_| ()),
            None,
            "full: unknown, not zero"
        );
        for t in 0..SERIES_SECONDS as u64 {
            s.tick(None, t);
        }
        assert_eq!(s.of("r5").unwrap().grants.len(), SERIES_SECONDS, "bounded");
        s.applied_grants([("r5", 1)].into_iter());
        s.tick(None, 0);
        assert_eq!(s.tracked(), 1, "only r5 was active in the window");
        assert!(s.of("untracked").is_some());
    }
}
