//! Memory hints for large, hot tables: cache-line prefetch and transparent
//! huge pages.
//!
//! Both are hints: they change when memory is fetched or how it is mapped,
//! never what it holds, so they are safe to offer to code that may not use
//! `unsafe` itself (the flow table). A hash-table lookup over a table much
//! larger than the caches costs two cache misses (index, entry), and on 4 KiB
//! pages each of those is also a TLB miss; prefetching a batch's lines
//! before touching them overlaps the misses (DPDK's `rte_prefetch0` in
//! `rte_hash_lookup_bulk`), and huge pages remove most of the TLB misses
//! (DPDK runs on hugepages for that reason).

use std::io;
use std::mem::MaybeUninit;

/// Asks the CPU to bring the cache line holding `*r` into all cache levels.
/// Does nothing on targets without a prefetch instruction we use.
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is an SSE instruction, which every x86_64 CPU has;
    // it is a hint that never faults and never reads or writes memory
    // architecturally, and `r` is a valid reference besides.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (r as *const T).cast(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

/// Asks the kernel to back `memory` with transparent huge pages
/// (`madvise(MADV_HUGEPAGE)`), for memory not yet touched: call it on a
/// `Vec`'s spare capacity before filling it. Only whole pages inside the
/// region are advised. Errors are the kernel's (e.g. THP disabled); callers
/// may ignore them, the memory works the same without huge pages.
pub fn advise_huge_pages<T>(memory: &mut [MaybeUninit<T>]) -> io::Result<()> {
    let page = 4096usize;
    let start = memory.as_mut_ptr() as usize;
    let end = start + std::mem::size_of_val(memory);
    let aligned = start.next_multiple_of(page);
    if end <= aligned + page {
        return Ok(());
    }
    let len = (end - aligned) / page * page;
    // SAFETY: [aligned, aligned + len) lies inside `memory`, which this
    // function borrows mutably, so the range is mapped and owned by the
    // caller; MADV_HUGEPAGE only changes how the kernel backs those pages,
    // never their contents.
    let rc = unsafe { libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetch_any_reference() {
        let v = vec![1u64; 1024];
        prefetch(&v[1000]);
        prefetch(&v);
        assert_eq!(v[1000], 1);
    }

    #[test]
    fn advise_a_large_vec_and_use_it() {
        let mut v: Vec<u64> = Vec::with_capacity(8 << 20);
        // THP may be disabled on a machine; the call must not break anything.
        let _ = advise_huge_pages(v.spare_capacity_mut());
        v.extend(0..8 << 20);
        assert_eq!(v[(8 << 20) - 1], (8 << 20) - 1);
        let mut small: Vec<u8> = Vec::with_capacity(10);
        assert!(
            advise_huge_pages(small.spare_capacity_mut()).is_ok(),
            "less than a page is a no-op"
        );
    }
}
