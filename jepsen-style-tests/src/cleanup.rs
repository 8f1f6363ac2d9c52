//! What must be undone however the harness ends: node processes and iptables chains.
//!
//! Node processes are the kit's (`ratequeue_testkit::kill_all_started` kills every one
//! still running; they also die with this process, `--parent-pid`); iptables chains are
//! registered here. `Janitor` undoes both on drop (normal end, early return, panic
//! unwinding), and the signal task on Ctrl-C or SIGTERM before exiting. Undoing twice
//! is harmless.

use std::collections::BTreeSet;
use std::sync::Mutex;

static CHAINS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn with<T>(f: impl FnOnce(&mut BTreeSet<String>) -> T) -> T {
    let mut g = CHAINS.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut g)
}

pub fn add_chain(chain: &str) {
    with(|r| r.insert(chain.to_owned()));
}

pub fn remove_chain(chain: &str) {
    with(|r| r.remove(chain));
}

/// Kills every node process (SIGKILL works on stopped ones too) and removes every
/// registered chain.
pub fn undo_all() {
    ratequeue_testkit::kill_all_started();
    for chain in with(std::mem::take) {
        crate::net::delete_chain(&chain);
    }
}

/// Undoes everything when dropped.
pub struct Janitor;

impl Drop for Janitor {
    fn drop(&mut self) {
        undo_all();
    }
}

/// On SIGINT or SIGTERM: undo everything and exit 130.
pub fn spawn_signal_handler() {
    tokio::spawn(async {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
        eprintln!("\njepsen: interrupted: killing nodes and removing the iptables chain");
        undo_all();
        std::process::exit(130);
    });
}
