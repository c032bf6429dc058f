//! A small synchronous client for signet-agent.
//!
//! The agent keeps API tokens in the OS keyring and signs or performs HTTP
//! requests with them; this crate is how a Rust program asks it to. Every
//! operation of the `signet` command is one method on [`Client`], and each
//! answers with a plain typed value. How the requests travel (the frames and
//! messages of `docs/protocol.md`) is this crate's business, not the caller's.
//!
//! ```no_run
//! use std::io::Read;
//!
//! use signet_client::{Client, HttpRequest};
//!
//! let mut agent = Client::connect(None)?;
//! for t in agent.list()? {
//!     println!("{} {} {}", t.name, t.kind, t.url);
//! }
//! // The agent makes the call: the secret never enters this process.
//! let mut resp = agent.perform(HttpRequest::new("maas", "GET", "users/?op=whoami"), None)?;
//! let mut body = String::new();
//! resp.read_to_string(&mut body)?;
//! println!("{} {}", resp.head.status, body);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The agent is found through `SIGNET_AUTH_SOCK` (or an explicit path),
//! exactly as ssh-agent's clients find `SSH_AUTH_SOCK`, else at the default
//! socket ([`default_socket_path`]) that a systemd socket unit listens on. No async runtime:
//! a call is a blocking write and read on a Unix socket. Every error maps to
//! one of the exit codes of the `signet` command (the table in the README),
//! so a tool built on this crate can exit as `signet` would:
//!
//! ```
//! use std::path::Path;
//!
//! use signet_client::{Client, ClientError, ErrorCode, Failure};
//!
//! // Nothing listens there: "no agent" is exit code 3, with a hint to start one.
//! match Client::connect(Some(Path::new("/nonexistent/signet/agent.sock"))) {
//!     Err(e) => {
//!         assert_eq!(e.exit_code(), 3);
//!         assert!(e.hint().is_some_and(|h| h.contains("signet-agent")));
//!     }
//!     Ok(_) => unreachable!("no agent can listen in a directory that does not exist"),
//! }
//!
//! // A failure the agent reports keeps its class: an unknown token is 4.
//! let e = ClientError::Agent(Failure::new(ErrorCode::NoSuchToken, "no token named `m1`"));
//! assert_eq!(e.exit_code(), 4);
//! assert_eq!(e.to_string(), "no token named `m1`");
//! ```

#![warn(missing_docs)]

mod types;

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use signet_proto::codec::decode;
pub use signet_proto::expiry::Expiry;
use signet_proto::frame::{
    FrameError, chunk_data, chunk_head, encode_frame, read_frame, read_frame_into, write_frame,
};
pub use signet_proto::{
    AccountInfo, ErrorCode, Failure, ImportOutcome, LockKind, ResponseHead, Secret, ServerToken,
    SignatureMethod, StatusInfo, TlsOptions, TokenInfo, TokenKind, TokenParams,
};
use signet_proto::{
    AuditQuery, LifecycleOp, MAX_CHUNK, MaasLogin, PROTOCOL_VERSION, PerformRequest, Request,
    Response, Service, SignRequest, agent_version_string,
};
pub use types::{
    AuditFilter, AuditLog, AuditRecord, HttpRequest, LocalAccess, MaasLoginParams, Migrated,
    Minted, NewMaasToken, NewToken, NewVmsToken, ProxyOptions, RunningProxy, SignedHeader,
    StoreKind, TiedProxy,
};
use zeroize::Zeroizing;

/// The environment variable that names the agent's socket.
pub const SOCKET_ENV: &str = "SIGNET_AUTH_SOCK";

/// How to start an agent, for messages.
pub const START_HINT: &str = "start one with: eval \"$(signet-agent)\"";

/// How long a call waits for the agent before giving up: a hung agent must
/// not hang a script forever.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a call failed. [`ClientError::exit_code`] gives the exit code the
/// `signet` command ends with for it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No agent to talk to: not configured, no socket, refused, or the
    /// agent speaks another protocol version (exit 3).
    #[error("{0}")]
    NoAgent(String),
    /// The agent answered with a failure; its [`ErrorCode`] decides the exit
    /// code.
    #[error("{}", .0.message)]
    Agent(Failure),
    /// The connection broke or the agent sent something unreadable (exit 1).
    #[error("{0}")]
    Connection(String),
    /// The caller's input cannot be sent as it is, such as a path that is
    /// not UTF-8 (exit 2). The agent was not asked.
    #[error("{0}")]
    Usage(String),
}

