//! Token lifecycle through the APIs themselves: the MAAS and VMS token
//! services behind one trait ([`TokenApi`]), and the operations written
//! once over it: create, revoke, rotate.
//!
//! A key minted here goes straight from the server's answer into the store:
//! it reaches the client only when the user asked to see it (`--show`).
//! Server answers that list tokens carry every token's secret; only names
//! and keys (or ids) leave this module.

pub mod maas;
pub mod maas_import;
pub mod vms;

use std::sync::Arc;

use serde_json::Value;
use signet_proto::{ErrorCode, Failure, Response, Secret, ServerToken, TokenKind, TokenParams};

use crate::agent::{Agent, Peer, now};
use crate::entry::Entry;
use crate::http::{ApiBody, call_api};
use crate::{policy, validate};

/// A stored token, its secret and its HTTP client: what a call to a token
/// API needs. `entry` need not be stored yet (a login being verified).
pub struct Held {
    pub entry: Entry,
    pub secret: Arc<Secret>,
    pub client: reqwest::Client,
}

impl Held {
    /// A signed call to the token API, its answer read whole (and wiped
    /// when dropped: it may carry a secret).
    pub async fn call(
        &self,
        agent: &Agent,
        method: reqwest::Method,
        target: &str,
        body: ApiBody,
    ) -> Result<(u16, zeroize::Zeroizing<Vec<u8>>), Failure> {
        let answer =
            call_api(&self.client, &self.entry, &self.secret, method, target, body).await?;
        if !self.entry.id.is_empty() {
            agent.store.record_use(&self.entry.id, now());
        }
        Ok(answer)
    }

    /// The same token's settings and client with another secret: how a
    /// freshly minted token is tried before it is stored.
    fn with(&self, secret: Secret, params: TokenParams) -> Held {
        let mut entry = self.entry.clone();
        entry.id = String::new();
        entry.params = params;
        Held { entry, secret: Arc::new(secret), client: self.client.clone() }
    }
}

/// Takes the stored token `name` of `kind` for a call to its API: it must
/// exist, be of that kind and not have expired, and pass the access gate
/// as any use does (the lock, its lifetime, a confirmation).
pub async fn hold(agent: &Agent, peer: Peer, name: &str, kind: TokenKind) -> Result<Held, Failure> {
    validate::name(name)?;
    let entry = agent.store.get(peer.uid, name)?;
    if entry.kind != kind {
        return Err(Failure::usage(format!(
            "token `{name}` is a {} token; this command needs a {kind} token",
            entry.kind
        )));
    }
    let at = now();
    policy::check_not_expired(&entry, at)?;
    let base = url::Url::parse(&entry.url)
        .map_err(|_| Failure::other(format!("token `{name}` has an unusable URL")))?;
    let dest = crate::access::Destination { method: "(token management)", url: &base };
    agent.access.admit_use(peer, &entry, &dest, at).await?;
    let secret = agent.store.secret(&entry).await?;
    let client = agent.http.client(&entry)?;
    Ok(Held { entry, secret, client })
}

/// What a user may ask of a token the server mints.
#[derive(Debug, Default, Clone)]
pub struct MintRequest {
    /// The token's name on the server.
    pub token_name: Option<String>,
    /// A server-side expiry (`30D`, `3600s`, …): VMS only.
    pub expires: Option<String>,
    /// Mint for another user: VMS only.
    pub owner: Option<String>,
    /// How the agent guards the new token locally.
    pub access: signet_proto::TokenAccess,
}

/// A token the server has just minted.
pub struct Minted {
    pub secret: Secret,
    /// The server's handle for it: MAAS token key, VMS id.
    pub remote_id: String,
    /// Its settings as they will be stored.
    pub params: TokenParams,
}

/// How a service names taking a token away, for messages.
pub struct Verbs {
    /// `delete`, `revoke`.
    pub verb: &'static str,
    /// `deleting`, `revoking`.
    pub verbing: &'static str,
    /// `deleted`, `revoked`.
    pub done: &'static str,
    /// The command that does it by hand: `maas delete-token`.
    pub command: &'static str,
}

/// One token service (MAAS, VMS): the calls create, revoke and rotate are
/// written over.
pub trait TokenApi {
    /// The kind of local token that speaks this API.
    const KIND: TokenKind;
    const VERBS: Verbs;
    /// Whether the server keeps an expiry of its own, which a rotation must
    /// carry over.
    const SERVER_EXPIRY: bool;
    /// The server's own name for a token minted without one.
    const DEFAULT_TOKEN_NAME: Option<&'static str>;

