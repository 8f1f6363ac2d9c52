//! Framing of peer bodies: a format-version byte, then bincode 2 (serde, standard config),
//! decoded with a memory bound (`ratequeue_core::codec`).
//!
//! bincode is not self-describing, so the version byte is what lets a future format be
//! rejected cleanly (400 / `RPCError::Network`) instead of decoding garbage.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::secret::NONCE_BYTES;

/// Version of the peer body format; bump on any incompatible change of the encoded types.
/// 2: the commands' layout changed with record format 2 (lease owners, key scopes).
/// 3: with record format 3 (resource modes, the grant's `wait_ms`). 4: with record
/// format 4 (feedback policies, reports).
pub(super) const WIRE_VERSION: u8 = 4;

pub(super) const PATH_APPEND_ENTRIES: &str = "/raft/append-entries";
pub(super) const PATH_VOTE: &str = "/raft/vote";
pub(super) const PATH_INSTALL_SNAPSHOT: &str = "/raft/install-snapshot";
pub(super) const PATH_TRIGGER_ELECT: &str = "/raft/trigger-elect";
/// The answering node's advertised client API URL (a `String`), so that a leader can
/// fill in the members' URLs for redirects and status.
pub(super) const PATH_API_URL: &str = "/raft/api-url";

/// Identity challenge, the one route that needs no cluster secret: the caller sends an
/// [`IdentifyRequest`], the node answers an [`IdentifyResponse`] whose proof only a
/// holder of the secret can compute. A node sends its secret to a member only after
/// this check.
pub(super) const PATH_IDENTIFY: &str = "/raft/identify";
/// Largest identify request body (a node id and a nonce, framed).
pub(super) const IDENTIFY_BODY_BYTES_MAX: usize = 128;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct IdentifyRequest {
    /// The node the caller means to reach.
    pub target: u64,
    pub nonce: [u8; NONCE_BYTES],
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct IdentifyResponse {
    /// The answering node's id.
    pub node: u64,
    /// `ClusterSecret::proof(node, nonce)`.
    pub proof: [u8; 32],
}

/// The node id a request is meant for; a node answers 421 when it is not that node.
pub(super) const HEADER_TARGET_ID: &str = "x-ratequeue-target-id";
pub(super) const CONTENT_TYPE_BINCODE: &str = "application/octet-stream";

/// Largest peer request body accepted (and the AppendEntries size above which the client
/// asks openraft to split the batch). A node raises its own limit to its configured
/// snapshot chunk size plus [`BODY_MARGIN_BYTES`] when that is larger.
pub const PEER_BODY_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Room for the snapshot metadata and framing around one snapshot chunk.
pub(super) const BODY_MARGIN_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("empty body")]
    Empty,
    #[error("unsupported peer wire format version {0} (this node speaks {WIRE_VERSION})")]
    Version(u8),
    #[error("encoding: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("decoding: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, WireError> {
    let mut out = vec![WIRE_VERSION];
    bincode::serde::encode_into_std_write(value, &mut out, bincode::config::standard())?;
    Ok(out)
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let (&version, rest) = bytes.split_first().ok_or(WireError::Empty)?;
    if version != WIRE_VERSION {
        return Err(WireError::Version(version));
    }
    // Bounded: a length prefix cannot claim more memory than the body could hold.
    let (value, read) = ratequeue_core::codec::decode_bounded(rest)?;
    if read != rest.len() {
        return Err(WireError::Trailing(rest.len() - read));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `peer_message` fuzz target: a string length prefix of 2^64 - 1 in an
    /// install-snapshot answer panicked with a capacity overflow, and one of 2^54 in an
    /// entry aborted the process on an allocation failure.
    #[test]
    fn a_length_prefix_beyond_the_body_is_refused_not_allocated() {
        for len in [u64::MAX, 1 << 54] {
            let mut body = vec![WIRE_VERSION, 0xfd];
            body.extend_from_slice(&len.to_le_bytes());
            body.extend_from_slice(b"http://");
            let err = decode::<String>(&body).unwrap_err();
            assert!(matches!(err, WireError::Decode(_)), "{err}");
        }
        let ok = encode(&"http://127.0.0.12:7700".to_owned()).unwrap();
        assert_eq!(decode::<String>(&ok).unwrap(), "http://127.0.0.12:7700");
    }
}
