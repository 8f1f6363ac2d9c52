//! The admission scheduler: who gets the next grant, and when to look again.
//!
//! Pure and single-threaded, used only by the leader. It owns the waiting queue (lanes,
//! priorities, deadlines, request ids) and decides grants against the leader's
//! *speculative* `State` (the state after every proposed entry), applying each grant
//! to it at once. Every command the leader puts into a batch goes through `propose`, so
//! that the speculative state and the replicated log see the same commands in the same
//! order. It never sends, sleeps or reads a clock: the shell drains `events()` and
//! sleeps until `next_wakeup()`.
//!
//! Order of service within a resource (DESIGN.md §2): the lane with the smallest stride
//! pass among backlogged lanes (ties by name), then the highest priority in that lane,
//! then arrival. The head of that order blocks everything behind it until it fits.
//!
//! Lane classes: the lanes named in the resource's config and `default` each have their
//! own stride pass and weight. Every other lane (a name the config does not know) is
//! in one shared class of weight 1, and the shared class's turns go round the lanes in
//! it by their own passes. So any number of made-up lane names gets one lane's share,
//! never pushing a configured lane to the back. A lane's class is fixed when it becomes
//! backlogged and kept while it has waiters.
//!
//! Quotas: a request carries its key (`owner`) and that key's `waiters_max`; a key with
//! that many waiters queued (all resources) is refused `QuotaExceeded`. A `request_id`
//! is scoped to (owner, resource); a retry with other parameters is `RequestIdReused`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::config::DEFAULT_LANE;
use crate::state::{
    same_request, Ahead, Binding, Command, Estimate, Fit, Grant, Outcome, Rejection, RequestKey,
    State,
};
use crate::{LANES_QUEUED_MAX, WAITERS_MAX};

/// Stride numerator: a lane of weight w advances its pass by `STRIDE / w` per grant.
const STRIDE: u128 = 1 << 40;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WaiterId(pub u64);

/// An acquire as the scheduler sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub resource: String,
    pub lane: String,
    pub priority: i32,
    pub load: u64,
    pub ttl_ms: u64,
    pub request_id: Option<String>,
    /// Random lease nonce chosen by the shell (the core has no randomness).
    pub nonce: u64,
    /// Try once: grant now or answer `WouldBlock`, never queue.
    pub try_once: bool,
    /// Cluster time after which the waiter gives up with `WaitTimeout`.
    pub deadline_ms: u64,
    /// The lease's holder label (carried into the `Grant`).
    pub holder: Option<String>,
    /// The key asking (`scope::Caller::owner`; `None`: the admin token).
    pub owner: Option<String>,
    /// Waiters `owner` may have queued at once; `None`: no quota.
    pub waiters_max: Option<u32>,
}

impl Request {
    /// The idempotency key, if the request carries a `request_id`.
    pub fn request_key(&self) -> Option<RequestKey> {
        self.request_id.as_ref().map(|id| RequestKey {
            owner: self.owner.clone(),
            resource: self.resource.clone(),
            request_id: id.clone(),
        })
    }

    /// Whether `other` asks for the same grant (a retry may change only `wait_ms`).
    pub fn same_as(&self, other: &Request) -> bool {
        self.lane == other.lane && self.load == other.load && self.ttl_ms == other.ttl_ms
    }
}

/// What became of an `enqueue`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Queued (or granted at once: watch `events()` for this id).
    Waiting(WaiterId),
    /// The same `request_id` is already waiting: attach to that waiter.
    Attached(WaiterId),
    Rejected(Refusal),
}

/// Why a request is turned away without (or after) waiting. The limit refusals carry
/// `State::estimate_wait` for a retry: when to come back, and the binding limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    ResourceNotFound,
    LoadExceedsLimit {
        load_max: u64,
    },
    QueueFull {
        retry_after_ms: u64,
        binding: Option<Binding>,
    },
    WouldBlock {
        retry_after_ms: u64,
        binding: Option<Binding>,
    },
    WaitTimeout {
        retry_after_ms: u64,
        binding: Option<Binding>,
    },
    /// The key has `waiters_max` waiters queued already.
    QuotaExceeded {
        retry_after_ms: u64,
    },
    /// The `request_id` was used by this key on this resource with other parameters.
    RequestIdReused,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Put `command` into the batch being built; its applied outcome answers `waiter`.
    Grant { waiter: WaiterId, command: Command },
    /// Answer `waiter` with this refusal; it has left the queue.
    Refused { waiter: WaiterId, refusal: Refusal },
}

