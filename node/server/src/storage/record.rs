//! The on-disk framing of every persisted record: `[format_version u8][crc32 u32 LE][payload]`.
//!
//! The payload is bincode 2 (serde, standard config; decoded with a memory bound,
//! `ratequeue_core::codec`) for typed records and the raw bytes for
//! snapshot data. The checksum covers the payload. bincode is not self-describing, so the
//! version byte is what lets a later build refuse (or migrate) records it does not understand.
//! This module never panics on bad input: every failure is a [`StoreError`] naming the record.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::{RecordKey, StoreError};

/// The record format this build writes and reads. 2: the commands' layout changed
/// (lease owners, key scopes, `CreateKey`/`RotateKey`); a store written by an older
/// build is refused on open (docs/operations.md, "Upgrading"). 3: resource configs
/// carry a mode (enforce or dry run), grants the caller's `wait_ms`. 4: resource configs
/// carry a feedback policy; `Command::Report`.
pub const RECORD_FORMAT_VERSION: u8 = 4;

/// Bytes in front of the payload: version (1) + crc32 (4).
pub const RECORD_HEADER_LEN: usize = 5;

fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

fn write_header(record: &mut [u8]) {
    let crc = crc32fast::hash(&record[RECORD_HEADER_LEN..]);
    record[0] = RECORD_FORMAT_VERSION;
    record[1..RECORD_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
}

/// Encode `value` with bincode and frame it.
pub fn encode<T: Serialize + ?Sized>(key: RecordKey, value: &T) -> Result<Vec<u8>, StoreError> {
    let mut record = vec![0u8; RECORD_HEADER_LEN];
    bincode::serde::encode_into_std_write(value, &mut record, bincode_config()).map_err(|e| {
        StoreError::Encode {
            key,
            reason: e.to_string(),
        }
    })?;
    write_header(&mut record);
    Ok(record)
}

/// Frame raw bytes (snapshot data) without re-encoding them.
pub fn frame_bytes(payload: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(RECORD_HEADER_LEN + payload.len());
    record.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    record.extend_from_slice(payload);
    write_header(&mut record);
    record
}

/// Check a record's header and checksum and return its payload.
pub fn payload(key: RecordKey, record: &[u8]) -> Result<&[u8], StoreError> {
    if record.len() < RECORD_HEADER_LEN {
        return Err(StoreError::Truncated {
            key,
            len: record.len(),
        });
    }
    let (header, payload) = record.split_at(RECORD_HEADER_LEN);
    if header[0] != RECORD_FORMAT_VERSION {
        return Err(StoreError::Version {
            key,
            found: header[0],
            expected: RECORD_FORMAT_VERSION,
        });
    }
    let stored = u32::from_le_bytes([header[1], header[2], header[3], header[4]]);
    let computed = crc32fast::hash(payload);
    if stored != computed {
        return Err(StoreError::Checksum {
            key,
            stored,
            computed,
        });
    }
    Ok(payload)
}

/// Check a record and decode its bincode payload; trailing bytes are corruption.
pub fn decode<T: DeserializeOwned>(key: RecordKey, record: &[u8]) -> Result<T, StoreError> {
    let payload = payload(key, record)?;
    // Bounded: a length prefix cannot claim more memory than the payload could hold.
    let (value, read) =
        ratequeue_core::codec::decode_bounded::<T>(payload).map_err(|e| StoreError::Decode {
            key,
            reason: e.to_string(),
        })?;
    if read != payload.len() {
        return Err(StoreError::Decode {
            key,
            reason: format!("{} trailing bytes after the value", payload.len() - read),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_every_single_byte_flip_is_detected() {
        let value: (u64, String) = (42, "hello".to_string());
        let record = encode(RecordKey::Vote, &value).unwrap();
        assert_eq!(
            decode::<(u64, String)>(RecordKey::Vote, &record).unwrap(),
            value
        );
        for i in 0..record.len() {
            let mut bad = record.clone();
            bad[i] ^= 0x40;
            let err = decode::<(u64, String)>(RecordKey::Vote, &bad).unwrap_err();
            assert!(err.is_corruption(), "flip at {i}: {err}");
            assert_eq!(err.record(), Some(RecordKey::Vote));
            assert!(err.to_string().contains("vote"), "{err}");
        }
    }

    /// Found by the `log_store` fuzz target: a log record (valid checksum) whose string
    /// length prefix said 2^54 made the decoder ask for that much memory and abort the
    /// node on start-up instead of reporting a corrupt record.
    #[test]
    fn a_length_prefix_beyond_the_record_is_corruption_not_an_allocation() {
        let mut payload = vec![0xfd];
        payload.extend_from_slice(&(1u64 << 54).to_le_bytes());
        payload.extend_from_slice(b"127.0.0.11:7701");
        let err = decode::<String>(RecordKey::Log(3), &frame_bytes(&payload)).unwrap_err();
        assert!(matches!(err, StoreError::Decode { .. }), "{err}");
        assert!(err.is_corruption(), "{err}");
    }

    #[test]
    fn short_and_trailing_records_are_errors() {
        let err = decode::<u64>(RecordKey::Log(7), &[1, 2]).unwrap_err();
        assert!(matches!(err, StoreError::Truncated { len: 2, .. }), "{err}");
        assert!(err.to_string().contains("log[7]"), "{err}");

        let mut framed = frame_bytes(&[3, 9]);
        assert_eq!(payload(RecordKey::SnapshotData, &framed).unwrap(), &[3, 9]);
        // Two valid varint u64s: decoding one leaves a trailing byte.
        let err = decode::<u64>(RecordKey::Log(1), &framed).unwrap_err();
        assert!(matches!(err, StoreError::Decode { .. }), "{err}");
        framed[0] = RECORD_FORMAT_VERSION + 1;
        let err = payload(RecordKey::SnapshotData, &framed).unwrap_err();
        assert!(
            matches!(err, StoreError::Version { found, .. } if found == RECORD_FORMAT_VERSION + 1),
            "{err}"
        );
    }
}
