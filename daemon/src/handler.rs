//! One function per request, behind one dispatch `match`.
//!
//! Handlers are thin: they check input with [`crate::policy`], act through
//! [`crate::store`], and turn the outcome into a [`Response`]. They know
//! nothing of frames or sockets. Every failure leaves as a [`Failure`] whose
//! code the client turns into an exit status; none carries a secret.

use std::path::PathBuf;
use std::time::Instant;

use signet_proto::token::validate_name;
use signet_proto::{
    AddToken, ErrorCode, Failure, PROTOCOL_VERSION, Request, Response, Secret, SignRequest,
    StatusInfo, TokenInfo,
};

use crate::config::Config;
use crate::http::Http;
use crate::policy;
use crate::sign;
use crate::store::index::{Entry, EntryState};
use crate::store::{Store, StoreError};

/// Everything a handler may use.
pub struct Agent {
    pub store: Store,
    pub config: Config,
    pub started: Instant,
    pub socket: PathBuf,
    pub http: Http,
}

/// Who is asking: from SO_PEERCRED on the connection.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub uid: u32,
    pub pid: i32,
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn owner_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

pub fn info(e: &Entry, now: i64) -> TokenInfo {
    info_as(e, now, owner_name(e.owner_uid))
}

/// [`info`] with the owner's name already looked up (once per listing, not
/// once per token: each lookup reads the passwd database).
fn info_as(e: &Entry, now: i64, owner: String) -> TokenInfo {
    TokenInfo {
        name: e.name.clone(),
        kind: e.kind,
        url: e.url.clone(),
        owner_uid: e.owner_uid,
        owner,
        created: e.created,
        expires: e.expires,
        expired: policy::is_expired(e, now),
        last_used: e.last_used,
        use_count: e.use_count,
        exportable: e.exportable,
        comment: e.comment.clone(),
        params: e.params.clone(),
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        match e {
            StoreError::NoSuchToken(_) => Failure::new(ErrorCode::NoSuchToken, e.to_string())
                .with_hint("`signet list` shows your tokens"),
            StoreError::Exists(_) => Failure::new(ErrorCode::Exists, e.to_string())
                .with_hint("choose another name, or `signet rm` the old token first"),
            StoreError::LimitReached(n) => policy::limit_failure(n),
            StoreError::Keyring(k) => {
                let f = Failure::new(ErrorCode::Store, k.to_string());
                match k {
                    crate::store::keyring::KeyringError::Locked(_) => {
                        f.with_hint("unlock your keyring (e.g. log in to the desktop session, or `gnome-keyring-daemon --unlock`) and try again")
                    }
                    _ => f,
                }
            }
            StoreError::Index(_) | StoreError::Setup(_) => {
                Failure::new(ErrorCode::Store, e.to_string())
            }
        }
    }
}

pub(crate) fn name_ok(name: &str) -> Result<(), Failure> {
    validate_name(name).map_err(|e| Failure::new(ErrorCode::Usage, e.to_string()))
}

/// The single dispatch point.
pub async fn handle(agent: &Agent, peer: Peer, req: Request) -> Response {
    let result = match req {
        Request::Hello { .. } => Err(Failure::new(
            ErrorCode::Protocol,
            "unexpected Hello: the handshake was already done on this connection",
        )),
        Request::Add(add) => add_token(agent, peer, *add).await,
        Request::List => list(agent, peer),
        Request::Show { name } => show(agent, peer, &name),
        Request::Remove { name } => remove(agent, peer, &name).await,
        Request::Rename { old, new } => rename(agent, peer, &old, &new).await,
        Request::Status => status(agent, peer),
        Request::Sign(r) => sign_request(agent, peer, r).await,
        Request::MaasLogin(l) => crate::lifecycle::maas_login(agent, peer, *l).await,
        Request::Lifecycle(op) => crate::lifecycle::handle(agent, peer, op).await,
        // Streams: the connection serves these itself (crate::http).
        Request::Perform(_) | Request::BodyChunk(_) | Request::BodyEnd => Err(Failure::new(
            ErrorCode::Protocol,
            "a body frame outside of a request that has a body",
        )),
    };
    result.unwrap_or_else(Response::Failure)
}

