//! The socket: bind it safely, accept, check each peer, serve frames.
//!
//! This module knows frames and connections, not tokens: every decoded
//! request goes to [`crate::handler::handle`]. What it guarantees:
//! - the socket is never reachable by another user: its directory is 0700
//!   and ours, and it is bound under umask 0177 so it is 0600 from birth
//!   (a chmod after bind would leave a window);
//! - every connection's peer is checked with SO_PEERCRED: only our uid and
//!   root are served; anyone else gets one error frame and is closed;
//! - bad input costs the agent nothing: an oversized or garbage length
//!   prefix, a body that does not decode, a slow or idle peer each get an
//!   error or a close, and the agent carries on;
//! - at shutdown, no new connection is accepted, requests in flight get a
//!   bounded time to finish, and the socket file is removed.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener as StdListener, UnixStream as StdStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sys::stat::{Mode, umask};
use signet_proto::frame::{FrameError, read_body_async, read_prefix_async, write_frame_async};
use signet_proto::{ErrorCode, Failure, PROTOCOL_VERSION, Request, Response, agent_version_string};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, watch};

use crate::handler::{self, Agent, Peer};

/// A bound socket and what identifies it, so that shutdown removes our
/// socket and not one a successor bound at the same path.
pub struct BoundSocket {
    pub listener: StdListener,
    pub path: PathBuf,
    ino: u64,
    dev: u64,
}

impl BoundSocket {
    /// Removes the socket file if it is still the one we bound.
    pub fn remove(&self) {
        if let Ok(md) = std::fs::symlink_metadata(&self.path)
            && md.ino() == self.ino
            && md.dev() == self.dev
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds the agent's socket at `path` (SPEC §1).
pub fn bind(path: &Path) -> Result<BoundSocket, String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| format!("socket path {} has no directory", path.display()))?;
    crate::paths::ensure_private_dir(dir)?;

    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_socket() => match StdStream::connect(path) {
            Ok(_) => {
                return Err(format!(
                    "an agent is already listening at {}; use it (export SIGNET_AUTH_SOCK={}) or stop it first (signet-agent -k)",
                    path.display(),
                    path.display()
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                // Stale: its agent died without cleaning up.
                std::fs::remove_file(path)
                    .map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?;
            }
            Err(e) => return Err(format!("cannot probe existing socket {}: {e}", path.display())),
        },
        Ok(_) => {
            return Err(format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot inspect {}: {e}", path.display())),
    }

    // Mode 0600 from the moment the socket exists: no chmod-after-bind window.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = StdListener::bind(path);
    umask(old);
    let listener = bound.map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse => format!("an agent is already listening at {}", path.display()),
        _ => format!("cannot bind {}: {e}", path.display()),
    })?;
    let md = std::fs::symlink_metadata(path)
        .map_err(|e| format!("cannot inspect {}: {e}", path.display()))?;
    Ok(BoundSocket { listener, path: path.to_path_buf(), ino: md.ino(), dev: md.dev() })
}

/// Accepts and serves connections until `shutdown` turns true, then waits
/// (bounded) for connections in flight to finish.
pub async fn serve(listener: UnixListener, agent: Arc<Agent>, mut shutdown: watch::Receiver<bool>) {
    let max = agent.config.max_connections;
    let slots = Arc::new(Semaphore::new(max as usize));
    let me = nix::unistd::geteuid().as_raw();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped(&mut shutdown) => break,
        };
        let mut stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let cred = match stream.peer_cred() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read peer credentials; closing");
                continue;
            }
        };
        let peer = Peer { uid: cred.uid(), pid: cred.pid().unwrap_or(0) };
        let agent = agent.clone();
        if peer.uid != me && peer.uid != 0 {
            // Unreachable through a 0700 directory unless someone passed the
            // socket on or holds CAP_DAC_OVERRIDE: refuse by identity anyway.
            tracing::warn!(
                uid = peer.uid,
                pid = peer.pid,
                "refused a connection from another user"
            );
            tokio::spawn(async move {
                let f = Failure::new(
                    ErrorCode::Policy,
                    format!(
                        "permission denied: this agent serves uid {me} only, not uid {}",
                        peer.uid
                    ),
                );
                let _ = tokio::time::timeout(
                    agent.config.frame_timeout(),
                    write_frame_async(&mut stream, &Response::Failure(f)),
                )
                .await;
            });
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(max, "connection limit reached; refusing a connection");
            tokio::spawn(async move {
                let f = Failure::new(
                    ErrorCode::Other,
                    format!("the agent is serving its maximum of {max} connections; try again"),
                );
                let _ = tokio::time::timeout(
                    agent.config.frame_timeout(),
                    write_frame_async(&mut stream, &Response::Failure(f)),
                )
                .await;
            });
            continue;
        };
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            connection(stream, peer, &agent, shutdown).await;
            drop(permit);
        });
    }
    drop(listener);
    let grace = agent.config.shutdown_grace();
    if tokio::time::timeout(grace, slots.acquire_many(max)).await.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "requests still in flight at shutdown; stopping anyway"
        );
    }
}

