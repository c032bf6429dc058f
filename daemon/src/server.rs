//! The socket: bind it safely, accept, check each peer, hand each
//! connection to [`crate::conn`] and its requests to [`crate::cmd`]. A
//! connection held open for a series of one-frame requests moves to a
//! thread of its own ([`crate::blocking`]).
//!
//! What it guarantees:
//! - the socket is never reachable by another user: its directory is 0700
//!   and ours, and it is bound under umask 0177 so it is 0600 from birth
//!   (a chmod after bind would leave a window);
//! - every connection's peer is checked with SO_PEERCRED: only our own uid
//!   is served, root included in the refusal (docs/security.md); anyone
//!   else gets one error frame and is closed;
//! - at most `max_connections` connections are served at once; one more is
//!   told so and closed;
//! - at shutdown, no new connection is accepted, connections waiting for a
//!   request are closed, requests in flight get a bounded time to finish,
//!   and the socket file is removed.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener as StdListener, UnixStream as StdStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use nix::sys::stat::{Mode, umask};
use signet_proto::{ErrorCode, Failure, Request};
use tokio::net::{UnixListener, UnixStream};
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::agent::{Agent, Peer};
use crate::blocking::{self, Live};
use crate::cmd::{self, Caller};
use crate::conn::{self, Closed, Conn};
use crate::paths::DirError;
use crate::restrict::Restriction;

/// A bound socket and what identifies it, so that shutdown removes our
/// socket and not one a successor bound at the same path.
pub struct BoundSocket {
    pub listener: StdListener,
    pub path: PathBuf,
    /// (inode, device) of the socket file we bound; `None` for a socket we
    /// did not create (socket activation), which is never removed.
    ours: Option<(u64, u64)>,
}

impl BoundSocket {
    /// A listening socket handed over by the service manager. Its directory
    /// must be private as ours would be (the socket unit's `DirectoryMode=`).
    pub fn adopted(listener: StdListener, path: PathBuf) -> Result<BoundSocket, BindError> {
        if path.is_absolute() {
            let dir = path.parent().ok_or_else(|| BindError::NoDirectory(path.clone()))?;
            crate::paths::check_private_dir(dir)?;
        }
        Ok(BoundSocket { listener, path, ours: None })
    }

    /// Removes the socket file if it is still the one we bound.
    pub fn remove(&self) {
        self.file().remove();
    }

    fn file(&self) -> SocketFile {
        SocketFile { path: self.path.clone(), ours: self.ours }
    }

    /// The listener, and the file to remove when the agent stops: the
    /// listener is then the only descriptor of the socket the agent holds,
    /// so closing it closes the socket.
    pub fn split(self) -> (StdListener, SocketFile) {
        let file = self.file();
        (self.listener, file)
    }
}

/// The socket's file, removed when the agent stops if it is still ours.
#[derive(Clone)]
pub struct SocketFile {
    pub path: PathBuf,
    ours: Option<(u64, u64)>,
}

impl SocketFile {
    /// Removes the socket file if it is still the one we bound.
    pub fn remove(&self) {
        let Some((ino, dev)) = self.ours else { return };
        if let Ok(md) = std::fs::symlink_metadata(&self.path)
            && md.ino() == ino
            && md.dev() == dev
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Why the socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("socket path {} has no directory", .0.display())]
    NoDirectory(PathBuf),
    #[error(transparent)]
    Directory(#[from] DirError),
    #[error(
        "an agent is already listening at {}; use it (export SIGNET_AUTH_SOCK={}) or stop it first (signet-agent -k)",
        .0.display(),
        .0.display()
    )]
    InUse(PathBuf),
    #[error("{} exists and is not a socket; refusing to replace it", .0.display())]
    NotASocket(PathBuf),
    #[error("cannot {what} {}: {err}", path.display())]
    Io { what: &'static str, path: PathBuf, err: io::Error },
}

