//! What the caller hands [`Client`](crate::Client) and what it gets back,
//! where the agent's own data types do not fit. Owned by this crate, so that
//! the messages on the wire can change shape without breaking callers.

use std::time::Duration;

use std::path::PathBuf;

use signet_proto::expiry::Expiry;
use signet_proto::{AddToken, ProxyInfo, ProxyStart, TokenAccess};

use crate::{Secret, TlsOptions, TokenInfo, TokenKind, TokenParams};

/// A token to add with [`Client::add`](crate::Client::add), its secret
/// included.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// The name, unique among the caller's tokens: 1 to 64 characters from
    /// `A-Z a-z 0-9 . _ @ -`, starting with a letter or digit.
    pub name: String,
    /// How the token authenticates a request.
    pub kind: TokenKind,
    /// The base URL: the token is used only for URLs under it.
    pub url: String,
    /// When the token stops working, if ever.
    pub expires: Option<Expiry>,
    /// Whether [`Client::sign`](crate::Client::sign) may return a header
    /// that contains the secret itself.
    pub exportable: bool,
    /// Free text shown by `list` and `show`.
    pub comment: Option<String>,
    /// The kind's settings (user name, header name, OAuth keys, TLS).
    pub params: TokenParams,
    /// The secret, in the shape its kind takes (for `maas`:
    /// `consumer_key:token_key:token_secret`).
    pub secret: Secret,
    /// How long the agent keeps it, and whether each use asks first.
    pub access: LocalAccess,
}

/// How the agent guards a token on this machine, whatever the server
/// thinks of it: how long it keeps the token, and whether each use asks
/// the user first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalAccess {
    /// The agent removes the token (index and keyring) this long after it
    /// was added; `None`: the agent's default lifetime, if it has one.
    /// Whole seconds, rounded up.
    pub lifetime: Option<Duration>,
    /// Each use asks the user first, through the agent's askpass program.
    pub confirm: bool,
    /// After a yes, the same program is not asked again for this long
    /// (implies `confirm`). Whole seconds, rounded up.
    pub confirm_for: Option<Duration>,
}

impl LocalAccess {
    pub(crate) fn into_wire(self) -> TokenAccess {
        TokenAccess {
            lifetime_secs: self.lifetime.map(crate::whole_seconds),
            confirm: self.confirm,
            confirm_for_secs: self.confirm_for.map(crate::whole_seconds),
        }
    }
}

impl NewToken {
    /// A token that never expires, is not exportable and has no comment and
    /// default settings.
    pub fn new(
        name: impl Into<String>,
        kind: TokenKind,
        url: impl Into<String>,
        secret: Secret,
    ) -> NewToken {
        NewToken {
            name: name.into(),
            kind,
            url: url.into(),
            expires: None,
            exportable: false,
            comment: None,
            params: TokenParams::default(),
            secret,
            access: LocalAccess::default(),
        }
    }

    pub(crate) fn into_wire(self) -> AddToken {
        AddToken {
            name: self.name,
            kind: self.kind,
            url: self.url,
            expires: self.expires,
            exportable: self.exportable,
            comment: self.comment,
            params: self.params,
            secret: self.secret,
            access: self.access.into_wire(),
        }
    }
}

/// One header line from [`Client::sign`](crate::Client::sign), to attach to
/// the request.
#[derive(Debug, Clone)]
pub struct SignedHeader {
    /// The header's name (`Authorization`, …).
    pub name: String,
    /// The header's value. It is the secret itself for some kinds (an
    /// exportable bearer token, say), hence a [`Secret`]: it never shows in
    /// `Debug` output.
    pub value: Secret,
}

/// A request for the agent to perform with
/// [`Client::perform`](crate::Client::perform).
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// The token that authenticates the request.
    pub name: String,
    /// The HTTP method (`GET`, `POST`, …).
    pub method: String,
    /// Absolute, or relative to the token's base URL. Either way it must lie
    /// under the base URL: the agent refuses anything else.
    pub url: String,
    /// Extra request headers. `Authorization` is refused: the agent sets it.
    pub headers: Vec<(String, String)>,
    /// The body's length when known in advance, sent as `Content-Length`;
    /// without it the body goes chunked. Ignored when there is no body.
    pub body_len: Option<u64>,
    /// How long the whole request may take, upstream included; the agent's
    /// default when `None`. Counted in whole seconds, rounded up.
    pub timeout: Option<Duration>,
    /// The caller will answer the response's head with
    /// [`PerformResponse::deliver_into`](crate::PerformResponse::deliver_into),
    /// offering a file the agent writes the body into itself.
    pub body_into_file: bool,
}

impl HttpRequest {
    /// A request without extra headers, body length or timeout.
    pub fn new(
        name: impl Into<String>,
        method: impl Into<String>,
        url: impl Into<String>,
    ) -> HttpRequest {
        HttpRequest {
            name: name.into(),
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body_len: None,
            timeout: None,
            body_into_file: false,
        }
    }
}

