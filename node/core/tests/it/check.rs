//! The entry points every test goes through.
//!
//! - `check(resources)`: a replica `State` with those resources created at cluster time 0,
//!   driven one Raft entry at a time through `State::apply_entry` (the replicas' only path).
//!   Its verbs (`acquire`, `release`, `renew`, `at`, …) are the rules of DESIGN.md §2–§3.
//! - `shell(resources)`: a simulated leader shell around `Scheduler`, following the
//!   protocol the server uses: a batch is opened at cluster time `t` (`tick(t)` on the
//!   speculative state, then `poll`), scheduler calls happen inside the batch, the events
//!   are drained after every call into the batch's command list, and closing the batch
//!   applies it to a separate replica `State` whose outcomes answer the waiters.
//!
//! Nothing here sleeps or reads a clock: time is the `t` the test passes.

use std::collections::BTreeMap;

use ratequeue_core::config::DEFAULT_PRIORITY;
use ratequeue_core::state::ResourceStats;
use ratequeue_core::{
    Admit, Command, Event, Grant, LeaseId, LeaseView, LimitKind, Outcome, Per, RateLimit, Refusal,
    Rejection, Request, ResourceConfig, Scheduler, State, WaiterId,
};

/// Default TTL of test leases.
pub const TTL: u64 = 30_000;

pub fn rl(per: Per, limit: u64, window_ms: u64) -> RateLimit {
    RateLimit {
        per,
        limit,
        window_ms,
    }
}

pub fn requests(limit: u64, window_ms: u64) -> RateLimit {
    rl(Per::Request, limit, window_ms)
}

pub fn loads(limit: u64, window_ms: u64) -> RateLimit {
    rl(Per::Load, limit, window_ms)
}

/// A resource with every limit given: `concurrency` (if any) and the buckets.
pub fn limits(concurrency: Option<u32>, rate: &[RateLimit]) -> ResourceConfig {
    let mut c = ResourceConfig::rate(rate.to_vec());
    c.concurrency = concurrency;
    c
}

/// A deterministic, distinct nonce per call site counter (the shell would draw it at random).
pub fn nonce(n: u64) -> u64 {
    n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5555_0000_AAAA_0000
}

pub fn grant_cmd(resource: &str, load: u64, n: u64) -> Grant {
    Grant {
        resource: resource.into(),
        lane: "default".into(),
        load,
        ttl_ms: TTL,
        request_id: None,
        nonce: nonce(n),
        holder: None,
        owner: None,
        wait_ms: 30_000,
    }
}

pub fn put(name: &str, config: ResourceConfig) -> Command {
    Command::PutResource {
        name: name.into(),
        config,
    }
}

/// Asserts a grant and returns its lease.
#[track_caller]
pub fn granted(o: Outcome) -> LeaseView {
    match o {
        Outcome::Granted { lease, .. } => lease,
        other => panic!("expected Granted, got {other:?}"),
    }
}

/// Asserts `NoRoom` and returns `(retry_after_ms, binding)`.
#[track_caller]
pub fn no_room(o: Outcome) -> (u64, LimitKind) {
    match o {
        Outcome::Rejected(Rejection::NoRoom {
            retry_after_ms,
            binding,
        }) => (retry_after_ms, binding),
        other => panic!("expected NoRoom, got {other:?}"),
    }
}

#[track_caller]
pub fn invalid(o: Outcome) {
    assert!(
        matches!(o, Outcome::Rejected(Rejection::Invalid(_))),
        "expected Invalid, got {o:?}"
    );
}

/// A replica driven entry by entry. `state` is public for the assertions.
pub struct Check {
    pub state: State,
    nonces: u64,
}

pub fn check(resources: &[(&str, ResourceConfig)]) -> Check {
    let mut c = Check {
        state: State::new(),
        nonces: 0,
    };
    for (name, config) in resources {
        let o = c.apply(put(name, config.clone()));
        assert_eq!(o, Outcome::ResourcePut { created: true }, "{name}");
    }
    c
}

impl Check {
    pub fn now(&self) -> u64 {
        self.state.now_ms()
    }

    /// An empty entry stamped `t`: cluster time becomes `max(now, t)`.
    pub fn at(&mut self, t: u64) -> &mut Self {
        self.state.apply_entry(t, &[]);
        self
    }

    /// One command in its own entry at the current cluster time.
    pub fn apply(&mut self, command: Command) -> Outcome {
        let now = self.now();
        self.apply_at(now, command)
    }

    /// One command in an entry stamped `t`.
    pub fn apply_at(&mut self, t: u64, command: Command) -> Outcome {
        let mut out = self.state.apply_entry(t, &[command]);
        assert_eq!(out.len(), 1);
        out.remove(0)
    }

