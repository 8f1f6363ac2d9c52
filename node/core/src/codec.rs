//! Bounded bincode decoding, shared by every decoder of bytes from outside: snapshots
//! (here), and in the server the peer bodies and the persisted log records.
//!
//! bincode allocates a string's buffer from its length prefix before reading it, so a
//! corrupted or hostile prefix can ask for petabytes and abort the process (found by
//! the fuzz targets, docs/fuzzing.md). Its decode limit bounds the memory claimed while
//! decoding. A valid body claims at most 16 bytes per encoded byte (the worst case is a
//! one-byte varint decoding to an `i128`), so the limit is the first tier at or above
//! 16 × the body's length (the limit is a const generic, hence tiers rather than the
//! exact figure).

use serde::de::DeserializeOwned;

/// Decodes `body` with bincode's standard configuration (as every encoder here writes)
/// and a memory bound set from the body's length; returns the value and the bytes read.
pub fn decode_bounded<T: DeserializeOwned>(
    body: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    /// `2^bits` bytes less one, or `usize::MAX` where that does not fit.
    const fn bound(bits: u32) -> usize {
        usize::MAX >> usize::BITS.saturating_sub(bits)
    }
    fn decode<const LIMIT: usize, T: DeserializeOwned>(
        body: &[u8],
    ) -> Result<(T, usize), bincode::error::DecodeError> {
        bincode::serde::decode_from_slice(body, bincode::config::standard().with_limit::<LIMIT>())
    }
    let claims = body.len().saturating_mul(16);
    if claims <= bound(24) {
        decode::<{ bound(24) }, T>(body)
    } else if claims <= bound(28) {
        decode::<{ bound(28) }, T>(body)
    } else if claims <= bound(32) {
        decode::<{ bound(32) }, T>(body)
    } else {
        decode::<{ bound(36) }, T>(body)
    }
}

#[cfg(test)]
mod tests {
    use super::decode_bounded;

    /// A string whose length prefix (bincode varint: 0xfd, then a u64) says `len`.
    fn claiming(len: u64) -> Vec<u8> {
        let mut body = vec![0xfd];
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(b"abc");
        body
    }

    #[test]
    fn a_length_prefix_cannot_claim_more_than_the_body_holds() {
        // Unbounded, these ask for 2^54 bytes (an allocation failure aborts) and for
        // more than isize::MAX (a capacity-overflow panic).
        for len in [1 << 54, u64::MAX] {
            let err = decode_bounded::<String>(&claiming(len)).unwrap_err();
            assert!(
                matches!(err, bincode::error::DecodeError::LimitExceeded),
                "{err}"
            );
        }
        // A prefix that the body does not hold but within the bound is a plain error.
        assert!(decode_bounded::<String>(&claiming(64)).is_err());
    }

    #[test]
    fn valid_bodies_decode_in_every_tier() {
        for len in [0usize, 10, 1 << 20, 1 << 25] {
            let text = "x".repeat(len);
            let body = bincode::serde::encode_to_vec(&text, bincode::config::standard()).unwrap();
            let (back, read) = decode_bounded::<String>(&body).unwrap();
            assert_eq!((back.len(), read), (len, body.len()));
        }
    }
}