/// What [`Client::maas_login`](crate::Client::maas_login) stores.
#[derive(Debug, Clone)]
pub struct MaasLoginParams {
    /// The local name for the token.
    pub name: String,
    /// The MAAS URL as users give it (`http://maas.example:5240/MAAS/`).
    pub url: String,
    /// With a user name, `secret` is that user's password and the agent
    /// obtains an API key with it; without, `secret` is the API key.
    pub username: Option<String>,
    /// The API key (`consumer_key:token_key:token_secret`) or the password.
    pub secret: Secret,
    /// Check the key with whoami before storing it.
    pub verify: bool,
    /// How the agent verifies the server's certificate.
    pub tls: TlsOptions,
    /// Free text shown by `list` and `show`.
    pub comment: Option<String>,
    /// How long the agent keeps it, and whether each use asks first.
    pub access: LocalAccess,
}

impl MaasLoginParams {
    /// Stores the API key `secret` as `name` once whoami accepts it, with
    /// default TLS verification and no comment.
    pub fn new(name: impl Into<String>, url: impl Into<String>, secret: Secret) -> MaasLoginParams {
        MaasLoginParams {
            name: name.into(),
            url: url.into(),
            username: None,
            secret,
            verify: true,
            tls: TlsOptions::default(),
            comment: None,
            access: LocalAccess::default(),
        }
    }
}

/// A token for MAAS to mint with
/// [`Client::maas_create_token`](crate::Client::maas_create_token).
#[derive(Debug, Clone)]
pub struct NewMaasToken {
    /// The local MAAS token to authenticate with.
    pub name: String,
    /// The local name the new token is stored as.
    pub new_name: String,
    /// The token's name on the server.
    pub token_name: Option<String>,
    /// Return the new secret in [`Minted::shown`], once.
    pub show: bool,
    /// How long the agent keeps the new token, and whether each use asks.
    pub access: LocalAccess,
}

impl NewMaasToken {
    /// Mints through `name` and stores as `new_name`; no server-side name,
    /// the secret not shown.
    pub fn new(name: impl Into<String>, new_name: impl Into<String>) -> NewMaasToken {
        NewMaasToken {
            name: name.into(),
            new_name: new_name.into(),
            token_name: None,
            show: false,
            access: LocalAccess::default(),
        }
    }
}

/// An API token for VMS to mint with
/// [`Client::vms_create_token`](crate::Client::vms_create_token).
#[derive(Debug, Clone)]
pub struct NewVmsToken {
    /// The local `api-token` token to authenticate with.
    pub name: String,
    /// The local name the new token is stored as.
    pub new_name: String,
    /// The token's name on the server.
    pub token_name: Option<String>,
    /// When the token expires: a whole number and a unit (`Y` `M` `w` `d`
    /// `h` `m` `s`, e.g. `30D`) or an RFC 3339 time. The server enforces
    /// it; the local token gets the same expiry.
    pub expires: Option<String>,
    /// Mint the token for this user instead of the caller's.
    pub owner: Option<String>,
    /// Return the new secret in [`Minted::shown`], once.
    pub show: bool,
    /// How long the agent keeps the new token, and whether each use asks.
    pub access: LocalAccess,
}

impl NewVmsToken {
    /// Mints through `name` and stores as `new_name`; no server-side name,
    /// the server's default expiry, for the caller, the secret not shown.
    pub fn new(name: impl Into<String>, new_name: impl Into<String>) -> NewVmsToken {
        NewVmsToken {
            name: name.into(),
            new_name: new_name.into(),
            token_name: None,
            expires: None,
            owner: None,
            show: false,
            access: LocalAccess::default(),
        }
    }
}

/// A token minted on a server and stored by the agent: the answer to
/// creating a server token and to [`Client::rotate`](crate::Client::rotate).
#[derive(Debug, Clone)]
pub struct Minted {
    /// The local token as stored.
    pub token: TokenInfo,
    /// The new secret, only when the caller asked to see it.
    pub shown: Option<Secret>,
    /// Warnings: something the agent could not tidy up (an old server token
    /// it could not delete, say), though the new token works.
    pub notes: Vec<String>,
}

/// Where and how [`Client::proxy_start`](crate::Client::proxy_start)
/// listens.
#[derive(Debug, Clone, Default)]
pub struct ProxyOptions {
    /// The token the proxy signs with.
    pub name: String,
    /// A loopback `IP:PORT` (port 0: any free port); default
    /// `127.0.0.1:0`. Any other address is refused.
    pub listen: Option<String>,
    /// Listen on a Unix socket at this absolute path instead.
    pub unix: Option<PathBuf>,
    /// Serve HTTPS with a certificate made for this proxy; its CA is
    /// written to [`RunningProxy::ca_file`].
    pub tls: bool,
}

