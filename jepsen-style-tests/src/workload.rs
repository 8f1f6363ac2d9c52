//! Workloads: clients that use the HTTP API and record every call in the history.
//!
//! - `semaphore`: acquire a slot on one of several `concurrency: 2` resources, hold it a
//!   random while, release it. Like the SDKs, it resends an acquire with the same
//!   `request_id` after an ambiguous failure and resends a release until it is
//!   answered definitely.
//! - `rate`: try-once and short-wait acquires against token buckets (per request, and
//!   per load with random loads); leases are never released (short TTL).
//! - `durable`: long-TTL grants that are never released; after `info` the same
//!   `request_id` is resent until the answer is definite.
//! - `idempotent`: the same on a `concurrency: 1` resource with short client timeouts,
//!   so that retries of one `request_id` are frequent.
//! - `fencing`: the fencing demonstration: holders sometimes stall past their TTL (a
//!   process pause), then write to a downstream register that rejects stale tokens.
//! - `dry-run`: acquires on two dry-run resources (one with `concurrency`, one with
//!   buckets) whose limits the traffic exceeds many times over: every one is granted at once, with the `shadow` enforce would have
//!   given it (recorded with the grant); holders release.
//! - `report`: lease holders on a resource with a feedback policy report what "the
//!   provider" answered: remaining requests (often above the configured limit, as a
//!   provider with a larger quota would say), reset times, and now and then a 429 with
//!   a `retry-after` or reset longer than the stamp skew (so that checker 10 has a
//!   window in which the pause certainly holds).
//!
//! Each worker is one Jepsen process at a time; after an `info` it continues under a
//! fresh process id, since the old operation may still be in flight.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use ratequeue_api as api;
use reqwest::Method;
use serde_json::json;

use crate::client::{Answer, Api};
use crate::history::{Op, Recorder, Type, F};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    Semaphore,
    Rate,
    Durable,
    Idempotent,
    Fencing,
    /// Acquires on dry-run resources (`dry-0`, `dry-1`), far over their limits.
    DryRun,
    /// Lease holders reporting the provider's figures and 429s (`fb-0`).
    Report,
    /// Not part of `all`: many clients with tiny holds on one resource, releases that
    /// settle, so that every leader crash lands inside batches full of acquires,
    /// releases and settles.
    Batch,
}

impl Workload {
    pub const ALL: [Workload; 7] = [
        Workload::Semaphore,
        Workload::Rate,
        Workload::Durable,
        Workload::Idempotent,
        Workload::Fencing,
        Workload::DryRun,
        Workload::Report,
    ];
    /// Every workload, `all` and the opt-in ones.
    pub const EVERY: [Workload; 8] = [
        Workload::Semaphore,
        Workload::Rate,
        Workload::Durable,
        Workload::Idempotent,
        Workload::Fencing,
        Workload::DryRun,
        Workload::Report,
        Workload::Batch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Semaphore => "semaphore",
            Workload::Rate => "rate",
            Workload::Durable => "durable",
            Workload::Idempotent => "idempotent",
            Workload::Fencing => "fencing",
            Workload::DryRun => "dry-run",
            Workload::Report => "report",
            Workload::Batch => "batch",
        }
    }
}

