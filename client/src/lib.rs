//! A small synchronous client for signet-agent.
//!
//! ```no_run
//! let mut c = signet_client::Client::connect(None)?;
//! for t in c.list()? {
//!     println!("{} {}", t.name, t.url);
//! }
//! # Ok::<(), signet_client::ClientError>(())
//! ```
//!
//! The agent is found through `SIGNET_AUTH_SOCK` (or an explicit path),
//! exactly as ssh-agent's clients find `SSH_AUTH_SOCK`. No async runtime:
//! a call is a blocking write and read on a Unix socket. Every error maps to
//! one of the exit codes of the `signet` command ([`ClientError::exit_code`]).

use std::io::{self, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use signet_proto::frame::{FrameError, encode_frame, read_frame, write_frame};
pub use signet_proto::{
    AccountInfo, AddToken, Chunk, ErrorCode, Failure, ImportOutcome, LifecycleOp, MAX_CHUNK,
    MaasLogin, PROTOCOL_VERSION, PerformRequest, Request, Response, ResponseHead, Secret,
    ServerToken, Service, SignRequest, StatusInfo, TokenInfo, TokenKind, TokenParams,
    agent_version_string,
};
use zeroize::Zeroizing;

/// The environment variable that names the agent's socket.
pub const SOCKET_ENV: &str = "SIGNET_AUTH_SOCK";

/// How to start an agent, for messages.
pub const START_HINT: &str = "start one with: eval \"$(signet-agent)\"";

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No agent to talk to: not configured, no socket, refused, or the
    /// agent speaks another protocol version.
    #[error("{0}")]
    NoAgent(String),
    /// The agent answered with a failure.
    #[error("{}", .0.message)]
    Agent(Failure),
    /// The connection broke or the agent sent something unreadable.
    #[error("{0}")]
    Connection(String),
}

impl ClientError {
    /// The exit code of SPEC §4 for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::NoAgent(_) => 3,
            ClientError::Agent(f) => f.code.exit_code(),
            ClientError::Connection(_) => 1,
        }
    }

    /// One line saying what to do, where there is something to say.
    pub fn hint(&self) -> Option<&str> {
        match self {
            ClientError::NoAgent(_) => Some(START_HINT),
            ClientError::Agent(f) => f.hint.as_deref(),
            ClientError::Connection(_) => None,
        }
    }
}

/// The agent's socket: `explicit`, else `$SIGNET_AUTH_SOCK`.
pub fn socket_path(explicit: Option<&Path>) -> Result<PathBuf, ClientError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    match std::env::var_os(SOCKET_ENV) {
        Some(v) if !v.is_empty() => Ok(PathBuf::from(v)),
        _ => Err(ClientError::NoAgent(format!(
            "{SOCKET_ENV} is not set, so there is no agent to talk to"
        ))),
    }
}

fn frame_error(e: FrameError) -> ClientError {
    match e {
        FrameError::Closed => ClientError::Connection("the agent closed the connection".into()),
        other => ClientError::Connection(format!("lost the connection to the agent: {other}")),
    }
}

/// A connection to the agent.
pub struct Client {
    /// Reads are buffered: a small frame costs one read, not two.
    stream: BufReader<UnixStream>,
    /// The `Hello` frame, not sent yet: it goes out in the same write as the
    /// first request, so a one-shot command costs one round trip, not two.
    pending_hello: Option<Vec<u8>>,
    agent_software: String,
}

impl Client {
    /// Connects to the agent at `explicit` or `$SIGNET_AUTH_SOCK`. The
    /// `Hello` handshake completes with the first call (or [`Client::handshake`]);
    /// a protocol mismatch is reported there as [`ClientError::NoAgent`].
    pub fn connect(explicit: Option<&Path>) -> Result<Client, ClientError> {
        let path = socket_path(explicit)?;
        let stream = UnixStream::connect(&path).map_err(|e| {
            let why = match e.kind() {
                io::ErrorKind::NotFound => "no such socket".to_string(),
                io::ErrorKind::ConnectionRefused => {
                    "connection refused (stale socket?)".to_string()
                }
                _ => e.to_string(),
            };
            ClientError::NoAgent(format!("cannot reach the agent at {}: {why}", path.display()))
        })?;
        // A hung agent must not hang a script forever.
        let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
        let hello =
            Request::Hello { version: PROTOCOL_VERSION, software: agent_version_string("signet") };
        Ok(Client {
            stream: BufReader::with_capacity(64 * 1024, stream),
            pending_hello: Some(encode_frame(&hello).map_err(frame_error)?),
            agent_software: String::new(),
        })
    }

