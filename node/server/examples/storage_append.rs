//! Micro-measurement of the Raft log store: appends per second with one fsync per append,
//! for 1 entry and for 32 entries per append, through `LogStore` on sled (what RaftCore
//! does on every `client_write` / AppendEntries). Not a test; numbers go to docs.
//!
//! `cargo run --release -p ratequeue-node --example storage_append [-- DIR [SECONDS]]`
//! DIR defaults to a temporary directory under the current one (not tmpfs), SECONDS to 3
//! per case. Each entry carries a ~200-byte payload, about one batched command.

use std::io::Cursor;
use std::time::{Duration, Instant};

use openraft::storage::RaftLogStorageExt;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use ratequeue_node::storage::{self, LogBackend, SledBackend, SledConfig};

openraft::declare_raft_types!(BenchConfig: D = String, R = String);

fn entry(index: u64, payload: &str) -> Entry<BenchConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(payload.to_string()),
    }
}

async fn measure(
    store: &mut storage::LogStore<BenchConfig>,
    next_index: &mut u64,
    per_append: u64,
    run_for: Duration,
) -> anyhow::Result<(u64, Duration)> {
    let payload = "x".repeat(200);
    let started = Instant::now();
    let mut appends = 0u64;
    while started.elapsed() < run_for {
        let first = *next_index;
        *next_index += per_append;
        store
            .blocking_append((first..*next_index).map(|i| entry(i, &payload)))
            .await?;
        appends += 1;
    }
    Ok((appends, started.elapsed()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (_guard, dir) = match args.next() {
        Some(dir) => (None, std::path::PathBuf::from(dir)),
        None => {
            let tmp = tempfile::tempdir_in(".")?;
            let path = tmp.path().to_path_buf();
            (Some(tmp), path)
        }
    };
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3);
    let run_for = Duration::from_secs(seconds);

    let mut store = storage::open::<BenchConfig>(&dir)?;
    let mut next_index = 0u64;
    // Warm up sled's segments and the flush thread.
    measure(&mut store, &mut next_index, 1, Duration::from_millis(300)).await?;

    println!(
        "sled log store in {} ({} s per case)",
        dir.display(),
        seconds
    );
    for per_append in [1u64, 32] {
        let (appends, took) = measure(&mut store, &mut next_index, per_append, run_for).await?;
        let secs = took.as_secs_f64();
        println!(
            "{per_append:>2} entr{} per append+fsync: {:>8.0} appends/s, {:>8.0} entries/s, \
             {:>6.1} us per append",
            if per_append == 1 { "y  " } else { "ies" },
            appends as f64 / secs,
            (appends * per_append) as f64 / secs,
            secs * 1e6 / appends as f64,
        );
    }
    println!("size on disk: {} bytes", store.size_on_disk()?);
    drop(store);

    // Baseline: the bare backend (sled batch insert + flush), without encoding, checksums,
    // openraft callbacks or the flush thread.
    let raw_dir = dir.join("raw");
    let backend = SledBackend::open(&raw_dir, &SledConfig::default())?;
    let record = vec![7u8; 230];
    let mut index = 0u64;
    for per_append in [1u64, 32] {
        let started = Instant::now();
        let mut appends = 0u64;
        while started.elapsed() < run_for {
            let records = (index..index + per_append)
                .map(|i| (i, record.clone()))
                .collect();
            index += per_append;
            backend.append(records)?;
            backend.flush()?;
            appends += 1;
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "bare SledBackend, {per_append:>2} per flush:  {:>8.0} appends/s, {:>8.0} entries/s",
            appends as f64 / secs,
            (appends * per_append) as f64 / secs,
        );
    }
    Ok(())
}
