//! The messages: one [`Request`] variant per operation, and its answers.
//!
//! A connection starts with `Hello` both ways, carrying [`PROTOCOL_VERSION`];
//! the agent answers a mismatch with a [`Failure`] of code
//! [`ErrorCode::Protocol`] and closes. After that the client sends one request
//! and reads its answer, as many times as it likes.
//!
//! New variants go at the end of each enum: bincode encodes the variant
//! index, so appending keeps every existing message's encoding.
//!
//! [`PROTOCOL_VERSION`]: crate::PROTOCOL_VERSION

use serde::{Deserialize, Serialize};

use crate::expiry::Expiry;
use crate::secret::Secret;
use crate::token::{TokenAccess, TokenInfo, TokenKind, TokenParams};

/// `signet add`: everything about a new token, its secret included.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddToken {
    pub name: String,
    pub kind: TokenKind,
    pub url: String,
    pub expires: Option<Expiry>,
    pub exportable: bool,
    pub comment: Option<String>,
    pub params: TokenParams,
    pub secret: Secret,
    pub access: TokenAccess,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// First message on every connection.
    Hello {
        version: u32,
        software: String,
    },
    Add(Box<AddToken>),
    /// Every token of the caller, sorted by name. Never touches the keyring.
    List,
    Show {
        name: String,
    },
    Remove {
        name: String,
    },
    /// Changes the name only: the keyring entry is keyed by an immutable id.
    Rename {
        old: String,
        new: String,
    },
    Status,
    /// `signet sign`: the header lines to attach, answered with `Signed`.
    Sign(SignRequest),
    /// `signet request`: the agent performs the request. The agent answers
    /// `Proceed` (or a `Failure`); when `has_body`, the client then sends
    /// the body as `BodyChunk` frames and a `BodyEnd`; the agent then sends
    /// `Head`, the response body as `BodyChunk` frames and a `BodyEnd`, or a
    /// `Failure` at any point before `BodyEnd`. Either body may instead be
    /// a file whose descriptor the client passes (`body_fd`, `response_fd`).
    Perform(PerformRequest),
    BodyChunk(Chunk),
    BodyEnd,
    /// `signet maas login`: verify and store a MAAS key, or obtain one
    /// with a user name and password; answered with `Token`.
    MaasLogin(Box<MaasLogin>),
    /// Server-side token management through a stored token.
    Lifecycle(LifecycleOp),
    /// `signet proxy NAME`: serve a loopback HTTP endpoint that re-signs
    /// with the token; answered with `ProxyStarted`. With `tie`, the
    /// proxy lives only as long as this connection: the agent answers, then
    /// reads nothing more on it and stops the proxy when the client closes.
    ProxyStart(ProxyStart),
    /// `signet proxy --stop NAME`: stops the caller's proxies for the
    /// token `name`; answered with `Proxies` (those stopped).
    ProxyStop {
        name: String,
    },
    /// `signet proxy --list`: the caller's running proxies, without their
    /// local credentials; answered with `Proxies`.
    ProxyList,
    /// `signet lock`: wipe every secret from the agent's memory and refuse
    /// every use until `Unlock` with the same passphrase. Answered `Ok`.
    Lock {
        passphrase: Secret,
    },
    /// `signet unlock`. `passphrase` is `None` only for an agent that
    /// locked itself (idle, session lock, sleep): such a lock has none.
    Unlock {
        passphrase: Option<Secret>,
    },
    /// `signet vault passwd`: re-seal every secret of the vault file under
    /// `new`, after checking `old`, in one atomic replacement of the file;
    /// answered with `Ok`.
    VaultPasswd {
        old: Secret,
        new: Secret,
    },
    /// `signet migrate --to STORE`: move every token's secret into another
    /// store (`file`, `secret-service` or `keyutils`); `passphrase` opens or
    /// creates the vault when the target is `file`. Answered with `Migrated`.
    Migrate {
        to: String,
        passphrase: Option<Secret>,
    },
    /// `signet audit`: the audit trail's records, answered with
    /// `AuditLines`.
    Audit(AuditQuery),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    Hello {
        version: u32,
        software: String,
    },
    Ok,
    Failure(Failure),
    Token(TokenInfo),
    Tokens(Vec<TokenInfo>),
    Status(StatusInfo),
    /// Header lines (name, value) to attach to the request. The value may
    /// be the secret itself (exportable tokens), hence a `Secret`.
    Signed(Vec<(String, Secret)>),
    /// The request passed policy: send the body, if any.
    Proceed,
    Head(ResponseHead),
    BodyChunk(Chunk),
    BodyEnd,
    Account(AccountInfo),
    ServerTokens(Vec<ServerToken>),
    /// A token minted on the server and stored locally; `shown` only when
    /// the caller asked to see it (`--show`).
    Minted {
        token: TokenInfo,
        shown: Option<Secret>,
        notes: Vec<String>,
    },
    /// What `maas import` did, one line per profile.
    Imported(Vec<ImportOutcome>),
    /// A proxy is listening; `credential` is its local credential.
    ProxyStarted(ProxyInfo),
    Proxies(Vec<ProxyInfo>),
    /// What `migrate` did.
    Migrated(MigrateOutcome),
    /// Audit records, oldest first, each one JSON line as the trail holds
    /// it (no newline); `omitted` older matching records did not fit in
    /// one frame.
    AuditLines {
        lines: Vec<String>,
        omitted: u64,
    },
}

