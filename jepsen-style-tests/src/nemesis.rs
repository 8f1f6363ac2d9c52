//! Nemeses: the faults, their seeded schedule, and applying and healing them.
//!
//! The schedule (`schedule`) is a pure function of the seed: which fault, which random
//! choices, how long, how long to rest after. Which node is the leader is only known at
//! run time, so "the leader" is resolved then. Faults run one at a time; membership
//! changes persist (a grown cluster stays grown and later faults hit all five nodes)
//! until the final `heal_all`, which resumes, restarts, flushes iptables and restores
//! the initial membership.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::history::{Op, Recorder, Type, F, NEMESIS};
use crate::net::Net;
use ratequeue_testkit::Cluster;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    KillLeader,
    KillRandom,
    PauseLeader,
    PauseRandom,
    PartitionHalves,
    PartitionLeader,
    PartitionRing,
    PartitionOneWay,
    Membership,
    /// Sabotage, never part of `all`: kill every node, delete every data dir, restart.
    /// Simulates a build that acknowledges before fsync followed by a power cut.
    LoseDisks,
    // Storage and disk faults (groups `storage` and `disk`, not part of `all`): they need
    // the server built with the cargo feature `failpoints` (`--failpoints-bin`).
    /// `kill -9` of the leader or a random member, then `ratequeue failpoint power-cut`
    /// on its data dir (every write since its last completed fsync undone); restart.
    /// Its fsyncs are stalled for 400 ms first, so the cut takes a tail of appended but
    /// unsynced entries (which a leader may already have sent to its followers).
    PowerCut,
    /// The same for every member at once, then restart them all (a whole-rack outage).
    PowerCutAll,
    /// A power cut of one node that also tears its last surviving log record in half.
    /// The node must refuse to start, naming the record; healed by the runbook's
    /// rebuild (remove the member, wipe it, add it back).
    TornTail,
    /// Like `torn-tail`, with one byte of the last record flipped instead.
    CorruptTail,
    /// Every fsync of the leader or a random member fails with EIO. Healed by clearing
    /// the fault, a power cut of that node (after a failed fsync its unsynced writes may
    /// be gone) and a restart.
    DiskEio,
    /// Every write and fsync of one node fails with ENOSPC; healed like `disk-eio`.
    DiskFull,
    /// Every fsync of one node first waits 100-400 ms.
    SlowDisk,
    // Clock faults (group `clock`, failpoints build): the node's view of time, through
    // its one clock module (`node/server/src/clock.rs`), on the leader (70 %) or a
    // random member (the wall-clock jumps: the leader), for the fault's duration.
    /// The leader's wall clock jumps 90-180 min forward (past every TTL and window).
    ClockWallForward,
    /// The leader's wall clock jumps 90-180 min back.
    ClockWallBack,
    /// The monotonic clock jumps 5-60 s back.
    ClockMonoBack,
    /// The monotonic clock runs at 0.1-0.5 times real speed.
    ClockSlow,
    // Group `crash`, in `all`: crashes under load.
    /// `kill -9` of the leader, three times in a row: each crashed leader is restarted
    /// once another serves, and that one crashes next, inside whatever batches of
    /// acquires, releases and settles it has in flight.
    KillLeaderRepeat,
    /// Every member in turn: SIGTERM (a leader hands over first), start again, wait
    /// until it answers and a leader serves; the next one.
    RollingRestart,
}

/// The clock faults, in the order of the `clock` group.
pub const CLOCK_FAULTS: [Fault; 4] = [
    Fault::ClockWallForward,
    Fault::ClockWallBack,
    Fault::ClockMonoBack,
    Fault::ClockSlow,
];

/// The storage faults, in the order of the `storage` group.
pub const STORAGE_FAULTS: [Fault; 4] = [
    Fault::PowerCut,
    Fault::PowerCutAll,
    Fault::TornTail,
    Fault::CorruptTail,
];
/// The disk faults, in the order of the `disk` group.
pub const DISK_FAULTS: [Fault; 3] = [Fault::DiskEio, Fault::DiskFull, Fault::SlowDisk];

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillLeader => "kill-leader",
            Fault::KillRandom => "kill-random",
            Fault::PauseLeader => "pause-leader",
            Fault::PauseRandom => "pause-random",
            Fault::PartitionHalves => "partition-halves",
            Fault::PartitionLeader => "partition-leader",
            Fault::PartitionRing => "partition-ring",
            Fault::PartitionOneWay => "partition-one-way",
            Fault::Membership => "membership",
            Fault::LoseDisks => "lose-disks",
            Fault::PowerCut => "power-cut",
            Fault::PowerCutAll => "power-cut-all",
            Fault::TornTail => "torn-tail",
            Fault::CorruptTail => "corrupt-tail",
            Fault::DiskEio => "disk-eio",
            Fault::DiskFull => "disk-full",
            Fault::SlowDisk => "slow-disk",
            Fault::ClockWallForward => "clock-wall-forward",
            Fault::ClockWallBack => "clock-wall-back",
            Fault::ClockMonoBack => "clock-mono-back",
            Fault::ClockSlow => "clock-slow",
            Fault::KillLeaderRepeat => "kill-leader-repeat",
            Fault::RollingRestart => "rolling-restart",
        }
    }

    /// Whether the fault needs the `failpoints` build of the server.
    pub fn needs_failpoints(self) -> bool {
        STORAGE_FAULTS.contains(&self)
            || DISK_FAULTS.contains(&self)
            || CLOCK_FAULTS.contains(&self)
    }

    /// A fault that happens at once and is its own end (its period is the change).
    pub fn is_instant(self) -> bool {
        matches!(
            self,
            Fault::Membership
                | Fault::LoseDisks
                | Fault::PowerCutAll
                | Fault::KillLeaderRepeat
                | Fault::RollingRestart
        )
    }

    pub fn is_partition(self) -> bool {
        matches!(
            self,
            Fault::PartitionHalves
                | Fault::PartitionLeader
                | Fault::PartitionRing
                | Fault::PartitionOneWay
        )
    }

    pub fn is_pause(self) -> bool {
        matches!(self, Fault::PauseLeader | Fault::PauseRandom)
    }
}

