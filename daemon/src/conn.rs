//! One client connection on the event loop: reads and writes its frames
//! (a held connection on a thread of its own is read in `blocking.rs`).
//!
//! It knows frames, timeouts, the `Hello` handshake and body streams; it
//! knows nothing of tokens (the commands do). What it
//! guarantees:
//! - a peer waits for a frame's length at most the idle timeout, and for the
//!   rest of a frame at most the frame timeout, so a slow or idle client
//!   costs one connection slot for a bounded time;
//! - an oversized or garbage length prefix gets an error and a close (the
//!   stream is out of step), a body that does not decode gets an error and
//!   the connection carries on (it was exactly `len` bytes, so the stream is
//!   still in step);
//! - once shutdown begins, no new request is read;
//! - a file descriptor is taken only where one is due, on its own byte,
//!   and never from among buffered bytes.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use bytes::Bytes;
use bytes::BytesMut;
use signet_proto::codec::{CodecError, decode};
use signet_proto::frame::{
    FrameError, chunk_data, chunk_head, read_body_async, read_prefix_async, write_frame_async,
};
use signet_proto::{
    ErrorCode, Failure, MAX_CHUNK, PROTOCOL_VERSION, Request, Response, agent_version_string,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, Interest};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};

use crate::config::Config;

/// What ended a connection, for the debug log.
#[derive(Debug)]
pub enum Closed {
    Peer,
    Idle,
    Shutdown,
    Error(String),
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::Peer => f.write_str("closed by the client"),
            Closed::Idle => f.write_str("idle timeout"),
            Closed::Shutdown => f.write_str("agent shutting down"),
            Closed::Error(e) => f.write_str(e),
        }
    }
}

/// One piece of a request body on its way upstream; an error tells the
/// HTTP client to abandon the body.
pub type BodyItem = Result<Bytes, std::io::Error>;

fn protocol_failure(msg: impl Into<String>) -> Response {
    Response::Failure(Failure::new(ErrorCode::Protocol, msg))
}

/// The answer to a length prefix over the limit. The stream is out of
/// step after it, so the connection closes.
pub fn malformed_frame(e: &FrameError) -> Response {
    protocol_failure(format!("malformed frame: {e}"))
}

/// The answer to a frame that does not decode. It was exactly its length,
/// so the connection carries on.
pub fn malformed_request(e: &CodecError) -> Response {
    protocol_failure(format!(
        "malformed request: {e}; is the client the same version as the agent?"
    ))
}

/// The answer to a connection's first frame, which must be a `Hello` of
/// this protocol version, and whether the connection goes on after it. A
/// version mismatch is answered with a failure that names both versions.
pub fn greeting(first: Result<Request, Response>) -> (Response, Result<(), Closed>) {
    match first {
        Ok(Request::Hello { version, .. }) if version == PROTOCOL_VERSION => {
            let hello = Response::Hello {
                version: PROTOCOL_VERSION,
                software: agent_version_string("signet-agent"),
            };
            (hello, Ok(()))
        }
        Ok(Request::Hello { version, software }) => {
            let f = Failure::new(
                ErrorCode::Protocol,
                format!(
                    "protocol version mismatch: the client ({}) speaks version {version}, this agent ({}) speaks version {PROTOCOL_VERSION}",
                    software.escape_debug(),
                    agent_version_string("signet-agent")
                ),
            )
            .with_hint("use a signet client of the same release as the agent, or restart the agent");
            (Response::Failure(f), Err(Closed::Error(format!("version mismatch ({version})"))))
        }
        Ok(_) => (
            protocol_failure("expected Hello as the first message"),
            Err(Closed::Error("no Hello".into())),
        ),
        Err(answer) => (answer, Err(Closed::Error("malformed Hello".into()))),
    }
}

async fn write<W: AsyncWrite + Unpin>(
    w: &mut W,
    timeout: Duration,
    resp: &Response,
) -> Result<(), Closed> {
    match tokio::time::timeout(timeout, write_frame_async(w, resp)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Closed::Error(format!("write: {e}"))),
        Err(_) => Err(Closed::Error("write timed out".into())),
    }
}

/// Sends one failure frame on a connection the agent will not serve (a
/// refused peer, a full house), bounded by `timeout`; the caller closes it.
pub async fn refuse<W: AsyncWrite + Unpin>(stream: &mut W, f: Failure, timeout: Duration) {
    let _ = write(stream, timeout, &Response::Failure(f)).await;
}

/// A client connection, its reads buffered: a small frame costs one read
/// syscall. The halves are apart so that a streamed exchange can read and
/// write at once, and the reading half can still reach the socket to take
/// a file descriptor the client passes.
pub struct Conn {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    frame_timeout: Duration,
    idle_timeout: Duration,
    shutdown: watch::Receiver<bool>,
}

/// Resolves once shutdown has begun. Returns nothing, so no borrow of the
/// channel is held across another branch's await.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

