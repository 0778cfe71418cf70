//! The framing Confluent's serializers put around a payload: magic byte 0, the schema id as
//! a 4-byte big-endian integer, then the payload. Protobuf payloads start with the message
//! indexes (which message of the file), as zig-zag varints.

/// The magic byte of the framing.
pub const MAGIC: u8 = 0;

/// Why bytes are not a framed payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// Fewer than 5 bytes.
    #[error("{0} bytes is too short for the schema framing (magic byte 0 and a 4-byte schema id)")]
    TooShort(usize),
    /// The first byte is not 0.
    #[error("magic byte {0} where the schema framing has 0")]
    BadMagic(u8),
    /// The Protobuf message indexes are cut off or malformed.
    #[error("malformed Protobuf message indexes")]
    BadMessageIndexes,
}

/// A framed payload: the schema id and the bytes after the framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed<'a> {
    /// The registered schema id.
    pub id: u32,
    /// The bytes after the 5-byte header.
    pub payload: &'a [u8],
}

/// Splits `bytes` into the schema id and the payload.
pub fn split(bytes: &[u8]) -> Result<Framed<'_>, FramingError> {
    if bytes.len() < 5 {
        return Err(FramingError::TooShort(bytes.len()));
    }
    if bytes[0] != MAGIC {
        return Err(FramingError::BadMagic(bytes[0]));
    }
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    Ok(Framed {
        id,
        payload: &bytes[5..],
    })
}

/// Frames `payload` with schema `id`.
pub fn frame(id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Reads the Protobuf message indexes at the start of `payload`: the path of the message in
/// the file (`[0]` is the first top-level message, written as the single byte 0). Returns
/// the indexes and the rest of the payload.
pub fn split_message_indexes(payload: &[u8]) -> Result<(Vec<usize>, &[u8]), FramingError> {
    let (count, mut rest) = read_zigzag(payload)?;
    if count == 0 {
        return Ok((vec![0], rest));
    }
    if count < 0 || count as usize > rest.len() {
        return Err(FramingError::BadMessageIndexes);
    }
    let mut indexes = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (index, r) = read_zigzag(rest)?;
        if index < 0 {
            return Err(FramingError::BadMessageIndexes);
        }
        indexes.push(index as usize);
        rest = r;
    }
    Ok((indexes, rest))
}

fn read_zigzag(bytes: &[u8]) -> Result<(i64, &[u8]), FramingError> {
    let mut value: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let decoded = ((value >> 1) as i64) ^ -((value & 1) as i64);
            return Ok((decoded, &bytes[i + 1..]));
        }
    }
    Err(FramingError::BadMessageIndexes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let framed = frame(0x0102_0304, b"abc");
        assert_eq!(framed, [0, 1, 2, 3, 4, b'a', b'b', b'c']);
        assert_eq!(
            split(&framed),
            Ok(Framed {
                id: 0x0102_0304,
                payload: b"abc"
            })
        );
        assert_eq!(split(&framed[..4]), Err(FramingError::TooShort(4)));
        assert_eq!(split(&[1, 0, 0, 0, 0]), Err(FramingError::BadMagic(1)));
    }

    #[test]
    fn message_indexes() {
        assert_eq!(split_message_indexes(&[0, 9]), Ok((vec![0], &[9u8][..])));
        // [1, 2]: count 2 (zig-zag 4), then 1 (2) and 2 (4).
        assert_eq!(
            split_message_indexes(&[4, 2, 4, 7]),
            Ok((vec![1, 2], &[7u8][..]))
        );
        assert_eq!(
            split_message_indexes(&[4, 2]),
            Err(FramingError::BadMessageIndexes)
        );
    }
}