    /// Completes the handshake now, if no call has yet.
    pub fn handshake(&mut self) -> Result<(), ClientError> {
        if let Some(hello) = self.pending_hello.take() {
            self.stream.get_mut().write_all(&hello).map_err(|e| frame_error(e.into()))?;
            self.read_hello()?;
        }
        Ok(())
    }

    fn read_hello(&mut self) -> Result<(), ClientError> {
        match read_frame::<_, Response>(&mut self.stream).map_err(frame_error)? {
            Response::Hello { version, software } if version == PROTOCOL_VERSION => {
                self.agent_software = software;
                Ok(())
            }
            Response::Hello { version, software } => Err(ClientError::NoAgent(format!(
                "protocol version mismatch: the agent ({software}) speaks version {version}, this client speaks {PROTOCOL_VERSION}"
            ))),
            Response::Failure(f) if f.code == ErrorCode::Protocol => {
                Err(ClientError::NoAgent(f.message))
            }
            Response::Failure(f) => Err(ClientError::Agent(f)),
            other => Err(unexpected(&other)),
        }
    }

    /// `signet-agent/<version>` as the agent announced itself (once the
    /// handshake is done).
    pub fn agent_software(&self) -> &str {
        &self.agent_software
    }

    /// Sends one request and reads its answer. A [`Response::Failure`]
    /// becomes [`ClientError::Agent`].
    pub fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        match self.pending_hello.take() {
            None => write_frame(self.stream.get_mut(), req).map_err(frame_error)?,
            Some(hello) => {
                // Request frames may carry a secret: wipe the joined buffer.
                let mut both = Zeroizing::new(hello);
                both.extend_from_slice(&Zeroizing::new(encode_frame(req).map_err(frame_error)?));
                let sent = self.stream.get_mut().write_all(&both);
                // An agent that refuses the Hello says why before closing:
                // that reason beats a broken pipe.
                self.read_hello()?;
                sent.map_err(|e| frame_error(e.into()))?;
            }
        }
        match read_frame::<_, Response>(&mut self.stream).map_err(frame_error)? {
            Response::Failure(f) => Err(ClientError::Agent(f)),
            r => Ok(r),
        }
    }

    pub fn add(&mut self, add: AddToken) -> Result<TokenInfo, ClientError> {
        match self.call(&Request::Add(Box::new(add)))? {
            Response::Token(t) => Ok(t),
            other => Err(unexpected(&other)),
        }
    }

    pub fn list(&mut self) -> Result<Vec<TokenInfo>, ClientError> {
        match self.call(&Request::List)? {
            Response::Tokens(t) => Ok(t),
            other => Err(unexpected(&other)),
        }
    }

    pub fn show(&mut self, name: &str) -> Result<TokenInfo, ClientError> {
        match self.call(&Request::Show { name: name.into() })? {
            Response::Token(t) => Ok(t),
            other => Err(unexpected(&other)),
        }
    }

    pub fn remove(&mut self, name: &str) -> Result<(), ClientError> {
        match self.call(&Request::Remove { name: name.into() })? {
            Response::Ok => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    pub fn rename(&mut self, old: &str, new: &str) -> Result<TokenInfo, ClientError> {
        match self.call(&Request::Rename { old: old.into(), new: new.into() })? {
            Response::Token(t) => Ok(t),
            other => Err(unexpected(&other)),
        }
    }

    /// The header lines that authenticate a request (`signet sign`).
    pub fn sign(&mut self, req: SignRequest) -> Result<Vec<(String, Secret)>, ClientError> {
        match self.call(&Request::Sign(req))? {
            Response::Signed(h) => Ok(h),
            other => Err(unexpected(&other)),
        }
    }

    /// Has the agent perform a request (`signet request`). `body`, if any,
    /// is streamed up in chunks; the response comes back as a head and a
    /// reader over the body, which streams too. Read the body to its end
    /// before using this client again.
    pub fn perform(
        &mut self,
        mut req: PerformRequest,
        body: Option<&mut dyn Read>,
    ) -> Result<PerformResponse<'_>, ClientError> {
        req.has_body = body.is_some();
        let timeout = req.timeout_secs;
        match self.call(&Request::Perform(req))? {
            Response::Proceed => {}
            other => return Err(unexpected(&other)),
        }
        // The agent waits for upstream as long as the request allows.
        let _ =
            self.stream.get_ref().set_read_timeout(timeout.map(|t| Duration::from_secs(t + 30)));
        if let Some(body) = body {
            let mut buf = vec![0u8; MAX_CHUNK];
            loop {
                let n = match body.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(ClientError::Connection(format!(
                            "cannot read the request body: {e}"
                        )));
                    }
                };
                write_frame(self.stream.get_mut(), &Request::BodyChunk(Chunk(buf[..n].to_vec())))
                    .map_err(frame_error)?;
            }
            write_frame(self.stream.get_mut(), &Request::BodyEnd).map_err(frame_error)?;
        }
        match read_frame::<_, Response>(&mut self.stream).map_err(frame_error)? {
            Response::Head(head) => {
                Ok(PerformResponse { head, client: self, chunk: Vec::new(), pos: 0, done: false })
            }
            Response::Failure(f) => Err(ClientError::Agent(f)),
            other => Err(unexpected(&other)),
        }
    }

    /// `signet maas login`: answered with the stored token.
    pub fn maas_login(&mut self, login: MaasLogin) -> Result<TokenInfo, ClientError> {
        match self.call(&Request::MaasLogin(Box::new(login)))? {
            Response::Token(t) => Ok(t),
            other => Err(unexpected(&other)),
        }
    }

    /// A server-side token operation; the answer depends on the operation.
    pub fn lifecycle(&mut self, op: LifecycleOp) -> Result<Response, ClientError> {
        self.call(&Request::Lifecycle(op))
    }

    pub fn status(&mut self) -> Result<StatusInfo, ClientError> {
        match self.call(&Request::Status)? {
            Response::Status(s) => Ok(s),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(r: &Response) -> ClientError {
    let what = match r {
        Response::Hello { .. } => "Hello",
        Response::Ok => "Ok",
        Response::Failure(_) => "Failure",
        Response::Token(_) => "Token",
        Response::Tokens(_) => "Tokens",
        Response::Status(_) => "Status",
        Response::Signed(_) => "Signed",
        Response::Proceed => "Proceed",
        Response::Head(_) => "Head",
        Response::BodyChunk(_) => "BodyChunk",
        Response::BodyEnd => "BodyEnd",
        Response::Account(_) => "Account",
        Response::ServerTokens(_) => "ServerTokens",
        Response::Minted { .. } => "Minted",
        Response::Imported(_) => "Imported",
    };
    ClientError::Connection(format!("the agent sent an unexpected answer ({what})"))
}

/// The answer to [`Client::perform`]: the head, and the body as a reader.
/// A failure after the head (the upstream connection broke) is an
/// `io::Error` wrapping a [`ClientError`]; see [`client_error`].
pub struct PerformResponse<'a> {
    pub head: ResponseHead,
    client: &'a mut Client,
    chunk: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for PerformResponse<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            if self.done {
                return Ok(0);
            }
            let frame = read_frame::<_, Response>(&mut self.client.stream)
                .map_err(|e| io::Error::other(frame_error(e)))?;
            match frame {
                Response::BodyChunk(Chunk(c)) => {
                    self.chunk = c;
                    self.pos = 0;
                }
                Response::BodyEnd => self.done = true,
                Response::Failure(f) => {
                    self.done = true;
                    return Err(io::Error::other(ClientError::Agent(f)));
                }
                other => return Err(io::Error::other(unexpected(&other))),
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The [`ClientError`] inside an `io::Error` from [`PerformResponse`], if
/// that is what it is.
pub fn client_error(e: io::Error) -> Result<ClientError, io::Error> {
    if e.get_ref().is_some_and(|i| i.is::<ClientError>()) {
        match e.into_inner().map(|b| b.downcast::<ClientError>()) {
            Some(Ok(c)) => Ok(*c),
            _ => Err(io::Error::other("unreadable error")),
        }
    } else {
        Err(e)
    }
}
