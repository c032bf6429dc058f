//! Bodies read from, and written to, a file the client passed by its
//! descriptor, so that a large request or response body never crosses the
//! client's socket: the agent reads the upload from the client's file and
//! writes the download into the client's output, each byte copied once,
//! as curl copies it.
//!
//! Only a regular file, or `/dev/null` for output, is taken: reading or
//! writing either never waits on another process, so the thread that does
//! it always finishes. A pipe, a socket or a terminal could block it
//! forever, and goes through the socket instead. The descriptor carries
//! its own access rights and comes from a peer of the agent's own uid, so
//! the agent can do nothing with it that the client could not.
//!
//! Each transfer has its own thread, so a slow disk stalls no other
//! connection; the thread ends with the transfer, or when its channel
//! closes because the exchange was abandoned.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use bytes::Bytes;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::stat::{SFlag, fstat};
use tokio::sync::{mpsc, oneshot};

/// Bytes read from a body file at a time: the size of a chunk frame, so
/// that the HTTP client sends what it is given in large writes.
const READ_CHUNK: usize = 256 * 1024;

/// Stack for a transfer thread: it only loops over read or write calls.
const THREAD_STACK: usize = 256 * 1024;

/// `/dev/null`'s device number (Linux's devices.txt: char major 1, minor 3).
const DEV_NULL: (u64, u64) = (1, 3);

fn is_dev_null(st: &nix::sys::stat::FileStat) -> bool {
    let rdev = st.st_rdev;
    (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev)) == DEV_NULL
}

/// What a passed descriptor may be used for, from its type and open mode.
fn usable(fd: &OwnedFd, write: bool) -> Result<(), &'static str> {
    let st = fstat(fd).map_err(|_| "it cannot be examined")?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let file_kind = kind == SFlag::S_IFREG || (write && kind == SFlag::S_IFCHR && is_dev_null(&st));
    if !file_kind {
        return Err(if write {
            "it is not a regular file or /dev/null"
        } else {
            "it is not a regular file"
        });
    }
    let mode = OFlag::from_bits_truncate(
        fcntl(fd, FcntlArg::F_GETFL).map_err(|_| "its mode cannot be read")?,
    ) & OFlag::O_ACCMODE;
    let fits =
        mode == OFlag::O_RDWR || mode == if write { OFlag::O_WRONLY } else { OFlag::O_RDONLY };
    if !fits {
        return Err(if write {
            "it is not open for writing"
        } else {
            "it is not open for reading"
        });
    }
    Ok(())
}