/// `signet proxy NAME [--listen ADDR | --unix PATH] [--tls]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxyStart {
    pub name: String,
    /// A loopback `IP:PORT` (port 0: any free port); default `127.0.0.1:0`.
    pub listen: Option<String>,
    /// Listen on a Unix socket at this absolute path instead.
    pub unix: Option<String>,
    /// Serve HTTPS with a certificate made for this proxy.
    pub tls: bool,
    /// Stop the proxy when this connection closes (`signet exec`).
    pub tie: bool,
}

/// A running proxy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxyInfo {
    /// The token it signs with.
    pub name: String,
    pub kind: TokenKind,
    /// The local URL that stands for the token's base URL
    /// (`http://127.0.0.1:PORT/`; `http://localhost/` on a Unix socket).
    pub url: String,
    /// The token's base URL, which the local URL maps to.
    pub upstream: String,
    /// The Unix socket it listens on, if not TCP.
    pub unix: Option<String>,
    /// With TLS: the PEM file of the certificate to trust (0600).
    pub ca_file: Option<String>,
    /// The credential a tool presents to this proxy, shaped as the token's
    /// kind expects; only in `ProxyStarted`, never in a list.
    pub credential: Option<Secret>,
    /// Unix seconds.
    pub started: i64,
    /// Whether it dies with the connection that started it.
    pub tied: bool,
}

/// The answer to `Migrate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrateOutcome {
    /// The store the secrets were in.
    pub from: String,
    /// The store they are in now; the agent uses it from now on.
    pub to: String,
    /// Tokens moved (every token of the agent, whoever owns it).
    pub moved: u32,
    /// Copies the old store refused to delete: they stay there, unused.
    pub left_behind: u32,
}

/// Which audit records `signet audit` wants.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Only the records of this token.
    pub token: Option<String>,
    /// Only the records of the last this many seconds, by the agent's clock.
    pub since_secs: Option<u64>,
}

/// `signet maas login NAME URL [--username U]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MaasLogin {
    pub name: String,
    /// The MAAS URL as users give it (`http://host:5240/MAAS/`).
    pub url: String,
    /// With a user name, `secret` is the password and the agent obtains
    /// the key; without, `secret` is the API key.
    pub username: Option<String>,
    pub secret: Secret,
    /// Check the key with whoami before storing it.
    pub verify: bool,
    pub tls: crate::token::TlsOptions,
    pub comment: Option<String>,
    pub access: TokenAccess,
}

/// Which API a lifecycle operation speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Service {
    Maas,
    Vms,
}

/// Server-side token operations, each through the stored token `name`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LifecycleOp {
    Whoami {
        name: String,
    },
    ListTokens {
        service: Service,
        name: String,
    },
    /// Mint a token on the server and store it locally as `new_name`.
    CreateToken {
        service: Service,
        name: String,
        new_name: String,
        token_name: Option<String>,
        /// VMS expiry (`30D`, …).
        expires: Option<String>,
        /// VMS: mint for another user.
        owner: Option<String>,
        show: bool,
        /// How the agent guards the new token locally.
        access: TokenAccess,
    },
    /// MAAS: delete by token key; VMS: revoke by id.
    DeleteToken {
        service: Service,
        name: String,
        token: String,
        force: bool,
    },
    RenameToken {
        service: Service,
        name: String,
        token: String,
        new_token_name: String,
    },
    Rotate {
        name: String,
    },
    /// Import MAAS CLI profiles from its SQLite database.
    MaasImport {
        db: String,
        scrub: bool,
    },
}