impl ClientError {
    /// The exit code of the `signet` command for this error: 1 other, 2
    /// usage, 3 no agent, 4 no such token, 5 refused by policy, 6 keyring
    /// failure, 7 upstream unreachable.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::NoAgent(_) => 3,
            ClientError::Agent(f) => f.code.exit_code(),
            ClientError::Connection(_) => 1,
            ClientError::Usage(_) => 2,
        }
    }

    /// One line saying what to do, where there is something to say.
    pub fn hint(&self) -> Option<&str> {
        match self {
            ClientError::NoAgent(_) => Some(START_HINT),
            ClientError::Agent(f) => f.hint.as_deref(),
            ClientError::Connection(_) | ClientError::Usage(_) => None,
        }
    }
}

/// Where an agent listens when nothing names its socket: the path
/// `signet-agent` binds without `-a` and the systemd socket unit listens on,
/// `$XDG_RUNTIME_DIR/signet/agent.sock`, else `/tmp/signet-<uid>/agent.sock`
/// when there is no (absolute) `XDG_RUNTIME_DIR`, as on a server without a
/// login session.
pub fn default_socket_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d).join("signet/agent.sock"),
        _ => PathBuf::from(format!("/tmp/signet-{}/agent.sock", nix::unistd::getuid())),
    }
}

/// The agent's socket: `explicit`, else `$SIGNET_AUTH_SOCK`, else
/// [`default_socket_path`]. A script run from cron or a systemd timer thus
/// finds the agent a socket unit started without any variable set; whoever
/// answers there is checked (its uid, then its `Hello`) before anything is
/// sent, as for any other path.
///
/// ```
/// use std::path::Path;
///
/// let p = signet_client::socket_path(Some(Path::new("/run/user/1000/signet/agent.sock")));
/// assert_eq!(p, Path::new("/run/user/1000/signet/agent.sock"));
/// ```
pub fn socket_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os(SOCKET_ENV) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => default_socket_path(),
    }
}

/// Whether the socket was named (argument or variable) or is the default.
fn socket_named(explicit: Option<&Path>) -> bool {
    explicit.is_some() || std::env::var_os(SOCKET_ENV).is_some_and(|v| !v.is_empty())
}

/// Refuses a socket whose server runs as neither this user nor root.
fn check_peer(stream: &UnixStream, path: &Path) -> Result<(), ClientError> {
    let cred = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|e| {
            ClientError::NoAgent(format!(
                "cannot tell who serves {} ({e}); refusing to talk to it",
                path.display()
            ))
        })?;
    let me = nix::unistd::getuid().as_raw();
    if cred.uid() != me && cred.uid() != 0 {
        return Err(ClientError::NoAgent(format!(
            "{} is served by uid {}, not by you (uid {me}) or root; refusing to talk to it",
            path.display(),
            cred.uid()
        )));
    }
    Ok(())
}

fn frame_error(e: FrameError) -> ClientError {
    match e {
        FrameError::Closed => ClientError::Connection("the agent closed the connection".into()),
        other => ClientError::Connection(format!("lost the connection to the agent: {other}")),
    }
}

/// A connection to the agent. One call at a time; a connection serves as
/// many calls as the caller likes.
pub struct Client {
    /// Reads are buffered: a small frame costs one read, not two.
    stream: BufReader<UnixStream>,
    /// The `Hello` frame, not sent yet: it goes out in the same write as the
    /// first request, so a one-shot command costs one round trip, not two.
    pending_hello: Option<Vec<u8>>,
    agent_software: String,
    /// For messages that name the socket.
    path: PathBuf,
}

