//! The leader's admission loop: the queue, group commit, and the speculative state.
//!
//! One task per leadership term owns a `Scheduler` and a speculative copy of the state
//! (the applied state plus every proposed command). HTTP handlers talk to it through
//! `Admission` only. Every command — grants decided by the scheduler, releases, renews,
//! resource and key changes — enters a batch; a batch is one Raft entry. Up to
//! `WRITES_IN_FLIGHT_MAX` entries are replicating at once (a pipeline: a release that
//! arrives while a grant is being committed goes out at once, in the next entry, instead
//! of waiting a whole round); when the pipeline is full the next batch fills up (group
//! commit), so under load there is one entry and one fsync per many requests. Entries
//! are submitted in batch order and their outcomes taken in that order. A caller is
//! answered only with the *applied* outcome of its command, after commit.
//!
//! Cluster time (DESIGN.md §3) is read here and nowhere else (`elapsed_ms`): a batch is
//! stamped when it is opened, the speculative state is ticked to that stamp, and it
//! stays frozen while the batch is open, so that the speculative and the replicated
//! apply see the same commands at the same time in the same order and reach the same
//! outcomes. Batches are closed in order and stamps never decrease, so entries that
//! are still replicating never see a later batch's commands or time.
//!
//! Releases and renews come as `touch`: checked against the lease's owner in the
//! speculative state, and answered without a Raft write when the caller may not make
//! them or their answer is already final in the applied state (issue 15, obs. 6).
//!
//! This module never answers HTTP and never touches storage directly.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use openraft::error::ClientWriteError;
use openraft::ServerState;
use parking_lot::RwLock;
use ratequeue_core::{
    Admit, Command, Event, Fit, LeaderClock, LeaseId, LeaseView, LimitView, Outcome, Progress,
    QueueView, Refusal, Rejection, Request, RequestKey, Scheduler, Shadow, State, WaiterId,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::metrics::{self, Metrics};
use crate::raft::state_machine::SharedApplied;
use crate::raft::types::{Batch, BatchOutcome, NodeId, Raft};
use crate::series::{Series, Waiting};

/// Commands in one Raft entry.
pub const BATCH_COMMANDS_MAX: usize = 4_096;
/// Commands waiting in batches not yet submitted; past it the loop stops reading
/// requests (handlers then wait on the bounded channel: backpressure, not growth).
pub const PENDING_COMMANDS_MAX: usize = 65_536;
/// Requests queued between the HTTP handlers and the loop.
pub const CHANNEL_LEN_MAX: usize = 16_384;
/// Raft entries submitted and not yet applied, at most. openraft 0.9 takes them in
/// order, appends (and fsyncs) each on its core task, and replicates whatever is
/// appended when a follower's previous AppendEntries returns; a second entry in flight
/// lets a command that arrives during a round go out at once, and more than a few only
/// splits batches without shortening the round.
pub const WRITES_IN_FLIGHT_MAX: usize = 4;
/// A replicated write that takes longer is answered `commit_timeout` (ambiguous).
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new leader waits to apply its log before it starts admitting.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// What a caller asked to acquire.
#[derive(Clone, Debug)]
pub struct AcquireParams {
    pub resource: String,
    pub lane: String,
    pub priority: i32,
    pub load: u64,
    pub ttl_ms: u64,
    pub wait_ms: u64,
    pub request_id: Option<String>,
    /// The caller's label for the lease (validated by the HTTP layer).
    pub holder: Option<String>,
    /// The key asking (`Caller::owner`): recorded in the lease, scopes the request id.
    pub owner: Option<String>,
    /// Waiters the key may have queued at once (`Caller::waiters_max`).
    pub waiters_max: Option<u32>,
}

/// Who releases or renews a lease: an admin (any lease), or the key named (`None`: the
/// admin token) touching only its own leases.
#[derive(Clone, Debug)]
pub struct Toucher {
    pub admin: bool,
    pub owner: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Granted {
    pub lease: LeaseView,
    pub limits: Vec<LimitView>,
    pub queued_ms: u64,
    /// On a dry-run resource: what enforce would have done.
    pub shadow: Option<Shadow>,
}

/// Why the loop could not give an applied outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Refused by the scheduler before anything was proposed.
    Refused(Refusal),
    /// Proposed and applied, but the state machine said no.
    Rejected(Rejection),
    /// Not leader (or not yet serving): nothing was proposed; safe to retry elsewhere.
    NotLeader,
    /// Proposed, but leadership was lost or the write timed out before an answer:
    /// it may or may not have been applied.
    Ambiguous,
    /// The lease was acquired by another key: nothing was proposed.
    NotOwner,
}

/// One resource's queue for the dashboard: the scheduler's view (`None`: nobody waits),
/// how long the waiters it names have waited, whether (and why not) its head fits now,
/// and the leader's cluster time now (the applied state's stands still between entries).
#[derive(Clone, Debug)]
pub struct QueueReport {
    pub view: Option<QueueView>,
    pub clock_ms: u64,
    /// Wait so far of each group's first waiter and of the head.
    pub waited_ms: HashMap<WaiterId, u64>,
    /// The head's fit against the speculative state.
    pub head_fit: Option<Fit>,
    /// The head's estimated wait (`Scheduler::progress`: the binding limit's refill, or
    /// for concurrency the observed hold times).
    pub head_wait_ms: Option<u64>,
}

type AcquireReply = oneshot::Sender<Result<Granted, Failure>>;
type WriteReply = oneshot::Sender<Result<Outcome, Failure>>;

enum Msg {
    Acquire {
        ticket: u64,
        params: AcquireParams,
        reply: AcquireReply,
    },
    Cancel {
        ticket: u64,
    },
    Write {
        command: Command,
        reply: WriteReply,
    },
    /// A release or renew, checked against the lease's owner first.
    Touch {
        command: Command,
        lease: LeaseId,
        by: Toucher,
        reply: WriteReply,
    },
    Queued {
        resource: String,
        reply: oneshot::Sender<Vec<(String, usize)>>,
    },
    /// Waiters per lane of every resource with waiters (the series sampler, 1/s).
    Waiting {
        reply: oneshot::Sender<Waiting>,
    },
    /// One resource's queue in detail (the dashboard's resource view).
    Queue {
        resource: String,
        reply: oneshot::Sender<QueueReport>,
    },
    /// Where one waiter stands (`GET /v1/resources/{name}/waiters/{request_id}`).
    Progress {
        key: RequestKey,
        reply: oneshot::Sender<Option<WaiterProgress>>,
    },
}

/// Where a queued acquire stands: the scheduler's `Progress` and how long it has waited
/// on this leader.
#[derive(Clone, Debug)]
pub struct WaiterProgress {
    pub progress: Progress,
    pub waited_ms: u64,
}

/// The handle HTTP handlers use. Cheap to clone.
#[derive(Clone)]
pub struct Admission {
    slot: Arc<RwLock<Option<mpsc::Sender<Msg>>>>,
    tickets: Arc<AtomicU64>,
    waiters: Arc<AtomicU64>,
    /// While serving: the cluster time base and when the loop took office, so handlers
    /// can read cluster time (key expiry) without asking the loop.
    /// `(cluster time at taking office, crate::clock::monotonic_ms() then)`.
    clock: Arc<RwLock<Option<(u64, u64)>>>,
}

/// Sends `Cancel` when an acquire's HTTP request goes away before its answer.
struct CancelOnDrop {
    tx: mpsc::Sender<Msg>,
    ticket: u64,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let tx = self.tx.clone();
            let ticket = self.ticket;
            if tx.try_send(Msg::Cancel { ticket }).is_err() {
                tokio::spawn(async move {
                    let _ = tx.send(Msg::Cancel { ticket }).await;
                });
            }
        }
    }
}