/// The faults of the group `all`, in their order.
pub const ALL_FAULTS: [Fault; 11] = [
    Fault::KillLeader,
    Fault::KillRandom,
    Fault::PauseLeader,
    Fault::PauseRandom,
    Fault::PartitionHalves,
    Fault::PartitionLeader,
    Fault::PartitionRing,
    Fault::PartitionOneWay,
    Fault::Membership,
    Fault::KillLeaderRepeat,
    Fault::RollingRestart,
];

/// Every fault a schedule may hold (group `everything`): `all`, then the storage, disk
/// and clock groups, in that order. `lose-disks` is a sabotage, not one of them.
pub const EVERYTHING: [Fault;
    ALL_FAULTS.len() + STORAGE_FAULTS.len() + DISK_FAULTS.len() + CLOCK_FAULTS.len()] =
    concat(&[&ALL_FAULTS, &STORAGE_FAULTS, &DISK_FAULTS, &CLOCK_FAULTS]);

/// The groups one after the other; `N` must be their total length (checked at compile
/// time, where the only caller runs).
const fn concat<const N: usize>(groups: &[&[Fault]]) -> [Fault; N] {
    let mut out = [Fault::KillLeader; N];
    let mut i = 0;
    let mut g = 0;
    while g < groups.len() {
        let mut j = 0;
        while j < groups[g].len() {
            out[i] = groups[g][j];
            i += 1;
            j += 1;
        }
        g += 1;
    }
    assert!(i == N, "N is not the groups' total length");
    out
}

/// Parses `all`, `none`, or a comma list of groups (`kill`, `pause`, `partition`,
/// `membership`) and single faults (`kill-leader`, `partition-ring`, …).
pub fn parse_faults(s: &str) -> anyhow::Result<Vec<Fault>> {
    use Fault::*;
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let add: &[Fault] = match part {
            "all" => &ALL_FAULTS,
            "none" => &[],
            "kill" => &[KillLeader, KillRandom],
            "pause" => &[PauseLeader, PauseRandom],
            "partition" => &[PartitionHalves, PartitionLeader, PartitionRing, PartitionOneWay],
            "membership" => &[Membership],
            "crash" => &[KillLeaderRepeat, RollingRestart],
            "storage" => &STORAGE_FAULTS,
            "disk" => &DISK_FAULTS,
            "clock" => &CLOCK_FAULTS,
            "everything" => &EVERYTHING,
            other => match EVERYTHING.iter().find(|f| f.name() == other) {
                Some(f) => std::slice::from_ref(f),
                None => bail!("unknown nemesis {other:?} (all, none, kill, pause, partition, membership, crash, storage, disk, clock, everything, or one fault)"),
            },
        };
        out.extend(add.iter().copied());
    }
    Ok(out.into_iter().collect())
}

/// One scheduled fault.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    pub fault: Fault,
    /// Random bits for run-time choices (which node, which halves, which direction).
    pub pick: u64,
    pub fault_ms: u64,
    pub quiet_ms: u64,
}

/// Fault durations and rests, in milliseconds.
pub const FAULT_MS: (u64, u64) = (2_000, 6_000);
pub const QUIET_MS: (u64, u64) = (1_500, 3_500);
/// Quiet time before the first fault, so every workload starts on a healthy cluster.
pub const WARMUP_MS: u64 = 3_000;

/// The faults of a run of `duration_ms`, as a pure function of the seed: the enabled
/// faults in shuffled rounds, so every kind comes up once before any comes up twice.
/// With `lose_disks`, that sabotage replaces the fault nearest the middle of the run.
pub fn schedule(seed: u64, faults: &[Fault], duration_ms: u64, lose_disks: bool) -> Vec<Step> {
    schedule_with_middle(
        seed,
        faults,
        duration_ms,
        lose_disks.then_some(Fault::LoseDisks),
    )
}

/// [`schedule`], with `middle` (a sabotage's fault) replacing the fault nearest the
/// middle of the run; with no other fault enabled, it is the only one.
pub fn schedule_with_middle(
    seed: u64,
    faults: &[Fault],
    duration_ms: u64,
    middle: Option<Fault>,
) -> Vec<Step> {
    let lose_disks = middle.is_some();
    let middle = middle.unwrap_or(Fault::LoseDisks);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x006e_656d_6573_6973);
    let mut steps = Vec::new();
    if faults.is_empty() && !lose_disks {
        return steps;
    }
    let mut t = WARMUP_MS;
    let mut round: Vec<Fault> = Vec::new();
    while t < duration_ms {
        if round.is_empty() {
            round = if faults.is_empty() {
                vec![Fault::KillRandom]
            } else {
                faults.to_vec()
            };
            round.shuffle(&mut rng);
        }
        let fault = round.pop().unwrap_or(Fault::KillRandom);
        let step = Step {
            fault,
            pick: rng.gen(),
            fault_ms: rng.gen_range(FAULT_MS.0..=FAULT_MS.1),
            quiet_ms: rng.gen_range(QUIET_MS.0..=QUIET_MS.1),
        };
        t += step.fault_ms + step.quiet_ms;
        steps.push(step);
    }
    if lose_disks {
        let mid = steps.len() / 2;
        match steps.get_mut(mid) {
            Some(s) => s.fault = middle,
            None => steps.push(Step {
                fault: middle,
                pick: 0,
                fault_ms: 1_000,
                quiet_ms: 3_000,
            }),
        }
        if faults.is_empty() {
            steps.retain(|s| s.fault == middle);
        }
    }
    steps
}