/// Binds the agent's socket at `path`: its directory private, the socket
/// 0600 from birth, a live agent there refused and a stale socket replaced.
pub fn bind(path: &Path) -> Result<BoundSocket, BindError> {
    let io_err = |what, err| BindError::Io { what, path: path.to_path_buf(), err };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| BindError::NoDirectory(path.to_path_buf()))?;
    crate::paths::ensure_private_dir(dir)?;

    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_socket() => match StdStream::connect(path) {
            Ok(_) => return Err(BindError::InUse(path.to_path_buf())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                // Stale: its agent died without cleaning up.
                std::fs::remove_file(path).map_err(|e| io_err("remove stale socket", e))?;
            }
            Err(e) => return Err(io_err("probe existing socket", e)),
        },
        Ok(_) => return Err(BindError::NotASocket(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("inspect", e)),
    }

    // Mode 0600 from the moment the socket exists: no chmod-after-bind window.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = StdListener::bind(path);
    umask(old);
    let listener = bound.map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse => BindError::InUse(path.to_path_buf()),
        _ => io_err("bind", e),
    })?;
    let md = std::fs::symlink_metadata(path).map_err(|e| io_err("inspect", e))?;
    Ok(BoundSocket { listener, path: path.to_path_buf(), ours: Some((md.ino(), md.dev())) })
}

/// Accepts and serves connections until `shutdown` turns true, then waits
/// (bounded) for connections in flight to finish. With `restricted`, this
/// is the restricted socket: only what [`Restriction`] allows is served.
pub async fn serve(
    listener: UnixListener,
    file: &SocketFile,
    agent: Arc<Agent>,
    restricted: Option<Arc<Restriction>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let max = agent.config.max_connections;
    let slots = Arc::new(Semaphore::new(max as usize));
    let me = nix::unistd::geteuid().as_raw();
    let live = Arc::new(Live::default());
    let runtime = Handle::current();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|stop| *stop) => break,
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
        let timeout = agent.config.frame_timeout();
        if !peer_allowed(me, peer.uid) {
            // Unreachable through a 0700 directory unless someone passed the
            // socket on or holds CAP_DAC_OVERRIDE (root): refuse by identity.
            tracing::warn!(
                uid = peer.uid,
                pid = peer.pid,
                "refused a connection from another user"
            );
            let mut f = Failure::new(
                ErrorCode::Policy,
                format!("permission denied: this agent serves uid {me} only, not uid {}", peer.uid),
            );
            if peer.uid == 0 {
                f = f.with_hint(
                    "root cannot use another user's agent: what it added would land in that user's keyring; run signet as that user, or start an agent of root's own",
                );
            }
            tokio::spawn(async move { conn::refuse(&mut stream, f, timeout).await });
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(max, "connection limit reached; refusing a connection");
            let f = Failure::other(format!(
                "the agent is serving its maximum of {max} connections; try again"
            ));
            tokio::spawn(async move { conn::refuse(&mut stream, f, timeout).await });
            continue;
        };
        let agent = agent.clone();
        // Read now, while the peer is surely alive: its pid may be reused
        // by the time a request is recorded.
        let exe = if agent.audit.enabled() { crate::audit::exe_of(peer.pid) } else { None };
        let caller = Caller { peer, exe, restricted: restricted.clone() };
        let to = Threads { live: live.clone(), runtime: runtime.clone() };
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut conn = Conn::new(stream, &agent.config, shutdown);
            let ended = match conn.handshake().await {
                Ok(()) => requests(conn, None, &caller, &agent, Some(to), permit).await,
                Err(why) => Err(why),
            };
            if let Err(why) = ended {
                closed(&caller, &why);
            }
        });
    }
    // No new client waits through the grace period on a socket nobody
    // accepts on: the file goes and the socket closes now. (A socket the
    // service manager handed over stays its own, and queues clients for
    // the next start.) Connections waiting for a request are woken to
    // their end; requests in flight finish.
    live.close();
    file.remove();
    drop(listener);
    let grace = agent.config.shutdown_grace();
    if tokio::time::timeout(grace, slots.acquire_many(max)).await.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "requests still in flight at shutdown; stopping anyway"
        );
    }
}

/// Whether a peer of `uid` may use an agent running as `me`: only the same
/// uid. Root is refused too: tokens it added would land in this user's
/// keyring, readable by the user, and its uses would be the user's.
fn peer_allowed(me: u32, uid: u32) -> bool {
    uid == me
}

/// Where a held connection moves to be served on a thread of its own.
#[derive(Clone)]
struct Threads {
    live: Arc<Live>,
    runtime: Handle,
}

/// A connection on its way to a thread, with what serving it takes.
struct Handoff {
    stream: StdStream,
    first: Request,
    caller: Caller,
    agent: Arc<Agent>,
    permit: OwnedSemaphorePermit,
    shutdown: watch::Receiver<bool>,
}

