//! Which `127.250.B.0/24` loopback block a run uses, so that harness processes running
//! at the same time (a soak beside a campaign, two worktrees' CI) never share a block.
//!
//! Sharing one would be worse than a bind error: the iptables chain is named after the
//! block (`net::chain_for`), and a run deletes its chain's leftovers at start and flushes
//! it on every heal, so a second run on the same block would silently heal (or delete)
//! the first run's partitions. A run therefore *claims* its block by binding
//! `127.250.B.CLAIM_OCTET:CLAIM_PORT` (an address no node and no client uses) for the
//! rest of the process's life; the kernel releases it when the process dies, however it
//! dies, so there is no stale claim to clean up. A block is also skipped while its chain
//! exists or any of its node addresses is bound (a harness of an older build, which does
//! not claim, or a leftover node).

use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

use ratequeue_testkit::Block;

/// First octet after 127 of every harness block (the kit's own clusters use 10..=249).
pub const HARNESS_A: u8 = 250;
/// Second octets a harness block can have: 1..=BLOCKS.
pub const BLOCKS: u64 = 240;
/// Last octet of the claim address (nodes use 1..=199, the clients 200).
pub const CLAIM_OCTET: u8 = 250;
/// Port of the claim address.
pub const CLAIM_PORT: u16 = 7799;
/// Node ids checked for a bound address: the membership nemesis adds nodes above the
/// initial ones.
const NODE_MARGIN: u64 = 4;

static CLAIMS: Mutex<Vec<TcpListener>> = Mutex::new(Vec::new());

/// The `k`-th candidate of a process: spread by the process id so that concurrent
/// processes usually start on different blocks.
pub fn candidate(pid: u32, k: u64) -> Block {
    Block(HARNESS_A, (1 + (u64::from(pid) + k * 37) % BLOCKS) as u8)
}

fn claim_addr(b: Block) -> (Ipv4Addr, u16) {
    (Ipv4Addr::new(127, b.0, b.1, CLAIM_OCTET), CLAIM_PORT)
}

/// Claims a free block for a run of `nodes` nodes, trying this process's candidates from
/// the `run`-th on; `in_use` says whether something else holds a block (its chain
/// exists, its addresses are bound). Falls back to the first candidate if all 240 are
/// taken (it then fails visibly: a node cannot bind).
pub fn claim_with(run: u64, in_use: impl Fn(Block) -> bool) -> Block {
    let pid = std::process::id();
    for k in 0..BLOCKS {
        let b = candidate(pid, run + k);
        let Ok(l) = TcpListener::bind(claim_addr(b)) else {
            continue;
        };
        if in_use(b) {
            continue;
        }
        CLAIMS.lock().unwrap_or_else(|e| e.into_inner()).push(l);
        return b;
    }
    candidate(pid, run)
}

/// `claim_with` and the real test of use: the block's iptables chain or a bound node
/// address.
pub fn claim(run: u64, nodes: u64) -> Block {
    claim_with(run, |b| {
        crate::net::chain_exists(&crate::net::chain_for(b)) || !b.is_free(nodes + NODE_MARGIN)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_of_one_process_differ() {
        let a = claim_with(0, |_| false);
        let b = claim_with(0, |_| false);
        assert_ne!(a, b, "the second claim must not reuse the first's block");
    }

    #[test]
    fn a_block_claimed_by_another_holder_is_skipped() {
        // Another process's claim is a bound claim address: hold the first candidate's.
        let first = candidate(std::process::id(), 1000);
        let _other = TcpListener::bind(claim_addr(first)).expect("binding a claim address");
        let got = claim_with(1000, |_| false);
        assert_ne!(got, first);
        assert_eq!(got.0, HARNESS_A);
    }

    #[test]
    fn a_block_in_use_is_skipped() {
        // An old harness (no claim) shows only as a chain or bound addresses.
        let first = candidate(std::process::id(), 2000);
        let got = claim_with(2000, |b| b == first);
        assert_ne!(got, first);
    }
}
