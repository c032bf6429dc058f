//! Running under systemd: a listening socket handed over by socket
//! activation, and readiness told through `NOTIFY_SOCKET`.
//!
//! Socket activation (`sd_listen_fds(3)`): the manager binds the socket,
//! starts the agent at the first connection with the socket as fd 3, and
//! says so in `LISTEN_PID` (our pid: the variables may have been inherited
//! by mistake from a parent that was activated itself) and `LISTEN_FDS`
//! (how many, from fd 3 on). The agent serves that socket as it is: it
//! checks it is a listening Unix stream socket, never unlinks it (it is
//! the manager's, and stays to start the next agent), and removes the
//! variables so that nothing it runs mistakes them for its own.
//!
//! Readiness (`sd_notify(3)`): one datagram to the Unix socket named by
//! `NOTIFY_SOCKET` (a path, or an abstract name written with a leading
//! `@`), `READY=1` once the store is open and the socket listens,
//! `STOPPING=1` when shutdown starts. Both are a few lines over `nix`,
//! which the agent already uses for its sockets; no library needed.
//!
//! [`inherited`] reads and clears the variables, so it must run before any
//! thread exists.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockType, SockaddrLike, UnixAddr, getsockname, getsockopt,
    sendto, socket, sockopt,
};

/// The first descriptor a manager passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// What the service manager handed this process.
#[derive(Debug, Default)]
pub struct Inherited {
    /// `LISTEN_*` named this process: the socket, or why it is unusable.
    pub listener: Option<Result<Activated, ActivationError>>,
    pub notify: Option<Notifier>,
}

/// A listening socket passed by socket activation.
#[derive(Debug)]
pub struct Activated {
    pub listener: UnixListener,
    /// Where it is bound, for `signet status` and the eval lines.
    pub path: PathBuf,
}

/// Why a socket passed by activation is not served.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error(
        "LISTEN_FDS is {0:?}: socket activation must pass exactly one socket (one ListenStream= in the socket unit)"
    )]
    Count(String),
    #[error(
        "the descriptor passed by socket activation (fd 3) is {0}; the socket unit must have one ListenStream= with a path"
    )]
    NotAListener(&'static str),
}

/// Reads `LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES` and `NOTIFY_SOCKET`,
/// and removes them from the environment.
///
/// # Safety
/// No other thread may exist: the environment is changed.
pub unsafe fn inherited() -> Inherited {
    let get = |k: &str| std::env::var_os(k);
    let (pid, fds, notify) = (get("LISTEN_PID"), get("LISTEN_FDS"), get("NOTIFY_SOCKET"));
    for k in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET"] {
        // SAFETY: the caller promises a single thread.
        unsafe { std::env::remove_var(k) };
    }
    let ours = pid
        .and_then(|p| p.to_str().and_then(|p| p.trim().parse::<u32>().ok()))
        .is_some_and(|p| p == std::process::id());
    Inherited {
        listener: if ours { Some(adopt(fds.unwrap_or_default())) } else { None },
        notify: notify.and_then(Notifier::new),
    }
}

fn adopt(fds: OsString) -> Result<Activated, ActivationError> {
    let text = fds.to_string_lossy().into_owned();
    if text.trim().parse::<u32>().ok() != Some(1) {
        return Err(ActivationError::Count(text));
    }
    // SAFETY: fd 3 is only looked at here, and taken below only once it is
    // known to be an open listening socket, which nothing else in this
    // process owns (the standard streams are 0-2; nothing opened before).
    let fd = unsafe { BorrowedFd::borrow_raw(LISTEN_FDS_START) };
    match getsockopt(&fd, sockopt::SockType) {
        Ok(SockType::Stream) => {}
        Ok(_) => return Err(ActivationError::NotAListener("not a stream socket")),
        Err(_) => return Err(ActivationError::NotAListener("not a socket")),
    }
    if !getsockopt(&fd, sockopt::AcceptConn).unwrap_or(false) {
        return Err(ActivationError::NotAListener("a socket that is not listening"));
    }
    let addr: UnixAddr = getsockname(fd.as_raw_fd())
        .map_err(|_| ActivationError::NotAListener("not a Unix socket"))?;
    if addr.family() != Some(AddressFamily::Unix) {
        return Err(ActivationError::NotAListener("not a Unix socket"));
    }
    let path = match (addr.path(), addr.as_abstract()) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(name)) => PathBuf::from(format!("@{}", String::from_utf8_lossy(name))),
        (None, None) => return Err(ActivationError::NotAListener("an unnamed Unix socket")),
    };
    // SAFETY: checked above to be an open socket; from here this is its one owner.
    let owned = unsafe { OwnedFd::from_raw_fd(LISTEN_FDS_START) };
    // Managers pass it without close-on-exec; nothing the agent runs needs it.
    let _ =
        nix::fcntl::fcntl(&owned, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    Ok(Activated { listener: UnixListener::from(owned), path })
}

/// Where to tell the service manager how the agent is doing.
#[derive(Debug)]
pub struct Notifier {
    addr: UnixAddr,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`: an absolute path, or `@name` for an abstract
    /// socket. Anything else is ignored, as `sd_notify` ignores it.
    fn new(value: OsString) -> Option<Notifier> {
        let bytes = value.as_bytes();
        let addr = match bytes.first() {
            Some(b'/') => UnixAddr::new(bytes).ok()?,
            Some(b'@') => UnixAddr::new_abstract(&bytes[1..]).ok()?,
            _ => return None,
        };
        Some(Notifier { addr })
    }

    /// Sends `state` (`READY=1`, `STOPPING=1`, ...). A manager that is gone
    /// or slow costs nothing: the datagram is sent without blocking, once.
    pub fn send(&self, state: &str) {
        let sent = socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .and_then(|s| sendto(s.as_raw_fd(), state.as_bytes(), &self.addr, MsgFlags::MSG_NOSIGNAL));
        if let Err(e) = sent {
            tracing::warn!(error = %e, state, "cannot notify the service manager");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_socket_names_a_path_or_an_abstract_socket_only() {
        assert!(Notifier::new("/run/user/1/systemd/notify".into()).is_some());
        let a = Notifier::new("@/org/freedesktop/systemd1/notify/1".into()).unwrap();
        assert_eq!(a.addr.as_abstract(), Some(&b"/org/freedesktop/systemd1/notify/1"[..]));
        assert!(Notifier::new("relative/path".into()).is_none());
        assert!(Notifier::new("".into()).is_none());
    }

    #[test]
    fn a_notification_reaches_a_datagram_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        Notifier::new(path.into_os_string()).unwrap().send("READY=1");
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