#[derive(Debug)]
struct Waiter {
    req: Request,
    /// Position in its lane: `(Reverse(priority), arrival)`.
    key: (Reverse<i32>, u64),
}

#[derive(Debug, Default)]
struct Lane {
    /// For a lane of the shared class, its pass among the shared lanes.
    pass: u128,
    queue: BTreeMap<(Reverse<i32>, u64), WaiterId>,
    /// Waiters per priority, kept with `queue` so that `queue_view` costs the number of
    /// priorities shown, not the number of waiters.
    by_priority: BTreeMap<Reverse<i32>, usize>,
    /// In the shared class of unconfigured lanes (fixed while backlogged).
    shared: bool,
}

/// Waiters ahead of one in its lane that `progress` counts one by one (priority groups
/// ahead and waiters ahead in its own group, each one step): a poll costs at most this
/// many steps. Further back its position is a lower bound (`Progress::position_exact`).
pub const POSITION_COUNT_MAX: u64 = 1_000;

/// Where one waiter stands (`Scheduler::progress`): what a waiting client is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    pub resource: String,
    pub lane: String,
    pub priority: i32,
    pub load: u64,
    /// 1 = served next in its lane (higher priorities first, then arrival).
    pub position: u64,
    /// False when more than `POSITION_COUNT_MAX` are ahead in the lane: `position` is
    /// then a lower bound, and so is the estimate.
    pub position_exact: bool,
    /// Waiters of the resource (every lane) expected to be granted before it: 0 for the
    /// head of line; else those ahead in its lane and, by the lane classes' weights, the
    /// other lanes' waiters served meanwhile (at most each lane's length).
    pub ahead_in_resource: u64,
    /// Waiters of the resource in every lane, itself included.
    pub queued_in_resource: u64,
    /// `State::estimate_wait` of its request behind `ahead_in_resource` waiters of the
    /// queue's average load: the binding limit and the wait.
    pub estimate: Estimate,
}

/// Priority groups `queue_view` lists for one resource (all lanes together); the rest
/// are counted in `LaneView::waiting` only.
pub const QUEUE_VIEW_GROUPS_MAX: usize = 256;

