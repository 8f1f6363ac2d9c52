//! Scale probe (docs/benchmarks.md): snapshot and restore time of a state holding
//! 1 000 000 live leases. Run with
//! `cargo run --release -p ratequeue-core --example snapshot_scale [LEASES]`.

use std::time::Instant;

use ratequeue_core::{Command, Grant, ResourceConfig, State};

fn main() {
    let leases: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
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
    let t = Instant::now();
    let mut batch = Vec::with_capacity(4_096);
    for i in 0..leases {
        batch.push(Command::Grant(Grant {
            resource: format!("r{}", i % resources),
            lane: "default".into(),
            load: 1,
            ttl_ms: 3_600_000,
            request_id: Some(format!("req-{i}")),
            nonce: i as u64,
        }));
        if batch.len() == 4_096 {
            state.apply_entry(2, &batch);
            batch.clear();
        }
    }
    state.apply_entry(2, &batch);
    assert_eq!(state.lease_count(), leases);
    println!("applied {leases} grants in {:?}", t.elapsed());
    // The node holds its applied-state lock only for this clone; serialisation runs after.
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
    println!(
        "snapshot {} MiB in {snap:?}, restore in {restore:?}, total {:?}",
        bytes.len() / (1 << 20),
        snap + restore
    );
}
