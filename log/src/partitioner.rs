//! Kafka's default partitioner for keyed records.
//!
//! Kafka clients place a keyed record at `toPositive(murmur2(key)) % partitions`, with
//! `toPositive(x) = x & 0x7fffffff`. Doing the same puts a key where Kafka clients expect it.

/// Kafka's `Utils.murmur2`: 32-bit MurmurHash2 with seed `0x9747b28c`, returned as Java's `int`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    // Java computes `seed ^ length` on ints; the length wraps the same way here.
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    // Java's switch falls through from 3 to 1; bytes are sign-agnostic after `& 0xff`.
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for `key` among `partitions` (> 0).
///
/// Returns 0 when `partitions` is 0 rather than dividing by zero.
pub fn murmur2_partition(key: &[u8], partitions: u32) -> u32 {
    if partitions == 0 {
        return 0;
    }
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of Kafka's `UtilsTest.testMurmur2`
    /// (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java).
    #[test]
    fn matches_kafka_utils_test() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, want) in cases {
            assert_eq!(
                murmur2(key),
                want,
                "murmur2({})",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn partition_uses_to_positive() {
        // toPositive(-790332482) = 1357151166; 1357151166 % 10 = 6.
        assert_eq!(murmur2_partition(b"foobar", 10), 6);
        assert_eq!(murmur2_partition(b"foobar", 0), 0);
    }
}