    /// Refuses what this service cannot honour, before anything is sent.
    fn check_mint(&self, req: &MintRequest) -> Result<(), Failure>;
    /// The server's handle for the token `h` itself authenticates with.
    fn own_id(&self, h: &Held) -> Option<String>;
    /// Checks a handle the user typed, before it is put in a URL or form.
    fn check_id<'a>(&self, id: &'a str) -> Result<&'a str, Failure>;

    // The futures are `Send` so that a connection task that awaits them can
    // run on any of the runtime's threads.
    fn mint(
        &self,
        agent: &Agent,
        h: &Held,
        req: MintRequest,
    ) -> impl Future<Output = Result<Minted, Failure>> + Send;
    /// Proves a freshly minted token works, before anything depends on it.
    fn verify(
        &self,
        agent: &Agent,
        fresh: &Held,
        remote_id: &str,
    ) -> impl Future<Output = Result<(), Failure>> + Send;
    fn list(
        &self,
        agent: &Agent,
        h: &Held,
    ) -> impl Future<Output = Result<Vec<ServerToken>, Failure>> + Send;
    fn rename(
        &self,
        agent: &Agent,
        h: &Held,
        id: &str,
        new: &str,
    ) -> impl Future<Output = Result<(), Failure>> + Send;
    fn revoke(
        &self,
        agent: &Agent,
        h: &Held,
        id: &str,
    ) -> impl Future<Output = Result<(), Failure>> + Send;
}

/// Lists the server's tokens through the stored token `name`.
pub async fn list<A: TokenApi>(
    api: &A,
    agent: &Agent,
    peer: Peer,
    name: &str,
) -> Result<Response, Failure> {
    let h = hold(agent, peer, name, A::KIND).await?;
    Ok(Response::ServerTokens(api.list(agent, &h).await?))
}

/// Renames a server token (its name on the server, not a local name).
pub async fn rename<A: TokenApi>(
    api: &A,
    agent: &Agent,
    peer: Peer,
    name: &str,
    token: &str,
    new_token_name: &str,
) -> Result<Response, Failure> {
    let token = api.check_id(token)?;
    let h = hold(agent, peer, name, A::KIND).await?;
    api.rename(agent, &h, token, new_token_name).await?;
    Ok(Response::Ok)
}

/// Mints a token on the server through `name` and stores it as `new_name`.
/// A minted token that cannot be stored is taken back on the server, so
/// nothing dangles.
pub async fn create<A: TokenApi>(
    api: &A,
    agent: &Agent,
    peer: Peer,
    name: &str,
    new_name: &str,
    req: MintRequest,
    show: bool,
) -> Result<Response, Failure> {
    validate::name(new_name)?;
    api.check_mint(&req)?;
    let access = req.access;
    let created = now();
    let local_expiry = match &req.expires {
        Some(x) => Some(
            signet_proto::expiry::parse_expiry(x)
                .map_err(|e| Failure::usage(e.to_string()))?
                .resolve(created),
        ),
        None => None,
    };
    let local_expiry = validate::expiry_ahead(local_expiry, created)?;
    let h = hold(agent, peer, name, A::KIND).await?;
    if agent.store.get(peer.uid, new_name).is_ok() {
        return Err(Failure::new(
            ErrorCode::Exists,
            format!("a token named `{new_name}` already exists"),
        ));
    }
    let m = api.mint(agent, &h, req).await?;
    let mut e = Entry::draft(new_name, A::KIND, h.entry.url.clone(), peer.uid, created, m.params);
    e.expires = local_expiry;
    crate::access::apply_settings(&mut e, &access, &agent.config, created)?;
    let shown = show.then(|| m.secret.clone());
    match agent.store.add(e, m.secret, agent.config.max_tokens_per_owner).await {
        Ok(added) => {
            if added.removes_at.is_some() {
                agent.access.reap.notify_one();
            }
            Ok(Response::Minted { token: agent.info(&added), shown, notes: Vec::new() })
        }
        Err(err) => {
            let undo = api.revoke(agent, &h, &m.remote_id).await;
            let mut f: Failure = err.into();
            if let Err(u) = undo {
                f.message.push_str(&format!(
                    "; and the token minted on the server ({}) could not be {}: {}",
                    m.remote_id,
                    A::VERBS.done,
                    u.message
                ));
            }
            Err(f)
        }
    }
}

/// Deletes (MAAS) or revokes (VMS) a server token. The very token `name`
/// uses needs `force`, and then `name` goes too.
pub async fn revoke<A: TokenApi>(
    api: &A,
    agent: &Agent,
    peer: Peer,
    name: &str,
    token: &str,
    force: bool,
) -> Result<Response, Failure> {
    let token = api.check_id(token)?;
    let h = hold(agent, peer, name, A::KIND).await?;
    let own = api.own_id(&h).as_deref() == Some(token);
    policy::check_own(own, force, name, token, (A::VERBS.verb, A::VERBS.verbing))?;
    api.revoke(agent, &h, token).await?;
    if own {
        let removed = agent.store.remove(peer.uid, name).await?;
        agent.http.forget(&removed.id);
    }
    Ok(Response::Ok)
}