impl Client {
    /// Connects to the agent at `explicit`, `$SIGNET_AUTH_SOCK` or the
    /// default socket (see [`socket_path`]). The
    /// handshake completes with the first call (or [`Client::handshake`]);
    /// a protocol mismatch is reported there as [`ClientError::NoAgent`].
    pub fn connect(explicit: Option<&Path>) -> Result<Client, ClientError> {
        let path = socket_path(explicit);
        let stream = UnixStream::connect(&path).map_err(|e| {
            let why = match e.kind() {
                io::ErrorKind::NotFound => "no such socket".to_string(),
                io::ErrorKind::ConnectionRefused => {
                    "connection refused (stale socket?)".to_string()
                }
                _ => e.to_string(),
            };
            if socket_named(explicit) {
                ClientError::NoAgent(format!("cannot reach the agent at {}: {why}", path.display()))
            } else {
                ClientError::NoAgent(format!(
                    "{SOCKET_ENV} is not set and no agent answers at the default socket {}: {why}",
                    path.display()
                ))
            }
        })?;
        // Nothing is sent, a secret least of all, before the socket is known
        // to be served by this user (or root, for an agent it runs for all):
        // SIGNET_AUTH_SOCK may name anything.
        check_peer(&stream, &path)?;
        let _ = stream.set_read_timeout(Some(CALL_TIMEOUT));
        let hello =
            Request::Hello { version: PROTOCOL_VERSION, software: agent_version_string("signet") };
        Ok(Client {
            stream: BufReader::with_capacity(64 * 1024, stream),
            pending_hello: Some(encode_frame(&hello).map_err(frame_error)?),
            agent_software: String::new(),
            path,
        })
    }

    /// Completes the handshake now, if no call has yet: to learn
    /// [`Client::agent_software`], or whether the agent speaks this client's
    /// protocol, before asking anything.
    pub fn handshake(&mut self) -> Result<(), ClientError> {
        if let Some(hello) = self.pending_hello.take() {
            self.stream.get_mut().write_all(&hello).map_err(|e| frame_error(e.into()))?;
            self.read_hello()?;
        }
        Ok(())
    }

