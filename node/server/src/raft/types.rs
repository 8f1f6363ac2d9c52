//! The openraft type configuration of ratequeue.
//!
//! An entry's payload is a `Batch`: the leader's cluster-time stamp and every command
//! grouped into that one write (DESIGN.md §3–§4). The response of an entry is one
//! `Outcome` per command, in order.

use std::fmt;
use std::io::Cursor;

use ratequeue_core::{Command, Outcome};
use serde::{Deserialize, Serialize};

pub type NodeId = u64;

/// One Raft entry's application payload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Cluster time stamped by the leader (DESIGN.md §3).
    pub now_ms: u64,
    pub commands: Vec<Command>,
}

impl fmt::Display for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch@{}ms[{}]", self.now_ms, self.commands.len())
    }
}

/// The outcome of each command of a `Batch`, in order; empty for blank and membership
/// entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchOutcome(pub Vec<Outcome>);

/// How to reach a member: its peer (Raft) address and its advertised client API URL.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `host:port` of the peer listener; a DNS name is resolved at connect time.
    pub peer_addr: String,
    /// Base URL clients are redirected to, e.g. `http://127.0.0.11:7700`.
    pub api_url: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.peer_addr, self.api_url)
    }
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Batch,
        R = BatchOutcome,
        NodeId = NodeId,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, NodeInfo>;
pub type StoredMembership = openraft::StoredMembership<NodeId, NodeInfo>;