/// Rotation: mint, verify, swap, take the old one away. A failure or a
/// kill at any step leaves a local token that works; at worst one extra
/// server token exists, which the service's token listing shows.
pub async fn rotate<A: TokenApi>(
    api: &A,
    agent: &Agent,
    peer: Peer,
    name: &str,
) -> Result<Response, Failure> {
    let h = hold(agent, peer, name, A::KIND).await?;
    let old_id = api.own_id(&h).ok_or_else(|| {
        Failure::other(format!("token `{name}` does not say which server token it is"))
    })?;
    // The new token takes the old one's server name and, where the server
    // keeps one, the same expiry instant (as the time that remains).
    let token_name = api
        .list(agent, &h)
        .await?
        .into_iter()
        .find(|t| t.current)
        .and_then(|t| t.name)
        .or_else(|| A::DEFAULT_TOKEN_NAME.map(str::to_string));
    let expires = if A::SERVER_EXPIRY {
        h.entry.expires.map(|t| format!("{}s", (t - now()).max(1)))
    } else {
        None
    };
    let m = api
        .mint(
            agent,
            &h,
            MintRequest { token_name, expires, owner: None, access: Default::default() },
        )
        .await?;
    let fresh = h.with(m.secret.clone(), m.params.clone());
    if let Err(f) = api.verify(agent, &fresh, &m.remote_id).await {
        let _ = api.revoke(agent, &h, &m.remote_id).await;
        return Err(Failure::new(
            f.code,
            format!(
                "rotate: the new token does not work ({}); it was {} again, the old one is unchanged",
                f.message,
                A::VERBS.done
            ),
        ));
    }
    let swapped =
        agent.store.swap_secret(peer.uid, name, m.secret, m.params, h.entry.expires, now()).await?;
    let mut notes = Vec::new();
    let new = Held { entry: swapped.clone(), secret: fresh.secret, client: h.client.clone() };
    if let Err(f) = api.revoke(agent, &new, &old_id).await {
        notes.push(format!(
            "the old server token {old_id} could not be {} ({}); `signet {} {name} {old_id}` does it",
            A::VERBS.done,
            f.message,
            A::VERBS.command
        ));
    }
    tracing::info!(token = %name, "rotated");
    Ok(Response::Minted { token: agent.info(&swapped), shown: None, notes })
}

/// The server's own words, bounded and made printable.
fn server_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let detail = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| text.trim().to_string());
    detail.chars().take(300).map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Turns a refusal of the server into a failure: refused credentials or
/// permission are policy (exit 5), an unknown token is exit 4.
pub fn api_failure(what: &str, status: u16, body: &[u8]) -> Failure {
    let said = server_text(body);
    let said = if said.is_empty() { String::new() } else { format!(": {said}") };
    let code = match status {
        401 | 403 => ErrorCode::Policy,
        404 => ErrorCode::NoSuchToken,
        400 | 409 | 429 => ErrorCode::Policy,
        _ => ErrorCode::Other,
    };
    let f = Failure::new(code, format!("{what}: the server answered {status}{said}"));
    if status == 401 {
        f.with_hint("the server refused the credentials: the token may have been deleted, revoked or expired")
    } else {
        f
    }
}

/// Fails unless `status` is 2xx.
fn expect_success(what: &str, status: u16, body: &[u8]) -> Result<(), Failure> {
    if (200..300).contains(&status) { Ok(()) } else { Err(api_failure(what, status, body)) }
}

fn json(body: &[u8], what: &str) -> Result<Value, Failure> {
    serde_json::from_slice(body)
        .map_err(|e| Failure::other(format!("{what}: the server's answer is not JSON ({e})")))
}

fn str_field(v: &Value, k: &str) -> Option<String> {
    match v.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_refusals_map_to_exit_codes() {
        assert_eq!(api_failure("x", 401, b"").code.exit_code(), 5);
        assert_eq!(api_failure("x", 403, b"{\"detail\":\"no\"}").code.exit_code(), 5);
        assert_eq!(api_failure("x", 404, b"").code.exit_code(), 4);
        assert_eq!(api_failure("x", 500, b"").code.exit_code(), 1);
        let f = api_failure("create token", 400, b"{\"detail\":\"limit of 5 tokens reached\"}");
        assert!(f.message.contains("limit of 5 tokens reached"), "{}", f.message);
    }

    #[test]
    fn server_text_is_bounded_and_printable() {
        let long = format!("{{\"detail\":\"a\\u001b[31m{}\"}}", "x".repeat(1000));
        let t = server_text(long.as_bytes());
        assert!(t.chars().count() <= 300 && !t.contains('\u{1b}'), "{t}");
    }
}