impl Conn {
    pub fn new(stream: UnixStream, config: &Config, shutdown: watch::Receiver<bool>) -> Self {
        let (rd, wr) = stream.into_split();
        Conn {
            rd: BufReader::with_capacity(64 * 1024, rd),
            wr,
            frame_timeout: config.frame_timeout(),
            idle_timeout: config.idle_timeout(),
            shutdown,
        }
    }

    /// Sends one response frame.
    pub async fn send(&mut self, resp: &Response) -> Result<(), Closed> {
        write(&mut self.wr, self.frame_timeout, resp).await
    }

    /// Reads one request: waits for a length prefix at most `wait` (or until
    /// shutdown), then for the body at most the frame timeout. The inner
    /// `Err` is an answer to send for a frame that did not decode.
    async fn read(&mut self, wait: Duration) -> Result<Result<Request, Response>, Closed> {
        let len = tokio::select! {
            r = tokio::time::timeout(wait, read_prefix_async(&mut self.rd)) => match r {
                Err(_) => return Err(Closed::Idle),
                Ok(Err(FrameError::Closed)) => return Err(Closed::Peer),
                Ok(Err(e @ FrameError::TooLarge(_))) => {
                    // The stream is out of step now: say why, then close.
                    let _ = self.send(&malformed_frame(&e)).await;
                    return Err(Closed::Error(e.to_string()));
                }
                Ok(Err(e)) => return Err(Closed::Error(e.to_string())),
                Ok(Ok(len)) => len,
            },
            _ = stopped(&mut self.shutdown) => return Err(Closed::Shutdown),
        };
        match tokio::time::timeout(
            self.frame_timeout,
            read_body_async::<_, Request>(&mut self.rd, len),
        )
        .await
        {
            Err(_) => Err(Closed::Error("frame body timed out".into())),
            Ok(Ok(req)) => Ok(Ok(req)),
            Ok(Err(FrameError::Codec(e))) => Ok(Err(malformed_request(&e))),
            Ok(Err(e)) => Err(Closed::Error(e.to_string())),
        }
    }

    /// The `Hello` exchange, which must come first and promptly.
    pub async fn handshake(&mut self) -> Result<(), Closed> {
        let first = self.read(self.frame_timeout).await?;
        let (answer, next) = greeting(first);
        self.send(&answer).await?;
        next
    }

    /// What tells the connection that the agent is shutting down.
    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// Whether nothing the client sent is waiting in the buffer.
    pub fn drained(&self) -> bool {
        self.rd.buffer().is_empty()
    }

    /// The socket itself, for a connection that moves off the runtime. Only
    /// when [`drained`](Self::drained): buffered bytes would be lost.
    pub fn into_std(self) -> std::io::Result<std::os::unix::net::UnixStream> {
        let stream = self.rd.into_inner().reunite(self.wr).map_err(std::io::Error::other)?;
        stream.into_std()
    }

    /// The next request, waiting at most the idle timeout for it to start.
    pub async fn next_request(&mut self) -> Result<Result<Request, Response>, Closed> {
        self.read(self.idle_timeout).await
    }

    /// Waits, reading nothing, until the client closes the connection or
    /// the agent begins to shut down: for a request whose effect lasts as
    /// long as the connection (a tied proxy). The idle timeout does not
    /// apply, and any byte the client sends is a protocol error.
    pub async fn held(&mut self) -> Closed {
        let mut byte = [0u8; 1];
        tokio::select! {
            r = self.rd.read(&mut byte) => match r {
                Ok(0) => Closed::Peer,
                Ok(_) => Closed::Error("the client sent data on a held connection".into()),
                Err(e) => Closed::Error(format!("read: {e}")),
            },
            _ = stopped(&mut self.shutdown) => Closed::Shutdown,
        }
    }

    /// The two directions of a streamed exchange, usable at once: the
    /// request body comes in while the response goes out.
    pub fn streams(&mut self) -> (BodyIn<'_>, BodyOut<'_>) {
        (
            BodyIn { rd: &mut self.rd, idle: self.idle_timeout },
            BodyOut { wr: &mut self.wr, timeout: self.frame_timeout },
        )
    }
}

/// The reading half of a streamed exchange.
pub struct BodyIn<'a> {
    rd: &'a mut BufReader<OwnedReadHalf>,
    idle: Duration,
}

