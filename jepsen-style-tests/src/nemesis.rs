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
}

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
        }
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

/// Parses `all`, `none`, or a comma list of groups (`kill`, `pause`, `partition`,
/// `membership`) and single faults (`kill-leader`, `partition-ring`, …).
pub fn parse_faults(s: &str) -> anyhow::Result<Vec<Fault>> {
    use Fault::*;
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let add: &[Fault] = match part {
            "all" => &[
                KillLeader,
                KillRandom,
                PauseLeader,
                PauseRandom,
                PartitionHalves,
                PartitionLeader,
                PartitionRing,
                PartitionOneWay,
                Membership,
            ],
            "none" => &[],
            "kill" => &[KillLeader, KillRandom],
            "pause" => &[PauseLeader, PauseRandom],
            "partition" => &[PartitionHalves, PartitionLeader, PartitionRing, PartitionOneWay],
            "membership" => &[Membership],
            other => match [
                KillLeader,
                KillRandom,
                PauseLeader,
                PauseRandom,
                PartitionHalves,
                PartitionLeader,
                PartitionRing,
                PartitionOneWay,
                Membership,
            ]
            .iter()
            .find(|f| f.name() == other)
            {
                Some(f) => std::slice::from_ref(f),
                None => bail!("unknown nemesis {other:?} (all, none, kill, pause, partition, membership, or one fault)"),
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
            Some(s) => s.fault = Fault::LoseDisks,
            None => steps.push(Step {
                fault: Fault::LoseDisks,
                pick: 0,
                fault_ms: 1_000,
                quiet_ms: 3_000,
            }),
        }
        if faults.is_empty() {
            steps.retain(|s| s.fault == Fault::LoseDisks);
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
                let instant = matches!(step.fault, Fault::Membership | Fault::LoseDisks);
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
                            if let Err(e) = self.heal(&heal).await {
                                detail = json!({"detail": detail, "heal_error": format!("{e:#}")});
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
                let target = if step.fault == Fault::KillLeader {
                    leader_of(&c).await?
                } else {
                    random
                };
                c.kill(target);
                Ok((json!({"node": target}), Some(Heal::Restart(target))))
            }
            Fault::PauseLeader | Fault::PauseRandom => {
                let target = if step.fault == Fault::PauseLeader {
                    leader_of(&c).await?
                } else {
                    random
                };
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
                let target = if rng.gen_bool(0.5) {
                    leader_of(&c).await?
                } else {
                    random
                };
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
        }
    }

    fn cut(&self, c: &Cluster, g: &Grudge) -> anyhow::Result<()> {
        let net = self.net.as_ref().context("iptables unavailable")?;
        for (from, to) in g {
            net.drop_traffic(self.ip(c, *from), self.ip(c, *to))?;
        }
        Ok(())
    }

    async fn heal(&mut self, h: &Heal) -> anyhow::Result<()> {
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
        }
        Ok(())
    }

    /// Heals everything: network, paused and dead members, then the initial membership.
    pub async fn heal_all(&mut self) -> anyhow::Result<Value> {
        let mut notes = Vec::new();
        if let Some(n) = &self.net {
            n.heal()?;
        }
        let mut c = self.cluster.lock().await;
        for (id, status) in c.reap() {
            notes.push(format!("node {id} had exited on its own: {status}"));
        }
        let members = c.members().to_vec();
        for id in &members {
            c.resume(*id)?;
            if !c.is_running(*id) {
                c.spawn(*id)?;
            }
        }
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

async fn leader_of(c: &Cluster) -> anyhow::Result<u64> {
    c.leader().await.context("no leader to target")
}

/// How to undo a fault.
#[derive(Clone, Debug)]
enum Heal {
    Restart(u64),
    Resume(u64),
    Network,
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
}