/// Resolves once shutdown has begun. Returns nothing, so no borrow of the
/// channel is held across another branch's await.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// What ended a connection, for the debug log.
enum Closed {
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

async fn send<S: AsyncWrite + Unpin>(
    stream: &mut S,
    agent: &Agent,
    resp: &Response,
) -> Result<(), Closed> {
    match tokio::time::timeout(agent.config.frame_timeout(), write_frame_async(stream, resp)).await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Closed::Error(format!("write: {e}"))),
        Err(_) => Err(Closed::Error("write timed out".into())),
    }
}

fn protocol_failure(msg: impl Into<String>) -> Response {
    Response::Failure(Failure::new(ErrorCode::Protocol, msg))
}

/// Reads one request: waits for a length prefix at most `wait` (or until
/// shutdown), then for the body at most the frame timeout.
async fn next_request<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    agent: &Agent,
    wait: std::time::Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Result<Request, Response>, Closed> {
    let len = tokio::select! {
        r = tokio::time::timeout(wait, read_prefix_async(stream)) => match r {
            Err(_) => return Err(Closed::Idle),
            Ok(Err(FrameError::Closed)) => return Err(Closed::Peer),
            Ok(Err(e @ FrameError::TooLarge(_))) => {
                // The stream is out of step now: say why, then close.
                let _ = send(stream, agent, &protocol_failure(format!("malformed frame: {e}"))).await;
                return Err(Closed::Error(e.to_string()));
            }
            Ok(Err(e)) => return Err(Closed::Error(e.to_string())),
            Ok(Ok(len)) => len,
        },
        _ = stopped(shutdown) => return Err(Closed::Shutdown),
    };
    match tokio::time::timeout(
        agent.config.frame_timeout(),
        read_body_async::<_, Request>(stream, len),
    )
    .await
    {
        Err(_) => Err(Closed::Error("frame body timed out".into())),
        Ok(Ok(req)) => Ok(Ok(req)),
        // A body that does not decode was still exactly `len` bytes: the
        // stream is in step, so answer and carry on.
        Ok(Err(FrameError::Codec(e))) => Ok(Err(protocol_failure(format!(
            "malformed request: {e}; is the client the same version as the agent?"
        )))),
        Ok(Err(e)) => Err(Closed::Error(e.to_string())),
    }
}

async fn connection(
    stream: UnixStream,
    peer: Peer,
    agent: &Agent,
    mut shutdown: watch::Receiver<bool>,
) {
    // Buffered reads: a small frame costs one read syscall, not two.
    let mut stream = tokio::io::BufReader::with_capacity(64 * 1024, stream);
    let result: Result<(), Closed> = async {
        // The handshake comes first and promptly.
        match next_request(&mut stream, agent, agent.config.frame_timeout(), &mut shutdown).await? {
            Ok(Request::Hello { version, .. }) if version == PROTOCOL_VERSION => {
                let hello = Response::Hello {
                    version: PROTOCOL_VERSION,
                    software: agent_version_string("signet-agent"),
                };
                send(&mut stream, agent, &hello).await?;
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
                send(&mut stream, agent, &Response::Failure(f)).await?;
                return Err(Closed::Error(format!("version mismatch ({version})")));
            }
            Ok(_) => {
                send(&mut stream, agent, &protocol_failure("expected Hello as the first message")).await?;
                return Err(Closed::Error("no Hello".into()));
            }
            Err(resp) => {
                send(&mut stream, agent, &resp).await?;
                return Err(Closed::Error("malformed Hello".into()));
            }
        }
        loop {
            let req = next_request(&mut stream, agent, agent.config.idle_timeout(), &mut shutdown).await?;
            let resp = match req {
                Ok(Request::Perform(p)) => {
                    crate::http::perform(agent, peer, p, &mut stream).await.map_err(Closed::Error)?;
                    continue;
                }
                Ok(req) => handler::handle(agent, peer, req).await,
                Err(resp) => resp,
            };
            send(&mut stream, agent, &resp).await?;
        }
    }
    .await;
    if let Err(why) = result {
        tracing::debug!(uid = peer.uid, pid = peer.pid, reason = %why, "connection closed");
    }
}