/// The longest pause in a schedule (it widens the checkers' stamp skew).
pub fn max_pause_ms(steps: &[Step]) -> u64 {
    steps
        .iter()
        .filter(|s| s.fault.is_pause())
        .map(|s| s.fault_ms)
        .max()
        .unwrap_or(0)
}

/// Packets to drop, as `(from, to)` node pairs.
pub type Grudge = Vec<(u64, u64)>;

/// Splits `nodes` into two halves (the smaller first) in a random order; every packet
/// across is dropped both ways.
pub fn halves(nodes: &[u64], pick: u64) -> (Vec<u64>, Vec<u64>, Grudge) {
    let mut v = nodes.to_vec();
    v.shuffle(&mut StdRng::seed_from_u64(pick));
    let (a, b) = v.split_at(v.len() / 2);
    let mut g = Grudge::new();
    for x in a {
        for y in b {
            g.push((*x, *y));
            g.push((*y, *x));
        }
    }
    (a.to_vec(), b.to_vec(), g)
}

/// Cuts `node` off from everyone else, both ways.
pub fn isolate(nodes: &[u64], node: u64) -> Grudge {
    nodes
        .iter()
        .filter(|x| **x != node)
        .flat_map(|x| [(node, *x), (*x, node)])
        .collect()
}

/// Majorities ring (Jepsen): nodes in a random ring; each node hears only the majority
/// window centred on itself, so each sees a majority but no two see the same one. With
/// five nodes the windows are `{i-1, i, i+1}` and the cut is symmetric (every node talks
/// to its two ring neighbours only). With three, a majority window cannot be centred:
/// node `i` hears `{i, i+1}`, one-way drops that TCP turns into a total partition.
pub fn ring(nodes: &[u64], pick: u64) -> (Vec<u64>, Grudge) {
    let mut v = nodes.to_vec();
    v.shuffle(&mut StdRng::seed_from_u64(pick));
    let n = v.len();
    let m = n / 2 + 1;
    let mut g = Grudge::new();
    for (i, dst) in v.iter().enumerate() {
        let start = i + n - (m - 1) / 2;
        let hears: BTreeSet<u64> = (0..m)
            .filter_map(|k| v.get((start + k) % n).copied())
            .collect();
        for src in v.iter().filter(|s| !hears.contains(s)) {
            g.push((*src, *dst));
        }
    }
    (v, g)
}

/// One-way drops: `node` can no longer send to the others (`outbound`), or no longer
/// hear from them.
pub fn one_way(nodes: &[u64], node: u64, outbound: bool) -> Grudge {
    nodes
        .iter()
        .filter(|x| **x != node)
        .map(|x| if outbound { (node, *x) } else { (*x, node) })
        .collect()
}

/// What the nemesis works with.
pub struct Nemesis {
    pub cluster: Arc<Mutex<Cluster>>,
    pub net: Option<Net>,
    pub rec: Arc<Recorder>,
    /// Set up the workloads' resources again (after `lose-disks`).
    pub recreate:
        Arc<dyn Fn() -> futures::future::BoxFuture<'static, anyhow::Result<()>> + Send + Sync>,
    next_id: u64,
    /// Faults skipped because iptables does not work here.
    pub skipped: Vec<String>,
    /// The server's `failpoints` build, which also runs `failpoint power-cut`.
    pub failpoint_bin: Option<PathBuf>,
}

impl Nemesis {
    pub fn new(
        cluster: Arc<Mutex<Cluster>>,
        net: Option<Net>,
        rec: Arc<Recorder>,
        recreate: Arc<
            dyn Fn() -> futures::future::BoxFuture<'static, anyhow::Result<()>> + Send + Sync,
        >,
    ) -> Nemesis {
        Nemesis {
            cluster,
            net,
            rec,
            recreate,
            next_id: 0,
            skipped: Vec::new(),
            failpoint_bin: None,
        }
    }

    fn record(&self, f: F, id: u64, fault: &str, detail: Value) {
        let mut op = Op::new(NEMESIS, Type::Info, f);
        op.value = Some(json!({"id": id, "fault": fault, "detail": detail}));
        self.rec.record(op);
    }

