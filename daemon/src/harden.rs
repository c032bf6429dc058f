//! Process hardening, done once at start-up before any secret is read.
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
