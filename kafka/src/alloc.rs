//! A global allocator that survives the codec's wire-chosen capacities.
//!
//! See [`WireSafeAlloc`].

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations of this many bytes or more are reserved lazily: far above the buffers of the
/// host's hot paths, far below what a small machine refuses outright.
const HUGE: usize = 64 << 20;

/// Page size every Linux target Rill runs on has at least; `mmap` returns memory aligned to
/// it, so larger alignments go to the system allocator.
const PAGE: usize = 4096;

/// The global allocator for processes that decode untrusted Kafka frames.
///
/// `kafka-protocol` 0.18 decodes every array as `Vec::with_capacity(n)` with `n` read off
/// the wire, before it reads a single element. A 21-byte request claiming a billion group
/// names asks for tens of gigabytes; the system allocator refuses, and Rust answers a refused
/// allocation by aborting the process. One hostile or corrupt frame would take down the host
/// and every deployment in it.
///
/// [`WireSafeAlloc`] serves allocations of 64 MiB or more from anonymous
/// `MAP_NORESERVE` mappings: address space is handed out, memory is not. Pages are committed
/// only when written, so a capacity nobody fills costs nothing, and the decode then fails
/// cleanly at the end of the frame ("not enough bytes") like any other malformed request.
/// Memory actually used stays bounded by what the frame carries. Everything smaller goes to
/// the system allocator unchanged, so the hot paths are untouched.
///
/// Install it in any binary that decodes Kafka frames from the network:
///
/// ```no_run
/// #[global_allocator]
/// static ALLOC: rill_kafka::WireSafeAlloc = rill_kafka::WireSafeAlloc;
/// ```
///
/// The `runtime` binary and the `kafka_request_decode` fuzz target do. On targets other
/// than Linux it is the system allocator.
#[derive(Debug, Clone, Copy, Default)]
pub struct WireSafeAlloc;

fn lazy(layout: Layout) -> bool {
    cfg!(target_os = "linux") && layout.size() >= HUGE && layout.align() <= PAGE
}

#[cfg(target_os = "linux")]
mod map {
    /// Reserves `size` bytes of zeroed, lazily committed memory; null when refused.
    pub(super) fn reserve(size: usize) -> *mut u8 {
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing
        // touches no existing memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            p.cast()
        }
    }

    /// Releases a mapping made by [`reserve`].
    ///
    /// # Safety
    /// `p` and `size` must be those of a live mapping from [`reserve`] (or [`resize`]).
    pub(super) unsafe fn release(p: *mut u8, size: usize) {
        // SAFETY: the caller guarantees the mapping is ours and live.
        unsafe { libc::munmap(p.cast(), size) };
    }

    /// Grows or shrinks a mapping, moving it if needed; null when refused (the old mapping
    /// then stays valid).
    ///
    /// # Safety
    /// As for [`release`].
    pub(super) unsafe fn resize(p: *mut u8, old: usize, new: usize) -> *mut u8 {
        // SAFETY: the caller guarantees the mapping is ours and live; MREMAP_MAYMOVE leaves
        // it untouched on failure.
        let q = unsafe { libc::mremap(p.cast(), old, new, libc::MREMAP_MAYMOVE) };
        if q == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            q.cast()
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod map {
    pub(super) fn reserve(_: usize) -> *mut u8 {
        unreachable!("lazy() is false off Linux")
    }
    pub(super) unsafe fn release(_: *mut u8, _: usize) {
        unreachable!("lazy() is false off Linux")
    }
    pub(super) unsafe fn resize(_: *mut u8, _: usize, _: usize) -> *mut u8 {
        unreachable!("lazy() is false off Linux")
    }
}

// SAFETY: every block is either the system allocator's (small or over-aligned layouts) or an
// anonymous mapping of at least the layout's size at page alignment (huge layouts); `lazy`
// decides which from the layout alone, so `dealloc` and `realloc` always return a block to
// the allocator it came from.
unsafe impl GlobalAlloc for WireSafeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if lazy(layout) {
            map::reserve(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if lazy(layout) {
            // Anonymous mappings are zero-filled.
            map::reserve(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if lazy(layout) {
            // SAFETY: a huge layout's block came from `map::reserve`.
            unsafe { map::release(ptr, layout.size()) }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size`, rounded to the alignment, fits `isize`.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (lazy(layout), lazy(new)) {
            // SAFETY: forwarded with the caller's guarantees.
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            // SAFETY: both are mappings of ours; `ptr` is live.
            (true, true) => unsafe { map::resize(ptr, layout.size(), new_size) },
            _ => {
                // Crossing the threshold: move the bytes between the two allocators.
                // SAFETY: `new` is a valid non-zero layout (its size is at least one of the
                // two, and one of them is huge or the block was non-empty).
                let q = unsafe { self.alloc(new) };
                if !q.is_null() {
                    // SAFETY: both blocks are live, distinct and at least this long.
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, q, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                q
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_huge_blocks_round_trip() {
        let a = WireSafeAlloc;
        for size in [2, 4096, HUGE - 1, HUGE, 40 * HUGE] {
            let layout = Layout::from_size_align(size, 8).expect("layout");
            // SAFETY: non-zero layout; the block is written within bounds and freed once.
            unsafe {
                let p = a.alloc(layout);
                assert!(!p.is_null(), "{size} bytes");
                p.write(7);
                p.add(size - 1).write(9);
                assert_eq!((p.read(), p.add(size - 1).read()), (7, 9));
                a.dealloc(p, layout);
            }
        }
    }

    #[test]
    fn realloc_keeps_bytes_across_the_threshold() {
        let a = WireSafeAlloc;
        let small = Layout::from_size_align(1024, 8).expect("layout");
        // SAFETY: each step passes the live block with its current layout; bytes read are
        // within the sizes written.
        unsafe {
            let p = a.alloc(small);
            for i in 0..1024 {
                p.add(i).write(i as u8);
            }
            let p = a.realloc(p, small, HUGE);
            assert!(!p.is_null());
            let huge = Layout::from_size_align(HUGE, 8).expect("layout");
            let p = a.realloc(p, huge, 2 * HUGE);
            assert!(!p.is_null());
            let huge2 = Layout::from_size_align(2 * HUGE, 8).expect("layout");
            let p = a.realloc(p, huge2, 512);
            assert!(!p.is_null());
            for i in 0..512 {
                assert_eq!(p.add(i).read(), i as u8);
            }
            a.dealloc(p, Layout::from_size_align(512, 8).expect("layout"));
        }
    }

    #[test]
    fn a_wire_chosen_capacity_of_tens_of_gigabytes_is_no_abort() {
        // What `Vec::with_capacity(n)` asks for when `n` comes off the wire.
        let a = WireSafeAlloc;
        let layout = Layout::array::<[u64; 4]>(0x444a_4444).expect("layout");
        // SAFETY: non-zero layout, freed once, never read.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null(), "{} bytes refused", layout.size());
            a.dealloc(p, layout);
        }
    }
}