#[tracing::instrument(skip_all, fields(uid = peer.uid, token = %add.name, kind = %add.kind))]
async fn add_token(agent: &Agent, peer: Peer, add: AddToken) -> Result<Response, Failure> {
    name_ok(&add.name)?;
    let (url, params) = policy::check_new_token(
        add.kind,
        &add.url,
        &add.secret,
        &add.params,
        add.comment.as_deref(),
    )?;
    let created = now();
    let expires = add.expires.map(|x| x.resolve(created));
    if let Some(t) = expires
        && t <= created
    {
        return Err(Failure::new(
            ErrorCode::Usage,
            format!("expiry {} is not in the future", signet_proto::expiry::format_time(t)),
        ));
    }
    let entry = Entry {
        id: String::new(),
        state: EntryState::Adding,
        name: add.name,
        kind: add.kind,
        url,
        owner_uid: peer.uid,
        created,
        expires,
        last_used: None,
        use_count: 0,
        exportable: add.exportable,
        comment: add.comment,
        params,
    };
    let added = agent.store.add(entry, add.secret, agent.config.max_tokens_per_owner).await?;
    tracing::info!("token added");
    Ok(Response::Token(info(&added, now())))
}

fn list(agent: &Agent, peer: Peer) -> Result<Response, Failure> {
    let now = now();
    let owner = owner_name(peer.uid);
    let tokens = agent.store.list(peer.uid)?;
    Ok(Response::Tokens(tokens.iter().map(|e| info_as(e, now, owner.clone())).collect()))
}

fn show(agent: &Agent, peer: Peer, name: &str) -> Result<Response, Failure> {
    name_ok(name)?;
    Ok(Response::Token(info(&agent.store.get(peer.uid, name)?, now())))
}

#[tracing::instrument(skip_all, fields(uid = peer.uid, token = %name))]
async fn remove(agent: &Agent, peer: Peer, name: &str) -> Result<Response, Failure> {
    name_ok(name)?;
    let removed = agent.store.remove(peer.uid, name).await?;
    agent.http.forget(&removed.id);
    tracing::info!("token removed");
    Ok(Response::Ok)
}

#[tracing::instrument(skip_all, fields(uid = peer.uid, token = %old, new = %new))]
async fn rename(agent: &Agent, peer: Peer, old: &str, new: &str) -> Result<Response, Failure> {
    name_ok(old)?;
    name_ok(new)?;
    let e = agent.store.rename(peer.uid, old, new).await?;
    tracing::info!("token renamed");
    Ok(Response::Token(info(&e, now())))
}

async fn sign_request(agent: &Agent, peer: Peer, r: SignRequest) -> Result<Response, Failure> {
    name_ok(&r.name)?;
    let e = agent.store.get(peer.uid, &r.name)?;
    let now = now();
    policy::check_not_expired(&e, now)?;
    let (_, url) = policy::scoped_url(&e, &r.url)?;
    let method = policy::check_method(&r.method)?;
    policy::check_export(&e, sign::reveals_secret(e.kind, &e.params))?;
    let secret = agent.store.secret(&e).await?;
    let lines = crate::http::sign_now(&e, &secret, &method, &url, &r.form)?;
    agent.store.record_use(&e.id, now);
    Ok(Response::Signed(
        lines.into_iter().map(|h| (h.name, Secret::new(h.value.as_bytes().to_vec()))).collect(),
    ))
}

fn status(agent: &Agent, peer: Peer) -> Result<Response, Failure> {
    Ok(Response::Status(StatusInfo {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: PROTOCOL_VERSION,
        store: agent.store.keyring_name().to_string(),
        tokens: agent.store.list(peer.uid)?.len() as u32,
        uptime_secs: agent.started.elapsed().as_secs(),
        socket: agent.socket.display().to_string(),
        data_dir: agent.store.data_dir().display().to_string(),
        max_tokens_per_owner: agent.config.max_tokens_per_owner,
    }))
}
