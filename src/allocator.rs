//! The process's allocator: mimalloc in the jq workers (`spillway
//! jq-worker`), glibc's malloc everywhere else.
//!
//! Why: a jq worker parses every record into jaq values (a map and a
//! string per field), runs the programs on them and frees them all,
//! hundreds of thousands of times a second; glibc's malloc and free were
//! about a fifth of the workers' time (issue #18, speed), and mimalloc's
//! thread-local free lists take most of that off. The pipeline process
//! keeps glibc's malloc, tuned by
//! [`spillway_transforms::memory::keep_freed_memory`]: with mimalloc it
//! held more memory than the memory-bound tests allow (113 MiB against 69
//! MiB under `tests/archive_s3.rs`'s bound of 96).
//!
//! One binary serves both, so the choice is made at run time, once, at
//! the process's first allocation (before `main`, before any thread), from
//! its command line: every block is freed by the allocator that made it,
//! since the choice never changes afterwards.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

use mimalloc::MiMalloc;

/// Not chosen yet.
const UNKNOWN: u8 = 0;
const GLIBC: u8 = 1;
const MIMALLOC: u8 = 2;

static CHOSEN: AtomicU8 = AtomicU8::new(UNKNOWN);

/// glibc's malloc, or mimalloc in a jq worker (see the module).
pub struct Allocator;

impl Allocator {
    #[inline]
    fn mimalloc(&self) -> bool {
        match CHOSEN.load(Ordering::Relaxed) {
            UNKNOWN => choose() == MIMALLOC,
            chosen => chosen == MIMALLOC,
        }
    }
}

/// Chooses once: the first choice stored is the one every later call
/// sees, even if two threads got here at the same time.
#[cold]
fn choose() -> u8 {
    let chosen = if is_jq_worker() { MIMALLOC } else { GLIBC };
    match CHOSEN.compare_exchange(UNKNOWN, chosen, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => chosen,
        Err(already) => already,
    }
}

/// Whether this process was started as `spillway jq-worker` (as
/// `processor::jq::worker` starts them): its first argument. Read from
/// `/proc/self/cmdline` into a buffer on the stack, since nothing may be
/// allocated before the choice; anything unreadable means no.
fn is_jq_worker() -> bool {
    #[cfg(target_os = "linux")]
    {
        const WORKER: &[u8] = b"jq-worker";
        let mut cmdline = [0u8; 4096];
        // SAFETY: a NUL-terminated path; the descriptor is closed below.
        let fd = unsafe { libc::open(c"/proc/self/cmdline".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return false;
        }
        let mut filled = 0;
        while filled < cmdline.len() {
            // SAFETY: reads into the unfilled part of the buffer only.
            let read = unsafe { libc::read(fd, cmdline[filled..].as_mut_ptr().cast(), cmdline.len() - filled) };
            if read <= 0 {
                break;
            }
            filled += read as usize;
        }
        // SAFETY: the descriptor opened above, closed once.
        unsafe { libc::close(fd) };
        let mut args = cmdline[..filled].split(|b| *b == 0);
        args.next(); // the binary
        args.next() == Some(WORKER)
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

// SAFETY: each call goes to the allocator chosen once for the whole
// process, so a block is always freed or resized by the one that made it;
// both allocators meet `GlobalAlloc`'s contract.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.mimalloc() {
            MiMalloc.alloc(layout)
        } else {
            System.alloc(layout)
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if self.mimalloc() {
            MiMalloc.alloc_zeroed(layout)
        } else {
            System.alloc_zeroed(layout)
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.mimalloc() {
            MiMalloc.dealloc(ptr, layout)
        } else {
            System.dealloc(ptr, layout)
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if self.mimalloc() {
            MiMalloc.realloc(ptr, layout, new_size)
        } else {
            System.realloc(ptr, layout, new_size)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_binary_is_not_a_jq_worker() {
        assert!(!is_jq_worker());
    }
}