    /// Runs the schedule until `deadline` (no fault starts that would outlast it).
    pub async fn run(&mut self, steps: &[Step], deadline: tokio::time::Instant) {
        tokio::time::sleep(Duration::from_millis(WARMUP_MS)).await;
        for step in steps {
            let now = tokio::time::Instant::now();
            if now + Duration::from_millis(step.fault_ms) > deadline {
                break;
            }
            self.next_id += 1;
            let id = self.next_id;
            if step.fault.is_partition() && self.net.is_none() {
                self.skipped.push(step.fault.name().to_owned());
                self.record(
                    F::Note,
                    id,
                    step.fault.name(),
                    json!("skipped: iptables unavailable"),
                );
            } else {
                // A membership change or a disk loss is a fault while it happens: its
                // period is the change itself.
                let instant = step.fault.is_instant();
                if instant {
                    self.record(F::Start, id, step.fault.name(), json!("in progress"));
                }
                match self.apply(step).await {
                    Ok((detail, heal)) => {
                        if !instant {
                            self.record(F::Start, id, step.fault.name(), detail.clone());
                        }
                        let mut detail = detail;
                        if let Some(heal) = heal {
                            tokio::time::sleep(Duration::from_millis(step.fault_ms)).await;
                            match self.heal(&heal).await {
                                Ok(Some(observed)) => {
                                    detail = json!({"detail": detail, "observed": observed});
                                }
                                Ok(None) => {}
                                Err(e) => {
                                    detail =
                                        json!({"detail": detail, "heal_error": format!("{e:#}")});
                                }
                            }
                        }
                        self.record(F::Stop, id, step.fault.name(), detail);
                    }
                    Err(e) => {
                        let msg = json!(format!("not applied: {e:#}"));
                        if instant {
                            self.record(F::Stop, id, step.fault.name(), msg);
                        } else {
                            self.record(F::Note, id, step.fault.name(), msg);
                        }
                    }
                }
            }
            let rest = Duration::from_millis(step.quiet_ms);
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            tokio::time::sleep(rest.min(left)).await;
        }
    }

    fn ip(&self, c: &Cluster, id: u64) -> Ipv4Addr {
        c.block().ip(id)
    }

