//! What glibc's malloc does with a buffer's memory once it is freed, as
//! `spillway` sets it (`spillway_transforms::memory::keep_freed_memory`):
//! a read block (1 MiB) is kept in the heap for the next buffer, and an
//! allocation the size of a buffer's record list (about 20 MB at 64 MB
//! buffers of 440-byte records) goes back to the kernel. Kept in the heap,
//! the large ones left holes that the next, slightly larger one did not
//! fit, and a long run's peak RSS grew with its length (issue #17: 311
//! against 219 MiB for 1 GB against 200 MB of the same records).
//!
//! One test in its own binary (its own process): nothing else allocates
//! while it reads the process's resident memory. glibc on Linux only: the
//! settings are glibc's.

#![cfg(all(target_os = "linux", target_env = "gnu"))]

#[test]
fn a_buffer_sized_allocation_goes_back_to_the_kernel_and_a_read_block_stays_for_reuse() {
    use spillway_transforms::memory::{keep_freed_memory, HEAP_ALLOCATIONS_BELOW};

    const MIB: usize = 1024 * 1024;
    assert!(keep_freed_memory(), "glibc takes the settings");

    // A record list's size: mapped on its own, and unmapped when freed.
    let list_bytes = 16 * MIB;
    assert!(list_bytes >= HEAP_ALLOCATIONS_BELOW);
    let (rss_before, mapped_before) = (rss(), mapped());
    let list = touched(list_bytes);
    let (rss_held, mapped_held) = (rss(), mapped());
    assert!(
        mapped_held >= mapped_before + list_bytes,
        "a {list_bytes}-byte allocation is mapped on its own: {mapped_before} then {mapped_held} bytes mapped"
    );
    assert!(
        rss_held >= rss_before + list_bytes * 9 / 10,
        "its pages are resident while held"
    );
    drop(list);
    let rss_freed = rss();
    assert!(
        rss_freed + list_bytes * 9 / 10 <= rss_held,
        "freed, its pages go back to the kernel: resident {rss_held} bytes held, {rss_freed} freed"
    );
    assert_eq!(mapped(), mapped_before);

    // A read block's size: from the heap, and kept there when freed, so
    // that the next buffer's blocks reuse its pages.
    let block_bytes = MIB;
    assert!(block_bytes < HEAP_ALLOCATIONS_BELOW);
    let blocks: Vec<Vec<u8>> = (0..8).map(|_| touched(block_bytes)).collect();
    assert_eq!(mapped(), mapped_before, "read blocks come from the heap");
    let rss_blocks = rss();
    drop(blocks);
    assert!(
        rss() + MIB >= rss_blocks,
        "freed blocks stay resident for reuse: {rss_blocks} bytes, then {}",
        rss()
    );
    let again: Vec<Vec<u8>> = (0..8).map(|_| touched(block_bytes)).collect();
    assert!(
        rss() <= rss_blocks + MIB,
        "the next blocks reuse the freed ones: {rss_blocks} bytes, then {}",
        rss()
    );
    drop(again);
}

/// `bytes` of memory, every page written.
fn touched(bytes: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes);
    v.resize(bytes, 1u8);
    std::hint::black_box(v)
}

/// Bytes malloc has mapped on their own (allocations not in a heap).
fn mapped() -> usize {
    // SAFETY: mallinfo2 only reads malloc's statistics.
    unsafe { libc::mallinfo2() }.hblkhd
}

/// The process's resident memory, in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("a VmRSS line");
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}