/// `maas whoami`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    pub username: String,
    pub email: Option<String>,
    pub is_superuser: Option<bool>,
    pub is_local: Option<bool>,
}

/// A token as the server lists it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerToken {
    /// MAAS: the token key; VMS: the token id.
    pub id: String,
    pub name: Option<String>,
    pub owner: Option<String>,
    pub created: Option<String>,
    pub expiry: Option<String>,
    pub last_used: Option<String>,
    pub revoked: Option<bool>,
    /// The token the asking local token itself uses.
    pub current: bool,
}

/// One MAAS CLI profile's fate in `maas import`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportOutcome {
    pub profile: String,
    pub imported: bool,
    pub scrubbed: bool,
    pub note: String,
}

/// `signet sign NAME [METHOD] URL [--form K=V]...`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignRequest {
    pub name: String,
    pub method: String,
    /// Absolute, or relative to the token's base URL.
    pub url: String,
    /// Form parameters the signature covers (OAuth HMAC).
    pub form: Vec<(String, String)>,
}

/// `signet request`: what the agent should send upstream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PerformRequest {
    pub name: String,
    pub method: String,
    /// Absolute, or relative to the token's base URL.
    pub url: String,
    /// Extra request headers (`-H`). `Authorization` is refused: the agent
    /// sets it.
    pub headers: Vec<(String, String)>,
    pub has_body: bool,
    /// The body's length when known (a file): sent as Content-Length.
    pub body_len: Option<u64>,
    /// Whole-request timeout in seconds.
    pub timeout_secs: Option<u64>,
    /// With `has_body`: the body is a regular file whose descriptor the
    /// client passes after `Proceed`, instead of chunk frames, and the
    /// agent reads it from its offset to its end.
    pub body_fd: bool,
    /// After `Head`, the client sends one byte, with or without the
    /// descriptor of a regular file or `/dev/null` open for writing; with
    /// one, the agent writes the response body there instead of sending it
    /// in chunk frames.
    pub response_fd: bool,
}

/// The status line and headers of the upstream response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    /// `HTTP/1.1`, `HTTP/2`.
    pub version: String,
    /// Names lower-case as received; values as raw bytes.
    pub headers: Vec<(String, Chunk)>,
    /// The URL that answered, after redirects.
    pub url: String,
    /// Why the agent did not follow the redirect this response is, when it
    /// is one (out of the token's scope, too many hops, a streamed body the
    /// agent cannot send again): the client tells the user.
    pub unfollowed: Option<String>,
}

/// Opaque bytes, encoded as one length-prefixed run rather than element by
/// element (which would cost a call per byte for a 100 MiB body).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Chunk(pub Vec<u8>);

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Chunk({} bytes)", self.0.len())
    }
}

impl Serialize for Chunk {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Chunk {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::codec::deserialize_bytes(d).map(Chunk)
    }
}

/// The largest body chunk either side puts in one frame: well under
/// [`crate::MAX_FRAME`] so the framing overhead always fits.
pub const MAX_CHUNK: usize = 256 * 1024;

/// What `signet status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    pub pid: u32,
    pub version: String,
    pub protocol: u32,
    /// `secret-service`, `keyutils` or `file`.
    pub store: String,
    /// Tokens the caller owns.
    pub tokens: u32,
    pub uptime_secs: u64,
    pub socket: String,
    pub data_dir: String,
    pub max_tokens_per_owner: Option<u32>,
    /// What locks the agent now, if it is locked.
    pub locked: Option<LockKind>,
    /// `idle_lock_secs` of the agent's config.
    pub idle_lock_secs: Option<u64>,
}

/// Why the agent is locked, which says how it is unlocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockKind {
    /// `signet lock`: `signet unlock` needs the same passphrase.
    Passphrase,
    /// The agent locked itself (idle, session locked, sleep): `signet
    /// unlock` needs no passphrase, only the user's presence.
    Auto,
    /// The agent started on a vault without its passphrase: `signet
    /// unlock` with the vault's passphrase opens the vault.
    Vault,
}

/// The class of a failure; each maps to one exit code of `signet` (the
/// table in docs/protocol.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    Other,
    /// Malformed input: bad name, URL, duration, secret shape.
    Usage,
    /// Protocol version mismatch or a message the agent cannot read.
    Protocol,
    NoSuchToken,
    /// Refused by policy: expired, out of scope, not exportable, limit,
    /// permission.
    Policy,
    /// The keyring or the index could not be read or written.
    Store,
    /// The upstream server could not be reached.
    Upstream,
    /// A token with that name already exists.
    Exists,
}