impl Threads {
    /// Starts a thread for the connection; gives it back if no thread can
    /// be had, for the runtime to go on serving it.
    fn start(&self, handoff: Box<Handoff>) -> Result<(), Box<Handoff>> {
        // The thread takes the connection from here, so that it is still
        // ours if the thread does not start.
        let slot = Arc::new(Mutex::new(Some(handoff)));
        let taken = slot.clone();
        let to = self.clone();
        let started = std::thread::Builder::new().name("signet-conn".into()).spawn(move || {
            if let Some(h) = take(&taken) {
                to.serve(h);
            }
        });
        match started {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a thread for a connection; it stays on the runtime");
                take(&slot).map_or(Ok(()), Err)
            }
        }
    }

    /// Serves a connection on this thread until it ends, or until a
    /// request needs its connection for more than an answer: that request
    /// and the rest of the connection go back to the runtime.
    fn serve(&self, h: Box<Handoff>) {
        let Handoff { stream, first, caller, agent, permit, shutdown } = *h;
        let stream = Arc::new(stream);
        let listed = self.live.add(stream.clone());
        let ended = blocking::serve(&stream, first, &caller, &agent, &self.runtime, &self.live);
        drop(listed);
        let req = match ended {
            Ok(req) => req,
            Err(why) => return closed(&caller, &why),
        };
        // The list of live connections no longer holds the stream.
        let back = Arc::try_unwrap(stream).or_else(|shared| shared.try_clone());
        self.runtime.spawn(async move {
            let ended = match back.and_then(|s| on_runtime(s, &agent, shutdown)) {
                Ok(conn) => requests(conn, Some(req), &caller, &agent, None, permit).await,
                Err(e) => Err(Closed::Error(format!("cannot move the connection back: {e}"))),
            };
            if let Err(why) = ended {
                closed(&caller, &why);
            }
        });
    }
}

/// A connection back on the runtime, after a thread had it (or could not).
fn on_runtime(
    stream: StdStream,
    agent: &Agent,
    shutdown: watch::Receiver<bool>,
) -> io::Result<Conn> {
    stream.set_nonblocking(true)?;
    Ok(Conn::new(UnixStream::from_std(stream)?, &agent.config, shutdown))
}

fn take(slot: &Mutex<Option<Box<Handoff>>>) -> Option<Box<Handoff>> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// Serves requests on the runtime, `first` first, until the client leaves,
/// idles out, breaks the framing or the agent shuts down. With `to`, a
/// connection that asks for a second one-frame answer has shown that it
/// is held open for a series of them, and moves to a thread of its own
/// ([`blocking`]); it does not come back to a thread once it has left one.
async fn requests(
    mut conn: Conn,
    mut first: Option<Request>,
    caller: &Caller,
    agent: &Arc<Agent>,
    mut to: Option<Threads>,
    mut permit: OwnedSemaphorePermit,
) -> Result<(), Closed> {
    let mut answered = false;
    loop {
        let mut req = match first.take() {
            Some(req) => req,
            None => match conn.next_request().await? {
                Ok(req) => req,
                Err(answer) => {
                    conn.send(&answer).await?;
                    continue;
                }
            },
        };
        let one_frame = !cmd::needs_connection(&req);
        if one_frame
            && answered
            && conn.drained()
            && let Some(threads) = to.take()
        {
            let shutdown = conn.shutdown();
            let stream = conn
                .into_std()
                .and_then(|s| s.set_nonblocking(false).map(|()| s))
                .map_err(|e| Closed::Error(format!("cannot move the connection: {e}")))?;
            let handoff = Box::new(Handoff {
                stream,
                first: req,
                caller: caller.clone(),
                agent: agent.clone(),
                permit,
                shutdown,
            });
            let back = match threads.start(handoff) {
                Ok(()) => return Ok(()),
                Err(back) => *back,
            };
            let Handoff { stream, first, permit: kept, shutdown, .. } = back;
            conn = on_runtime(stream, agent, shutdown)
                .map_err(|e| Closed::Error(format!("cannot keep the connection: {e}")))?;
            (req, permit) = (first, kept);
        }
        answered |= one_frame;
        cmd::dispatch(agent, caller, req, &mut conn).await?;
    }
}

fn closed(caller: &Caller, why: &Closed) {
    let peer = caller.peer;
    tracing::debug!(uid = peer.uid, pid = peer.pid, reason = %why, "connection closed");
}

#[cfg(test)]
mod tests {
    use super::peer_allowed;

    #[test]
    fn only_the_agents_own_uid_is_served_root_included() {
        assert!(peer_allowed(1000, 1000));
        assert!(!peer_allowed(1000, 0));
        assert!(!peer_allowed(1000, 1001));
        assert!(peer_allowed(0, 0));
        assert!(!peer_allowed(0, 1000));
    }
}