    pub fn grant(&mut self, g: Grant) -> Outcome {
        self.apply(Command::Grant(g))
    }

    /// A fresh `Grant` of `load` on `resource` (default lane, TTL, no request id).
    pub fn req(&mut self, resource: &str, load: u64) -> Grant {
        self.nonces += 1;
        grant_cmd(resource, load, self.nonces)
    }

    pub fn acquire(&mut self, resource: &str, load: u64) -> Outcome {
        let g = self.req(resource, load);
        self.grant(g)
    }

    pub fn acquire_ttl(&mut self, resource: &str, load: u64, ttl_ms: u64) -> Outcome {
        let g = Grant {
            ttl_ms,
            ..self.req(resource, load)
        };
        self.grant(g)
    }

    /// Acquires and asserts it was granted.
    #[track_caller]
    pub fn lease(&mut self, resource: &str, load: u64) -> LeaseId {
        granted(self.acquire(resource, load)).id
    }

    #[track_caller]
    pub fn lease_ttl(&mut self, resource: &str, load: u64, ttl_ms: u64) -> LeaseId {
        granted(self.acquire_ttl(resource, load, ttl_ms)).id
    }

    pub fn release(&mut self, lease: LeaseId, actual_load: Option<u64>) -> Outcome {
        self.apply(Command::Release { lease, actual_load })
    }

    pub fn renew(&mut self, lease: LeaseId, ttl_ms: Option<u64>) -> Outcome {
        self.apply(Command::Renew { lease, ttl_ms })
    }

    /// `remaining` of every limit of `resource`, in config order (concurrency first).
    pub fn remaining(&self, resource: &str) -> Vec<i64> {
        self.state
            .limits(resource)
            .iter()
            .map(|l| l.remaining)
            .collect()
    }

    pub fn stats(&self, resource: &str) -> ResourceStats {
        self.state
            .resource_stats(resource)
            .expect("resource exists")
    }

    /// Greedy client: acquire `load` until refused; returns how many were granted.
    pub fn drain(&mut self, resource: &str, load: u64) -> u64 {
        let mut n = 0;
        while matches!(self.acquire(resource, load), Outcome::Granted { .. }) {
            n += 1;
            assert!(n < 1_000_000, "drain does not end");
        }
        n
    }
}

// ---------------------------------------------------------------------------------------
// The simulated leader shell around the scheduler.

/// How a waiter was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The replica's outcome of its grant command (normally `Granted`), at cluster time `at`.
    Applied {
        outcome: Outcome,
        at: u64,
    },
    Refused(Refusal),
}

pub struct Shell {
    /// The leader's speculative copy: what the scheduler decides against.
    pub spec: State,
    pub sched: Scheduler,
    /// An applied replica: closed batches are applied here, as a follower would.
    pub replica: State,
    /// Every closed entry `(now_ms, commands)`, in log order.
    pub log: Vec<(u64, Vec<Command>)>,
    /// Replica outcomes per closed entry, aligned with `log`.
    pub outcomes: Vec<Vec<Outcome>>,
    /// Answers per waiter. A waiter answered twice fails the test.
    pub answers: BTreeMap<WaiterId, Answer>,
    /// Every applied grant, in log order: `(waiter, lease, cluster time)`.
    pub grants: Vec<(WaiterId, LeaseView, u64)>,
    t: u64,
    batch: Vec<Command>,
    /// What to check when the batch is applied: the outcome at an index of `batch` answers
    /// a waiter, or must equal the speculative outcome `propose` returned.
    pending: Vec<Pending>,
    nonces: u64,
}

enum Pending {
    Grant(usize, WaiterId),
    Proposed(usize, Outcome),
}

pub fn shell(resources: &[(&str, ResourceConfig)]) -> Shell {
    let mut s = Shell {
        spec: State::new(),
        sched: Scheduler::new(),
        replica: State::new(),
        log: Vec::new(),
        outcomes: Vec::new(),
        answers: BTreeMap::new(),
        grants: Vec::new(),
        t: 0,
        batch: Vec::new(),
        pending: Vec::new(),
        nonces: 0,
    };
    s.spec.tick(0);
    for (name, config) in resources {
        let o = s.propose(put(name, config.clone()));
        assert_eq!(o, Outcome::ResourcePut { created: true });
    }
    s.commit();
    s
}

impl Shell {
    pub fn now(&self) -> u64 {
        self.t
    }

