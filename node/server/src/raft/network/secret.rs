//! The cluster secret shared by all members: authenticates peer (Raft) traffic.
//!
//! The value is never printed (`Debug` shows `***`) and never logged. Comparison hashes
//! both sides with SHA-256 and compares the digests in constant time, so neither the
//! content nor the length of the secret leaks through timing.
//!
//! It also answers identity challenges without being sent: [`ClusterSecret::proof`] is
//! an HMAC-SHA256 keyed with the secret over a domain tag, the node id being proved and
//! the challenger's nonce. A node checks a member's proof before it sends that member
//! the secret itself.

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The shared secret every peer request must present.
///
/// Validation (minimum length, where it comes from) is the caller's business: this type
/// only keeps the value out of logs and compares it safely. Cheap to clone.
#[derive(Clone)]
pub struct ClusterSecret(Arc<Inner>);

struct Inner {
    value: String,
    /// SHA-256 of `value`: what presented tokens are compared against.
    digest: [u8; 32],
}

impl ClusterSecret {
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        let digest = Sha256::digest(value.as_bytes()).into();
        ClusterSecret(Arc::new(Inner { value, digest }))
    }

    /// The raw value, for building the outgoing `Authorization` header only.
    pub(super) fn expose(&self) -> &str {
        &self.0.value
    }

    /// Whether `presented` equals the secret, in time independent of both.
    pub(super) fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        digest.ct_eq(&self.0.digest).into()
    }
}

/// Bytes of the challenger's random nonce.
pub const NONCE_BYTES: usize = 32;
/// Domain separation: a proof is good for nothing but this challenge.
const PROOF_TAG: &[u8] = b"ratequeue peer identity v1\0";

impl ClusterSecret {
    fn proof_mac(&self, node: u64, nonce: &[u8; NONCE_BYTES]) -> Hmac<Sha256> {
        // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.value.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(PROOF_TAG);
        mac.update(&node.to_be_bytes());
        mac.update(nonce);
        mac
    }

    /// The proof that a holder of the secret is node `node`, for the challenge `nonce`.
    pub(super) fn proof(&self, node: u64, nonce: &[u8; NONCE_BYTES]) -> [u8; 32] {
        self.proof_mac(node, nonce).finalize().into_bytes().into()
    }

    /// Whether `proof` answers the challenge `nonce` for node `node` (constant time).
    pub(super) fn check_proof(&self, node: u64, nonce: &[u8; NONCE_BYTES], proof: &[u8]) -> bool {
        self.proof_mac(node, nonce).verify_slice(proof).is_ok()
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(***)")
    }
}