pub fn parse_workloads(s: &str) -> anyhow::Result<Vec<Workload>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part == "all" {
            out.extend(Workload::ALL);
        } else if let Some(w) = Workload::EVERY.iter().find(|w| w.name() == part) {
            out.push(*w);
        } else {
            bail!("unknown workload {part:?} (all, semaphore, rate, durable, idempotent, fencing, dry-run, report, batch)");
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

pub const SEMAPHORES: usize = 3;
/// TTL of semaphore and idempotent leases: far above the stamp skew, so the TTL bound
/// of checker 1 stays meaningful; holds are much shorter and end with a release.
pub const HOLD_TTL_MS: u64 = 40_000;
pub const DURABLE_TTL_MS: u64 = 3_600_000;
pub const FENCE_TTL_MS: u64 = 1_000;
/// The `dry-run` workload's resources, `mode: dry_run`, with limits the traffic
/// exceeds: `dry-0` only `concurrency` (3 of its clients), `dry-1` only buckets (2).
/// Apart, because a shadow names the limit that binds longest, and a concurrency wait
/// (until a 40 s lease expires) would hide every bucket's.
pub const DRY_RUN_RESOURCE: &str = "dry-0";
pub const DRY_RUN_RATE_RESOURCE: &str = "dry-1";
pub const DRY_RUN_CLIENTS: usize = 5;
pub const DRY_RUN_CONCURRENCY: u32 = 2;
/// Its `per: load` bucket's capacity; a load above it can never fit.
pub const DRY_RUN_LOAD_LIMIT: u64 = 100;
/// The `report` workload's resource: one `per: request` bucket and a feedback policy.
pub const REPORT_RESOURCE: &str = "fb-0";
pub const REPORT_CLIENTS: usize = 2;
pub const REPORT_LIMIT: u64 = 10;
pub const REPORT_TTL_MS: u64 = 5_000;
/// The `batch` workload: clients and the slots they share.
pub const BATCH_CLIENTS: usize = 16;
pub const BATCH_CONCURRENCY: u32 = 6;
/// Client-side timeout on top of `wait_ms`.
pub const TIMEOUT_SLACK: Duration = Duration::from_millis(2_500);
/// Attempts per request id before giving up (semaphore, durable, idempotent).
pub const RETRIES_MAX: usize = 8;
/// How long a client keeps resending a release without a definite answer.
pub const RELEASE_RETRY_FOR: Duration = Duration::from_secs(20);

/// The client-side timeout of an acquire that may wait `wait_ms` in the queue.
fn standard(wait_ms: u64) -> Duration {
    Duration::from_millis(wait_ms) + TIMEOUT_SLACK
}

/// The resources every run creates.
pub fn resources() -> BTreeMap<String, api::ResourceSpec> {
    let mut r = BTreeMap::new();
    for i in 0..SEMAPHORES {
        r.insert(
            format!("sem-{i}"),
            api::ResourceSpec {
                concurrency: Some(2),
                default_ttl_ms: Some(HOLD_TTL_MS),
                ..Default::default()
            },
        );
    }
    r.insert(
        "rate-0".into(),
        api::ResourceSpec {
            rate: vec![api::Rate {
                per: api::Per::Request,
                limit: 10,
                window_ms: 10_000,
            }],
            default_ttl_ms: Some(1_000),
            ..Default::default()
        },
    );
    r.insert(
        "rate-1".into(),
        api::ResourceSpec {
            rate: vec![api::Rate {
                per: api::Per::Load,
                limit: 200,
                window_ms: 10_000,
            }],
            default_ttl_ms: Some(1_000),
            ..Default::default()
        },
    );
    r.insert(
        "durable".into(),
        api::ResourceSpec {
            concurrency: Some(1_000_000),
            default_ttl_ms: Some(DURABLE_TTL_MS),
            ..Default::default()
        },
    );
    r.insert(
        "idem-0".into(),
        api::ResourceSpec {
            concurrency: Some(1),
            default_ttl_ms: Some(HOLD_TTL_MS),
            ..Default::default()
        },
    );
    r.insert(
        "batch-0".into(),
        api::ResourceSpec {
            concurrency: Some(BATCH_CONCURRENCY),
            // Never binding: it makes every release with `actual_load` a settle.
            rate: vec![api::Rate {
                per: api::Per::Load,
                limit: 1_000_000_000,
                window_ms: 10_000,
            }],
            default_ttl_ms: Some(HOLD_TTL_MS),
            ..Default::default()
        },
    );
    r.insert(
        DRY_RUN_RESOURCE.into(),
        api::ResourceSpec {
            concurrency: Some(DRY_RUN_CONCURRENCY),
            default_ttl_ms: Some(HOLD_TTL_MS),
            mode: Some(api::Mode::DryRun),
            ..Default::default()
        },
    );
    r.insert(
        DRY_RUN_RATE_RESOURCE.into(),
        api::ResourceSpec {
            rate: vec![
                api::Rate {
                    per: api::Per::Request,
                    limit: 5,
                    window_ms: 5_000,
                },
                api::Rate {
                    per: api::Per::Load,
                    limit: DRY_RUN_LOAD_LIMIT,
                    window_ms: 5_000,
                },
            ],
            default_ttl_ms: Some(HOLD_TTL_MS),
            mode: Some(api::Mode::DryRun),
            ..Default::default()
        },
    );
    r.insert(
        REPORT_RESOURCE.into(),
        api::ResourceSpec {
            rate: vec![api::Rate {
                per: api::Per::Request,
                limit: REPORT_LIMIT,
                window_ms: 10_000,
            }],
            default_ttl_ms: Some(REPORT_TTL_MS),
            feedback: Some(api::Feedback {
                backoff_ms: Some(500),
                backoff_max_ms: Some(4_000),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    r.insert(
        "fence-0".into(),
        api::ResourceSpec {
            concurrency: Some(1),
            default_ttl_ms: Some(FENCE_TTL_MS),
            ..Default::default()
        },
    );
    r
}

/// The fencing demonstration's downstream system: accepts a write only if its token is
/// at least the highest it has seen (Kleppmann's fenced storage).
#[derive(Debug, Default)]
pub struct FencedRegister {
    pub highest: u64,
    pub accepted: u64,
    pub rejected: u64,
}

/// What every worker shares.
#[derive(Clone)]
pub struct Ctx {
    pub api: Arc<Api>,
    pub rec: Arc<Recorder>,
    pub stop: Arc<AtomicBool>,
    pub procs: Arc<AtomicI64>,
    pub register: Arc<Mutex<FencedRegister>>,
    /// The run's stamp skew (`checker::Config::stamp_skew_ms`): the `report` workload's
    /// 429 pauses are longer than it.
    pub stamp_skew_ms: u64,
}

impl Ctx {
    pub fn new(api: Arc<Api>, rec: Arc<Recorder>, stamp_skew_ms: u64) -> Ctx {
        Ctx {
            stamp_skew_ms,
            api,
            rec,
            stop: Arc::new(AtomicBool::new(false)),
            procs: Arc::new(AtomicI64::new(0)),
            register: Arc::new(Mutex::new(FencedRegister::default())),
        }
    }
}

/// Starts every worker of `workloads`.
pub fn spawn(ctx: &Ctx, workloads: &[Workload], seed: u64) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::new();
    let mut k = 0u64;
    let mut start = |w: Workload, i: usize| {
        k += 1;
        let worker = Worker::new(
            ctx.clone(),
            w.name(),
            i,
            seed.wrapping_mul(1_000_003).wrapping_add(k),
        );
        handles.push(tokio::spawn(async move {
            let mut worker = worker;
            match w {
                Workload::Semaphore => worker.semaphore(&format!("sem-{}", i % SEMAPHORES)).await,
                Workload::Rate => worker.rate(i).await,
                Workload::Durable => worker.durable().await,
                Workload::Idempotent => worker.idempotent().await,
                Workload::Fencing => worker.fencing().await,
                Workload::DryRun => {
                    let resource = if i % 5 < 3 {
                        DRY_RUN_RESOURCE
                    } else {
                        DRY_RUN_RATE_RESOURCE
                    };
                    worker.dry_run(resource).await
                }
                Workload::Report => worker.report().await,
                Workload::Batch => worker.batch().await,
            }
        }));
    };
    for w in workloads {
        let n = match w {
            Workload::Semaphore => 2 * SEMAPHORES,
            Workload::Rate => 2,
            Workload::Durable => 1,
            Workload::Idempotent => 2,
            Workload::Fencing => 2,
            Workload::DryRun => DRY_RUN_CLIENTS,
            Workload::Report => REPORT_CLIENTS,
            Workload::Batch => BATCH_CLIENTS,
        };
        for i in 0..n {
            start(*w, i);
        }
    }
    handles
}

struct Worker {
    ctx: Ctx,
    workload: &'static str,
    index: usize,
    process: i64,
    preferred: Option<u64>,
    /// The node that last failed us: not picked again right away.
    avoid: Option<u64>,
    rng: StdRng,
    n: u64,
}

impl Worker {
    fn new(ctx: Ctx, workload: &'static str, index: usize, seed: u64) -> Worker {
        let process = ctx.procs.fetch_add(1, Ordering::Relaxed);
        Worker {
            ctx,
            workload,
            index,
            process,
            preferred: None,
            avoid: None,
            rng: StdRng::seed_from_u64(seed),
            n: 0,
        }
    }

    fn stopped(&self) -> bool {
        self.ctx.stop.load(Ordering::Relaxed)
    }

    fn rid(&mut self) -> String {
        self.n += 1;
        format!("{}-{}-{}", self.workload, self.index, self.n)
    }

    async fn pause(&mut self, lo_ms: u64, hi_ms: u64) {
        let ms = self.rng.gen_range(lo_ms..=hi_ms);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    fn node(&mut self) -> u64 {
        if let Some(p) = self.preferred {
            return p;
        }
        let targets = self.ctx.api.targets();
        let others: Vec<u64> = targets
            .iter()
            .copied()
            .filter(|t| Some(*t) != self.avoid)
            .collect();
        let pool = if others.is_empty() { &targets } else { &others };
        pool.choose(&mut self.rng).copied().unwrap_or(1)
    }

    /// Sends, records the completion, and moves on to a new process after `info`.
    async fn call(
        &mut self,
        invoke: Op,
        method: Method,
        path: &str,
        body: serde_json::Value,
        timeout: Duration,
    ) -> (Op, Answer) {
        let node = self.node();
        let invoke = self.ctx.rec.record(invoke);
        let a = self
            .ctx
            .api
            .call(node, method, path, Some(&body), timeout)
            .await;
        let mut done = invoke.complete(a.kind);
        done.node = Some(a.node);
        done.error = a.error.clone();
        // Keep talking to a node that answered as leader; otherwise pick again.
        match a.status {
            Some(s) if s < 500 && s != 307 => {
                self.preferred = Some(a.node);
                self.avoid = None;
            }
            _ => {
                self.preferred = None;
                self.avoid = Some(a.node);
            }
        }
        if a.kind == Type::Info {
            self.process = self.ctx.procs.fetch_add(1, Ordering::Relaxed);
        }
        (done, a)
    }

    async fn acquire(
        &mut self,
        resource: &str,
        rid: &str,
        ttl_ms: u64,
        wait_ms: u64,
        load: u64,
        timeout: Duration,
    ) -> (Type, Option<api::Lease>, Option<String>) {
        let mut inv = Op::new(self.process, Type::Invoke, F::Acquire);
        inv.workload = Some(self.workload.into());
        inv.resource = Some(resource.into());
        inv.request_id = Some(rid.into());
        inv.ttl_ms = Some(ttl_ms);
        inv.load = Some(load);
        inv.value = Some(json!({"wait_ms": wait_ms}));
        let body = serde_json::to_value(api::AcquireRequest {
            load: Some(load),
            ttl_ms: Some(ttl_ms),
            wait_ms: Some(wait_ms),
            request_id: Some(rid.into()),
            ..Default::default()
        })
        .unwrap_or_default();
        let path = format!("/v1/resources/{resource}/acquire");
        let (mut done, a) = self.call(inv, Method::POST, &path, body, timeout).await;
        let mut lease = None;
        if a.kind == Type::Ok {
            match serde_json::from_value::<api::Lease>(a.body.clone()) {
                Ok(l) => {
                    done.lease_id = Some(l.lease_id.clone());
                    done.fencing_token = Some(l.fencing_token);
                    done.ttl_ms = Some(l.ttl_ms);
                    done.load = Some(l.load);
                    done.value = Some(match &l.shadow {
                        Some(sh) => json!({"queued_ms": l.queued_ms, "shadow": sh}),
                        None => json!({"queued_ms": l.queued_ms}),
                    });
                    lease = Some(l);
                }
                Err(e) => {
                    done.kind = Type::Info;
                    done.error = Some(format!("unparseable grant: {e}"));
                }
            }
        }
        let kind = done.kind;
        self.ctx.rec.record(done);
        (kind, lease, a.code().map(str::to_owned))
    }

    async fn release(&mut self, resource: &str, lease_id: &str) -> (Type, Option<String>) {
        let mut inv = Op::new(self.process, Type::Invoke, F::Release);
        inv.workload = Some(self.workload.into());
        inv.resource = Some(resource.into());
        inv.lease_id = Some(lease_id.into());
        let path = format!("/v1/leases/{lease_id}/release");
        // The batch workload settles: the real load, above or below the reserved one.
        let body = if self.workload == "batch" {
            json!({"actual_load": self.rng.gen_range(0..=150u64)})
        } else {
            json!({})
        };
        let (mut done, a) = self
            .call(inv, Method::POST, &path, body, TIMEOUT_SLACK)
            .await;
        if a.kind == Type::Ok {
            done.value = a.body.get("state").cloned();
        }
        let kind = done.kind;
        self.ctx.rec.record(done);
        (kind, a.code().map(str::to_owned))
    }

    /// Releases, resending after ambiguous or retryable failures (release is
    /// idempotent by lease id) until the answer is definite, as an SDK would, so that
    /// slots do not leak for a whole TTL after a failover.
    async fn release_until_done(&mut self, resource: &str, lease_id: &str) {
        let deadline = tokio::time::Instant::now() + RELEASE_RETRY_FOR;
        loop {
            let (kind, code) = self.release(resource, lease_id).await;
            let definite = kind == Type::Ok
                || (kind == Type::Fail
                    && code
                        .as_deref()
                        .is_some_and(|c| c != "no_leader" && c != "shutting_down"));
            if definite || tokio::time::Instant::now() > deadline {
                return;
            }
            self.pause(100, 300).await;
        }
    }

    async fn semaphore(&mut self, resource: &str) {
        while !self.stopped() {
            match self
                .acquire_idempotent(resource, HOLD_TTL_MS, 2_000, standard(2_000))
                .await
            {
                Some(l) => {
                    self.pause(0, 300).await;
                    self.release_until_done(resource, &l.lease_id).await;
                }
                None => self.pause(20, 150).await,
            }
        }
    }

    async fn rate(&mut self, i: usize) {
        let (resource, per_load) = if i % 2 == 0 {
            ("rate-0", false)
        } else {
            ("rate-1", true)
        };
        while !self.stopped() {
            let rid = self.rid();
            let load = if per_load {
                self.rng.gen_range(1..=20)
            } else {
                1
            };
            let wait_ms = if self.rng.gen_bool(0.7) { 0 } else { 500 };
            let (kind, _, _) = self
                .acquire(resource, &rid, 1_000, wait_ms, load, standard(wait_ms))
                .await;
            match kind {
                Type::Info => self.pause(100, 300).await,
                _ => self.pause(20, 120).await,
            }
        }
    }

    /// Acquires with one request id until the answer is definite (or attempts run out).
    async fn acquire_idempotent(
        &mut self,
        resource: &str,
        ttl_ms: u64,
        wait_ms: u64,
        timeout: Duration,
    ) -> Option<api::Lease> {
        let rid = self.rid();
        for _ in 0..RETRIES_MAX {
            let (kind, lease, code) = self
                .acquire(resource, &rid, ttl_ms, wait_ms, 1, timeout)
                .await;
            match kind {
                Type::Ok => return lease,
                Type::Info => self.pause(100, 300).await,
                _ if matches!(code.as_deref(), None | Some("no_leader" | "shutting_down")) => {
                    self.pause(100, 300).await;
                }
                _ => return None,
            }
            if self.stopped() {
                return None;
            }
        }
        None
    }

    /// Acquire with a random load, hold 0-20 ms, release with a settle; retries as
    /// `semaphore` does.
    async fn batch(&mut self) {
        while !self.stopped() {
            let rid = self.rid();
            let load = self.rng.gen_range(1..=100);
            let mut lease = None;
            for _ in 0..RETRIES_MAX {
                let (kind, l, code) = self
                    .acquire("batch-0", &rid, HOLD_TTL_MS, 2_000, load, standard(2_000))
                    .await;
                match kind {
                    Type::Ok => {
                        lease = l;
                        break;
                    }
                    Type::Info => self.pause(50, 150).await,
                    _ if matches!(code.as_deref(), None | Some("no_leader" | "shutting_down")) => {
                        self.pause(50, 150).await;
                    }
                    _ => break,
                }
                if self.stopped() {
                    break;
                }
            }
            match lease {
                Some(l) => {
                    self.pause(0, 20).await;
                    self.release_until_done("batch-0", &l.lease_id).await;
                }
                None => self.pause(5, 30).await,
            }
        }
    }

    async fn durable(&mut self) {
        while !self.stopped() {
            let _ = self
                .acquire_idempotent("durable", DURABLE_TTL_MS, 2_000, standard(2_000))
                .await;
            self.pause(100, 200).await;
        }
    }

    async fn idempotent(&mut self) {
        while !self.stopped() {
            // The client gives up before the server's wait ends: many attempts end
            // `info` while queued or while their grant is being committed.
            let timeout = Duration::from_millis(self.rng.gen_range(600..=2_000));
            match self
                .acquire_idempotent("idem-0", HOLD_TTL_MS, 3_000, timeout)
                .await
            {
                Some(l) => {
                    self.pause(0, 200).await;
                    self.release_until_done("idem-0", &l.lease_id).await;
                }
                None => self.pause(50, 200).await,
            }
        }
    }

    /// Acquires on the dry-run resource with random loads (one in twenty beyond its
    /// load bucket) and `wait_ms` 0 or 1000; holds 0-200 ms and releases. A new request
    /// id each time (the shadow of a retry is the first attempt's, checked against its
    /// own `wait_ms`).
    async fn dry_run(&mut self, resource: &str) {
        while !self.stopped() {
            let rid = self.rid();
            let load = if self.rng.gen_bool(0.05) {
                self.rng
                    .gen_range(DRY_RUN_LOAD_LIMIT + 1..=DRY_RUN_LOAD_LIMIT + 50)
            } else {
                self.rng.gen_range(1..=40)
            };
            let wait_ms = if self.rng.gen_bool(0.5) { 0 } else { 1_000 };
            let (kind, lease, _) = self
                .acquire(
                    resource,
                    &rid,
                    HOLD_TTL_MS,
                    wait_ms,
                    load,
                    standard(wait_ms),
                )
                .await;
            match (kind, lease) {
                (Type::Ok, Some(l)) => {
                    self.pause(0, 200).await;
                    self.release_until_done(resource, &l.lease_id).await;
                }
                (Type::Info, _) => self.pause(100, 300).await,
                _ => self.pause(20, 100).await,
            }
        }
    }

    /// Acquires on the feedback resource (try-once or 500 ms), "calls the provider" one
    /// to three times and reports each answer, then lets the lease expire.
    async fn report(&mut self) {
        while !self.stopped() {
            let rid = self.rid();
            let wait_ms = if self.rng.gen_bool(0.7) { 0 } else { 500 };
            let (kind, lease, _) = self
                .acquire(
                    REPORT_RESOURCE,
                    &rid,
                    REPORT_TTL_MS,
                    wait_ms,
                    1,
                    standard(wait_ms),
                )
                .await;
            let Some(l) = lease.filter(|_| kind == Type::Ok) else {
                self.pause(50, 150).await;
                continue;
            };
            // One to three provider calls under the lease, each answered and reported.
            for _ in 0..self.rng.gen_range(1..=3) {
                self.pause(0, 50).await;
                let answer = self.provider_answer();
                self.send_report(&l.lease_id, &answer).await;
            }
            self.pause(20, 100).await;
        }
    }

    /// What the provider answered one call: its remaining requests (0 to twice our
    /// configured limit: another application spends from the same key, and its quota
    /// is larger than our share) and reset, or one time in eight a 429 whose pause,
    /// given as `retry-after` or as reset times, is 3-8 s longer than the stamp skew.
    fn provider_answer(&mut self) -> api::ReportRequest {
        if self.rng.gen_bool(0.125) {
            let pause = self.ctx.stamp_skew_ms + self.rng.gen_range(3_000..=8_000);
            let mut r = api::ReportRequest {
                rate_limited: Some(true),
                remaining_requests: Some(0),
                ..Default::default()
            };
            if self.rng.gen_bool(0.5) {
                r.retry_after_ms = Some(pause);
            } else {
                r.reset_requests_ms = Some(pause);
                r.reset_tokens_ms = Some(self.rng.gen_range(0..=pause));
            }
            r
        } else {
            api::ReportRequest {
                remaining_requests: Some(self.rng.gen_range(0..=2 * REPORT_LIMIT)),
                reset_requests_ms: Some(self.rng.gen_range(100..=10_000)),
                ..Default::default()
            }
        }
    }

    /// One report, recorded with its body (invoke) and its answer (completion). Not
    /// resent after an ambiguous failure: a resent 429 may lengthen a backoff.
    async fn send_report(&mut self, lease_id: &str, report: &api::ReportRequest) {
        let body = serde_json::to_value(report).unwrap_or_default();
        let mut inv = Op::new(self.process, Type::Invoke, F::Report);
        inv.workload = Some(self.workload.into());
        inv.resource = Some(REPORT_RESOURCE.into());
        inv.lease_id = Some(lease_id.into());
        inv.value = Some(body.clone());
        let path = format!("/v1/leases/{lease_id}/report");
        let (mut done, a) = self
            .call(inv, Method::POST, &path, body, TIMEOUT_SLACK)
            .await;
        if a.kind == Type::Ok {
            match serde_json::from_value::<api::ReportResponse>(a.body.clone()) {
                Ok(r) => done.value = serde_json::to_value(r).ok(),
                Err(e) => {
                    done.kind = Type::Info;
                    done.error = Some(format!("unparseable report answer: {e}"));
                }
            }
        }
        self.ctx.rec.record(done);
    }

    async fn fencing(&mut self) {
        while !self.stopped() {
            let rid = self.rid();
            let (kind, lease, _) = self
                .acquire("fence-0", &rid, FENCE_TTL_MS, 3_000, 1, standard(3_000))
                .await;
            let Some(l) = lease.filter(|_| kind == Type::Ok) else {
                self.pause(50, 200).await;
                continue;
            };
            // Work under the lease; one time in five the process "pauses" past its TTL.
            if self.rng.gen_bool(0.2) {
                self.pause(FENCE_TTL_MS + 300, FENCE_TTL_MS + 800).await;
            } else {
                self.pause(0, 300).await;
            }
            let mut inv = Op::new(self.process, Type::Invoke, F::FencedWrite);
            inv.workload = Some(self.workload.into());
            inv.resource = Some("fence-0".into());
            inv.lease_id = Some(l.lease_id.clone());
            inv.fencing_token = Some(l.fencing_token);
            let inv = self.ctx.rec.record(inv);
            let accepted = {
                let mut r = self.ctx.register.lock();
                if l.fencing_token >= r.highest {
                    r.highest = l.fencing_token;
                    r.accepted += 1;
                    true
                } else {
                    r.rejected += 1;
                    false
                }
            };
            let mut done = inv.complete(if accepted { Type::Ok } else { Type::Fail });
            done.fencing_token = Some(l.fencing_token);
            if !accepted {
                done.error = Some("stale_token".into());
            }
            self.ctx.rec.record(done);
            self.release_until_done("fence-0", &l.lease_id).await;
        }
    }
}
