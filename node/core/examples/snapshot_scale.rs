//! Scale probe (docs/benchmarks.md): what a snapshot of a state holding 1 000 000 live
//! leases costs, and what it costs the apply path. Run with
//! `cargo run --release -p ratequeue-core --example snapshot_scale [LEASES]`.
//!
//! Prints, in this order:
//! - `cycle`: the hot path's cost, grant+release pairs applied in batches of 44 (the
//!   batch size `rqctl bench --workload cycle --clients 256` produces) on a fresh state;
//! - `clone`: how long a copy of the 1 M-lease state takes (what the node holds its
//!   applied-state lock for when it snapshots);
//! - `snapshot` / `restore`: serialisation and bounded decoding of that state;
//! - `stall`: one thread applies cycle batches to the shared state (behind a lock, as the
//!   node's state machine does) while another snapshots it the way the node does (lock,
//!   copy, unlock, serialise); the longest single apply (lock wait included) during the
//!   snapshot, beside the longest over the same number of batches without one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ratequeue_core::{Command, Grant, Outcome, ResourceConfig, State};

/// Commands per entry in the cycle: what 256 closed-loop clients produce.
const BATCH: usize = 44;

fn grant(resource: String, i: usize) -> Command {
    Command::Grant(Grant {
        resource,
        lane: "default".into(),
        load: 1,
        ttl_ms: 3_600_000,
        request_id: None,
        nonce: i as u64,
        holder: Some(format!("worker-{}", i % 64)),
        owner: None,
        wait_ms: 30_000,
    })
}

/// Applies one entry of `BATCH / 2` grants and one of the matching releases at `now_ms`.
fn cycle_pair_entries(state: &mut State, now_ms: u64, i: usize) {
    let grants: Vec<Command> = (0..BATCH / 2)
        .map(|k| grant("cycle".into(), i * BATCH + k))
        .collect();
    let out = state.apply_entry(now_ms, &grants);
    let releases: Vec<Command> = out
        .into_iter()
        .filter_map(|o| match o {
            Outcome::Granted { lease, .. } => Some(Command::Release {
                lease: lease.id,
                actual_load: None,
            }),
            _ => None,
        })
        .collect();
    assert_eq!(releases.len(), BATCH / 2, "cycle grants must fit");
    state.apply_entry(now_ms, &releases);
}

fn cycle_resource(state: &mut State) {
    state.apply_entry(
        1,
        &[Command::PutResource {
            name: "cycle".into(),
            config: ResourceConfig::concurrency(1_000_000),
        }],
    );
}

fn main() {
    let leases: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);

    // The hot path on its own.
    let mut fresh = State::new();
    cycle_resource(&mut fresh);
    let rounds = 20_000;
    let t = Instant::now();
    for i in 0..rounds {
        cycle_pair_entries(&mut fresh, 2 + i as u64, i);
    }
    let took = t.elapsed();
    let pairs = rounds * BATCH / 2;
    println!(
        "cycle: {pairs} grant+release pairs in {took:?} ({:.0} ns per pair)",
        took.as_nanos() as f64 / pairs as f64
    );

    let mut state = State::new();
    let resources = 1_000;
    let per = leases.div_ceil(resources) as u32;
    let puts: Vec<Command> = (0..resources)
        .map(|i| Command::PutResource {
            name: format!("r{i}"),
            config: ResourceConfig::concurrency(per),
        })
        .collect();
    state.apply_entry(1, &puts);
    cycle_resource(&mut state);
    let t = Instant::now();
    let mut batch = Vec::with_capacity(4_096);
    for i in 0..leases {
        let mut g = grant(format!("r{}", i % resources), i);
        if let Command::Grant(g) = &mut g {
            g.request_id = Some(format!("req-{i}"));
        }
        batch.push(g);
        if batch.len() == 4_096 {
            state.apply_entry(2, &batch);
            batch.clear();
        }
    }
    state.apply_entry(2, &batch);
    assert_eq!(state.lease_count(), leases);
    println!("applied {leases} grants in {:?}", t.elapsed());
    let t = Instant::now();
    let copy = state.clone();
    println!("clone in {:?}", t.elapsed());
    drop(copy);
    let t = Instant::now();
    let bytes = state.snapshot();
    let snap = t.elapsed();
    let t = Instant::now();
    let restored = State::restore(&bytes).unwrap_or_else(|e| panic!("restore: {e}"));
    let restore = t.elapsed();
    assert_eq!(restored.lease_count(), leases);
    assert_eq!(
        restored.snapshot(),
        bytes,
        "restore must give back the same bytes"
    );
    drop(restored);
    println!(
        "snapshot {} MiB in {snap:?}, restore in {restore:?}, total {:?}",
        bytes.len() / (1 << 20),
        snap + restore
    );
    drop(bytes);

    // Apply while snapshotting.
    let shared = Arc::new(Mutex::new(state));
    let snapshotting = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let applier = {
        let (shared, snapshotting, done) = (shared.clone(), snapshotting.clone(), done.clone());
        std::thread::spawn(move || {
            let (mut during, mut outside) = (Vec::new(), Vec::new());
            let mut i = 0usize;
            while !done.load(Ordering::Relaxed) {
                let in_snapshot = snapshotting.load(Ordering::Relaxed);
                let t = Instant::now();
                {
                    let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
                    cycle_pair_entries(&mut s, 3 + i as u64, 1_000_000 + i);
                }
                let took = t.elapsed();
                if in_snapshot && snapshotting.load(Ordering::Relaxed) {
                    during.push(took);
                } else if !in_snapshot {
                    outside.push(took);
                }
                i += 1;
            }
            (during, outside)
        })
    };
    // Let the applier run unobserved for a while, then snapshot the way the node does.
    std::thread::sleep(Duration::from_millis(500));
    snapshotting.store(true, Ordering::Relaxed);
    let t = Instant::now();
    let frozen = {
        let s = shared.lock().unwrap_or_else(|e| e.into_inner());
        s.clone()
    };
    let locked = t.elapsed();
    let bytes = frozen.snapshot();
    let whole = t.elapsed();
    snapshotting.store(false, Ordering::Relaxed);
    std::thread::sleep(whole.max(Duration::from_millis(200)));
    done.store(true, Ordering::Relaxed);
    let (mut during, mut outside) = applier.join().unwrap_or_default();
    outside.truncate(during.len().max(1));
    println!(
        "stall: snapshot of {} MiB took {whole:?} (lock held {locked:?}); applies of a \
         {BATCH}-command pair of entries, p50 / p99 / max: during it {} (n = {}), without \
         a snapshot {}",
        bytes.len() / (1 << 20),
        spread(&mut during),
        during.len(),
        spread(&mut outside),
    );
}

/// `p50 / p99 / max` of `v`.
fn spread(v: &mut [Duration]) -> String {
    v.sort_unstable();
    let at = |q: f64| {
        v.get(((v.len().saturating_sub(1)) as f64 * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    format!("{:?} / {:?} / {:?}", at(0.5), at(0.99), at(1.0))
}