impl Admission {
    fn sender(&self) -> Result<mpsc::Sender<Msg>, Failure> {
        self.slot.read().clone().ok_or(Failure::NotLeader)
    }

    /// Whether this node's admission loop is serving.
    pub fn is_serving(&self) -> bool {
        self.slot.read().is_some()
    }

    /// Waiters queued on this leader (0 on followers).
    pub fn waiters(&self) -> u64 {
        self.waiters.load(Ordering::Relaxed)
    }

    /// Cluster time now, while this node's admission loop serves.
    pub fn cluster_time_ms(&self) -> Option<u64> {
        let (base, started) = (*self.clock.read())?;
        let elapsed = crate::clock::monotonic_ms().saturating_sub(started);
        Some(LeaderClock::new(base).peek(elapsed))
    }

    /// Waits in the queue and returns the applied grant. Dropping the future (client
    /// disconnect) cancels the waiter; a grant already proposed is then released.
    pub async fn acquire(&self, params: AcquireParams) -> Result<Granted, Failure> {
        let tx = self.sender()?;
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        tx.send(Msg::Acquire {
            ticket,
            params,
            reply,
        })
        .await
        .map_err(|_| Failure::NotLeader)?;
        let mut guard = CancelOnDrop {
            tx,
            ticket,
            armed: true,
        };
        let res = rx.await.unwrap_or(Err(Failure::Ambiguous));
        guard.armed = false;
        res
    }

