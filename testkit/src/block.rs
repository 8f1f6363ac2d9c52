//! Loopback addressing: every cluster gets its own `127.A.B.0/24` block, so clusters of
//! several test processes (and worktrees) run side by side without port clashes.
//!
//! Node `id` listens on `127.A.B.id:7700` (API) and `:7701` (peers); the kit's own
//! control requests come from `127.A.B.200`, an address no node uses (so a partition
//! made with iptables between node addresses never cuts the harness off).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// API port of every node (each node has its own address).
pub const API_PORT: u16 = 7700;
/// Peer port of every node.
pub const PEER_PORT: u16 = 7701;
/// Last octet of the harness's client address; node ids stay below it.
pub const CLIENT_OCTET: u8 = 200;
/// Node ids a block can hold.
pub const NODE_ID_MAX: u64 = 199;
/// Blocks `pick` tries before it settles for one in use.
const PICK_TRIES_MAX: u32 = 250;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A `127.A.B.0/24` block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block(pub u8, pub u8);

impl Block {
    /// A block for a new cluster of this process: `A` from the process id (10..=249; the
    /// fault-injection harness uses 250 and picks its own), `B` from a counter, skipping
    /// blocks where some node's address is already bound. Another process may still take
    /// it before the nodes bind: that is rare and shows as a node failing to bind.
    pub fn pick(nodes: u64) -> Block {
        let a = 10 + (std::process::id() % 240) as u8;
        let mut first = None;
        for _ in 0..PICK_TRIES_MAX {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let b = Block(a, 1 + (n % 250) as u8);
            first.get_or_insert(b);
            if b.is_free(nodes) {
                return b;
            }
        }
        first.unwrap_or(Block(a, 1))
    }

    /// Whether nothing listens on the API and peer ports of nodes `1..=nodes`.
    pub fn is_free(&self, nodes: u64) -> bool {
        (1..=nodes.min(NODE_ID_MAX)).all(|id| {
            [self.api_addr(id), self.peer_socket(id)]
                .iter()
                .all(|a| TcpListener::bind(a).is_ok())
        })
    }

    pub fn ip(&self, id: u64) -> Ipv4Addr {
        Ipv4Addr::new(127, self.0, self.1, u8::try_from(id).unwrap_or(u8::MAX))
    }

    pub fn client_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(127, self.0, self.1, CLIENT_OCTET)
    }

    pub fn api_addr(&self, id: u64) -> SocketAddr {
        SocketAddr::from((self.ip(id), API_PORT))
    }

    fn peer_socket(&self, id: u64) -> SocketAddr {
        SocketAddr::from((self.ip(id), PEER_PORT))
    }

    /// `http://127.A.B.id:7700`
    pub fn url(&self, id: u64) -> String {
        format!("http://{}", self.api_addr(id))
    }

    /// `127.A.B.id:7701`
    pub fn peer_addr(&self, id: u64) -> String {
        self.peer_socket(id).to_string()
    }

    /// The node a URL points at, if it is one of this block's.
    pub fn node_of(&self, url: &str) -> Option<u64> {
        let host = url.split("://").nth(1)?.split([':', '/']).next()?;
        let ip: Ipv4Addr = host.parse().ok()?;
        let o = ip.octets();
        (o[0] == 127 && o[1] == self.0 && o[2] == self.1).then_some(u64::from(o[3]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_round_trip() {
        let b = Block(250, 7);
        assert_eq!(b.url(3), "http://127.250.7.3:7700");
        assert_eq!(b.peer_addr(3), "127.250.7.3:7701");
        assert_eq!(b.node_of(&b.url(3)), Some(3));
        assert_eq!(b.node_of("http://127.250.7.2:7700/v1/x?y=1"), Some(2));
        assert_eq!(b.node_of("http://127.9.7.2:7700"), None);
        assert_eq!(b.node_of("not a url"), None);
        assert_eq!(b.client_ip().octets(), [127, 250, 7, CLIENT_OCTET]);
    }

    #[test]
    fn picked_blocks_differ_and_are_free() {
        let a = Block::pick(3);
        let b = Block::pick(3);
        assert_ne!(a, b);
        assert!((10..250).contains(&a.0));
        assert!(a.is_free(3));
    }
}