impl ErrorCode {
    /// The process exit code for this failure.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorCode::Other | ErrorCode::Exists => 1,
            ErrorCode::Usage => 2,
            ErrorCode::Protocol => 3,
            ErrorCode::NoSuchToken => 4,
            ErrorCode::Policy => 5,
            ErrorCode::Store => 6,
            ErrorCode::Upstream => 7,
        }
    }
}

/// A refused or failed request: what went wrong and, where it helps, what
/// to do about it. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Failure { code, message: message.into(), hint: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Malformed input (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(ErrorCode::Usage, message)
    }

    /// Refused by policy (exit 5).
    pub fn policy(message: impl Into<String>) -> Self {
        Failure::new(ErrorCode::Policy, message)
    }

    /// The upstream server could not be reached (exit 7).
    pub fn upstream(message: impl Into<String>) -> Self {
        Failure::new(ErrorCode::Upstream, message)
    }

    /// Anything else (exit 1).
    pub fn other(message: impl Into<String>) -> Self {
        Failure::new(ErrorCode::Other, message)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// `signet-agent/<version>` or `signet/<version>`, sent in `Hello`.
pub fn agent_version_string(program: &str) -> String {
    format!("{program}/{}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[test]
    fn add_request_debug_hides_the_secret() {
        let add = AddToken {
            name: "m1".into(),
            kind: TokenKind::Maas,
            url: "http://h/MAAS/".into(),
            expires: None,
            exportable: false,
            comment: None,
            params: TokenParams::default(),
            secret: Secret::from_str_value("ck:tk:VerySecret"),
            access: TokenAccess::default(),
        };
        let dbg = format!("{:?}", Request::Add(Box::new(add.clone())));
        assert!(!dbg.contains("VerySecret"), "{dbg}");
        let back: Request =
            codec::decode(&codec::encode(&Request::Add(Box::new(add))).unwrap()).unwrap();
        let Request::Add(back) = back else { panic!("wrong variant") };
        assert_eq!(back.secret.expose(), b"ck:tk:VerySecret");
    }

    #[test]
    fn the_hello_encoding_is_stable() {
        // Variant 0, version 1, "x": a peer of any later version must still
        // be able to read this and answer with a clear mismatch.
        let bytes = codec::encode(&Request::Hello { version: 1, software: "x".into() }).unwrap();
        assert_eq!(bytes, [0, 1, 1, b'x']);
        let bytes = codec::encode(&Response::Hello { version: 1, software: "x".into() }).unwrap();
        assert_eq!(bytes, [0, 1, 1, b'x']);
    }

    #[test]
    fn lock_and_unlock_encode_as_docs_protocol_md_shows() {
        let lock = Request::Lock { passphrase: Secret::from_str_value("pass") };
        assert_eq!(codec::encode(&lock).unwrap(), [0x10, 4, b'p', b'a', b's', b's']);
        let unlock = Request::Unlock { passphrase: Some(Secret::from_str_value("pass")) };
        assert_eq!(codec::encode(&unlock).unwrap(), [0x11, 1, 4, b'p', b'a', b's', b's']);
        assert!(!format!("{lock:?}{unlock:?}").contains("pass\""), "Debug shows the passphrase");
    }

    #[test]
    fn a_full_chunk_fits_in_a_frame() {
        let r = Response::BodyChunk(Chunk(vec![0xab; MAX_CHUNK]));
        let bytes = codec::encode(&r).unwrap();
        assert!(bytes.len() <= crate::MAX_FRAME);
        assert!(bytes.len() < MAX_CHUNK + 16, "chunk is not encoded as one run");
        let Response::BodyChunk(c) = codec::decode::<Response>(&bytes).unwrap() else { panic!() };
        assert_eq!(c.0.len(), MAX_CHUNK);
    }

    #[test]
    fn exit_codes_match_the_spec() {
        use ErrorCode::*;
        let got: Vec<i32> = [Other, Usage, Protocol, NoSuchToken, Policy, Store, Upstream, Exists]
            .iter()
            .map(|c| c.exit_code())
            .collect();
        assert_eq!(got, [1, 2, 3, 4, 5, 6, 7, 1]);
    }
}