/// Starts reading a request body from `fd`, from its offset to its end,
/// into `tx` in chunks; an error goes into `tx` too, which makes the HTTP
/// client abandon the body. `Err` says why the descriptor is refused.
pub fn read_body(fd: OwnedFd, tx: mpsc::Sender<io::Result<Bytes>>) -> Result<(), &'static str> {
    usable(&fd, false)?;
    let file = File::from(fd);
    spawn("signet-body-in", move || {
        loop {
            match read_chunk(&file) {
                Ok(b) if b.is_empty() => break,
                Ok(b) => {
                    if tx.blocking_send(Ok(b)).is_err() {
                        // The exchange is over; stop reading.
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    })
    .map_err(|_| "no thread could be started to read it")
}

/// Up to [`READ_CHUNK`] bytes from `file`, read straight into the buffer
/// that goes upstream; empty at the end of the file.
fn read_chunk(file: &File) -> io::Result<Bytes> {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let n = loop {
        // SAFETY: read(2) writes at most `capacity` bytes at the pointer,
        // which is the start of this Vec's own allocation of that size.
        let n = unsafe { libc::read(file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.capacity()) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    // SAFETY: the kernel initialised exactly `n` bytes, n <= capacity.
    unsafe { buf.set_len(n) };
    Ok(Bytes::from(buf))
}

/// A response body on its way into a client's file, written by a thread
/// of its own.
pub struct Sink {
    tx: mpsc::Sender<Bytes>,
    done: oneshot::Receiver<io::Result<()>>,
}

impl Sink {
    /// A sink for `fd`, or why it is not taken (the caller then sends the
    /// body through the socket).
    pub fn new(fd: OwnedFd) -> Result<Sink, &'static str> {
        usable(&fd, true)?;
        let mut file = File::from(fd);
        let (tx, mut rx) = mpsc::channel::<Bytes>(4);
        let (done_tx, done) = oneshot::channel();
        spawn("signet-body-out", move || {
            let mut result = Ok(());
            while let Some(b) = rx.blocking_recv() {
                if let Err(e) = file.write_all(&b) {
                    result = Err(e);
                    break;
                }
            }
            let _ = done_tx.send(result);
        })
        .map_err(|_| "no thread could be started to write it")?;
        Ok(Sink { tx, done })
    }

    /// Hands `bytes` to the writing thread; waits while it is behind.
    pub async fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        if self.tx.send(bytes).await.is_err() {
            // The thread stopped at an error; `finish` says which.
            return Err(io::Error::other("the writer stopped"));
        }
        Ok(())
    }

    /// Waits for everything handed over to be written; the first write
    /// error, if any.
    pub async fn finish(self) -> io::Result<()> {
        drop(self.tx);
        self.done.await.unwrap_or_else(|_| Err(io::Error::other("the writer thread ended early")))
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    std::thread::Builder::new().name(name.into()).stack_size(THREAD_STACK).spawn(f).map(drop)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::fd::OwnedFd;

    use super::*;

    fn fd_of(f: File) -> OwnedFd {
        OwnedFd::from(f)
    }

    #[test]
    fn a_file_open_for_writing_or_dev_null_is_taken_for_output() {
        let t = tempfile::tempfile().unwrap();
        assert_eq!(usable(&fd_of(t), true), Ok(()));
        let null = std::fs::OpenOptions::new().write(true).open("/dev/null").unwrap();
        assert_eq!(usable(&fd_of(null), true), Ok(()));
    }

    #[test]
    fn pipes_other_devices_and_the_wrong_mode_are_refused() {
        let (r, w) = nix::unistd::pipe().unwrap();
        assert_eq!(usable(&w, true), Err("it is not a regular file or /dev/null"));
        assert_eq!(usable(&r, false), Err("it is not a regular file"));
        let zero = std::fs::OpenOptions::new().write(true).open("/dev/zero").unwrap();
        assert_eq!(usable(&fd_of(zero), true), Err("it is not a regular file or /dev/null"));
        let null = File::open("/dev/null").unwrap();
        assert_eq!(usable(&fd_of(null), false), Err("it is not a regular file"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        let ro = File::open(&p).unwrap();
        assert_eq!(usable(&fd_of(ro), true), Err("it is not open for writing"));
        let wo = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        assert_eq!(usable(&fd_of(wo), false), Err("it is not open for reading"));
    }

    #[tokio::test]
    async fn a_body_is_read_from_the_files_offset_to_its_end_in_chunks() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..READ_CHUNK * 2 + 77).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        f.seek(SeekFrom::Start(5)).unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        read_body(fd_of(f), tx).unwrap();
        let mut got = Vec::new();
        let mut chunks = 0;
        while let Some(item) = rx.recv().await {
            let b = item.unwrap();
            assert!(b.len() <= READ_CHUNK);
            got.extend_from_slice(&b);
            chunks += 1;
        }
        assert_eq!(got, data[5..]);
        assert!(chunks >= 3, "{chunks} chunks");
    }

    #[tokio::test]
    async fn a_sink_writes_everything_at_the_files_offset() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"head\n").unwrap();
        let mut sink = Sink::new(fd_of(f.try_clone().unwrap())).unwrap();
        for part in [&b"one "[..], b"two ", b"three"] {
            sink.write(Bytes::copy_from_slice(part)).await.unwrap();
        }
        sink.finish().await.unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "head\none two three");
    }
}
