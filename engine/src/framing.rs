//! Just enough of the record batch v2 framing to count the records an invocation covers.
//! The engine does not parse records; the guest SDK does.

fn be_i64(b: &[u8], at: usize) -> Option<i64> {
    Some(i64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn be_i32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Records with offsets in `[start, end)` in the concatenated batches `buf`, counting from
/// the batch headers (base offset, last offset delta). Control batches are not counted.
pub(crate) fn records_in_range(mut buf: &[u8], start: i64, end: i64) -> u32 {
    let mut n: i64 = 0;
    while let (Some(base), Some(len)) = (be_i64(buf, 0), be_i32(buf, 8)) {
        let total = (len as usize).saturating_add(12);
        let (Some(delta), Some(attrs)) = (be_i32(buf, 23), buf.get(21..23)) else {
            break;
        };
        let control = attrs[1] & 0x20 != 0;
        if !control {
            let last = base.saturating_add(i64::from(delta));
            let lo = base.max(start);
            let hi = last.min(end.saturating_sub(1));
            // Saturating: the bytes are not trusted here, and base offsets near i64::MIN
            // or MAX must not overflow (found by the `abi_boundary` fuzz target).
            n = n.saturating_add(hi.saturating_sub(lo).saturating_add(1).max(0));
        }
        match buf.get(total..) {
            Some(rest) if total > 12 => buf = rest,
            _ => break,
        }
    }
    n.clamp(0, i64::from(u32::MAX)) as u32
}