    /// Proposes a non-grant command and returns its applied outcome.
    pub async fn write(&self, command: Command) -> Result<Outcome, Failure> {
        let tx = self.sender()?;
        let (reply, rx) = oneshot::channel();
        tx.send(Msg::Write { command, reply })
            .await
            .map_err(|_| Failure::NotLeader)?;
        rx.await.unwrap_or(Err(Failure::Ambiguous))
    }

    /// Releases or renews `lease` (`command` is that release or renew) for `by`. The
    /// answer comes without a Raft write when the caller may not make the command (the
    /// lease is another key's) or when its answer is already final in the applied state
    /// (a lease that ended or never existed never comes back).
    pub async fn touch(
        &self,
        command: Command,
        lease: LeaseId,
        by: Toucher,
    ) -> Result<Outcome, Failure> {
        let tx = self.sender()?;
        let (reply, rx) = oneshot::channel();
        tx.send(Msg::Touch {
            command,
            lease,
            by,
            reply,
        })
        .await
        .map_err(|_| Failure::NotLeader)?;
        rx.await.unwrap_or(Err(Failure::Ambiguous))
    }

    /// Waiters per lane of `resource` (leader only; empty elsewhere).
    pub async fn queued(&self, resource: &str) -> Vec<(String, usize)> {
        let Ok(tx) = self.sender() else {
            return Vec::new();
        };
        let (reply, rx) = oneshot::channel();
        if tx
            .send(Msg::Queued {
                resource: resource.to_owned(),
                reply,
            })
            .await
            .is_err()
        {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Waiters per lane of every resource with waiters; `None` when not serving.
    pub async fn waiting(&self) -> Option<Waiting> {
        let tx = self.sender().ok()?;
        let (reply, rx) = oneshot::channel();
        tx.send(Msg::Waiting { reply }).await.ok()?;
        rx.await.ok()
    }

    /// Where the acquire queued for `key` stands: `Ok(None)` when none is queued (never
    /// was, already granted or being granted, refused, gone); `Err(NotLeader)` when not
    /// serving.
    pub async fn progress(&self, key: RequestKey) -> Result<Option<WaiterProgress>, Failure> {
        let tx = self.sender()?;
        let (reply, rx) = oneshot::channel();
        tx.send(Msg::Progress { key, reply })
            .await
            .map_err(|_| Failure::NotLeader)?;
        rx.await.map_err(|_| Failure::NotLeader)
    }

    /// The queue of `resource` in detail: `Err(NotLeader)` when not serving.
    pub async fn queue(&self, resource: &str) -> Result<QueueReport, Failure> {
        let tx = self.sender()?;
        let (reply, rx) = oneshot::channel();
        let resource = resource.to_owned();
        tx.send(Msg::Queue { resource, reply })
            .await
            .map_err(|_| Failure::NotLeader)?;
        rx.await.map_err(|_| Failure::NotLeader)
    }
}

/// Starts the supervisor that runs one admission loop per leadership term of `id`.
pub fn spawn(
    raft: Raft,
    id: NodeId,
    applied: SharedApplied,
    metrics: Arc<Metrics>,
    series: Arc<Series>,
) -> Admission {
    let admission = Admission {
        slot: Arc::new(RwLock::new(None)),
        tickets: Arc::new(AtomicU64::new(0)),
        waiters: Arc::new(AtomicU64::new(0)),
        clock: Arc::new(RwLock::new(None)),
    };
    let handle = admission.clone();
    tokio::spawn(async move {
        let mut metrics_rx = raft.metrics();
        loop {
            let term = {
                let m = metrics_rx.borrow_and_update();
                (m.state == ServerState::Leader && m.current_leader == Some(id))
                    .then_some(m.current_term)
            };
            if let Some(term) = term {
                let (tx, rx) = mpsc::channel(CHANNEL_LEN_MAX);
                let run = LeaderLoop::start(
                    raft.clone(),
                    term,
                    applied.clone(),
                    metrics.clone(),
                    series.clone(),
                    handle.waiters.clone(),
                    rx,
                );
                match run.await {
                    Ok(mut l) => {
                        *handle.clock.write() = Some((l.clock.peek(0), l.started_ms));
                        *handle.slot.write() = Some(tx);
                        tracing::info!(term, "admission loop serving");
                        l.run().await;
                        *handle.slot.write() = None;
                        *handle.clock.write() = None;
                        tracing::info!(term, "admission loop stopped");
                        l.fail_all();
                    }
                    Err(e) => tracing::warn!(term, error = %e, "leader could not catch up"),
                }
            }
            // Look again only when Raft reports something new (never spin).
            if metrics_rx.changed().await.is_err() {
                return;
            }
        }
    });
    admission
}

enum Reply {
    Waiter(WaiterId),
    Write(WriteReply),
    /// A release of a grant whose client went away; nobody to answer.
    Orphan,
}

struct Pending {
    req: Request,
    senders: Vec<(u64, AcquireReply)>,
    enqueued: Instant,
}

#[derive(Default)]
struct OpenBatch {
    now_ms: u64,
    commands: Vec<Command>,
    replies: Vec<Reply>,
}

type WriteResult = Result<BatchOutcome, WriteError>;
type WriteFuture = Pin<Box<dyn Future<Output = WriteResult> + Send>>;

/// A submitted entry: its outcome, and whom to answer with it.
struct InFlight {
    outcome: WriteFuture,
    replies: Vec<Reply>,
}

#[derive(Debug)]
enum WriteError {
    NotLeader,
    Timeout,
}

struct LeaderLoop {
    raft: Raft,
    term: u64,
    applied: SharedApplied,
    metrics: Arc<Metrics>,
    series: Arc<Series>,
    waiters_gauge: Arc<AtomicU64>,
    rx: mpsc::Receiver<Msg>,
    spec: State,
    sched: Scheduler,
    clock: LeaderClock,
    /// `crate::clock::monotonic_ms()` when this leader took office: the one clock
    /// cluster time is stamped from.
    started_ms: u64,
    /// Batches not yet submitted; the back one accepts commands until it is full.
    batches: VecDeque<OpenBatch>,
    pending_commands: usize,
    /// Submitted entries, oldest first; their outcomes are taken in this order.
    in_flight: VecDeque<InFlight>,
    tickets: HashMap<u64, WaiterId>,
    pending: HashMap<WaiterId, Pending>,
    /// Request key -> its pending waiter (queued, or granted and being committed), so a
    /// retry joins the first attempt instead of racing it.
    by_request: HashMap<RequestKey, WaiterId>,
    /// Set when an applied outcome differed from the speculative one: rebuild the
    /// speculative state from the applied one as soon as nothing is pending.
    resync: bool,
}

impl LeaderLoop {
    /// Waits until everything in the new leader's log is applied, then takes cluster
    /// time from the applied state (DESIGN.md §3: `base` = last entry's `now_ms`).
    async fn start(
        raft: Raft,
        term: u64,
        applied: SharedApplied,
        metrics: Arc<Metrics>,
        series: Arc<Series>,
        waiters_gauge: Arc<AtomicU64>,
        rx: mpsc::Receiver<Msg>,
    ) -> Result<LeaderLoop, String> {
        let last = raft.metrics().borrow().last_log_index;
        if let Some(last) = last {
            raft.wait(Some(CATCH_UP_TIMEOUT))
                .applied_index_at_least(Some(last), "leader catch-up")
                .await
                .map_err(|e| e.to_string())?;
        }
        let spec = applied.read().state.clone();
        let clock = LeaderClock::new(spec.now_ms());
        Ok(LeaderLoop {
            raft,
            term,
            applied,
            metrics,
            series,
            waiters_gauge,
            rx,
            spec,
            sched: Scheduler::new(),
            clock,
            started_ms: crate::clock::monotonic_ms(),
            batches: VecDeque::new(),
            pending_commands: 0,
            in_flight: VecDeque::new(),
            tickets: HashMap::new(),
            pending: HashMap::new(),
            by_request: HashMap::new(),
            resync: false,
        })
    }

    fn elapsed_ms(&self) -> u64 {
        crate::clock::monotonic_ms().saturating_sub(self.started_ms)
    }

    /// Cluster time now, without issuing a stamp.
    fn clock_ms(&self) -> u64 {
        self.clock.peek(self.elapsed_ms())
    }

    /// Makes sure there is a batch to add commands to. A new stamp is taken only when
    /// no batch is pending; otherwise the speculative state's time stays frozen.
    fn ensure_batch(&mut self) {
        match self.batches.back() {
            Some(b) if b.commands.len() < BATCH_COMMANDS_MAX => {}
            Some(b) => {
                let now_ms = b.now_ms;
                self.batches.push_back(OpenBatch {
                    now_ms,
                    ..OpenBatch::default()
                });
            }
            None => {
                let now_ms = self.clock.stamp(self.elapsed_ms());
                self.spec.tick(now_ms);
                self.batches.push_back(OpenBatch {
                    now_ms,
                    ..OpenBatch::default()
                });
            }
        }
    }

    fn push(&mut self, command: Command, reply: Reply) {
        self.ensure_batch();
        if let Some(b) = self.batches.back_mut() {
            b.commands.push(command);
            b.replies.push(reply);
            self.pending_commands += 1;
        }
    }

    async fn run(&mut self) {
        let mut metrics_rx = self.raft.metrics();
        loop {
            self.submit();
            // An open batch has its stamp: until it is submitted only deadlines can
            // make `poll` do something. Entries in flight do not freeze time: the next
            // batch gets a new, later stamp.
            let frozen = !self.batches.is_empty();
            let wake_ms = if frozen {
                self.sched.next_deadline()
            } else {
                self.sched.next_wakeup()
            };
            let sleep_for = wake_ms.map(|at| at.saturating_sub(self.clock_ms()));
            let accepting = self.pending_commands < PENDING_COMMANDS_MAX;
            let woke = {
                let in_flight = &mut self.in_flight;
                let rx = &mut self.rx;
                tokio::select! {
                    biased;
                    changed = metrics_rx.changed() => {
                        let m = metrics_rx.borrow_and_update();
                        if changed.is_err() || m.state != ServerState::Leader || m.current_term != self.term {
                            return;
                        }
                        Woke::Tick
                    }
                    done = async {
                        match in_flight.front_mut() {
                            Some(w) => (&mut w.outcome).await,
                            None => std::future::pending().await,
                        }
                    } => Woke::Written(done),
                    msg = rx.recv(), if accepting => match msg {
                        Some(msg) => Woke::Msg(msg),
                        None => return,
                    },
                    () = sleep_ms(sleep_for) => Woke::Tick,
                }
            };
            match woke {
                Woke::Tick => {}
                Woke::Written(done) => {
                    let replies = self
                        .in_flight
                        .pop_front()
                        .map(|w| w.replies)
                        .unwrap_or_default();
                    if !self.write_done(done, replies) {
                        return;
                    }
                }
                Woke::Msg(msg) => self.handle(msg),
            }
            self.pump();
        }
    }

    /// Times out waiters, grants what fits, and queues the resulting commands.
    fn pump(&mut self) {
        if self.batches.is_empty() && self.in_flight.is_empty() && self.resync {
            self.spec = self.applied.read().state.clone();
            self.resync = false;
            tracing::warn!("speculative state rebuilt from the applied state");
        }
        let clock_ms = self.clock_ms();
        if self.batches.is_empty() {
            self.ensure_batch();
        }
        self.sched.poll(&mut self.spec, clock_ms);
        self.drain_events();
        // An empty batch holds no commitment: drop it so time can move on.
        if self.batches.len() == 1 && self.batches.front().is_some_and(|b| b.commands.is_empty()) {
            self.batches.clear();
        }
        self.waiters_gauge
            .store(self.sched.len() as u64, Ordering::Relaxed);
    }

    fn drain_events(&mut self) {
        let events: Vec<Event> = self.sched.events().collect();
        for e in events {
            match e {
                Event::Grant { waiter, command } => self.push(command, Reply::Waiter(waiter)),
                Event::Refused { waiter, refusal } => {
                    if let Some(p) = self.take_pending(waiter) {
                        self.refused(&p.req.resource, &refusal);
                        for (ticket, tx) in p.senders {
                            self.tickets.remove(&ticket);
                            let _ = tx.send(Err(Failure::Refused(refusal.clone())));
                        }
                    }
                }
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Acquire {
                ticket,
                params,
                reply,
            } => {
                self.ensure_batch();
                let req = Request {
                    deadline_ms: self.clock_ms().saturating_add(params.wait_ms),
                    try_once: params.wait_ms == 0,
                    nonce: rand::random(),
                    resource: params.resource,
                    lane: params.lane,
                    priority: params.priority,
                    load: params.load,
                    ttl_ms: params.ttl_ms,
                    request_id: params.request_id,
                    holder: params.holder,
                    owner: params.owner,
                    waiters_max: params.waiters_max,
                };
                // A retry of a request that is queued, or whose grant is being
                // committed, joins the first attempt: it gets the same answer, and the
                // first attempt's client going away no longer orphans the grant. A
                // reuse of the id for another grant is refused.
                let joined = req.request_key().and_then(|k| self.by_request.get(&k));
                if let Some(&id) = joined {
                    if let Some(p) = self.pending.get_mut(&id) {
                        if !p.req.same_as(&req) {
                            let _ = reply.send(Err(Failure::Refused(Refusal::RequestIdReused)));
                            return;
                        }
                        p.senders.push((ticket, reply));
                        self.tickets.insert(ticket, id);
                        return;
                    }
                }
                match self.sched.enqueue(&mut self.spec, req.clone()) {
                    Admit::Waiting(id) => {
                        let p = Pending {
                            req,
                            senders: vec![(ticket, reply)],
                            enqueued: Instant::now(),
                        };
                        self.put_pending(id, p);
                        self.tickets.insert(ticket, id);
                    }
                    Admit::Attached(id) => match self.pending.get_mut(&id) {
                        Some(p) => {
                            p.senders.push((ticket, reply));
                            self.tickets.insert(ticket, id);
                        }
                        None => {
                            let _ = reply.send(Err(Failure::NotLeader));
                        }
                    },
                    Admit::Rejected(refusal) => {
                        self.refused(&req.resource, &refusal);
                        let _ = reply.send(Err(Failure::Refused(refusal)));
                    }
                }
                self.drain_events();
            }
            Msg::Cancel { ticket } => {
                let Some(id) = self.tickets.remove(&ticket) else {
                    return;
                };
                let Some(p) = self.pending.get_mut(&id) else {
                    return;
                };
                p.senders.retain(|(t, _)| *t != ticket);
                if p.senders.is_empty() && self.sched.cancel(id) {
                    self.take_pending(id);
                }
                // Otherwise its grant is in a batch: `write_done` releases it.
            }
            Msg::Write { command, reply } => {
                self.ensure_batch();
                self.sched.propose(&mut self.spec, &command);
                self.push(command, Reply::Write(reply));
            }
            Msg::Touch {
                command,
                lease,
                by,
                reply,
            } => {
                self.ensure_batch();
                // The speculative state knows every proposed command; where it has the
                // lease live, its owner is certain. Where it does not, the applied
                // state's answer is final unless a pending command is what ended it.
                let owner = match self.spec.lease_owner(lease) {
                    Ok(owner) => Ok(owner.map(str::to_owned)),
                    Err(_) => match self.applied.read().state.lease_owner(lease) {
                        Ok(owner) => Ok(owner.map(str::to_owned)),
                        Err(r) => Err(r),
                    },
                };
                match owner {
                    Ok(owner) if by.admin || owner == by.owner => {
                        self.sched.propose(&mut self.spec, &command);
                        self.push(command, Reply::Write(reply));
                    }
                    Ok(_) => {
                        self.metrics.unwritten_touch();
                        let _ = reply.send(Err(Failure::NotOwner));
                    }
                    Err(r) => {
                        self.metrics.unwritten_touch();
                        let outcome = match (&command, r) {
                            (Command::Release { .. }, Rejection::LeaseReleased) => {
                                Outcome::Released { already: true }
                            }
                            (_, r) => Outcome::Rejected(r),
                        };
                        let _ = reply.send(Ok(outcome));
                    }
                }
            }
            Msg::Queued { resource, reply } => {
                let _ = reply.send(self.sched.queued(&resource));
            }
            Msg::Waiting { reply } => {
                let waiting = self
                    .sched
                    .resources()
                    .map(|r| {
                        let lanes = self.sched.queued(r).into_iter();
                        (r.to_owned(), lanes.map(|(l, n)| (l, n as u64)).collect())
                    })
                    .collect();
                let _ = reply.send(waiting);
            }
            Msg::Queue { resource, reply } => {
                let _ = reply.send(self.queue_report(&resource));
            }
            Msg::Progress { key, reply } => {
                // Bucket waits are read at the leader's time now, as a refusal's are.
                self.ensure_batch();
                let found = self.sched.waiter_for(&key).and_then(|id| {
                    let progress = self.sched.progress(&self.spec, id)?;
                    let waited_ms = self.pending.get(&id).map_or(0, |p| {
                        u64::try_from(p.enqueued.elapsed().as_millis()).unwrap_or(u64::MAX)
                    });
                    Some(WaiterProgress {
                        progress,
                        waited_ms,
                    })
                });
                let _ = reply.send(found);
            }
        }
    }

    fn queue_report(&self, resource: &str) -> QueueReport {
        let clock_ms = self.clock_ms();
        let Some(view) = self.sched.queue_view(resource) else {
            return QueueReport {
                view: None,
                clock_ms,
                waited_ms: HashMap::new(),
                head_fit: None,
                head_wait_ms: None,
            };
        };
        let waited = |id: &WaiterId| {
            let p = self.pending.get(id)?;
            Some((
                *id,
                u64::try_from(p.enqueued.elapsed().as_millis()).unwrap_or(u64::MAX),
            ))
        };
        let mut waited_ms: HashMap<WaiterId, u64> = view
            .lanes
            .iter()
            .flat_map(|l| l.groups.iter().filter_map(|g| waited(&g.first)))
            .collect();
        waited_ms.extend(view.head.as_ref().and_then(|h| waited(&h.waiter)));
        let head_fit = view.head.as_ref().map(|h| self.spec.fit(resource, h.load));
        let head_wait_ms = view
            .head
            .as_ref()
            .and_then(|h| self.sched.progress(&self.spec, h.waiter))
            .map(|p| p.estimate.wait_ms);
        QueueReport {
            view: Some(view),
            clock_ms,
            waited_ms,
            head_fit,
            head_wait_ms,
        }
    }

    /// A refusal, counted in the metrics and the dashboard's series.
    fn refused(&self, resource: &str, refusal: &Refusal) {
        self.metrics
            .refused(metric_resource(&self.spec, resource), refusal);
        if !matches!(refusal, Refusal::ResourceNotFound) {
            self.series.refused(resource);
        }
    }

    /// Submits pending batches, oldest first, while the pipeline has room. The entry is
    /// handed to Raft here, in order (openraft's API channel is unbounded, so the send
    /// does not wait); only its outcome is awaited later.
    fn submit(&mut self) {
        while self.in_flight.len() < WRITES_IN_FLIGHT_MAX {
            let Some(batch) = self.batches.pop_front() else {
                return;
            };
            if batch.commands.is_empty() {
                continue;
            }
            self.pending_commands -= batch.commands.len();
            self.metrics.batch(batch.commands.len());
            tracing::debug!(
                commands = batch.commands.len(),
                in_flight = self.in_flight.len(),
                "entry submitted"
            );
            let payload = Batch {
                now_ms: batch.now_ms,
                commands: batch.commands,
            };
            let outcome: WriteFuture = match self.raft.client_write_ff(payload).now_or_never() {
                Some(Ok(rx)) => Box::pin(async move {
                    match tokio::time::timeout(COMMIT_TIMEOUT, rx).await {
                        Ok(Ok(Ok(resp))) => Ok(resp.data),
                        Ok(Ok(Err(ClientWriteError::ForwardToLeader(_)))) => {
                            Err(WriteError::NotLeader)
                        }
                        Ok(Ok(Err(e))) => {
                            tracing::error!(error = %e, "replicated write failed");
                            Err(WriteError::NotLeader)
                        }
                        // Raft dropped the responder: it stopped, or left office.
                        Ok(Err(_)) => Err(WriteError::NotLeader),
                        Err(_) => Err(WriteError::Timeout),
                    }
                }),
                Some(Err(e)) => {
                    tracing::error!(error = %e, "raft stopped");
                    Box::pin(std::future::ready(Err(WriteError::NotLeader)))
                }
                None => {
                    // openraft's API channel is unbounded: the send itself never waits;
                    // only reporting that the core has stopped does. Never wait here
                    // (that would reorder entries): the core is gone either way.
                    tracing::error!("raft did not take the entry at once: its core stopped");
                    Box::pin(std::future::ready(Err(WriteError::NotLeader)))
                }
            };
            self.in_flight.push_back(InFlight {
                outcome,
                replies: batch.replies,
            });
        }
    }

    /// Answers everyone in a committed batch. Returns false if the loop must stop.
    fn write_done(&mut self, res: WriteResult, replies: Vec<Reply>) -> bool {
        tracing::debug!(commands = replies.len(), "entry applied; answering");
        let outcomes = match res {
            Ok(o) => o.0,
            Err(e) => {
                tracing::warn!(error = ?e, "write not confirmed; leaving the leader loop");
                self.fail_replies(replies, Failure::Ambiguous);
                return false;
            }
        };
        let mut waits: Vec<(String, u64)> = Vec::new();
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            match reply {
                Reply::Write(tx) => {
                    let _ = tx.send(Ok(outcome));
                }
                Reply::Orphan => {}
                Reply::Waiter(id) => {
                    if let Some(w) = self.answer_waiter(id, outcome) {
                        waits.push(w);
                    }
                }
            }
        }
        self.series
            .waits(waits.iter().map(|(r, ms)| (r.as_str(), *ms)));
        true
    }

    /// Answers a waiter with its applied outcome; a grant returns its resource and wait.
    fn answer_waiter(&mut self, id: WaiterId, outcome: Outcome) -> Option<(String, u64)> {
        let p = self.take_pending(id)?;
        match outcome {
            Outcome::Granted {
                lease,
                limits,
                duplicate: _,
                shadow,
            } => {
                if p.senders.is_empty() {
                    // The client left while its grant was being committed: give it back.
                    let release = Command::Release {
                        lease: lease.id,
                        actual_load: None,
                    };
                    self.sched.propose(&mut self.spec, &release);
                    self.push(release, Reply::Orphan);
                    return None;
                }
                let queued_ms = u64::try_from(p.enqueued.elapsed().as_millis()).unwrap_or(0);
                let config = self.spec.resource(&lease.resource);
                let lane = metrics::lane_label(config, &lease.lane);
                let resource = metric_resource(&self.spec, &lease.resource);
                self.metrics.granted(resource, lane, queued_ms);
                if let Some(s) = &shadow {
                    self.metrics.shadow(resource, s);
                }
                for (ticket, tx) in p.senders {
                    self.tickets.remove(&ticket);
                    let g = Granted {
                        lease: lease.clone(),
                        limits: limits.clone(),
                        queued_ms,
                        shadow,
                    };
                    let _ = tx.send(Ok(g));
                }
                return Some((lease.resource, queued_ms));
            }
            Outcome::Rejected(Rejection::NoRoom { .. }) => {
                // The speculative state said it fits; the log disagrees. Should never
                // happen: count it, requeue the waiter, and resync.
                self.metrics.apply_rejection();
                tracing::error!(resource = %p.req.resource, "grant rejected at apply; requeued");
                self.resync = true;
                let mut req = p.req.clone();
                req.nonce = rand::random();
                match self.sched.enqueue(&mut self.spec, req) {
                    Admit::Waiting(nid) | Admit::Attached(nid) => {
                        for (ticket, _) in &p.senders {
                            self.tickets.insert(*ticket, nid);
                        }
                        self.put_pending(nid, p);
                    }
                    Admit::Rejected(refusal) => {
                        for (ticket, tx) in p.senders {
                            self.tickets.remove(&ticket);
                            let _ = tx.send(Err(Failure::Refused(refusal.clone())));
                        }
                    }
                }
                self.drain_events();
            }
            Outcome::Rejected(r) => {
                let expected = matches!(
                    r,
                    Rejection::ResourceNotFound
                        | Rejection::LoadExceedsLimit { .. }
                        | Rejection::GrantEnded
                        | Rejection::RequestIdReused
                );
                if !expected {
                    self.metrics.apply_rejection();
                }
                for (ticket, tx) in p.senders {
                    self.tickets.remove(&ticket);
                    let _ = tx.send(Err(Failure::Rejected(r.clone())));
                }
            }
            other => {
                tracing::error!(outcome = ?other, "unexpected outcome for a grant");
                for (ticket, tx) in p.senders {
                    self.tickets.remove(&ticket);
                    let _ = tx.send(Err(Failure::Ambiguous));
                }
            }
        }
        None
    }

    fn put_pending(&mut self, id: WaiterId, p: Pending) {
        if let Some(k) = p.req.request_key() {
            self.by_request.insert(k, id);
        }
        self.pending.insert(id, p);
    }

    fn take_pending(&mut self, id: WaiterId) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        if let Some(k) = p.req.request_key() {
            if self.by_request.get(&k) == Some(&id) {
                self.by_request.remove(&k);
            }
        }
        Some(p)
    }

    fn fail_replies(&mut self, replies: Vec<Reply>, failure: Failure) {
        for reply in replies {
            match reply {
                Reply::Write(tx) => {
                    let _ = tx.send(Err(failure.clone()));
                }
                Reply::Orphan => {}
                Reply::Waiter(id) => {
                    if let Some(p) = self.take_pending(id) {
                        for (_, tx) in p.senders {
                            let _ = tx.send(Err(failure.clone()));
                        }
                    }
                }
            }
        }
    }

    /// On leaving office: everything in flight is ambiguous, everything else certainly
    /// did not happen and may be retried against the new leader.
    fn fail_all(&mut self) {
        let in_flight: Vec<InFlight> = self.in_flight.drain(..).collect();
        for w in in_flight {
            self.fail_replies(w.replies, Failure::Ambiguous);
        }
        let batches: Vec<OpenBatch> = self.batches.drain(..).collect();
        for b in batches {
            self.fail_replies(b.replies, Failure::NotLeader);
        }
        self.by_request.clear();
        for (_, p) in self.pending.drain() {
            for (_, tx) in p.senders {
                let _ = tx.send(Err(Failure::NotLeader));
            }
        }
        self.rx.close();
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Acquire { reply, .. } => {
                    let _ = reply.send(Err(Failure::NotLeader));
                }
                Msg::Write { reply, .. } | Msg::Touch { reply, .. } => {
                    let _ = reply.send(Err(Failure::NotLeader));
                }
                Msg::Cancel { .. } | Msg::Queued { .. } => {}
                Msg::Waiting { .. } | Msg::Queue { .. } | Msg::Progress { .. } => {}
            }
        }
        self.waiters_gauge.store(0, Ordering::Relaxed);
    }
}

enum Woke {
    Tick,
    Written(WriteResult),
    Msg(Msg),
}

/// The `resource` label of a figure: the resource if it exists, else `metrics::OTHER`.
fn metric_resource<'a>(spec: &State, resource: &'a str) -> &'a str {
    if spec.resource(resource).is_some() {
        resource
    } else {
        metrics::OTHER
    }
}

async fn sleep_ms(ms: Option<u64>) {
    match ms {
        Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        None => std::future::pending().await,
    }
}
