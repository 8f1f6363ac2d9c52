//! The cluster secret shared by all members: authenticates peer (Raft) traffic.
//!
//! The value is never printed (`Debug` shows `***`) and never logged. Comparison hashes
//! both sides with SHA-256 and compares the digests in constant time, so neither the
//! content nor the length of the secret leaks through timing.

use std::fmt;
use std::sync::Arc;

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

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(***)")
    }
}
