//! The committed corpus is what `seeds` makes, every seed is accepted by its target
//! (so the corpus starts the fuzzer inside the decoders, not at their first check), and
//! every input a fuzzer once crashed on is handled.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{json_body, log_store, peer_message, seeds, snapshot};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn harness(target: &str) -> fn(&[u8]) -> bool {
    match target {
        "peer_message" => peer_message,
        "log_store" => log_store,
        "snapshot" => snapshot,
        "json_body" => json_body,
        other => panic!("no fuzz target {other}"),
    }
}

/// Files under `dir/<target>/`, by (target, name).
fn files(dir: &Path) -> BTreeMap<(String, String), Vec<u8>> {
    let mut out = BTreeMap::new();
    let Ok(targets) = std::fs::read_dir(dir) else {
        return out;
    };
    for target in targets {
        let target = target.unwrap().path();
        for file in std::fs::read_dir(&target).unwrap() {
            let file = file.unwrap().path();
            let key = (
                target.file_name().unwrap().to_string_lossy().into_owned(),
                file.file_name().unwrap().to_string_lossy().into_owned(),
            );
            out.insert(key, std::fs::read(&file).unwrap());
        }
    }
    out
}

/// `RATEQUEUE_WRITE_SEEDS=1 cargo test -p ratequeue-node --lib fuzzing` rewrites the
/// corpus (after a change of any encoding).
#[test]
fn committed_seeds_are_current() {
    let dir = fuzz_dir().join("seeds");
    let made: BTreeMap<(String, String), Vec<u8>> = seeds()
        .into_iter()
        .map(|(t, n, b)| ((t.to_owned(), n), b))
        .collect();
    if std::env::var_os("RATEQUEUE_WRITE_SEEDS").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        for ((target, name), bytes) in &made {
            std::fs::create_dir_all(dir.join(target)).unwrap();
            std::fs::write(dir.join(target).join(name), bytes).unwrap();
        }
    }
    let committed = files(&dir);
    let names = |m: &BTreeMap<(String, String), Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&committed),
        names(&made),
        "fuzz/seeds/ is not what fuzzing::seeds makes: run RATEQUEUE_WRITE_SEEDS=1 cargo test -p ratequeue-node --lib fuzzing"
    );
    for (key, bytes) in &made {
        assert!(
            committed[key] == *bytes,
            "fuzz/seeds/{}/{} is stale (an encoding changed): run RATEQUEUE_WRITE_SEEDS=1 cargo test -p ratequeue-node --lib fuzzing",
            key.0,
            key.1
        );
    }
}

#[test]
fn every_seed_is_accepted_by_its_target() {
    let mut per_target = BTreeMap::<&str, usize>::new();
    for (target, name, bytes) in seeds() {
        assert!(harness(target)(&bytes), "seed {target}/{name} is refused");
        *per_target.entry(target).or_default() += 1;
    }
    assert_eq!(
        per_target.keys().copied().collect::<Vec<_>>(),
        ["json_body", "log_store", "peer_message", "snapshot"]
    );
    // Every peer message kind and body kind has a seed.
    let seeds = seeds();
    for (target, kinds) in [
        ("peer_message", &super::PEER_KINDS[..]),
        ("json_body", &super::JSON_KINDS[..]),
    ] {
        for kind in kinds {
            assert!(
                seeds
                    .iter()
                    .any(|(t, n, _)| *t == target && n.starts_with(&format!("{kind}-"))),
                "no {target} seed of kind {kind}"
            );
        }
    }
}

/// Inputs a fuzzer crashed on (`fuzz/regressions/<target>/`), kept after the fix.
#[test]
fn past_crashes_are_handled() {
    let found = files(&fuzz_dir().join("regressions"));
    for ((target, name), bytes) in &found {
        // Refused or accepted, without a panic or an abort.
        let _ = std::panic::catch_unwind(|| harness(target)(bytes))
            .unwrap_or_else(|_| panic!("regression {target}/{name} crashes again"));
    }
}
