//! How the process's allocator treats the memory of a converted buffer.
//!
//! A buffer of records is up to 128 MiB, read into 1 MiB blocks, and its
//! conversion allocates column chunks of a few MiB; all of it is freed when
//! the buffer is delivered, and the next buffer needs as much again. glibc's
//! malloc, by default, maps allocations from 128 KiB up to a threshold that
//! it raises as it goes on its own pages and returns freed memory to the
//! kernel once a few MiB are free at the top of a heap, so every buffer's
//! memory comes back as fresh pages the kernel must fault in and zero: a
//! fifth of the CPU time of converting flat records to Parquet.
//! [`keep_freed_memory`] makes it keep up to [`KEPT_BYTES`] of freed memory
//! for the next buffer instead, for allocations under
//! [`HEAP_ALLOCATIONS_BELOW`]: the read blocks and column chunks, many
//! and alike, which the next buffer's reuse exactly.
//!
//! Larger ones (a buffer's record list, about 20 MB at 64 MB buffers of
//! 440-byte records; zstd's window; a file's bytes) are mapped on their
//! own and go back to the kernel when freed. They used to come from the
//! heap too (up to 32 MiB): each is a little larger or smaller than the
//! last, so the next did not fit the hole the last left, the heap grew
//! around the holes, and a run's peak RSS grew with its length, 311
//! against 219 MiB for 1 GB against 200 MB of products (zstd JSON lines,
//! 64 MB buffers; issue #17, docs/benchmarks.md "Large allocations mapped
//! on their own").
//!
//! That holds within one heap (an arena). glibc gives threads that allocate
//! at the same time arenas of their own, up to 8 per core, and memory freed
//! in one arena is reused only by the threads that allocate from it: the
//! threads that encode and compress buffers (tokio's blocking pool) each
//! kept their own peak, and a pipeline held up to twice its buffers' worth
//! of memory nobody used (issue #17). [`keep_freed_memory`] therefore also
//! caps the arenas at one per core ([`arenas`]): no more threads allocate at
//! once than there are cores, and measured on 2 cores the runs were as fast
//! (docs/benchmarks.md, "glibc's arenas").

/// Allocations below this are taken from the heap, not mapped on their
/// own: above a read block (1 MiB), below a large buffer's record list.
pub const HEAP_ALLOCATIONS_BELOW: usize = 4 * 1024 * 1024;
/// Free memory at the top of a heap kept for reuse rather than returned.
pub const KEPT_BYTES: usize = 256 * 1024 * 1024;

/// How many arenas glibc's malloc may make: one per core the process may
/// use (its CPU affinity and cgroup quota), at least one.
pub fn arenas() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Sets glibc's malloc to keep freed buffer memory for reuse, in at most
/// [`arenas`] arenas (see the module). Call it first thing in `main`,
/// before threads start. Whether it applied: `false` on another C library,
/// where it does nothing.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let arenas = libc::c_int::try_from(arenas()).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets malloc's parameters; every value is
        // within what glibc accepts (it returns 0 otherwise).
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, HEAP_ALLOCATIONS_BELOW as libc::c_int) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, KEPT_BYTES as libc::c_int) == 1
                && libc::mallopt(libc::M_ARENA_MAX, arenas) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_the_settings() {
        // mallopt returns 0 for a parameter or value it refuses (older
        // glibc caps M_MMAP_THRESHOLD at 32 MiB on 64-bit); the setting
        // must hold on the glibc this is built and tested on.
        assert!(super::keep_freed_memory());
    }
}