    /// Applies a fault; returns what was done and how to heal it (`None` when the fault
    /// is its own end, like a membership change).
    async fn apply(&mut self, step: &Step) -> anyhow::Result<(Value, Option<Heal>)> {
        let mut c = self.cluster.lock().await;
        for (node, status) in c.reap() {
            self.record(
                F::Note,
                0,
                "crash",
                json!({"node": node, "exited_on_its_own": status}),
            );
        }
        let members: Vec<u64> = c.members().to_vec();
        let mut rng = StdRng::seed_from_u64(step.pick);
        let random = *members.choose(&mut rng).context("no members")?;
        match step.fault {
            Fault::KillLeader | Fault::KillRandom => {
                let target = target(&c, step.fault == Fault::KillLeader, random).await?;
                c.kill(target);
                Ok((json!({"node": target}), Some(Heal::Restart(target))))
            }
            Fault::PauseLeader | Fault::PauseRandom => {
                let target = target(&c, step.fault == Fault::PauseLeader, random).await?;
                c.pause(target)?;
                Ok((json!({"node": target}), Some(Heal::Resume(target))))
            }
            Fault::PartitionHalves => {
                let (a, b, g) = halves(&members, step.pick);
                self.cut(&c, &g)?;
                Ok((json!({"halves": [a, b]}), Some(Heal::Network)))
            }
            Fault::PartitionLeader => {
                let l = leader_of(&c).await?;
                self.cut(&c, &isolate(&members, l))?;
                Ok((json!({"isolated": l}), Some(Heal::Network)))
            }
            Fault::PartitionRing => {
                let (order, g) = ring(&members, step.pick);
                self.cut(&c, &g)?;
                Ok((json!({"ring": order, "dropped": g}), Some(Heal::Network)))
            }
            Fault::PartitionOneWay => {
                let target = target(&c, rng.gen_bool(0.5), random).await?;
                let outbound = rng.gen_bool(0.5);
                self.cut(&c, &one_way(&members, target, outbound))?;
                let dir = if outbound {
                    "cannot send"
                } else {
                    "cannot hear"
                };
                Ok((
                    json!({"node": target, "direction": dir}),
                    Some(Heal::Network),
                ))
            }
            Fault::Membership => {
                let extras = EXTRAS;
                let grown = extras.iter().all(|x| c.members().contains(x));
                if grown {
                    // Shrink: remove the highest first.
                    for x in extras.iter().rev() {
                        c.remove_member(*x).await?;
                    }
                    Ok((json!({"change": "shrink", "members": c.members()}), None))
                } else {
                    for x in &extras {
                        if !c.members().contains(x) {
                            c.add_member(*x).await?;
                        }
                    }
                    Ok((json!({"change": "grow", "members": c.members()}), None))
                }
            }
            Fault::LoseDisks => {
                let all: Vec<u64> = c.ids();
                c.kill_all();
                for id in &all {
                    let initial = c.initial().contains(id);
                    c.wipe(*id, initial)?;
                }
                let initial = c.initial().to_vec();
                for id in &initial {
                    c.spawn(*id)?;
                }
                c.set_members(initial);
                c.wait_serving_leader(Duration::from_secs(30)).await?;
                drop(c);
                (self.recreate)().await?;
                Ok((json!({"wiped": all}), None))
            }
            Fault::KillLeaderRepeat => {
                // Each crashed leader stays down until another one serves (a leader
                // restarted at once resumes its own term, so it would crash again and
                // again), then comes back; the new leader crashes next.
                let mut killed = Vec::new();
                let mut leader = c.wait_serving_leader(Duration::from_secs(20)).await?;
                for _ in 0..3 {
                    c.kill(leader);
                    killed.push(leader);
                    let next = poll_new_leader(&c, leader, Duration::from_secs(20)).await;
                    c.spawn(leader)?;
                    match next {
                        Some(n) => leader = n,
                        None => break,
                    }
                }
                c.wait_serving_leader(Duration::from_secs(30)).await?;
                Ok((json!({"killed_leaders": killed}), None))
            }
            Fault::RollingRestart => {
                let mut order = Vec::new();
                for id in c.members().to_vec() {
                    c.stop(id).await?;
                    c.spawn(id)?;
                    c.wait_up(id, Duration::from_secs(30)).await?;
                    c.wait_serving_leader(Duration::from_secs(30)).await?;
                    order.push(id);
                }
                Ok((json!({"restarted": order}), None))
            }
            Fault::PowerCut => {
                let target = target(&c, rng.gen_bool(0.5), random).await?;
                let unsynced = stall_fsyncs(&c, &[target]).await?;
                c.kill(target);
                clear_disk_fault(&c, target);
                let report = self.power_cut(&c, target, "keep")?;
                Ok((
                    json!({"node": target, "unsynced_window_ms": unsynced, "power_cut": report}),
                    Some(Heal::Restart(target)),
                ))
            }
            Fault::PowerCutAll => {
                let members = c.members().to_vec();
                let unsynced = stall_fsyncs(&c, &members).await?;
                c.kill_all();
                let mut reports = serde_json::Map::new();
                for id in c.members().to_vec() {
                    clear_disk_fault(&c, id);
                    reports.insert(id.to_string(), self.power_cut(&c, id, "keep")?);
                }
                reports.insert("unsynced_window_ms".into(), json!(unsynced));
                for id in c.members().to_vec() {
                    c.spawn(id)?;
                }
                c.wait_serving_leader(Duration::from_secs(30)).await?;
                Ok((json!({"power_cut": reports}), None))
            }
            Fault::TornTail | Fault::CorruptTail => {
                let tail = if step.fault == Fault::TornTail {
                    "torn"
                } else {
                    "corrupt"
                };
                c.kill(random);
                let report = self.power_cut(&c, random, tail)?;
                let log_from = c.log(random).len();
                c.spawn(random)?;
                Ok((
                    json!({"node": random, "power_cut": report}),
                    Some(Heal::Rebuild {
                        node: random,
                        log_from,
                    }),
                ))
            }
            Fault::ClockWallForward
            | Fault::ClockWallBack
            | Fault::ClockMonoBack
            | Fault::ClockSlow => {
                let wall = matches!(step.fault, Fault::ClockWallForward | Fault::ClockWallBack);
                // `||` keeps the draw off for the wall faults (the seeded choices stay).
                let target = target(&c, wall || rng.gen_bool(0.7), random).await?;
                let line = match step.fault {
                    Fault::ClockWallForward => {
                        format!("wall-offset-ms {}", rng.gen_range(5_400_000..=10_800_000))
                    }
                    Fault::ClockWallBack => {
                        format!("wall-offset-ms -{}", rng.gen_range(5_400_000..=10_800_000))
                    }
                    Fault::ClockMonoBack => {
                        format!("mono-offset-ms -{}", rng.gen_range(5_000..=60_000))
                    }
                    _ => format!("mono-rate {:.2}", rng.gen_range(0.1..=0.5)),
                };
                self.set_clock(&c, target, Some(&format!("{line}\n")))?;
                Ok((
                    json!({"node": target, "clock": line}),
                    Some(Heal::Clock(target)),
                ))
            }
            Fault::DiskEio | Fault::DiskFull | Fault::SlowDisk => {
                let target = target(&c, rng.gen_bool(0.5), random).await?;
                let line = match step.fault {
                    Fault::DiskEio => "fsync-eio".to_owned(),
                    Fault::DiskFull => "disk-full".to_owned(),
                    _ => format!("slow-fsync {}", rng.gen_range(100..=400)),
                };
                let log_from = c.log(target).len();
                write_failpoint(&fault_file(&c, target), &format!("{line}\n"))?;
                // Watch /readyz while the fault lasts: the last answer that is not 200
                // (until one says the node's Raft stopped).
                let not_ready: Arc<parking_lot::Mutex<Option<Value>>> = Arc::default();
                let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let (http, url) = (c.http().clone(), format!("{}/readyz", c.url(target)));
                let (seen, done) = (not_ready.clone(), stop.clone());
                tokio::spawn(async move {
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        let r = http.get(&url).timeout(Duration::from_secs(1)).send().await;
                        if let Ok(r) = r {
                            let status = r.status().as_u16();
                            if status != 200 {
                                let body = r.text().await.unwrap_or_default();
                                let stopped = body.contains("raft stopped");
                                *seen.lock() = Some(json!({"status": status, "body": body}));
                                if stopped {
                                    return;
                                }
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                });
                Ok((
                    json!({"node": target, "fault": line}),
                    Some(Heal::Disk {
                        node: target,
                        log_from,
                        slow: step.fault == Fault::SlowDisk,
                        not_ready,
                        stop,
                    }),
                ))
            }
        }
    }

    /// Sets (or with `None` clears) node `id`'s clock fault file.
    fn set_clock(&self, c: &Cluster, id: u64, lines: Option<&str>) -> anyhow::Result<()> {
        let file = c.data_dir(id).join("failpoints").join("clock");
        match lines {
            Some(l) => write_failpoint(&file, l),
            None => match std::fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            },
        }
    }

    /// `ratequeue failpoint power-cut` on the data dir of killed node `id`.
    fn power_cut(&self, c: &Cluster, id: u64, tail: &str) -> anyhow::Result<Value> {
        let bin = self
            .failpoint_bin
            .as_ref()
            .context("storage faults need the failpoints build (--failpoints-bin)")?;
        let out = std::process::Command::new(bin)
            .args(["failpoint", "power-cut", "--tail", tail, "--data-dir"])
            .arg(c.data_dir(id))
            .output()
            .context("running ratequeue failpoint power-cut")?;
        if !out.status.success() {
            bail!(
                "power cut of node {id}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
    }

    fn cut(&self, c: &Cluster, g: &Grudge) -> anyhow::Result<()> {
        let net = self.net.as_ref().context("iptables unavailable")?;
        for (from, to) in g {
            net.drop_traffic(self.ip(c, *from), self.ip(c, *to))?;
        }
        Ok(())
    }

    /// Undoes a fault; for the storage and disk faults, returns what the node did
    /// meanwhile (checker 8 judges it).
    async fn heal(&mut self, h: &Heal) -> anyhow::Result<Option<Value>> {
        let mut c = self.cluster.lock().await;
        match h {
            Heal::Restart(id) => {
                // A node removed meanwhile stays down.
                if c.members().contains(id) {
                    c.restart(*id)?;
                }
            }
            Heal::Resume(id) => c.resume(*id)?,
            Heal::Network => {
                if let Some(n) = &self.net {
                    n.heal()?;
                }
            }
            Heal::Clock(id) => self.set_clock(&c, *id, None)?,
            Heal::Rebuild { node, log_from } => {
                let observed = judge_and_rebuild(&mut c, *node, *log_from, REFUSAL_EXIT_WAIT);
                return Ok(Some(observed.await?));
            }
            Heal::Disk {
                node,
                log_from,
                slow,
                not_ready,
                stop,
            } => {
                let node = *node;
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                let seen = not_ready.lock().clone();
                let ready = match seen {
                    Some(v) => Some(v),
                    None if c.is_running(node) => readyz(&c, node).await,
                    None => None,
                };
                let _ = std::fs::remove_file(fault_file(&c, node));
                let exit = c.try_wait(node)?;
                let log = c.log(node);
                let since = log.get(*log_from..).unwrap_or("");
                let injected = since
                    .lines()
                    .filter(|l| l.contains("failpoint: inject"))
                    .count();
                let error_line = since
                    .lines()
                    .find(|l| {
                        !l.contains("failpoint:")
                            && (l.contains("os error 5") || l.contains("os error 28"))
                    })
                    .map(str::to_owned);
                let mut observed = json!({
                    "injected_errors": injected,
                    "exit": exit.map(|s| s.to_string()),
                    "exited_fatal": exit.and_then(|s| s.code()) == Some(EXIT_FATAL),
                    "readyz": ready,
                    "error_line": error_line,
                    "slow": slow,
                });
                if exit.is_some() && c.members().contains(&node) {
                    // After a failed fsync the unsynced writes may be gone: cut them.
                    let report = self.power_cut(&c, node, "keep")?;
                    c.spawn(node)?;
                    observed["power_cut_after"] = report;
                }
                return Ok(Some(observed));
            }
        }
        Ok(None)
    }

    /// Heals everything: network, paused and dead members, then the initial membership.
    pub async fn heal_all(&mut self) -> anyhow::Result<Value> {
        let mut notes = Vec::new();
        if let Some(n) = &self.net {
            n.heal()?;
        }
        let mut c = self.cluster.lock().await;
        notes.extend(revive_members(&mut c)?);
        c.wait_serving_leader(Duration::from_secs(30)).await?;
        let initial = c.initial().to_vec();
        let extras = EXTRAS;
        if initial.len() >= 5 {
            for x in &extras {
                if !c.members().contains(x) {
                    c.add_member(*x).await?;
                    notes.push(format!("re-added node {x}"));
                }
            }
        } else {
            for x in extras.iter().rev() {
                if c.members().contains(x) {
                    c.remove_member(*x).await?;
                    notes.push(format!("removed node {x}"));
                }
            }
        }
        c.wait_serving_leader(Duration::from_secs(30)).await?;
        Ok(json!({"members": c.members(), "notes": notes}))
    }
}

/// The nodes the membership nemesis adds and removes: 3 → 5 → 3, or 5 → 3 → 5.
const EXTRAS: [u64; 2] = [4, 5];

/// How long the heal of a torn or corrupt tail waits for the node to exit before it
/// judges it (campaign seed 1001: a debug build printing its backtrace at load 15 took
/// seconds to exit after logging why, and was judged still running).
pub const REFUSAL_EXIT_WAIT: Duration = Duration::from_secs(20);

/// The heal of a torn or corrupt tail: waits up to `exit_wait` for node `node` to exit
/// (it must refuse the damaged log), records what it did since byte `log_from` of its
/// log (checker 8 judges it), then rebuilds it by the runbook (docs/operations.md, "A
/// node is down": remove, wipe, add). A failed rebuild is recorded as `rebuild_error`
/// beside the observation, never in place of it.
pub async fn judge_and_rebuild(
    c: &mut Cluster,
    node: u64,
    log_from: usize,
    exit_wait: Duration,
) -> anyhow::Result<Value> {
    let exit = c.wait_exit(node, exit_wait).await?;
    let log = c.log(node);
    let since = log.get(log_from..).unwrap_or("");
    let error_line = since
        .lines()
        .find(|l| l.contains("corrupt record") || l.contains("corrupt log"))
        .map(str::to_owned);
    let mut observed = json!({
        "refused": exit.is_some_and(|s| !s.success()),
        "exit": exit.map(|s| s.to_string()),
        "still_running": exit.is_none(),
        "error_line": error_line,
    });
    if c.members().contains(&node) {
        let rebuilt = match c.remove_member(node).await {
            Ok(()) => c.add_member(node).await,
            Err(e) => Err(e),
        };
        if let Err(e) = rebuilt {
            observed["rebuild_error"] = json!(format!("{e:#}"));
        }
    }
    Ok(observed)
}

/// The process half of the final heal: reaps members that exited on their own (one note
/// each), resumes paused ones and starts every member not running.
pub fn revive_members(c: &mut Cluster) -> anyhow::Result<Vec<String>> {
    let mut notes = Vec::new();
    for (id, status) in c.reap() {
        notes.push(format!("node {id} had exited on its own: {status}"));
    }
    for id in c.members().to_vec() {
        c.resume(id)?; // a no-op for a member that is not running
        if !c.is_running(id) {
            c.spawn(id)?;
        }
    }
    Ok(notes)
}

/// A serving leader other than `old`, within `timeout`.
async fn poll_new_leader(c: &Cluster, old: u64, timeout: Duration) -> Option<u64> {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if let Some(l) = c.serving_leader().await {
            if l != old {
                return Some(l);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

async fn leader_of(c: &Cluster) -> anyhow::Result<u64> {
    c.leader().await.context("no leader to target")
}

/// A fault's node: the leader when `leader`, else `random` (the step's random member).
/// Callers draw `leader` from the step's generator themselves, in their own order, so the
/// seeded choices stay what they were.
async fn target(c: &Cluster, leader: bool, random: u64) -> anyhow::Result<u64> {
    if leader {
        leader_of(c).await
    } else {
        Ok(random)
    }
}

/// How to undo a fault.
#[derive(Clone, Debug)]
enum Heal {
    Restart(u64),
    Resume(u64),
    Network,
    /// Clear a clock fault (a rate change is undone continuously, an offset jumps back).
    Clock(u64),
    /// A node that was started on a damaged log: see what it did, then rebuild it.
    Rebuild {
        node: u64,
        log_from: usize,
    },
    /// Clear a disk fault; restart the node if it stopped.
    Disk {
        node: u64,
        log_from: usize,
        slow: bool,
        /// The last `/readyz` answer other than 200 during the fault.
        not_ready: Arc<parking_lot::Mutex<Option<Value>>>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    },
}

/// The exit status of a node whose Raft stopped on a fatal error (`node::EXIT_FATAL`).
pub const EXIT_FATAL: i32 = 70;

/// How long a power cut's nodes go without a completed fsync before the cut, so the
/// cut takes away a real tail of appended but unsynced log entries.
const UNSYNCED_WINDOW_MS: u64 = 400;

/// Makes every fsync of `nodes` stall (a slow fsync that the cut will interrupt), then
/// waits [`UNSYNCED_WINDOW_MS`] while the workloads keep appending.
async fn stall_fsyncs(c: &Cluster, nodes: &[u64]) -> anyhow::Result<u64> {
    for id in nodes {
        write_failpoint(&fault_file(c, *id), "slow-fsync 5000\n")?;
    }
    tokio::time::sleep(Duration::from_millis(UNSYNCED_WINDOW_MS)).await;
    Ok(UNSYNCED_WINDOW_MS)
}

fn clear_disk_fault(c: &Cluster, id: u64) {
    let _ = std::fs::remove_file(fault_file(c, id));
}

/// Writes a failpoint file (`fault` or `clock`), making its folder first.
fn write_failpoint(file: &std::path::Path, lines: &str) -> anyhow::Result<()> {
    if let Some(d) = file.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(file, lines).with_context(|| format!("writing {}", file.display()))
}

/// The disk-fault file the failpoints build reads (`storage/failpoint.rs`).
fn fault_file(c: &Cluster, id: u64) -> PathBuf {
    c.data_dir(id).join("failpoints").join("fault")
}

/// `/readyz` of node `id`: `{"status", "body"}`, or `None` if it did not answer.
async fn readyz(c: &Cluster, id: u64) -> Option<Value> {
    let r = c
        .http()
        .get(format!("{}/readyz", c.url(id)))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    Some(json!({"status": status, "body": body}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_a_function_of_the_seed_and_cover_every_fault() {
        let all = parse_faults("all").unwrap();
        let a = schedule(7, &all, 600_000, false);
        assert_eq!(a, schedule(7, &all, 600_000, false));
        assert_ne!(a, schedule(8, &all, 600_000, false));
        let first: BTreeSet<Fault> = a.iter().take(all.len()).map(|s| s.fault).collect();
        assert_eq!(first.len(), all.len(), "one round holds every fault once");
        let s = schedule(7, &all, 60_000, true);
        assert_eq!(s.iter().filter(|x| x.fault == Fault::LoseDisks).count(), 1);
        assert!(schedule(7, &[], 60_000, false).is_empty());
        assert!(parse_faults("kill,partition-ring")
            .unwrap()
            .contains(&Fault::PartitionRing));
        assert!(parse_faults("bogus").is_err());
    }

    #[test]
    fn every_fault_parses_by_its_name_and_the_groups_nest() {
        for f in EVERYTHING {
            assert_eq!(parse_faults(f.name()).unwrap(), vec![f]);
            assert_ne!(f, Fault::LoseDisks);
        }
        let everything: BTreeSet<Fault> = EVERYTHING.into_iter().collect();
        assert_eq!(everything.len(), EVERYTHING.len(), "no fault twice");
        assert!(ALL_FAULTS.iter().all(|f| everything.contains(f)));
        for group in [&STORAGE_FAULTS[..], &DISK_FAULTS, &CLOCK_FAULTS] {
            assert!(group
                .iter()
                .all(|f| everything.contains(f) && f.needs_failpoints()));
        }
        assert!(ALL_FAULTS.iter().all(|f| !f.needs_failpoints()));
        // The groups in order, as a schedule's seed draws from them.
        assert_eq!(EVERYTHING[..ALL_FAULTS.len()], ALL_FAULTS);
        assert_eq!(EVERYTHING[ALL_FAULTS.len()], Fault::PowerCut);
        assert_eq!(EVERYTHING[EVERYTHING.len() - 1], Fault::ClockSlow);
        assert!(
            parse_faults("lose-disks").is_err(),
            "a sabotage, not a fault"
        );
    }

    #[test]
    fn partitions_have_the_documented_shape() {
        let (a, b, g) = halves(&[1, 2, 3, 4, 5], 9);
        assert_eq!((a.len(), b.len(), g.len()), (2, 3, 12));
        assert_eq!(isolate(&[1, 2, 3], 2).len(), 4);
        // Ring of 5: each node hears itself and its two neighbours, symmetrically.
        let (order, g) = ring(&[1, 2, 3, 4, 5], 3);
        assert_eq!(g.len(), 10);
        for (i, dst) in order.iter().enumerate() {
            let deaf: Vec<u64> = g
                .iter()
                .filter(|(_, d)| d == dst)
                .map(|(s, _)| *s)
                .collect();
            assert_eq!(deaf.len(), 2);
            assert!(!deaf.contains(&order[(i + 1) % 5]) && !deaf.contains(&order[(i + 4) % 5]));
        }
        assert!(
            g.iter().all(|(a, b)| g.contains(&(*b, *a))),
            "symmetric with five nodes"
        );
        // Ring of 3: each node hears itself and the next one (one-way drops).
        let (_, g) = ring(&[1, 2, 3], 3);
        assert_eq!(g.len(), 3);
        assert_eq!(one_way(&[1, 2, 3], 1, true), vec![(1, 2), (1, 3)]);
    }

    // The heals' process handling, with shell scripts standing in for nodes (a torn-tail
    // node that refuses slowly, one that exits on its own): regression tests of three
    // harness faults of the issue-17 campaign (docs/consistency.md).

    use std::os::unix::fs::PermissionsExt as _;
    use std::path::Path;
    use std::time::Instant;

    use ratequeue_testkit::ClusterConfig;

    /// A scratch dir of this test (the history tests' pattern; no tempfile dependency).
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let d = std::env::temp_dir().join(format!("rqj-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Scratch(d)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn script_cluster(dir: &Path, nodes: u64, body: &str) -> Cluster {
        script_cluster_with(dir, body, ClusterConfig::nodes, nodes)
    }

    fn script_cluster_with(
        dir: &Path,
        body: &str,
        f: impl FnOnce(ClusterConfig, u64) -> ClusterConfig,
        nodes: u64,
    ) -> Cluster {
        let bin = dir.join("node.sh");
        std::fs::write(&bin, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        Cluster::new(f(ClusterConfig::new(&bin), nodes).dir(dir.join("c"))).unwrap()
    }

    /// Waits (real time, bounded) until node `id` has exited but is not reaped yet.
    fn until_exited_unreaped(c: &Cluster, id: u64) {
        let pid = c.pid(id).expect("running");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The state follows the parenthesised command name.
            if stat
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} did not exit within 60 s"
            );
            std::thread::sleep(Duration::from_millis(10)); // poll interval, bounded above
        }
    }

    const REFUSAL: &str =
        "echo 'Error: opening storage in d: corrupt record log[143]: checksum mismatch' >&2";

    #[tokio::test]
    async fn a_refusal_is_judged_after_the_slow_exit_not_before() {
        // Seed 1001: the node logged its refusal, then took seconds to exit. Node 2 of a
        // one-node cluster is no member, so no rebuild follows the judgement.
        let t = Scratch::new("slow-refusal");
        let mut c = script_cluster(t.path(), 1, &format!("{REFUSAL}; sleep 2; exit 1"));
        c.spawn(2).unwrap();
        let o = judge_and_rebuild(&mut c, 2, 0, REFUSAL_EXIT_WAIT)
            .await
            .unwrap();
        assert_eq!(o["still_running"], false, "{o}");
        assert_eq!(o["refused"], true, "{o}");
        assert!(
            o["error_line"]
                .as_str()
                .unwrap()
                .contains("checksum mismatch"),
            "{o}"
        );
        assert!(o.get("rebuild_error").is_none(), "{o}");
    }

    #[tokio::test]
    async fn a_failed_rebuild_keeps_what_the_node_did() {
        // The repair-tail control: no leader, so the runbook's remove fails; the
        // observation must survive it (the kit's admin calls give up after 1 s here).
        let t = Scratch::new("failed-rebuild");
        let mut c = script_cluster_with(
            t.path(),
            &format!("{REFUSAL}; exit 1"),
            |c, n| c.nodes(n).admin_timeout(Duration::from_secs(1)),
            1,
        );
        c.spawn(1).unwrap();
        let o = judge_and_rebuild(&mut c, 1, 0, REFUSAL_EXIT_WAIT)
            .await
            .unwrap();
        assert_eq!(o["refused"], true, "{o}");
        assert!(o["error_line"].as_str().is_some(), "{o}");
        assert!(
            o["rebuild_error"].as_str().unwrap().contains("gave up"),
            "{o}"
        );
    }

    #[test]
    fn the_final_heal_resumes_paused_members_and_restarts_exited_ones() {
        let t = Scratch::new("final-heal");
        let mut c = script_cluster(
            t.path(),
            2,
            "case \" $* \" in *' --id 2 '*) exit 3;; esac; exec sleep 600",
        );
        c.spawn(1).unwrap();
        c.spawn(2).unwrap();
        c.pause(1).unwrap();
        let old = c.pid(2);
        until_exited_unreaped(&c, 2);
        let notes = revive_members(&mut c).unwrap();
        assert!(
            notes.iter().any(|n| n.contains("node 2 had exited")),
            "{notes:?}"
        );
        assert!(c.is_running(1) && !c.is_paused(1));
        assert!(c.is_running(2) && c.pid(2) != old, "node 2 started again");
    }
}