    /// An acquire with the defaults of the HTTP API and a fresh nonce.
    pub fn req(&mut self, resource: &str) -> Request {
        self.nonces += 1;
        Request {
            resource: resource.into(),
            lane: "default".into(),
            priority: DEFAULT_PRIORITY,
            load: 1,
            ttl_ms: TTL,
            request_id: None,
            nonce: nonce(self.nonces),
            try_once: false,
            deadline_ms: u64::MAX,
            holder: None,
            owner: None,
            waiters_max: None,
        }
    }

    /// Closes the open batch and opens one stamped `t` (>= the last stamp): tick the
    /// speculative state, then poll. Events go into the new batch.
    pub fn at(&mut self, t: u64) -> &mut Self {
        assert!(t >= self.t, "the leader clock never goes back");
        self.commit();
        self.t = t;
        self.spec.tick(t);
        self.poll();
        self
    }

    /// Polls at the current batch time without opening a new batch.
    pub fn poll(&mut self) {
        self.sched.poll(&mut self.spec, self.t);
        self.drain();
    }

    pub fn enqueue(&mut self, req: Request) -> Admit {
        let admit = self.sched.enqueue(&mut self.spec, req);
        self.drain();
        admit
    }

    pub fn cancel(&mut self, id: WaiterId) -> bool {
        let was = self.sched.cancel(id);
        self.drain();
        was
    }

    pub fn propose(&mut self, command: Command) -> Outcome {
        let outcome = self.sched.propose(&mut self.spec, &command);
        self.pending
            .push(Pending::Proposed(self.batch.len(), outcome.clone()));
        self.batch.push(command);
        self.drain();
        outcome
    }

    pub fn release(&mut self, lease: LeaseId) -> Outcome {
        self.propose(Command::Release {
            lease,
            actual_load: None,
        })
    }

    fn drain(&mut self) {
        let events: Vec<Event> = self.sched.events().collect();
        for e in events {
            match e {
                Event::Grant { waiter, command } => {
                    assert!(
                        matches!(command, Command::Grant(_)),
                        "a grant event carries a Grant: {command:?}"
                    );
                    self.pending.push(Pending::Grant(self.batch.len(), waiter));
                    self.batch.push(command);
                }
                Event::Refused { waiter, refusal } => {
                    let prev = self.answers.insert(waiter, Answer::Refused(refusal));
                    assert!(prev.is_none(), "{waiter:?} answered twice");
                }
            }
        }
    }

    /// Applies the open batch to the replica (commit + apply) and answers its waiters.
    pub fn commit(&mut self) {
        let commands = std::mem::take(&mut self.batch);
        let pending = std::mem::take(&mut self.pending);
        if commands.is_empty() {
            return;
        }
        let outcomes = self.replica.apply_entry(self.t, &commands);
        for p in pending {
            match p {
                Pending::Proposed(i, spec) => {
                    assert_eq!(
                        outcomes[i], spec,
                        "the replica disagrees with the speculative state on {:?}",
                        commands[i]
                    );
                }
                Pending::Grant(i, waiter) => {
                    if let Outcome::Granted { lease, .. } = &outcomes[i] {
                        self.grants.push((waiter, lease.clone(), self.t));
                    }
                    let answer = Answer::Applied {
                        outcome: outcomes[i].clone(),
                        at: self.t,
                    };
                    let prev = self.answers.insert(waiter, answer);
                    assert!(prev.is_none(), "{waiter:?} answered twice");
                }
            }
        }
        assert_eq!(self.replica.check_invariants(), Ok(()));
        self.log.push((self.t, commands));
        self.outcomes.push(outcomes);
        assert_eq!(
            self.spec.snapshot(),
            self.replica.snapshot(),
            "with every batch applied, the speculative state equals the replica"
        );
    }

    /// The lease a waiter got (commits first), panicking if it was not granted.
    #[track_caller]
    pub fn lease_of(&mut self, id: WaiterId) -> LeaseView {
        self.commit();
        match self.answers.get(&id) {
            Some(Answer::Applied {
                outcome: Outcome::Granted { lease, .. },
                ..
            }) => lease.clone(),
            other => panic!("{id:?} was not granted: {other:?}"),
        }
    }

    /// Whether `id` has been answered (commits first).
    pub fn answer(&mut self, id: WaiterId) -> Option<Answer> {
        self.commit();
        self.answers.get(&id).cloned()
    }

    /// Enqueues and asserts the request was queued or granted (not refused, not attached).
    #[track_caller]
    pub fn wait(&mut self, req: Request) -> WaiterId {
        match self.enqueue(req) {
            Admit::Waiting(id) => id,
            other => panic!("expected Waiting, got {other:?}"),
        }
    }

    /// Grants (in order) answered in the current history.
    pub fn granted_waiters(&mut self) -> Vec<WaiterId> {
        self.commit();
        self.grants.iter().map(|(w, _, _)| *w).collect()
    }
}