impl ProxyOptions {
    /// A proxy for `name` on any free loopback port, plain HTTP.
    pub fn new(name: impl Into<String>) -> ProxyOptions {
        ProxyOptions { name: name.into(), ..ProxyOptions::default() }
    }

    pub(crate) fn to_wire(&self, tie: bool) -> Result<ProxyStart, crate::ClientError> {
        let unix = match &self.unix {
            None => None,
            Some(p) => Some(
                p.to_str()
                    .ok_or_else(|| {
                        crate::ClientError::Usage("the --unix path is not UTF-8".into())
                    })?
                    .to_string(),
            ),
        };
        Ok(ProxyStart {
            name: self.name.clone(),
            listen: self.listen.clone(),
            unix,
            tls: self.tls,
            tie,
        })
    }
}

/// A proxy the agent runs.
#[derive(Debug, Clone)]
pub struct RunningProxy {
    /// The token it signs with.
    pub name: String,
    /// The token's kind: what shape [`RunningProxy::credential`] has.
    pub kind: TokenKind,
    /// The local URL that stands for the token's base URL.
    pub url: String,
    /// The token's base URL.
    pub upstream: String,
    /// Its Unix socket, when it listens on one.
    pub unix: Option<PathBuf>,
    /// With TLS: the CA certificate (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// The credential to present to the proxy; only when it was just
    /// started, never in a list.
    pub credential: Option<Secret>,
    /// When it started, Unix seconds.
    pub started: i64,
    /// Whether it dies with the connection that started it.
    pub tied: bool,
}

impl RunningProxy {
    pub(crate) fn from_wire(p: ProxyInfo) -> RunningProxy {
        RunningProxy {
            name: p.name,
            kind: p.kind,
            url: p.url,
            upstream: p.upstream,
            unix: p.unix.map(PathBuf::from),
            ca_file: p.ca_file.map(PathBuf::from),
            credential: p.credential,
            started: p.started,
            tied: p.tied,
        }
    }
}

/// A proxy tied to its connection: dropping this (or the process ending,
/// however it ends) stops it.
pub struct TiedProxy {
    /// What is running.
    pub proxy: RunningProxy,
    pub(crate) _conn: Box<crate::Client>,
}

impl std::fmt::Debug for TiedProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TiedProxy").field("proxy", &self.proxy).finish_non_exhaustive()
    }
}

/// A store the agent can keep secrets in: the target of
/// [`Client::migrate`](crate::Client::migrate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The encrypted vault file in the agent's data directory.
    File,
    /// The Secret Service on the session bus (gnome-keyring, KeePassXC, …).
    SecretService,
    /// The kernel keyring: gone at reboot.
    Keyutils,
}

impl StoreKind {
    /// The name `signet-agent --store` and the wire use.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::File => "file",
            StoreKind::SecretService => "secret-service",
            StoreKind::Keyutils => "keyutils",
        }
    }
}

/// What a migration did: the answer to [`Client::migrate`](crate::Client::migrate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The store the secrets were in.
    pub from: String,
    /// The store they are in now.
    pub to: String,
    /// How many tokens' secrets moved.
    pub moved: u32,
    /// Old copies the old store refused to delete (they stay, unused).
    pub left_behind: u32,
}

/// Which records [`Client::audit`](crate::Client::audit) asks for.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only the records of this token (and any `dropped` record, which
    /// concerns every token).
    pub token: Option<String>,
    /// Only the records of the last this long, by the agent's clock.
    pub since: Option<Duration>,
}

/// One line of the agent's audit trail. Never holds a secret, a header
/// value or a query string.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AuditRecord {
    /// RFC 3339, UTC, with microseconds.
    pub time: String,
    /// `sign`, `request`, `add`, `rm`, `rename`, `login`, a lifecycle
    /// operation (`whoami`, `create-token`, …), a refused request's kind,
    /// or `dropped`.
    pub action: String,
    /// The peer's uid, from SO_PEERCRED.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The peer's pid, from SO_PEERCRED.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// The peer's program, when the agent could read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// `main` or `restricted`: the socket the request came through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// The token used or managed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A rename's new name, or the name a minted token is stored as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
    /// The HTTP method of a sign or request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// `scheme://host:port` of the destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The destination's path, without its query.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The upstream HTTP status of a performed request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `ok`, a failure code (`policy`, `no-such-token`, …), `client-left`
    /// or `dropped`.
    pub outcome: String,
    /// The exit status `signet` gave for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    /// For `dropped`: how many records were lost to a full queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
}

/// What [`Client::audit`](crate::Client::audit) returns.
#[derive(Debug, Clone, Default)]
pub struct AuditLog {
    /// Oldest first.
    pub records: Vec<AuditRecord>,
    /// Older matching records that did not fit in one answer: narrow the
    /// filter to see them.
    pub omitted: u64,
}
