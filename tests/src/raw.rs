//! Talking to the agent below the client library: raw bytes and frames, for
//! the tests that feed it bad input, and connecting as another uid.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use signet_proto::frame::{read_frame, write_frame};
use signet_proto::{PROTOCOL_VERSION, Request, Response};

/// A connection with a read timeout, so a test never hangs on a bug.
pub fn connect(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s
}

/// A connection past the handshake.
pub fn hello(path: &Path) -> UnixStream {
    let mut s = connect(path);
    write_frame(&mut s, &Request::Hello { version: PROTOCOL_VERSION, software: "raw".into() })
        .expect("write hello");
    match read_frame::<_, Response>(&mut s).expect("read hello") {
        Response::Hello { version, .. } => assert_eq!(version, PROTOCOL_VERSION),
        other => panic!("expected Hello, got {other:?}"),
    }
    s
}

pub fn send(s: &mut UnixStream, req: &Request) {
    write_frame(s, req).expect("write frame");
}

pub fn recv(s: &mut UnixStream) -> Response {
    read_frame(s).expect("read frame")
}

pub fn send_bytes(s: &mut UnixStream, bytes: &[u8]) {
    s.write_all(bytes).expect("write");
}

/// True when the peer has closed the connection (EOF within the timeout).
pub fn closed(s: &mut UnixStream) -> bool {
    let mut b = [0u8; 1];
    // Closing with unread input makes the kernel report a reset, not EOF.
    match s.read(&mut b) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

/// Connects to `path` as `uid` (effective), from a thread whose
/// credentials alone are changed, and returns the first response frame and
/// whether the agent then closed. Needs root: the real uid stays 0 so the
/// fs uid can stay 0 and reach a 0700 directory, while SO_PEERCRED (which
/// records the effective uid) reports `uid`. Raw syscalls act on the calling
/// thread only; glibc's wrappers would change every thread of the test.
pub fn connect_as_uid(path: &Path, uid: u32) -> Result<(Response, bool), String> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        // SAFETY: plain syscalls on this thread's credentials.
        let r = unsafe { libc::syscall(libc::SYS_setresuid, 0u32, uid, 0u32) };
        if r != 0 {
            return Err(format!("setresuid: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: as above; setfsuid returns the previous fsuid.
        unsafe { libc::syscall(libc::SYS_setfsuid, 0u32) };
        let mut s = UnixStream::connect(&path).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
        // The agent answers before reading anything: it refuses by identity.
        let resp = read_frame::<_, Response>(&mut s).map_err(|e| format!("read: {e}"))?;
        let closed = closed(&mut s);
        Ok((resp, closed))
    })
    .join()
    .map_err(|_| "thread panicked".to_string())?
}

/// Sends the one byte by which a client passes a file descriptor to the
/// agent (`PerformRequest.body_fd`, `response_fd`), or passes none.
pub fn send_fd(s: &UnixStream, fd: Option<std::os::fd::BorrowedFd<'_>>) {
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let raw = fd.map(|f| [f.as_raw_fd()]);
    let cmsg: Vec<ControlMessage<'_>> = raw.iter().map(|r| ControlMessage::ScmRights(r)).collect();
    let sent = sendmsg::<()>(
        s.as_raw_fd(),
        &[std::io::IoSlice::new(&[0u8])],
        &cmsg,
        MsgFlags::empty(),
        None,
    )
    .expect("sendmsg");
    assert_eq!(sent, 1);
}
