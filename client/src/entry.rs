//! The C entry point of `signet`, and what std's runtime start-up would
//! otherwise do before `main`.

use std::ffi::{CStr, OsString, c_char, c_int};
use std::io::Write;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStringExt;

use clap::Parser;
use nix::fcntl::FcntlArg;

use crate::{Cli, Failed, cmd, report, run};

/// The process's entry point, called by the C runtime.
///
/// # Safety
/// `argv` holds `argc` pointers to NUL-terminated strings, as the C
/// runtime guarantees.
// The test harness brings its own `main`; this one is then never called.
#[cfg_attr(not(test), unsafe(no_mangle))]
#[cfg_attr(test, allow(dead_code))]
extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    prepare_process();
    // SAFETY: the C runtime's argument vector, as documented above.
    let args: Vec<OsString> = (0..usize::try_from(argc).unwrap_or(0))
        .map(|i| unsafe { *argv.add(i) })
        .take_while(|p| !p.is_null())
        .map(|p| OsString::from_vec(unsafe { CStr::from_ptr(p) }.to_bytes().to_vec()))
        .collect();
    let result = match cmd::http::SignArgs::plain(args.iter().skip(1).cloned()) {
        // The hot path of wrapper scripts, `signet sign NAME [METHOD] URL`,
        // skips building clap's whole command tree: a third of the
        // client's start-up. Anything else, `--help` included, is clap's.
        Some(a) => cmd::http::sign(None, a),
        None => run(Cli::parse_from(args)),
    };
    // std's runtime would flush stdout at exit; the C runtime's exit does not.
    let flushed = std::io::stdout().lock().flush();
    match result {
        Err(f) => {
            report(&f);
            u8::try_from(f.code).map_or(1, c_int::from)
        }
        Ok(()) if flushed.is_err() => {
            report(&Failed { code: 1, message: "cannot write to stdout".into(), hint: None });
            1
        }
        Ok(()) => 0,
    }
}

/// What std's runtime start-up does that this program relies on: a write
/// to a closed pipe is an error to report, not a silent death by SIGPIPE,
/// and descriptors 0 to 2 are open, so that no file or socket this
/// program opens can become its stdout and receive what is printed there.
fn prepare_process() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: ignoring a signal installs no handler code; nothing else
    // touches signal dispositions in this single-threaded program.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) };
    for fd in 0..=2 {
        // SAFETY: F_GETFD only asks whether the descriptor is open.
        let closed = nix::fcntl::fcntl(unsafe { BorrowedFd::borrow_raw(fd) }, FcntlArg::F_GETFD)
            == Err(nix::errno::Errno::EBADF);
        if closed {
            // The lowest free descriptor is `fd`: /dev/null takes its place.
            match std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
                Ok(f) => std::mem::forget(f),
                Err(_) => std::process::abort(),
            }
        }
    }
}
