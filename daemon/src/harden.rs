//! Process hardening: done once at start-up before any secret is read, and
//! an allocator that wipes every block it frees.
//!
//! - No core dumps: a core file would hold every cached secret.
//! - Not dumpable: other processes of the same user can no longer ptrace
//!   the agent or read its memory through /proc/<pid>/mem.
//!
//! Locking memory (mlock) is not attempted: mlockall(MCL_FUTURE) under the
//! usual 8 MiB RLIMIT_MEMLOCK makes later allocations fail, and with core
//! dumps off, swap is the remaining exposure, which an encrypted swap covers.

use nix::sys::resource::{Resource, setrlimit};

/// Applies what the platform allows; returns what could not be applied, for
/// the log.
pub fn harden() -> Vec<String> {
    let mut failed = Vec::new();
    if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, 0) {
        failed.push(format!("cannot disable core dumps: {e}"));
    }
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        failed.push(format!("cannot mark the process not dumpable: {e}"));
    }
    failed
}

/// The agent's allocator: the system's, except that every block is wiped
/// before it is freed or moved.
///
/// A secret passes through buffers the agent does not own: the HTTP
/// stack's header maps and write buffers, the D-Bus messages of the Secret
/// Service, decoding scratch space. Those buffers are freed without being
/// wiped, and freed memory keeps its bytes until reused. Wiping at the
/// allocator reaches every one of them, whoever allocated it, so that
/// once a token is removed (or the agent locked) no copy of its secret is
/// left in freed memory. The cost is one memset per free, measured in the
/// benchmark with the rest of the request path.
pub struct WipingAllocator;

// SAFETY: every method forwards to `System` with the layout it was given;
// the only addition is wiping `layout.size()` bytes of a block this
// allocator handed out and that the caller is giving back.
unsafe impl std::alloc::GlobalAlloc for WipingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded as given.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded as given.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` is a live block of `layout.size()` bytes (the
        // GlobalAlloc contract); explicit_bzero is not elided as a dead
        // store before free, as a plain memset may be.
        unsafe {
            libc::explicit_bzero(ptr.cast(), layout.size());
            std::alloc::System.dealloc(ptr, layout);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // Growing in place would be cheaper, but the system's realloc may
        // move the block and free the old one unwiped: always move by hand.
        // SAFETY: the new layout has the old alignment and a size the caller
        // vouches for (GlobalAlloc::realloc's contract); both blocks are
        // live while `min` bytes are copied, then the old one is wiped and
        // freed by `dealloc`.
        unsafe {
            let new_layout =
                std::alloc::Layout::from_size_align_unchecked(new_size, layout.align());
            let new = std::alloc::System.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}