    fn read_hello(&mut self) -> Result<(), ClientError> {
        // Whatever answers that is not a signet frame (another agent's
        // protocol, a closed connection) means there is no signet agent.
        let answer = read_frame::<_, Response>(&mut self.stream).map_err(|e| {
            let what = match e {
                FrameError::Closed => "it closed the connection without a word".to_string(),
                FrameError::Io(e) => format!("reading its answer failed ({e})"),
                FrameError::TooLarge(_) | FrameError::Codec(_) => {
                    "it answered in another protocol".to_string()
                }
            };
            ClientError::NoAgent(format!("{} is not a signet agent: {what}", self.path.display()))
        })?;
        match answer {
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

    /// `signet-agent/<version>` as the agent announced itself; empty until
    /// the handshake is done.
    pub fn agent_software(&self) -> &str {
        &self.agent_software
    }

    /// Sends one request and reads its answer; a failure the agent reports
    /// becomes [`ClientError::Agent`].
    fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
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

    /// Starts a local proxy for a token (`signet proxy NAME`): the agent
    /// listens on loopback (or a Unix socket), checks the local credential
    /// it answers with, and re-signs each request with the token. It runs
    /// until [`Client::proxy_stop`] or the agent stops.
    pub fn proxy_start(&mut self, opts: &ProxyOptions) -> Result<RunningProxy, ClientError> {
        match self.call(&Request::ProxyStart(opts.to_wire(false)?))? {
            Response::ProxyStarted(p) => Ok(RunningProxy::from_wire(p)),
            other => Err(unexpected(&other)),
        }
    }

    /// Starts a proxy that lives only as long as the returned handle: the
    /// agent stops it when this connection closes, however this process
    /// ends (`signet exec`). The connection serves nothing else meanwhile.
    pub fn proxy_tied(mut self, opts: &ProxyOptions) -> Result<TiedProxy, ClientError> {
        match self.call(&Request::ProxyStart(opts.to_wire(true)?))? {
            Response::ProxyStarted(p) => {
                // The agent holds the connection open for as long as the
                // proxy runs: no answer is due, so no read may time out.
                let _ = self.stream.get_ref().set_read_timeout(None);
                Ok(TiedProxy { proxy: RunningProxy::from_wire(p), _conn: Box::new(self) })
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Stops the caller's proxies for the token `name`
    /// (`signet proxy --stop NAME`); answers with those stopped.
    pub fn proxy_stop(&mut self, name: &str) -> Result<Vec<RunningProxy>, ClientError> {
        match self.call(&Request::ProxyStop { name: name.into() })? {
            Response::Proxies(p) => Ok(p.into_iter().map(RunningProxy::from_wire).collect()),
            other => Err(unexpected(&other)),
        }
    }

    /// The caller's running proxies (`signet proxy --list`), without their
    /// local credentials.
    pub fn proxies(&mut self) -> Result<Vec<RunningProxy>, ClientError> {
        match self.call(&Request::ProxyList)? {
            Response::Proxies(p) => Ok(p.into_iter().map(RunningProxy::from_wire).collect()),
            other => Err(unexpected(&other)),
        }
    }

    fn lifecycle(&mut self, op: LifecycleOp) -> Result<Response, ClientError> {
        self.call(&Request::Lifecycle(op))
    }

    /// Adds a token (`signet add`); answered with what the agent stored.
    /// The agent checks the name, URL and secret shape again, whatever this
    /// client checked.
    pub fn add(&mut self, token: NewToken) -> Result<TokenInfo, ClientError> {
        match self.call(&Request::Add(Box::new(token.into_wire())))? {
            Response::Token(t) => Ok(t),
            other => Err(unexpected(&other)),
        }
    }

    /// Every token of the caller, sorted by name (`signet list`). Never a
    /// secret.
    pub fn list(&mut self) -> Result<Vec<TokenInfo>, ClientError> {
        match self.call(&Request::List)? {
            Response::Tokens(t) => Ok(t),
            other => Err(unexpected(&other)),
        }
    }

    /// One token's metadata (`signet show`).
    pub fn show(&mut self, name: &str) -> Result<TokenInfo, ClientError> {
        match self.call(&Request::Show { name: name.into() })? {
            Response::Token(t) => Ok(t),
            other => Err(unexpected(&other)),
        }
    }

    /// Removes a token and its secret (`signet rm`).
    pub fn remove(&mut self, name: &str) -> Result<(), ClientError> {
        match self.call(&Request::Remove { name: name.into() })? {
            Response::Ok => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Renames a token (`signet rename`); its secret is not touched.
    pub fn rename(&mut self, old: &str, new: &str) -> Result<TokenInfo, ClientError> {
        match self.call(&Request::Rename { old: old.into(), new: new.into() })? {
            Response::Token(t) => Ok(t),
            other => Err(unexpected(&other)),
        }
    }

    /// Re-seals the agent's vault file under `new` after checking `old`
    /// (`signet vault passwd`); refused (exit 6) when `old` is wrong or the
    /// agent does not keep its secrets in a vault.
    pub fn vault_passwd(&mut self, old: Secret, new: Secret) -> Result<(), ClientError> {
        match self.call(&Request::VaultPasswd { old, new })? {
            Response::Ok => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Moves every token's secret into the store `to` (`signet migrate`);
    /// `passphrase` opens, or creates, the vault when `to` is
    /// [`StoreKind::File`].
    pub fn migrate(
        &mut self,
        to: StoreKind,
        passphrase: Option<Secret>,
    ) -> Result<Migrated, ClientError> {
        match self.call(&Request::Migrate { to: to.name().into(), passphrase })? {
            Response::Migrated(m) => {
                Ok(Migrated { from: m.from, to: m.to, moved: m.moved, left_behind: m.left_behind })
            }
            other => Err(unexpected(&other)),
        }
    }

    /// The agent's audit trail, filtered (`signet audit`). Lines that do
    /// not parse are skipped.
    pub fn audit(&mut self, filter: &AuditFilter) -> Result<AuditLog, ClientError> {
        let q = AuditQuery {
            token: filter.token.clone(),
            since_secs: filter.since.map(|d| d.as_secs()),
        };
        match self.call(&Request::Audit(q))? {
            Response::AuditLines { lines, omitted } => Ok(AuditLog {
                records: lines.iter().filter_map(|l| serde_json::from_str(l).ok()).collect(),
                omitted,
            }),
            other => Err(unexpected(&other)),
        }
    }

    /// The agent's pid, version, store and token count (`signet status`).
    pub fn status(&mut self) -> Result<StatusInfo, ClientError> {
        match self.call(&Request::Status)? {
            Response::Status(s) => Ok(s),
            other => Err(unexpected(&other)),
        }
    }

    /// Locks the agent (`signet lock`): it wipes every secret from its
    /// memory and refuses every use, and every request but list, status
    /// and unlock, until [`Client::unlock`] with the same passphrase.
    pub fn lock(&mut self, passphrase: Secret) -> Result<(), ClientError> {
        match self.call(&Request::Lock { passphrase })? {
            Response::Ok => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Unlocks the agent (`signet unlock`). `passphrase` is the one given
    /// to [`Client::lock`]; `None` opens only a lock the agent took itself
    /// ([`StatusInfo::locked`] says which). A wrong passphrase is answered
    /// late, later at each try in a row.
    pub fn unlock(&mut self, passphrase: Option<Secret>) -> Result<(), ClientError> {
        match self.call(&Request::Unlock { passphrase })? {
            Response::Ok => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// The header lines that authenticate a `method` request to `url` with
    /// the token `name` (`signet sign`). `url` is absolute, or relative to
    /// the token's base URL; `form` lists the form parameters an OAuth HMAC
    /// signature covers. A header that contains the secret itself comes
    /// back only for a token added as exportable.
    pub fn sign(
        &mut self,
        name: &str,
        method: &str,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<Vec<SignedHeader>, ClientError> {
        let req = SignRequest {
            name: name.into(),
            method: method.into(),
            url: url.into(),
            form: form.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        match self.call(&Request::Sign(req))? {
            Response::Signed(h) => {
                Ok(h.into_iter().map(|(name, value)| SignedHeader { name, value }).collect())
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Has the agent perform a request (`signet request`). `body`, if any,
    /// is streamed up in chunks, or read by the agent itself when it is a
    /// regular file; the response comes back as a head and a reader over
    /// the body, which streams too. Read the body to its end before using
    /// this client again.
    pub fn perform(
        &mut self,
        req: HttpRequest,
        body: Option<RequestBody<'_>>,
    ) -> Result<PerformResponse<'_>, ClientError> {
        let timeout_secs = req.timeout.map(whole_seconds);
        let body = body.map(|b| match b {
            RequestBody::File(f) if !is_regular(f) => RequestBody::Reader(Box::new(f)),
            b => b,
        });
        let wire = PerformRequest {
            name: req.name,
            method: req.method,
            url: req.url,
            headers: req.headers,
            has_body: body.is_some(),
            body_len: body.is_some().then_some(req.body_len).flatten(),
            timeout_secs,
            body_fd: matches!(body, Some(RequestBody::File(_))),
            response_fd: req.body_into_file,
        };
        match self.call(&Request::Perform(wire))? {
            Response::Proceed => {}
            other => return Err(unexpected(&other)),
        }
        // The agent waits for upstream as long as the request allows.
        let _ = self
            .stream
            .get_ref()
            .set_read_timeout(timeout_secs.map(|t| Duration::from_secs(t.saturating_add(30))));
        if let Some(RequestBody::File(f)) = &body {
            send_fd(self.stream.get_ref(), Some(f.as_fd())).map_err(|e| frame_error(e.into()))?;
        }
        if let Some(RequestBody::Reader(mut body)) = body {
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
                // The head, then the bytes where they were read: no copy.
                let head = chunk_head::<Request>(n).map_err(frame_error)?;
                let w = self.stream.get_mut();
                w.write_all(&head)
                    .and_then(|()| w.write_all(&buf[..n]))
                    .map_err(|e| frame_error(FrameError::Io(e)))?;
            }
            write_frame(self.stream.get_mut(), &Request::BodyEnd).map_err(frame_error)?;
        }
        match read_frame::<_, Response>(&mut self.stream).map_err(frame_error)? {
            Response::Head(head) => Ok(PerformResponse {
                head,
                client: self,
                frame: Zeroizing::new(Vec::new()),
                data: 0..0,
                done: false,
                owes_answer: req.body_into_file,
            }),
            Response::Failure(f) => Err(ClientError::Agent(f)),
            other => Err(unexpected(&other)),
        }
    }

    /// Stores a MAAS API key, or has the agent obtain one with a user name
    /// and password (`signet maas login`); answered with the stored token.
    pub fn maas_login(&mut self, login: MaasLoginParams) -> Result<TokenInfo, ClientError> {
        let wire = MaasLogin {
            name: login.name,
            url: login.url,
            username: login.username,
            secret: login.secret,
            verify: login.verify,
            tls: login.tls,
            comment: login.comment,
            access: login.access.into_wire(),
        };
        match self.call(&Request::MaasLogin(Box::new(wire)))? {
            Response::Token(t) => Ok(t),
            other => Err(unexpected(&other)),
        }
    }

    /// Imports the profiles of a MAAS CLI database (`~/.maascli.db`) into
    /// the keyring (`signet maas import`); with `scrub`, erases the imported
    /// keys from that file. The agent opens the file, so a relative `db` is
    /// made absolute here, against this process's working directory.
    pub fn maas_import(
        &mut self,
        db: &Path,
        scrub: bool,
    ) -> Result<Vec<ImportOutcome>, ClientError> {
        let db = std::path::absolute(db)
            .map_err(|e| ClientError::Usage(format!("{}: {e}", db.display())))?;
        let db = db
            .to_str()
            .ok_or_else(|| {
                ClientError::Usage(format!("{}: the path is not valid UTF-8", db.display()))
            })?
            .to_string();
        match self.lifecycle(LifecycleOp::MaasImport { db, scrub })? {
            Response::Imported(items) => Ok(items),
            other => Err(unexpected(&other)),
        }
    }

    /// Who the MAAS token `name` authenticates as (`signet maas whoami`).
    pub fn maas_whoami(&mut self, name: &str) -> Result<AccountInfo, ClientError> {
        match self.lifecycle(LifecycleOp::Whoami { name: name.into() })? {
            Response::Account(a) => Ok(a),
            other => Err(unexpected(&other)),
        }
    }

    /// The MAAS account's tokens on the server (`signet maas tokens`): names
    /// and token keys, never secrets. [`ServerToken::id`] is the token key.
    pub fn maas_tokens(&mut self, name: &str) -> Result<Vec<ServerToken>, ClientError> {
        self.server_tokens(Service::Maas, name)
    }

    /// Has MAAS mint a token, stored locally as [`NewMaasToken::new_name`]
    /// (`signet maas create-token`).
    pub fn maas_create_token(&mut self, req: NewMaasToken) -> Result<Minted, ClientError> {
        self.minted(LifecycleOp::CreateToken {
            service: Service::Maas,
            name: req.name,
            new_name: req.new_name,
            token_name: req.token_name,
            expires: None,
            owner: None,
            show: req.show,
            access: req.access.into_wire(),
        })
    }

    /// Deletes a MAAS server token by its token key (`signet maas
    /// delete-token`). The token `name` itself uses is refused unless
    /// `force`, and `name` is then removed too.
    pub fn maas_delete_token(
        &mut self,
        name: &str,
        token_key: &str,
        force: bool,
    ) -> Result<(), ClientError> {
        self.delete_token(Service::Maas, name, token_key, force)
    }

    /// Renames a MAAS server token (`signet maas rename-token`); `token` is
    /// the whole token or its key.
    pub fn maas_rename_token(
        &mut self,
        name: &str,
        token: &str,
        new_token_name: &str,
    ) -> Result<(), ClientError> {
        self.rename_token(Service::Maas, name, token, new_token_name)
    }

    /// Has VMS mint an API token, stored locally as
    /// [`NewVmsToken::new_name`] (`signet vms create-token`).
    pub fn vms_create_token(&mut self, req: NewVmsToken) -> Result<Minted, ClientError> {
        self.minted(LifecycleOp::CreateToken {
            service: Service::Vms,
            name: req.name,
            new_name: req.new_name,
            token_name: req.token_name,
            expires: req.expires,
            owner: req.owner,
            show: req.show,
            access: req.access.into_wire(),
        })
    }

    /// The API tokens on the VMS server (`signet vms tokens`): never secrets.
    /// [`ServerToken::id`] is the token id.
    pub fn vms_tokens(&mut self, name: &str) -> Result<Vec<ServerToken>, ClientError> {
        self.server_tokens(Service::Vms, name)
    }

    /// Renames a VMS server token, given by id (`signet vms rename-token`).
    pub fn vms_rename_token(
        &mut self,
        name: &str,
        id: &str,
        new_token_name: &str,
    ) -> Result<(), ClientError> {
        self.rename_token(Service::Vms, name, id, new_token_name)
    }

    /// Revokes a VMS server token by id (`signet vms revoke-token`). The
    /// token `name` itself uses is refused unless `force`, and `name` is then
    /// removed too.
    pub fn vms_revoke_token(
        &mut self,
        name: &str,
        id: &str,
        force: bool,
    ) -> Result<(), ClientError> {
        self.delete_token(Service::Vms, name, id, force)
    }

    /// Replaces the secret of a `maas` or `api-token` token with one freshly
    /// minted on its server (`signet rotate`): mint, verify, swap in, delete
    /// the old one. A failure at any step leaves a working credential.
    pub fn rotate(&mut self, name: &str) -> Result<Minted, ClientError> {
        self.minted(LifecycleOp::Rotate { name: name.into() })
    }

    fn server_tokens(
        &mut self,
        service: Service,
        name: &str,
    ) -> Result<Vec<ServerToken>, ClientError> {
        match self.lifecycle(LifecycleOp::ListTokens { service, name: name.into() })? {
            Response::ServerTokens(t) => Ok(t),
            other => Err(unexpected(&other)),
        }
    }

    fn minted(&mut self, op: LifecycleOp) -> Result<Minted, ClientError> {
        match self.lifecycle(op)? {
            Response::Minted { token, shown, notes } => Ok(Minted { token, shown, notes }),
            other => Err(unexpected(&other)),
        }
    }

    fn delete_token(
        &mut self,
        service: Service,
        name: &str,
        token: &str,
        force: bool,
    ) -> Result<(), ClientError> {
        let op =
            LifecycleOp::DeleteToken { service, name: name.into(), token: token.into(), force };
        match self.lifecycle(op)? {
            Response::Ok => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    fn rename_token(
        &mut self,
        service: Service,
        name: &str,
        token: &str,
        new_token_name: &str,
    ) -> Result<(), ClientError> {
        let op = LifecycleOp::RenameToken {
            service,
            name: name.into(),
            token: token.into(),
            new_token_name: new_token_name.into(),
        };
        match self.lifecycle(op)? {
            Response::Ok => Ok(()),
            other => Err(unexpected(&other)),
        }
    }
}

/// The wire counts timeouts in seconds; rounding down would turn a short
/// timeout into none at all.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
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
        Response::AuditLines { .. } => "AuditLines",
        Response::Migrated(_) => "Migrated",
        Response::ProxyStarted(_) => "ProxyStarted",
        Response::Proxies(_) => "Proxies",
    };
    ClientError::Connection(format!("the agent sent an unexpected answer ({what})"))
}

/// The answer to [`Client::perform`]: the head, and the body as a reader.
/// A failure after the head (the upstream connection broke) is an
/// `io::Error` wrapping a [`ClientError`]; see [`client_error`].
pub struct PerformResponse<'a> {
    /// The upstream status line and headers, after redirects.
    pub head: ResponseHead,
    client: &'a mut Client,
    /// The last frame read, undecoded; its allocation is reused.
    frame: Zeroizing<Vec<u8>>,
    /// The part of `frame` not yet handed out.
    data: std::ops::Range<usize>,
    done: bool,
    /// The request asked to deliver the body into a file, and the agent
    /// still waits to hear which.
    owes_answer: bool,
}

impl PerformResponse<'_> {
    /// The value of the first response header called `name` (in any case),
    /// as the raw bytes the server sent.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.head.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| &v.0[..])
    }
}

impl PerformResponse<'_> {
    /// Offers `file` for the agent to write the body into: a regular file
    /// or `/dev/null` open for writing, which the agent then writes from
    /// its current offset, without the body crossing the socket. Anything
    /// else (a pipe, a terminal), or `None`, and the body comes through
    /// the socket as usual; either way, read it to its end next (with
    /// [`PerformResponse::write_to`] to the same file, say), which also
    /// reports a failure to write it. Only for a request made with
    /// `body_into_file`, once, before the body is read, and after
    /// everything written to `file` so far has been flushed.
    pub fn deliver_into(&mut self, file: Option<BorrowedFd<'_>>) -> io::Result<()> {
        if !self.owes_answer {
            return Err(io::Error::other("the request did not ask to deliver its body to a file"));
        }
        self.owes_answer = false;
        send_fd(self.client.stream.get_ref(), file)
    }

    /// Makes `data` the next chunk of the body; false at its end.
    fn next_chunk(&mut self) -> io::Result<bool> {
        if self.owes_answer {
            self.deliver_into(None)?;
        }
        while self.data.is_empty() {
            if self.done {
                return Ok(false);
            }
            read_frame_into(&mut self.client.stream, &mut self.frame)
                .map_err(|e| io::Error::other(frame_error(e)))?;
            if let Some(data) = chunk_data::<Response>(&self.frame) {
                self.data = data;
                continue;
            }
            match decode::<Response>(&self.frame)
                .map_err(|e| io::Error::other(frame_error(e.into())))?
            {
                Response::BodyEnd => self.done = true,
                Response::Failure(f) => {
                    self.done = true;
                    return Err(io::Error::other(ClientError::Agent(f)));
                }
                other => return Err(io::Error::other(unexpected(&other))),
            }
        }
        Ok(true)
    }

    /// Writes the rest of the body to `w`, each chunk in one call and
    /// without copying it first; returns the number of bytes written.
    /// Errors are as [`Read`]'s.
    pub fn write_to(&mut self, w: &mut impl Write) -> io::Result<u64> {
        let mut total = 0u64;
        while self.next_chunk()? {
            w.write_all(&self.frame[self.data.clone()])?;
            total += self.data.len() as u64;
            self.data = 0..0;
        }
        Ok(total)
    }
}

impl Read for PerformResponse<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if !self.next_chunk()? {
            return Ok(0);
        }
        let n = out.len().min(self.data.len());
        out[..n].copy_from_slice(&self.frame[self.data.start..self.data.start + n]);
        self.data.start += n;
        Ok(n)
    }
}

/// A request body for [`Client::perform`].
pub enum RequestBody<'a> {
    /// Read here and sent through the socket.
    Reader(Box<dyn Read + 'a>),
    /// Read by the agent from the file's current offset to its end, when it
    /// is a regular file; else read here like any reader.
    File(&'a File),
}

fn is_regular(f: &File) -> bool {
    f.metadata().is_ok_and(|m| m.is_file())
}

/// Sends the one byte that passes `fd` to the agent, or passes none.
fn send_fd(sock: &UnixStream, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let raw = fd.map(|f| [f.as_raw_fd()]);
    let cmsg: Vec<ControlMessage<'_>> = raw.iter().map(|r| ControlMessage::ScmRights(r)).collect();
    let iov = [io::IoSlice::new(&[0u8])];
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None) {
            Ok(1) => return Ok(()),
            Ok(_) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from_raw_os_error(e as i32)),
        }
    }
}

/// The [`ClientError`] inside an `io::Error` from [`PerformResponse`], if
/// that is what it is; else the `io::Error` back.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_secret() {
        let mut token = NewToken::new(
            "m1",
            TokenKind::Maas,
            "http://h/MAAS/",
            Secret::from_str_value("ck:tk:VerySecret"),
        );
        token.comment = Some("c".into());
        let login =
            MaasLoginParams::new("m1", "http://h/MAAS/", Secret::from_str_value("VerySecret"));
        let header = SignedHeader {
            name: "Authorization".into(),
            value: Secret::from_str_value("Bearer VerySecret"),
        };
        for dbg in [format!("{token:?}"), format!("{login:?}"), format!("{header:?}")] {
            assert!(!dbg.contains("VerySecret"), "{dbg}");
        }
    }

    #[test]
    fn timeouts_round_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::from_secs(30)), 30);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(whole_seconds(Duration::ZERO), 0);
        assert_eq!(whole_seconds(Duration::MAX), u64::MAX);
    }

    #[test]
    fn every_error_has_its_exit_code() {
        let agent = |code| ClientError::Agent(Failure::new(code, "x"));
        assert_eq!(ClientError::NoAgent("x".into()).exit_code(), 3);
        assert_eq!(ClientError::Connection("x".into()).exit_code(), 1);
        assert_eq!(ClientError::Usage("x".into()).exit_code(), 2);
        assert_eq!(agent(ErrorCode::Policy).exit_code(), 5);
        assert_eq!(agent(ErrorCode::Store).exit_code(), 6);
        assert_eq!(agent(ErrorCode::Upstream).exit_code(), 7);
    }
}
