//! Checker 8: a node meets storage and disk faults the documented way
//! (docs/consistency.md, "Storage and disk faults").
//!
//! The nemesis records, when it heals each such fault, what the node did meanwhile
//! (`observed` in the `stop` record). From those records alone:
//!
//! - `torn-tail`, `corrupt-tail`: a durable log record was damaged (it had been fsynced,
//!   so an append it holds may have been acknowledged). The node must refuse to start
//!   (exit non-zero) with a log line naming the corrupt record. A node that starts
//!   anyway has repaired or ignored a durable entry: flagged.
//! - `disk-eio`, `disk-full`: once an injected error has hit the node, it must stop
//!   (exit with the fatal-error status 70, or `/readyz` saying its Raft stopped) and its log must
//!   name the error (`os error 5` / `os error 28`) outside the failpoint's own lines,
//!   and so must `/readyz` (a 503 `not ready: raft stopped: …`) before the node exits.
//!   A node that went on serving has acknowledged writes that were not durable: flagged.
//!   A fault that no write met is counted as not exercised.
//! - `slow-disk`: the node must not have stopped.
//!
//! That nothing acknowledged was lost and that the node rejoined are checkers 4 and 6.

use serde_json::{json, Value};

use super::{Verdict, EXAMPLES_MAX};
use crate::history::{Op, F, NEMESIS};

fn judge(fault: &str, o: &Value) -> Option<Result<&'static str, String>> {
    let flag = |k: &str| o.get(k).and_then(Value::as_bool).unwrap_or(false);
    let line = o.get("error_line").and_then(Value::as_str);
    match fault {
        "torn-tail" | "corrupt-tail" => Some(if flag("refused") && line.is_some() {
            Ok("refused")
        } else if flag("refused") {
            Err("refused to start without naming the corrupt record".into())
        } else {
            Err(format!(
                "started on a damaged durable log record (exit {:?})",
                o.get("exit")
            ))
        }),
        "disk-eio" | "disk-full" => {
            let injected = o
                .get("injected_errors")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if injected == 0 {
                return Some(Ok("not exercised"));
            }
            // Not ready *because its Raft stopped* (not, say, during an election).
            let not_ready = o
                .pointer("/readyz/body")
                .and_then(Value::as_str)
                .is_some_and(|b| b.contains("raft stopped"));
            let readyz_says = o
                .pointer("/readyz/body")
                .and_then(Value::as_str)
                .is_some_and(|b| b.contains("os error"));
            let stopped = flag("exited_fatal") || not_ready;
            Some(match (stopped, line.is_some(), readyz_says) {
                (true, true, true) => Ok("stopped, said why in its log and on /readyz"),
                (true, false, _) => Err("stopped without logging the disk error".into()),
                (true, true, false) => Err(format!(
                    "stopped, but /readyz did not name the disk error ({:?})",
                    o.get("readyz")
                )),
                (false, _, _) => Err(format!(
                    "kept serving after {injected} injected disk errors"
                )),
            })
        }
        "slow-disk" => Some(if o.get("exit").is_some_and(|e| !e.is_null()) {
            Err(format!("stopped on a slow disk (exit {:?})", o.get("exit")))
        } else {
            Ok("rode it out")
        }),
        _ => None,
    }
}

pub fn check(history: &[Op]) -> Verdict {
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    let mut bad = Vec::new();
    for op in history
        .iter()
        .filter(|o| o.process == NEMESIS && o.f == F::Stop)
    {
        let Some(v) = &op.value else { continue };
        let Some(fault) = v.get("fault").and_then(Value::as_str) else {
            continue;
        };
        let Some(observed) = v.pointer("/detail/observed") else {
            if matches!(
                fault,
                "torn-tail" | "corrupt-tail" | "disk-eio" | "disk-full"
            ) {
                bad.push(json!({"fault": fault, "time_ms": op.time_ms,
                                "problem": "no observation (the heal failed)", "record": v}));
            }
            continue;
        };
        match judge(fault, observed) {
            Some(Ok(what)) => *counts.entry(format!("{fault}: {what}")).or_default() += 1,
            Some(Err(problem)) => bad.push(json!({"fault": fault, "time_ms": op.time_ms,
                                                  "problem": problem, "observed": observed})),
            None => {}
        }
    }
    let total: u64 = counts.values().sum::<u64>() + bad.len() as u64;
    let valid = bad.is_empty();
    let summary = if total == 0 {
        "no storage or disk faults in this run".to_owned()
    } else if valid {
        format!("{total} storage/disk faults met as documented")
    } else {
        format!(
            "{} of {total} storage/disk faults not met as documented: {}",
            bad.len(),
            bad[0]["problem"].as_str().unwrap_or("")
        )
    };
    bad.truncate(EXAMPLES_MAX);
    Verdict::new(
        "8-storage-faults",
        valid,
        summary,
        json!({"outcomes": counts, "violations": bad}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Type;

    fn stop(fault: &str, observed: Value) -> Op {
        let mut op = Op::new(NEMESIS, Type::Info, F::Stop);
        op.value = Some(json!({"id": 1, "fault": fault,
                               "detail": {"detail": {}, "observed": observed}}));
        op
    }

    #[test]
    fn a_refused_damaged_tail_and_a_stopped_disk_pass() {
        let h = vec![
            stop(
                "torn-tail",
                json!({"refused": true, "exit": "exit status: 1",
                                     "error_line": "corrupt record log[42]: checksum mismatch"}),
            ),
            stop(
                "disk-eio",
                json!({"injected_errors": 1, "exited_fatal": true,
                       "readyz": {"status": 503, "body": "not ready: raft stopped: when Write Logs: \
                                  log flush: sled flush failed: IO error: Input/output error (os error 5)"},
                       "error_line": "log flush failed: sled flush failed: Input/output error (os error 5)"}),
            ),
            stop("disk-full", json!({"injected_errors": 0})),
            stop("slow-disk", json!({"exit": null})),
        ];
        let v = check(&h);
        assert!(v.valid, "{v:?}");
        assert_eq!(v.details["outcomes"]["disk-full: not exercised"], 1);
        // Stopped, but /readyz never said why: flagged.
        let v = check(&[stop(
            "disk-eio",
            json!({"injected_errors": 1, "exited_fatal": true, "readyz": null,
                   "error_line": "log flush failed: … (os error 5)"}),
        )]);
        assert!(!v.valid, "{v:?}");
    }

    #[test]
    fn a_repaired_tail_and_a_node_that_ignores_fsync_errors_are_flagged() {
        let v = check(&[stop(
            "corrupt-tail",
            json!({"refused": false, "still_running": true, "error_line": null}),
        )]);
        assert!(!v.valid);
        let v = check(&[stop(
            "disk-eio",
            json!({"injected_errors": 30, "exited_fatal": false,
                   "readyz": {"status": 200, "body": "ready"}, "error_line": null}),
        )]);
        assert!(!v.valid);
        assert!(v.summary.contains("kept serving"), "{}", v.summary);
        let v = check(&[stop("slow-disk", json!({"exit": "exit status: 70"}))]);
        assert!(!v.valid);
    }
}