impl BodyIn<'_> {
    /// Reads the client's body frames until `BodyEnd`, feeding them to `tx`.
    /// It keeps reading after the receiver has gone (the upstream side
    /// stopped listening), so the client is never left blocked on a write
    /// and the connection stays in step.
    pub async fn forward(&mut self, tx: mpsc::Sender<BodyItem>) -> Result<(), Closed> {
        loop {
            let frame = tokio::time::timeout(self.idle, read_raw(&mut self.rd)).await;
            let frame = match frame {
                Err(_) => return Err(Closed::Error("request body timed out".into())),
                Ok(Err(e)) => {
                    let _ = tx.send(Err(std::io::Error::other("client stopped sending"))).await;
                    return Err(Closed::Error(format!("reading the request body: {e}")));
                }
                Ok(Ok(f)) => f,
            };
            // The body's bytes go upstream where they were read, uncopied.
            if let Some(data) = chunk_data::<Request>(&frame) {
                // A closed receiver means the upstream exchange is over; drain.
                let _ = tx.send(Ok(frame.freeze().slice(data))).await;
                continue;
            }
            match decode::<Request>(&frame) {
                Ok(Request::BodyEnd) => return Ok(()),
                _ => {
                    let _ = tx.send(Err(std::io::Error::other("malformed body"))).await;
                    return Err(Closed::Error(
                        "expected a body chunk or the end of the body".into(),
                    ));
                }
            }
        }
    }
}

/// Reads one frame's body undecoded, into a buffer that is not zeroed
/// first: a request body's bytes are read where they will be sent from.
async fn read_raw<R: AsyncRead + Unpin>(r: &mut R) -> Result<BytesMut, FrameError> {
    let len = read_prefix_async(r).await?;
    let mut body = BytesMut::with_capacity(len);
    while body.len() < len {
        let want = len - body.len();
        if (&mut *r).take(want as u64).read_buf(&mut body).await? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
    Ok(body)
}

impl BodyIn<'_> {
    /// Takes the one byte a client sends to pass a file descriptor (or to
    /// pass none), waiting at most the idle timeout; the descriptor, if one
    /// came. The byte must be the next thing on the connection: a client
    /// that sent anything before it is out of step.
    pub async fn take_fd(&mut self) -> Result<Option<OwnedFd>, Closed> {
        if !self.rd.buffer().is_empty() {
            return Err(Closed::Error("the client sent data where a descriptor was due".into()));
        }
        let sock: &UnixStream = self.rd.get_ref().as_ref();
        let taken = sock.async_io(Interest::READABLE, || recv_fd(sock.as_raw_fd()));
        match tokio::time::timeout(self.idle, taken).await {
            Err(_) => Err(Closed::Error("no descriptor came in time".into())),
            Ok(Ok(None)) => Err(Closed::Peer),
            Ok(Ok(Some(fd))) => Ok(fd),
            Ok(Err(e)) => Err(Closed::Error(format!("read: {e}"))),
        }
    }

    /// Waits until the client goes away while its response is on the way,
    /// so that the caller can abandon the upstream call instead of holding
    /// a connection slot for a client that no longer listens. A client
    /// sends nothing while it waits for a response, so any byte is a
    /// protocol error.
    pub async fn until_closed(&mut self) -> Closed {
        let mut byte = [0u8; 1];
        match self.rd.read(&mut byte).await {
            Ok(0) => Closed::Peer,
            Ok(_) => Closed::Error("the client sent data while its response was on the way".into()),
            Err(e) => Closed::Error(format!("read: {e}")),
        }
    }
}

/// Reads one byte from a Unix socket without waiting, with room for one
/// passed descriptor: `None` at the end of the stream, else the descriptor
/// that came with the byte, if any. Any more descriptors in the same
/// message are closed by the kernel (the control buffer holds one), and
/// those taken here are close-on-exec.
fn recv_fd(sock: RawFd) -> std::io::Result<Option<Option<OwnedFd>>> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(RawFd);
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC;
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), flags)
        .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
    if msg.bytes == 0 {
        return Ok(None);
    }
    let mut taken = None;
    for cmsg in msg.cmsgs().map_err(|e| std::io::Error::from_raw_os_error(e as i32))? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for fd in fds {
                // SAFETY: the kernel installed `fd` in this process for us
                // alone; wrapping it makes sure it is closed exactly once.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                taken.get_or_insert(owned);
            }
        }
    }
    Ok(Some(taken))
}

/// The writing half of a streamed exchange.
pub struct BodyOut<'a> {
    wr: &'a mut OwnedWriteHalf,
    timeout: Duration,
}

impl BodyOut<'_> {
    pub async fn send(&mut self, resp: &Response) -> Result<(), Closed> {
        write(&mut self.wr, self.timeout, resp).await
    }

    /// Sends `bytes` as body chunk frames of at most [`MAX_CHUNK`] bytes,
    /// each written as its head and then the bytes where they lie: a body
    /// is never copied into a message.
    pub async fn body(&mut self, bytes: &[u8]) -> Result<(), Closed> {
        for piece in bytes.chunks(MAX_CHUNK) {
            let head = chunk_head::<Response>(piece.len())
                .map_err(|e| Closed::Error(format!("write: {e}")))?;
            let wr = &mut self.wr;
            let sent = async {
                wr.write_all(&head).await?;
                wr.write_all(piece).await?;
                wr.flush().await
            };
            match tokio::time::timeout(self.timeout, sent).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(Closed::Error(format!("write: {e}"))),
                Err(_) => return Err(Closed::Error("write timed out".into())),
            }
        }
        Ok(())
    }
}
