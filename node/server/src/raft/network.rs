//! The peer transport: Raft RPCs between nodes over HTTP/1.1 with bincode bodies.
//!
//! Owns both ends of the wire: [`peer_router`] serves a node's peer listener, and
//! [`PeerNetwork`] is the `RaftNetworkFactory` that openraft uses to reach the other
//! members. It knows nothing about the client API, admission or storage: it moves
//! openraft's own request and response types and nothing else.
//!
//! Wire protocol (one POST per RPC, see `wire`):
//! - path `/raft/append-entries`, `/raft/vote`, `/raft/install-snapshot` (one chunk of a
//!   snapshot; openraft's chunked transfer drives it), `/raft/trigger-elect` (leadership
//!   hand-off on graceful shutdown);
//! - body = one format-version byte, then the openraft request encoded with bincode 2
//!   (serde, standard config); the 200 response body has the same framing and carries
//!   `Result<response, RaftError>`, so a remote Raft error reaches openraft as
//!   `RPCError::RemoteError`;
//! - every request carries `Authorization: Bearer <cluster secret>`, compared in
//!   constant time before the body is read (401 otherwise), and the id of the node it is
//!   meant for (`x-ratequeue-target-id`): a node answers 421 to requests for another id,
//!   so a wrong address in the membership is reported instead of silently talking to the
//!   wrong node.
//!
//! Never logs the secret; never blocks: timeouts come from openraft's `RPCOption`.

mod client;
mod secret;
mod server;
pub(crate) mod wire;

#[cfg(test)]
mod tests;

pub use client::{PeerConnection, PeerNetwork, PeerNetworkError};
pub use secret::ClusterSecret;
pub use server::peer_router;
pub use wire::PEER_BODY_BYTES_MAX;
