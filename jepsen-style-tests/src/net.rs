//! Network faults with iptables, in one dedicated chain.
//!
//! The chain is jumped to from `OUTPUT`; loopback traffic between the nodes' addresses
//! passes it once. A rule `-s A -d B -j DROP` drops only what A sends to B, which is
//! exact because every node binds its outgoing peer connections to its own address.
//! The harness's clients use an address of their own and are never partitioned.
//!
//! The chain is removed at start (leftovers of a killed run), at the end, on drop and
//! from the signal handler (`cleanup`).

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

fn iptables(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running iptables")?;
    if !out.status.success() {
        bail!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn quiet(args: &[&str]) -> bool {
    Command::new("iptables")
        .arg("-w")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Removes `chain` and every jump to it; quiet if it does not exist.
pub fn delete_chain(chain: &str) {
    for _ in 0..16 {
        if !quiet(&["-D", "OUTPUT", "-j", chain]) {
            break;
        }
    }
    quiet(&["-F", chain]);
    quiet(&["-X", chain]);
}

/// The iptables chain of a run on `block`.
pub fn chain_for(block: ratequeue_testkit::Block) -> String {
    format!("rqj-{}-{}", block.0, block.1)
}

/// Whether `chain` exists (false where iptables is missing or not permitted).
pub fn chain_exists(chain: &str) -> bool {
    quiet(&["-S", chain])
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Whether iptables works here (installed, permitted, kernel support); installs it
/// with apt-get first when it is missing and we are root. Returns why not otherwise.
pub fn ensure_iptables() -> Result<(), String> {
    // The probe chain is this process's own: a shared name would let two harnesses
    // starting together delete each other's probe and conclude iptables does not work.
    let probe = &format!("rqj-probe-{}", std::process::id());
    let works = || {
        delete_chain(probe);
        let ok =
            quiet(&["-N", probe]) && quiet(&["-A", probe, "-s", "127.254.254.1", "-j", "DROP"]);
        delete_chain(probe);
        ok
    };
    if works() {
        return Ok(());
    }
    if !is_root() {
        return Err("iptables needs root".into());
    }
    let missing = Command::new("iptables").arg("--version").output().is_err();
    if missing {
        eprintln!("jepsen: iptables missing: apt-get install -y iptables");
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y", "-q", "iptables"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !install() {
            let _ = Command::new("apt-get")
                .args(["update", "-q"])
                .stdout(Stdio::null())
                .status();
            install();
        }
    }
    if works() {
        Ok(())
    } else {
        Err("iptables cannot add rules in this environment".into())
    }
}

/// The run's chain. Dropping it removes the chain.
pub struct Net {
    chain: String,
}

impl Net {
    pub fn new(chain: &str) -> anyhow::Result<Net> {
        delete_chain(chain);
        crate::cleanup::add_chain(chain);
        iptables(&["-N", chain])?;
        iptables(&["-I", "OUTPUT", "-j", chain])?;
        Ok(Net {
            chain: chain.to_owned(),
        })
    }

    pub fn chain(&self) -> &str {
        &self.chain
    }

    /// Drops every packet from `from` to `to`.
    pub fn drop_traffic(&self, from: Ipv4Addr, to: Ipv4Addr) -> anyhow::Result<()> {
        iptables(&[
            "-A",
            &self.chain,
            "-s",
            &from.to_string(),
            "-d",
            &to.to_string(),
            "-j",
            "DROP",
        ])
    }

    /// Removes every rule of the chain.
    pub fn heal(&self) -> anyhow::Result<()> {
        iptables(&["-F", &self.chain])
    }

    /// The chain's rules, for the report.
    pub fn rules(&self) -> Vec<String> {
        Command::new("iptables")
            .args(["-w", "-S", &self.chain])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        delete_chain(&self.chain);
        crate::cleanup::remove_chain(&self.chain);
    }
}