/// One resource's queue as the dashboard shows it (`Scheduler::queue_view`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueView {
    pub waiting: usize,
    /// Lanes with waiters, by name.
    pub lanes: Vec<LaneView>,
    /// The candidate served next (the head of line): nothing behind it is granted first.
    pub head: Option<HeadView>,
    /// Some priority groups were left out (`QUEUE_VIEW_GROUPS_MAX`).
    pub truncated: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaneView {
    pub lane: String,
    pub waiting: usize,
    /// Highest priority first.
    pub groups: Vec<PriorityGroup>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriorityGroup {
    pub priority: i32,
    pub waiting: usize,
    /// The group's oldest waiter (FIFO within a priority): the shell knows its age.
    pub first: WaiterId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadView {
    pub waiter: WaiterId,
    pub lane: String,
    pub priority: i32,
    pub load: u64,
}

#[derive(Debug, Default)]
struct Queue {
    lanes: BTreeMap<String, Lane>,
    len: usize,
    /// Total load of the waiters (what a retry would queue behind).
    load: u64,
    /// Pass of the class served last: a class that becomes backlogged starts here, so
    /// idle time banks no credit.
    vtime: u128,
    /// The shared class: its pass among the classes, the pass of its lane served last,
    /// and its waiters.
    shared_pass: u128,
    shared_vtime: u128,
    shared_len: usize,
    /// Cluster time at which the blocked head may fit, if any.
    wake_at_ms: Option<u64>,
}

/// Turns a class (or lane) at `pass` advancing by `stride` per grant takes before the
/// pass `target` is served: those strictly before it, and one at `target` itself when it
/// wins the tie; at most `len` (its waiters).
fn turns_before(pass: u128, stride: u128, target: u128, wins_tie: bool, len: usize) -> u128 {
    if target < pass {
        return 0;
    }
    let gap = target - pass;
    let stride = stride.max(1);
    let mut n = gap.div_ceil(stride);
    if wins_tie && gap.is_multiple_of(stride) {
        n += 1;
    }
    n.min(len as u128)
}

/// Whether `lane` has a class of its own in `resource` (configured, or `default`).
fn own_class(state: &State, resource: &str, lane: &str) -> bool {
    lane == DEFAULT_LANE
        || state
            .resource(resource)
            .is_some_and(|c| c.lanes.contains_key(lane))
}

#[derive(Debug, Default)]
pub struct Scheduler {
    queues: BTreeMap<String, Queue>,
    waiters: BTreeMap<WaiterId, Waiter>,
    by_request: BTreeMap<RequestKey, WaiterId>,
    /// Waiters queued per key (`Request::owner`), for `waiters_max`.
    by_owner: BTreeMap<String, usize>,
    deadlines: BTreeSet<(u64, WaiterId)>,
    wakeups: BTreeSet<(u64, String)>,
    /// Resources whose head may fit now (something freed capacity or changed the order).
    dirty: BTreeSet<String>,
    events: VecDeque<Event>,
    next_id: u64,
    /// Average hold time of released leases per resource, as this leader saw them (an
    /// exponentially weighted mean, weight 1/8): the pace at which concurrency slots free
    /// up, for `State::estimate_wait`. Leader-only, never replicated; at most one entry
    /// per resource.
    holds: BTreeMap<String, u64>,
}

impl Scheduler {
    pub fn new() -> Self {
        Scheduler::default()
    }

    /// Number of waiters in all queues.
    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// Waiters queued per lane of `resource`.
    pub fn queued(&self, resource: &str) -> Vec<(String, usize)> {
        self.queues.get(resource).map_or_else(Vec::new, |q| {
            q.lanes
                .iter()
                .map(|(name, l)| (name.clone(), l.queue.len()))
                .collect()
        })
    }

    /// The queue of `resource` by lane and priority, with its head of line; `None`
    /// without waiters. Costs the groups listed (at most `QUEUE_VIEW_GROUPS_MAX`), never
    /// a walk over the waiters.
    pub fn queue_view(&self, resource: &str) -> Option<QueueView> {
        let q = self.queues.get(resource)?;
        let mut budget = QUEUE_VIEW_GROUPS_MAX;
        let mut truncated = false;
        let mut lanes = Vec::new();
        for (name, l) in q.lanes.iter().filter(|(_, l)| !l.queue.is_empty()) {
            let mut groups = Vec::new();
            for (&Reverse(priority), &waiting) in &l.by_priority {
                if budget == 0 {
                    truncated = true;
                    break;
                }
                budget -= 1;
                let first = l
                    .queue
                    .range((Reverse(priority), 0)..=(Reverse(priority), u64::MAX))
                    .next()
                    .map(|(_, &id)| id);
                if let Some(first) = first {
                    groups.push(PriorityGroup {
                        priority,
                        waiting,
                        first,
                    });
                }
            }
            lanes.push(LaneView {
                lane: name.clone(),
                waiting: l.queue.len(),
                groups,
            });
        }
        let head = self.head(resource).and_then(|id| {
            let w = self.waiters.get(&id)?;
            Some(HeadView {
                waiter: id,
                lane: w.req.lane.clone(),
                priority: w.req.priority,
                load: w.req.load,
            })
        });
        Some(QueueView {
            waiting: q.len,
            lanes,
            head,
            truncated,
        })
    }

    /// The waiter queued for `key` (a request id of a key on a resource), if any: a
    /// request being granted, or gone, has none.
    pub fn waiter_for(&self, key: &RequestKey) -> Option<WaiterId> {
        self.by_request.get(key).copied()
    }

    /// Where waiter `id` stands: position in its lane, the waiters of the resource
    /// served before it, and the estimated wait with the binding limit. `None` when it
    /// no longer waits. Costs at most `POSITION_COUNT_MAX` steps for the position, one
    /// per lane with waiters (at most `LANES_QUEUED_MAX`) for the other lanes' shares,
    /// and one `estimate_wait`: never a walk over the whole queue.
    pub fn progress(&self, state: &State, id: WaiterId) -> Option<Progress> {
        let w = self.waiters.get(&id)?;
        let q = self.queues.get(&w.req.resource)?;
        let l = q.lanes.get(&w.req.lane)?;
        let mut ahead = 0u64;
        let mut steps = 0u64;
        let mut exact = true;
        for &n in l.by_priority.range(..w.key.0).map(|(_, n)| n) {
            if steps == POSITION_COUNT_MAX {
                exact = false;
                break;
            }
            steps += 1;
            ahead = ahead.saturating_add(n as u64);
        }
        if exact {
            let budget = POSITION_COUNT_MAX - steps;
            let take = usize::try_from(budget)
                .unwrap_or(usize::MAX)
                .saturating_add(1);
            let n = l.queue.range((w.key.0, 0)..w.key).take(take).count() as u64;
            exact = n <= budget;
            ahead = ahead.saturating_add(n);
        }
        let ahead_in_resource = if self.head(&w.req.resource) == Some(id) {
            0
        } else {
            u64::try_from(self.served_before(state, &w.req.resource, &w.req.lane, ahead))
                .unwrap_or(u64::MAX)
                .min((q.len as u64).saturating_sub(1))
        };
        let others = (q.len as u64).saturating_sub(1);
        let mean_load = q
            .load
            .saturating_sub(w.req.load)
            .checked_div(others)
            .unwrap_or(0);
        let estimate = state.estimate_wait(
            &w.req.resource,
            w.req.load,
            Ahead {
                waiters: ahead_in_resource,
                load: ahead_in_resource.saturating_mul(mean_load),
            },
            self.hold_ms(&w.req.resource),
        );
        Some(Progress {
            resource: w.req.resource.clone(),
            lane: w.req.lane.clone(),
            priority: w.req.priority,
            load: w.req.load,
            position: ahead.saturating_add(1),
            position_exact: exact,
            ahead_in_resource,
            queued_in_resource: q.len as u64,
            estimate,
        })
    }

    /// How many waiters of `resource` stride scheduling serves before the one with
    /// `ahead` waiters ahead of it in its lane `lane_name`, from the passes now: it is
    /// served when its lane's pass reaches `pass + ahead × stride`, and every other
    /// class (and in the shared class every other lane) takes the turns whose pass comes
    /// first, ties broken as `head` breaks them. Exact while no waiter arrives in a lane
    /// that was idle (a newcomer there may go first). One step per lane with waiters.
    fn served_before(&self, state: &State, resource: &str, lane_name: &str, ahead: u64) -> u128 {
        let Some(q) = self.queues.get(resource) else {
            return 0;
        };
        let Some(lane) = q.lanes.get(lane_name) else {
            return 0;
        };
        let config = state.resource(resource);
        let stride =
            |name: &str| STRIDE / u128::from(config.map_or(1, |c| c.lane_weight(name)).max(1));
        let ahead = u128::from(ahead);
        let others = || {
            q.lanes
                .iter()
                .filter(|(name, x)| name.as_str() != lane_name && !x.queue.is_empty())
        };
        // The turns of its own class before it, and the class's pass when it is served.
        let (mut before, target) = if lane.shared {
            // Its lane against the other shared lanes (ties by name), each of stride
            // STRIDE; the class advances STRIDE per turn.
            let own_target = lane.pass + ahead * STRIDE;
            let turns = ahead
                + others()
                    .filter(|(_, x)| x.shared)
                    .map(|(name, x)| {
                        turns_before(
                            x.pass,
                            STRIDE,
                            own_target,
                            name.as_str() < lane_name,
                            x.queue.len(),
                        )
                    })
                    .sum::<u128>();
            (turns, q.shared_pass + turns * STRIDE)
        } else {
            let target = lane.pass + ahead * stride(lane_name);
            // An own lane wins its ties against the shared class.
            let shared = if q.shared_len > 0 {
                turns_before(q.shared_pass, STRIDE, target, false, q.shared_len)
            } else {
                0
            };
            (ahead + shared, target)
        };
        for (name, x) in others().filter(|(_, x)| !x.shared) {
            // Against the shared class an own lane wins the tie; against another own
            // lane the smaller name does.
            let wins = lane.shared || name.as_str() < lane_name;
            before += turns_before(x.pass, stride(name), target, wins, x.queue.len());
        }
        before
    }

    /// Resources that have waiters.
    pub fn resources(&self) -> impl Iterator<Item = &str> {
        self.queues.keys().map(String::as_str)
    }

    /// The average hold time observed on `resource` by this leader, if any lease of it
    /// was released since it took office.
    pub fn hold_ms(&self, resource: &str) -> Option<u64> {
        self.holds.get(resource).copied()
    }

    /// The wait of a new request of `load` on `resource`, queued behind every current
    /// waiter: the `retry_after_ms` and binding limit of a refusal.
    pub fn estimate(&self, state: &State, resource: &str, load: u64) -> Estimate {
        let ahead = self
            .queues
            .get(resource)
            .map_or(Ahead::default(), |q| Ahead {
                waiters: q.len as u64,
                load: q.load,
            });
        state.estimate_wait(resource, load, ahead, self.hold_ms(resource))
    }

    /// Admits a new acquire. Grants that fit at once appear in `events()` right away.
    pub fn enqueue(&mut self, state: &mut State, req: Request) -> Admit {
        let request_key = req.request_key();
        if let Some(key) = &request_key {
            if let Some(&w) = self.by_request.get(key) {
                if !self.waiters.get(&w).is_some_and(|x| x.req.same_as(&req)) {
                    return Admit::Rejected(Refusal::RequestIdReused);
                }
                return Admit::Attached(w);
            }
            if let Some(lease) = state.granted_request(key) {
                if !same_request(lease, &req.lane, req.load, req.ttl_ms) {
                    return Admit::Rejected(Refusal::RequestIdReused);
                }
                // Already granted: the log answers it with the same lease, in log order.
                let id = WaiterId(self.next_id);
                self.next_id += 1;
                self.grant_command(state, id, &req);
                return Admit::Waiting(id);
            }
        }
        let id = WaiterId(self.next_id);
        self.next_id += 1;
        let queued = self.queues.get(&req.resource).map_or(0, |q| q.len);
        match state.fit(&req.resource, req.load) {
            Fit::NoResource => return Admit::Rejected(Refusal::ResourceNotFound),
            Fit::Never { load_max } => {
                return Admit::Rejected(Refusal::LoadExceedsLimit { load_max })
            }
            Fit::Now if queued == 0 => {
                self.grant_command(state, id, &req);
                return Admit::Waiting(id);
            }
            Fit::Now | Fit::Wait { .. } if req.try_once => {
                let e = self.estimate(state, &req.resource, req.load);
                return Admit::Rejected(Refusal::WouldBlock {
                    retry_after_ms: e.wait_ms,
                    binding: e.binding,
                });
            }
            Fit::Now | Fit::Wait { .. } => {}
        }
        let max_queue = state
            .resource(&req.resource)
            .map_or(0, |c| c.max_queue as usize);
        if queued >= max_queue
            || self.waiters.len() >= WAITERS_MAX
            || !self.lane_room(&req.resource, &req.lane)
        {
            let e = self.estimate(state, &req.resource, req.load);
            return Admit::Rejected(Refusal::QueueFull {
                retry_after_ms: e.wait_ms,
                binding: e.binding,
            });
        }
        if let (Some(owner), Some(max)) = (&req.owner, req.waiters_max) {
            if self.by_owner.get(owner).copied().unwrap_or(0) >= max as usize {
                let e = self.estimate(state, &req.resource, req.load);
                return Admit::Rejected(Refusal::QuotaExceeded {
                    retry_after_ms: e.wait_ms.max(1),
                });
            }
        }
        let own = own_class(state, &req.resource, &req.lane);
        let q = self.queues.entry(req.resource.clone()).or_default();
        let lane = q.lanes.entry(req.lane.clone()).or_default();
        if lane.queue.is_empty() {
            lane.shared = !own;
            if lane.shared {
                if q.shared_len == 0 {
                    q.shared_pass = q.shared_pass.max(q.vtime);
                }
                lane.pass = lane.pass.max(q.shared_vtime);
            } else {
                lane.pass = lane.pass.max(q.vtime);
            }
        }
        let key = (Reverse(req.priority), id.0);
        lane.queue.insert(key, id);
        *lane.by_priority.entry(key.0).or_default() += 1;
        if lane.shared {
            q.shared_len += 1;
        }
        q.len += 1;
        q.load = q.load.saturating_add(req.load);
        self.deadlines.insert((req.deadline_ms, id));
        if let Some(k) = request_key {
            self.by_request.insert(k, id);
        }
        if let Some(owner) = &req.owner {
            *self.by_owner.entry(owner.clone()).or_default() += 1;
        }
        self.dirty.insert(req.resource.clone());
        self.waiters.insert(id, Waiter { req, key });
        self.dispatch(state);
        Admit::Waiting(id)
    }

    /// Whether `lane` can be queued on `resource`: it is there already, or the lane
    /// table has room. Lanes without waiters stay in the table only to remember their
    /// stride debt; at the bound they are forgotten (such a lane comes back at the
    /// current virtual time, as a new one would), so that a stream of one-off lane names
    /// cannot fill the table of a queue that never drains.
    fn lane_room(&mut self, resource: &str, lane: &str) -> bool {
        let Some(q) = self.queues.get_mut(resource) else {
            return true;
        };
        if q.lanes.contains_key(lane) {
            return true;
        }
        if q.lanes.len() >= LANES_QUEUED_MAX {
            q.lanes.retain(|_, l| !l.queue.is_empty());
        }
        q.lanes.len() < LANES_QUEUED_MAX
    }

    /// Removes a waiter (its client went away). Returns whether it was still waiting.
    pub fn cancel(&mut self, id: WaiterId) -> bool {
        let Some(w) = self.remove(id) else {
            return false;
        };
        self.dirty.insert(w.req.resource);
        true
    }

    /// Applies a command that is not a grant (release, renew, resource change) to the
    /// speculative state, marking what it may unblock. The shell puts the same command
    /// into the same batch, in the same order.
    pub fn propose(&mut self, state: &mut State, command: &Command) -> Outcome {
        let touched = match command {
            // A renew may also shorten a lease (a smaller `ttl_ms`): the blocked head's
            // wakeup, computed from the old expiry, would then be too late.
            Command::Release { lease, .. } => {
                let held = state.lease_held_ms(*lease);
                if let Some((resource, ms)) = held {
                    self.observe_hold(resource, ms);
                }
                held.map(|(r, _)| r.to_owned())
            }
            Command::Renew { lease, .. } => state.lease_resource(*lease).map(str::to_owned),
            Command::PutResource { name, .. } => Some(name.clone()),
            Command::DeleteResource { name } => {
                self.holds.remove(name);
                Some(name.clone())
            }
            _ => None,
        };
        let outcome = state.apply_command(command);
        if let Some(r) = touched {
            if self.queues.contains_key(&r) {
                self.dirty.insert(r);
            }
        }
        outcome
    }

    /// Times out waiters whose deadline is `<= clock_ms`, then grants whatever fits at
    /// the speculative state's cluster time. Results go to `events()`.
    pub fn poll(&mut self, state: &mut State, clock_ms: u64) {
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > clock_ms {
                break;
            }
            if let Some(w) = self.remove(id) {
                let e = self.estimate(state, &w.req.resource, w.req.load);
                self.dirty.insert(w.req.resource);
                let refusal = Refusal::WaitTimeout {
                    retry_after_ms: e.wait_ms,
                    binding: e.binding,
                };
                self.events.push_back(Event::Refused {
                    waiter: id,
                    refusal,
                });
            }
        }
        let now = state.now_ms();
        while let Some((at, _)) = self.wakeups.first() {
            if *at > now {
                break;
            }
            if let Some((_, r)) = self.wakeups.pop_first() {
                if let Some(q) = self.queues.get_mut(&r) {
                    q.wake_at_ms = None;
                }
                self.dirty.insert(r);
            }
        }
        self.dispatch(state);
    }

    /// The earliest cluster time at which `poll` has something to do: a deadline or a
    /// blocked head that will fit by then. `None`: nothing until the next event.
    ///
    /// It can be at or before the current time when an input since the last `poll`
    /// made something due (a waiter enqueued with its deadline already reached): the
    /// shell polls after every input, as `admission.rs` does. Right after a `poll` at
    /// `clock_ms` (with the state ticked to it), it is always later than `clock_ms`.
    pub fn next_wakeup(&self) -> Option<u64> {
        let deadline = self.deadlines.first().map(|&(at, _)| at);
        let wake = self.wakeups.first().map(|(at, _)| *at);
        match (deadline, wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The earliest waiter deadline. While the speculative state's time is frozen (a
    /// batch is being built), only deadlines can make `poll` do something.
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.first().map(|&(at, _)| at)
    }

    /// Whether some resource is waiting for `poll` right now (not for time to pass).
    pub fn has_work(&self) -> bool {
        !self.dirty.is_empty()
    }

    pub fn events(&mut self) -> impl Iterator<Item = Event> + '_ {
        self.events.drain(..)
    }

    fn dispatch(&mut self, state: &mut State) {
        while let Some(resource) = self.dirty.pop_first() {
            self.dispatch_resource(state, &resource);
        }
    }

    fn dispatch_resource(&mut self, state: &mut State, resource: &str) {
        if let Some(q) = self.queues.get_mut(resource) {
            if let Some(at) = q.wake_at_ms.take() {
                self.wakeups.remove(&(at, resource.to_owned()));
            }
        }
        while let Some(id) = self.head(resource) {
            let Some(w) = self.waiters.get(&id) else {
                break;
            };
            match state.fit(resource, w.req.load) {
                Fit::Now => {
                    let Some(w) = self.remove_served(state, id) else {
                        break;
                    };
                    self.grant_command(state, id, &w.req);
                }
                Fit::Wait { ms, .. } => {
                    let at = state.now_ms().saturating_add(ms);
                    if let Some(q) = self.queues.get_mut(resource) {
                        q.wake_at_ms = Some(at);
                    }
                    self.wakeups.insert((at, resource.to_owned()));
                    break;
                }
                Fit::NoResource => {
                    for id in self.waiting_on(resource) {
                        self.refuse(id, Refusal::ResourceNotFound);
                    }
                    break;
                }
                Fit::Never { load_max } => {
                    self.refuse(id, Refusal::LoadExceedsLimit { load_max });
                }
            }
        }
    }

    /// The next candidate of `resource`: the class with the smallest pass (an own
    /// lane, or the shared class; an own lane wins a tie), within the shared class the
    /// lane with the smallest pass (ties by name), then that lane's first waiter.
    fn head(&self, resource: &str) -> Option<WaiterId> {
        let q = self.queues.get(resource)?;
        let smallest = |shared: bool| {
            q.lanes
                .iter()
                .filter(|(_, l)| l.shared == shared && !l.queue.is_empty())
                .min_by(|(an, a), (bn, b)| a.pass.cmp(&b.pass).then_with(|| an.cmp(bn)))
                .map(|(_, l)| l)
        };
        let own = smallest(false);
        let lane = match own {
            Some(l) if q.shared_len == 0 || l.pass <= q.shared_pass => l,
            _ => smallest(true)?,
        };
        lane.queue.values().next().copied()
    }

    fn waiting_on(&self, resource: &str) -> Vec<WaiterId> {
        self.queues
            .get(resource)
            .map(|q| {
                q.lanes
                    .values()
                    .flat_map(|l| l.queue.values().copied())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn refuse(&mut self, id: WaiterId, refusal: Refusal) {
        if self.remove(id).is_some() {
            self.events.push_back(Event::Refused {
                waiter: id,
                refusal,
            });
        }
    }

    /// Removes the head that is being granted. Its class's pass advances by the class's
    /// stride first (and, in the shared class, its lane's pass among the shared lanes),
    /// so a lane that empties keeps its debt.
    fn remove_served(&mut self, state: &State, id: WaiterId) -> Option<Waiter> {
        let w = self.waiters.get(&id)?;
        let weight = state
            .resource(&w.req.resource)
            .map_or(1, |c| c.lane_weight(&w.req.lane));
        if let Some(q) = self.queues.get_mut(&w.req.resource) {
            if let Some(l) = q.lanes.get_mut(&w.req.lane) {
                if l.shared {
                    q.vtime = q.vtime.max(q.shared_pass);
                    q.shared_pass += STRIDE;
                    q.shared_vtime = q.shared_vtime.max(l.pass);
                    l.pass += STRIDE;
                } else {
                    q.vtime = q.vtime.max(l.pass);
                    l.pass += STRIDE / u128::from(weight.max(1));
                }
            }
        }
        self.remove(id)
    }

    fn grant_command(&mut self, state: &mut State, id: WaiterId, req: &Request) {
        let command = Command::Grant(Grant {
            resource: req.resource.clone(),
            lane: req.lane.clone(),
            load: req.load,
            ttl_ms: req.ttl_ms,
            request_id: req.request_id.clone(),
            nonce: req.nonce,
            holder: req.holder.clone(),
            owner: req.owner.clone(),
            wait_ms: if req.try_once {
                0
            } else {
                req.deadline_ms.saturating_sub(state.now_ms())
            },
        });
        let outcome = state.apply_command(&command);
        // The scheduler only grants what fits, so a grant must apply. Three refusals are
        // not scheduler bugs and are answered from the applied entry like any outcome:
        // `Invalid` (a request the shell should have validated: lane name, TTL, request
        // id), `TableFull` (the lease table at its bound) and `GrantEnded` (a retry of a
        // request whose lease has already ended).
        debug_assert!(
            matches!(
                outcome,
                Outcome::Granted { .. }
                    | Outcome::Rejected(
                        Rejection::Invalid(_)
                            | Rejection::TableFull(_)
                            | Rejection::GrantEnded
                            | Rejection::RequestIdReused
                    )
            ),
            "a grant decided by the scheduler must apply: {outcome:?}"
        );
        self.events.push_back(Event::Grant {
            waiter: id,
            command,
        });
    }

    /// Folds one observed hold time into the resource's average (weight 1/8).
    fn observe_hold(&mut self, resource: &str, ms: u64) {
        match self.holds.get_mut(resource) {
            Some(avg) => *avg = (*avg).saturating_mul(7).saturating_add(ms) / 8,
            None => {
                self.holds.insert(resource.to_owned(), ms);
            }
        }
    }

    fn remove(&mut self, id: WaiterId) -> Option<Waiter> {
        let w = self.waiters.remove(&id)?;
        self.deadlines.remove(&(w.req.deadline_ms, id));
        if let Some(k) = w.req.request_key() {
            if self.by_request.get(&k) == Some(&id) {
                self.by_request.remove(&k);
            }
        }
        if let Some(owner) = &w.req.owner {
            if let Some(n) = self.by_owner.get_mut(owner) {
                *n -= 1;
                if *n == 0 {
                    self.by_owner.remove(owner);
                }
            }
        }
        if let Some(q) = self.queues.get_mut(&w.req.resource) {
            if let Some(l) = q.lanes.get_mut(&w.req.lane) {
                l.queue.remove(&w.key);
                if let Some(n) = l.by_priority.get_mut(&w.key.0) {
                    *n -= 1;
                    if *n == 0 {
                        l.by_priority.remove(&w.key.0);
                    }
                }
                if l.shared {
                    q.shared_len -= 1;
                }
                let vtime = if l.shared { q.shared_vtime } else { q.vtime };
                if l.queue.is_empty() && l.pass <= vtime {
                    q.lanes.remove(&w.req.lane);
                }
            }
            q.len -= 1;
            q.load = q.load.saturating_sub(w.req.load);
            if q.len == 0 {
                if let Some(at) = q.wake_at_ms {
                    self.wakeups.remove(&(at, w.req.resource.clone()));
                }
                self.queues.remove(&w.req.resource);
            }
        }
        Some(w)
    }
}
