//! What must be undone however the harness ends: node processes and iptables chains.
//!
//! Everything the harness creates outside itself is registered here. `Janitor` undoes
//! it on drop (normal end, early return, panic unwinding), and the signal task undoes
//! it on Ctrl-C or SIGTERM before exiting. Undoing twice is harmless.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::Mutex;

struct Registry {
    pids: BTreeSet<u32>,
    chains: BTreeSet<String>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    pids: BTreeSet::new(),
    chains: BTreeSet::new(),
});

fn with<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    let mut g = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut g)
}

pub fn add_pid(pid: u32) {
    with(|r| r.pids.insert(pid));
}

pub fn remove_pid(pid: u32) {
    with(|r| r.pids.remove(&pid));
}

pub fn add_chain(chain: &str) {
    with(|r| r.chains.insert(chain.to_owned()));
}

pub fn remove_chain(chain: &str) {
    with(|r| r.chains.remove(chain));
}

/// Kills every registered process (SIGKILL works on stopped ones too) and removes every
/// registered chain.
pub fn undo_all() {
    let (pids, chains) = with(|r| (std::mem::take(&mut r.pids), std::mem::take(&mut r.chains)));
    for pid in pids {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
    for chain in chains {
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
