//! Token lifecycle through the APIs themselves: MAAS (log in, who am I,
//! list / create / delete / rename server tokens) and VMS (create, list,
//! rename, revoke), rotation, and import from the MAAS CLI.
//!
//! A key minted here goes straight from the server's answer into the store:
//! it reaches the client only when the user asked to see it (`--show`).
//! Server answers that list tokens carry every token's secret; only names
//! and keys (or ids) leave this module.

use std::sync::Arc;

use serde_json::Value;
use signet_proto::secret::{parse_api_token, parse_maas};
use signet_proto::{
    AccountInfo, ErrorCode, Failure, LifecycleOp, MaasLogin, Response, Secret, ServerToken,
    Service, SignatureMethod, TokenKind, TokenParams,
};
use zeroize::Zeroize;

use crate::handler::{Agent, Peer, info, name_ok, now};
use crate::http::{ApiBody, call_api};
use crate::policy;
use crate::store::index::{Entry, EntryState};

/// MAAS's default name for a new token, as the server gives it.
pub const MAAS_DEFAULT_TOKEN_NAME: &str = "MAAS consumer";

fn usage(msg: impl Into<String>) -> Failure {
    Failure::new(ErrorCode::Usage, msg)
}

fn other(msg: impl Into<String>) -> Failure {
    Failure::new(ErrorCode::Other, msg)
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

/// Turns a refusal of the server into the failure of SPEC §4: refused
/// credentials or permission are policy (5), an unknown token is 4.
fn api_failure(what: &str, status: u16, body: &[u8]) -> Failure {
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

fn json(body: &[u8], what: &str) -> Result<Value, Failure> {
    serde_json::from_slice(body)
        .map_err(|e| other(format!("{what}: the server's answer is not JSON ({e})")))
}

fn str_field(v: &Value, k: &str) -> Option<String> {
    match v.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// A MAAS URL as users give it becomes the API root, as python-libmaas's
/// `api_url` does: `api/2.0/` is appended unless the path already ends in
/// `/api/<version>/`.
pub fn maas_api_url(raw: &str) -> Result<url::Url, Failure> {
    let mut u = signet_proto::token::normalize_base_url(raw).map_err(|e| usage(e.to_string()))?;
    let path = u.path().to_string();
    let segs: Vec<&str> = path.trim_end_matches('/').rsplit('/').take(2).collect();
    let versioned = segs.len() == 2
        && segs[1] == "api"
        && !segs[0].is_empty()
        && segs[0].bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if !versioned {
        u.set_path(&format!("{path}api/2.0/"));
    }
    Ok(u)
}

/// `http://h/MAAS/api/2.0/` -> `http://h/MAAS/`: where `accounts/` lives.
fn maas_root(api: &url::Url) -> url::Url {
    let mut u = api.clone();
    let p = u.path().trim_end_matches('/');
    let root = p.rsplitn(3, '/').nth(2).unwrap_or("");
    u.set_path(&format!("{root}/"));
    u
}

struct Held {
    entry: Entry,
    secret: Arc<Secret>,
    client: reqwest::Client,
}

async fn hold(agent: &Agent, peer: Peer, name: &str, kind: TokenKind) -> Result<Held, Failure> {
    name_ok(name)?;
    let entry = agent.store.get(peer.uid, name)?;
    if entry.kind != kind {
        return Err(usage(format!(
            "token `{name}` is a {} token; this command needs a {kind} token",
            entry.kind
        )));
    }
    policy::check_not_expired(&entry, now())?;
    let secret = agent.store.secret(&entry).await?;
    let client = agent.http.client(&entry)?;
    Ok(Held { entry, secret, client })
}

impl Held {
    async fn call(
        &self,
        agent: &Agent,
        method: reqwest::Method,
        target: &str,
        body: ApiBody,
    ) -> Result<(u16, bytes::Bytes), Failure> {
        call_api(agent, &self.client, &self.entry, &self.secret, method, target, body).await
    }
}

/// A token about to be stored (not yet in the index).
fn draft(name: &str, kind: TokenKind, url: String, owner: u32, params: TokenParams) -> Entry {
    Entry {
        id: String::new(),
        state: EntryState::Adding,
        name: name.to_string(),
        kind,
        url,
        owner_uid: owner,
        created: now(),
        expires: None,
        last_used: None,
        use_count: 0,
        exportable: false,
        comment: None,
        params,
    }
}

fn maas_params(key: &Secret, base: &TokenParams) -> Result<TokenParams, Failure> {
    let k = parse_maas(key).map_err(|e| other(format!("the server's key: {e}")))?;
    Ok(TokenParams {
        consumer_key: Some(k.consumer_key.to_string()),
        token_key: Some(k.token_key.to_string()),
        signature: base.signature.or(Some(SignatureMethod::Plaintext)),
        tls: base.tls.clone(),
        ..TokenParams::default()
    })
}

async fn maas_whoami_with(
    agent: &Agent,
    client: &reqwest::Client,
    e: &Entry,
    s: &Secret,
) -> Result<AccountInfo, Failure> {
    let (status, body) =
        call_api(agent, client, e, s, reqwest::Method::GET, "users/?op=whoami", ApiBody::None)
            .await?;
    if status != 200 {
        return Err(api_failure("who am I", status, &body));
    }
    let v = json(&body, "who am I")?;
    Ok(AccountInfo {
        username: str_field(&v, "username")
            .ok_or_else(|| other("who am I: no username in the answer"))?,
        email: str_field(&v, "email"),
        is_superuser: v.get("is_superuser").and_then(Value::as_bool),
        is_local: v.get("is_local").and_then(Value::as_bool),
    })
}

/// `signet maas login`: verify a key (or obtain one with a password) and
/// store it. Nothing is stored unless the server accepted it.
pub async fn maas_login(agent: &Agent, peer: Peer, l: MaasLogin) -> Result<Response, Failure> {
    name_ok(&l.name)?;
    let api = maas_api_url(&l.url)?;
    let params = TokenParams { tls: l.tls.clone(), ..TokenParams::default() };
    let client = agent.http.uncached(&l.tls)?;
    let key = match &l.username {
        None => {
            signet_proto::secret::validate(TokenKind::Maas, &l.secret)
                .map_err(|e| usage(e.to_string()))?;
            l.secret.clone()
        }
        Some(user) => obtain_maas_key(&client, &api, user, &l.secret).await?,
    };
    // The same checks as `signet add`, which also fill in the key's parts.
    let (url, params) = policy::check_new_token(
        TokenKind::Maas,
        api.as_str(),
        &key,
        &params,
        l.comment.as_deref(),
    )?;
    let mut e = draft(&l.name, TokenKind::Maas, url, peer.uid, params);
    e.comment = l.comment.clone();
    if l.verify || l.username.is_some() {
        maas_whoami_with(agent, &client, &e, &key).await?;
    }
    let added = agent.store.add(e, key, agent.config.max_tokens_per_owner).await?;
    tracing::info!(token = %added.name, "MAAS login stored");
    Ok(Response::Token(info(&added, now())))
}

/// python-libmaas `login`: POST the user name and password to
/// `accounts/authenticate/`; the answer is the key. The password is sent
/// only there, over the URL the user gave.
async fn obtain_maas_key(
    client: &reqwest::Client,
    api: &url::Url,
    user: &str,
    password: &Secret,
) -> Result<Secret, Failure> {
    let url = maas_root(api)
        .join("accounts/authenticate/")
        .map_err(|e| other(format!("cannot build the login URL: {e}")))?;
    let pw = password.expose_str().ok_or_else(|| usage("the password is not valid UTF-8"))?;
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    let form = [("username", user), ("password", pw), ("consumer", &format!("{user}@{host}"))];
    let resp = client
        .post(url.clone())
        .form(&form)
        .timeout(std::time::Duration::from_secs(60))
        .send()
        .await
        .map_err(|e| crate::http::describe(&e, &url))?;
    let status = resp.status().as_u16();
    let mut body = resp
        .bytes()
        .await
        .map_err(|e| {
            Failure::new(ErrorCode::Upstream, format!("cannot read the login answer: {e}"))
        })?
        .to_vec();
    if status != 200 {
        let f = api_failure("log in", status, &body);
        return Err(if status == 403 {
            Failure::new(
                ErrorCode::Policy,
                "log in: the server refused the user name or password (403)",
            )
        } else {
            f
        });
    }
    let key = maas_key_from_answer(&body, "log in");
    body.zeroize();
    key
}

/// A MAAS key from a server answer that carries one (`consumer_key`,
/// `token_key`, `token_secret`), with the parsed copy of the secret wiped.
fn maas_key_from_answer(body: &[u8], what: &str) -> Result<Secret, Failure> {
    let mut v = json(body, what)?;
    let part = |k: &str| str_field(&v, k).filter(|s| !s.is_empty());
    let key = match (part("consumer_key"), part("token_key"), part("token_secret")) {
        (Some(ck), Some(tk), Some(mut ts)) => {
            let k = Secret::from_str_value(&format!("{ck}:{tk}:{ts}"));
            ts.zeroize();
            k
        }
        _ => return Err(other(format!("{what}: the server's answer has no complete key"))),
    };
    if let Some(Value::String(s)) = v.get_mut("token_secret") {
        s.zeroize();
    }
    Ok(key)
}

/// The dispatch of every lifecycle operation.
pub async fn handle(agent: &Agent, peer: Peer, op: LifecycleOp) -> Result<Response, Failure> {
    match op {
        LifecycleOp::Whoami { name } => {
            let h = hold(agent, peer, &name, TokenKind::Maas).await?;
            Ok(Response::Account(maas_whoami_with(agent, &h.client, &h.entry, &h.secret).await?))
        }
        LifecycleOp::ListTokens { service: Service::Maas, name } => {
            maas_tokens(agent, peer, &name).await
        }
        LifecycleOp::ListTokens { service: Service::Vms, name } => {
            vms_tokens(agent, peer, &name).await
        }
        LifecycleOp::CreateToken {
            service: Service::Maas,
            name,
            new_name,
            token_name,
            show,
            ..
        } => maas_create(agent, peer, &name, &new_name, token_name, show).await,
        LifecycleOp::CreateToken {
            service: Service::Vms,
            name,
            new_name,
            token_name,
            expires,
            owner,
            show,
        } => vms_create(agent, peer, &name, &new_name, token_name, expires, owner, show).await,
        LifecycleOp::DeleteToken { service: Service::Maas, name, token, force } => {
            maas_delete(agent, peer, &name, &token, force).await
        }
        LifecycleOp::DeleteToken { service: Service::Vms, name, token, force } => {
            vms_revoke(agent, peer, &name, &token, force).await
        }
        LifecycleOp::RenameToken { service: Service::Maas, name, token, new_token_name } => {
            let h = hold(agent, peer, &name, TokenKind::Maas).await?;
            let form = vec![("token".into(), token), ("name".into(), new_token_name)];
            let (status, body) = h
                .call(
                    agent,
                    reqwest::Method::POST,
                    "account/?op=update_token_name",
                    ApiBody::Form(form),
                )
                .await?;
            if !(200..300).contains(&status) {
                return Err(api_failure("rename token", status, &body));
            }
            Ok(Response::Ok)
        }
        LifecycleOp::RenameToken { service: Service::Vms, name, token, new_token_name } => {
            let h = hold(agent, peer, &name, TokenKind::ApiToken).await?;
            let id = vms_id(&token)?;
            let (status, body) = h
                .call(
                    agent,
                    reqwest::Method::PATCH,
                    &format!("/api/apitokens/{id}/"),
                    ApiBody::Json(serde_json::json!({ "name": new_token_name })),
                )
                .await?;
            if !(200..300).contains(&status) {
                return Err(api_failure("rename token", status, &body));
            }
            Ok(Response::Ok)
        }
        LifecycleOp::Rotate { name } => {
            let e = agent.store.get(peer.uid, &name)?;
            match e.kind {
                TokenKind::Maas => maas_rotate(agent, peer, &name).await,
                TokenKind::ApiToken => vms_rotate(agent, peer, &name).await,
                k => Err(usage(format!("rotate works for maas and api-token tokens, not {k}"))),
            }
        }
        LifecycleOp::MaasImport { db, scrub } => {
            crate::maas_import::import(agent, peer, &db, scrub).await
        }
    }
}

/// The account's tokens: name and key only, whatever else the server sent.
async fn maas_list(agent: &Agent, h: &Held) -> Result<Vec<ServerToken>, Failure> {
    let (status, body) = h
        .call(agent, reqwest::Method::GET, "account/?op=list_authorisation_tokens", ApiBody::None)
        .await?;
    if status != 200 {
        return Err(api_failure("list tokens", status, &body));
    }
    let mut raw = body.to_vec();
    let parsed = json(&raw, "list tokens");
    raw.zeroize();
    let mut v = parsed?;
    let mine = h.entry.params.token_key.clone();
    let mut out = Vec::new();
    if let Some(items) = v.as_array_mut() {
        for item in items.iter_mut() {
            let key = item
                .get("token")
                .and_then(Value::as_str)
                .and_then(|t| t.split(':').nth(1))
                .map(str::to_string);
            if let Some(Value::String(t)) = item.get_mut("token") {
                t.zeroize();
            }
            let Some(key) = key else { continue };
            out.push(ServerToken {
                current: mine.as_deref() == Some(key.as_str()),
                id: key,
                name: str_field(item, "name"),
                owner: None,
                created: None,
                expiry: None,
                last_used: None,
                revoked: None,
            });
        }
    }
    Ok(out)
}

async fn maas_tokens(agent: &Agent, peer: Peer, name: &str) -> Result<Response, Failure> {
    let h = hold(agent, peer, name, TokenKind::Maas).await?;
    Ok(Response::ServerTokens(maas_list(agent, &h).await?))
}

/// Mints a token on the server with `h`'s credentials.
async fn maas_mint(agent: &Agent, h: &Held, token_name: Option<String>) -> Result<Secret, Failure> {
    let form: Vec<(String, String)> =
        token_name.into_iter().map(|n| ("name".to_string(), n)).collect();
    let (status, body) = h
        .call(
            agent,
            reqwest::Method::POST,
            "account/?op=create_authorisation_token",
            ApiBody::Form(form),
        )
        .await?;
    if status != 200 {
        return Err(api_failure("create token", status, &body));
    }
    let mut raw = body.to_vec();
    let key = maas_key_from_answer(&raw, "create token");
    raw.zeroize();
    key
}

async fn maas_delete_key(agent: &Agent, h: &Held, token_key: &str) -> Result<(), Failure> {
    let form = vec![("token_key".to_string(), token_key.to_string())];
    let (status, body) = h
        .call(
            agent,
            reqwest::Method::POST,
            "account/?op=delete_authorisation_token",
            ApiBody::Form(form),
        )
        .await?;
    if !(200..300).contains(&status) {
        return Err(api_failure("delete token", status, &body));
    }
    Ok(())
}

async fn maas_create(
    agent: &Agent,
    peer: Peer,
    name: &str,
    new_name: &str,
    token_name: Option<String>,
    show: bool,
) -> Result<Response, Failure> {
    name_ok(new_name)?;
    let h = hold(agent, peer, name, TokenKind::Maas).await?;
    if agent.store.get(peer.uid, new_name).is_ok() {
        return Err(Failure::new(
            ErrorCode::Exists,
            format!("a token named `{new_name}` already exists"),
        ));
    }
    let key = maas_mint(agent, &h, token_name).await?;
    let params = maas_params(&key, &h.entry.params)?;
    let new_key = params.token_key.clone().unwrap_or_default();
    let e = draft(new_name, TokenKind::Maas, h.entry.url.clone(), peer.uid, params);
    let shown = show.then(|| key.clone());
    match agent.store.add(e, key, agent.config.max_tokens_per_owner).await {
        Ok(added) => Ok(Response::Minted { token: info(&added, now()), shown, notes: Vec::new() }),
        Err(err) => {
            // Nothing may dangle: take the minted token back.
            let undo = maas_delete_key(agent, &h, &new_key).await;
            let mut f: Failure = err.into();
            if let Err(u) = undo {
                f.message.push_str(&format!(
                    "; and the token minted on the server (key {new_key}) could not be deleted: {}",
                    u.message
                ));
            }
            Err(f)
        }
    }
}

async fn maas_delete(
    agent: &Agent,
    peer: Peer,
    name: &str,
    token_key: &str,
    force: bool,
) -> Result<Response, Failure> {
    let h = hold(agent, peer, name, TokenKind::Maas).await?;
    let own = h.entry.params.token_key.as_deref() == Some(token_key);
    check_own(own, force, name, token_key, ("delete", "deleting"))?;
    maas_delete_key(agent, &h, token_key).await?;
    finish_own(agent, peer, name, own).await
}

/// Deleting or revoking the very token a local token uses ends that
/// token's access, as the MAAS CLI warns: only with --force.
fn check_own(
    own: bool,
    force: bool,
    name: &str,
    token: &str,
    (verb, verbing): (&str, &str),
) -> Result<(), Failure> {
    if own && !force {
        return Err(Failure::new(
            ErrorCode::Policy,
            format!("{token} is the token `{name}` itself uses: {verbing} it ends its access"),
        )
        .with_hint(format!(
            "pass --force to {verb} it anyway (the local token is then removed too)"
        )));
    }
    Ok(())
}

/// After the server dropped the token `name` used, `name` goes too.
async fn finish_own(agent: &Agent, peer: Peer, name: &str, own: bool) -> Result<Response, Failure> {
    if own {
        let removed = agent.store.remove(peer.uid, name).await?;
        agent.http.forget(&removed.id);
    }
    Ok(Response::Ok)
}

/// Rotation: mint, verify, swap, delete the old. A failure or a kill at
/// any step leaves a local token that works; at worst one extra server
/// token exists, which `signet maas tokens` shows.
async fn maas_rotate(agent: &Agent, peer: Peer, name: &str) -> Result<Response, Failure> {
    let h = hold(agent, peer, name, TokenKind::Maas).await?;
    let old_key = h.entry.params.token_key.clone().unwrap_or_default();
    let server_name = maas_list(agent, &h)
        .await?
        .into_iter()
        .find(|t| t.current)
        .and_then(|t| t.name)
        .unwrap_or_else(|| MAAS_DEFAULT_TOKEN_NAME.to_string());
    let key = maas_mint(agent, &h, Some(server_name)).await?;
    let params = maas_params(&key, &h.entry.params)?;
    let new_key = params.token_key.clone().unwrap_or_default();
    let mut probe = h.entry.clone();
    probe.id = String::new();
    probe.params = params.clone();
    if let Err(f) = maas_whoami_with(agent, &h.client, &probe, &key).await {
        let _ = maas_delete_key(agent, &h, &new_key).await;
        return Err(Failure::new(
            f.code,
            format!(
                "rotate: the new token does not work ({}); it was deleted, the old one is unchanged",
                f.message
            ),
        ));
    }
    let swapped =
        agent.store.swap_secret(peer.uid, name, key.clone(), params, h.entry.expires).await?;
    let mut notes = Vec::new();
    let new_held = Held { entry: swapped.clone(), secret: Arc::new(key), client: h.client.clone() };
    if let Err(f) = maas_delete_key(agent, &new_held, &old_key).await {
        notes.push(format!(
            "the old server token {old_key} could not be deleted ({}); `signet maas delete-token {name} {old_key}` removes it",
            f.message
        ));
    }
    tracing::info!(token = %name, "rotated");
    Ok(Response::Minted { token: info(&swapped, now()), shown: None, notes })
}

fn vms_id(token: &str) -> Result<&str, Failure> {
    if token.is_empty() || token.len() > 64 || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(usage(format!("invalid VMS token id `{}`", token.escape_debug())));
    }
    Ok(token)
}

fn vms_own_id(h: &Held) -> Option<String> {
    parse_api_token(&h.secret).ok().map(str::to_string)
}

async fn vms_tokens(agent: &Agent, peer: Peer, name: &str) -> Result<Response, Failure> {
    let h = hold(agent, peer, name, TokenKind::ApiToken).await?;
    Ok(Response::ServerTokens(vms_list(agent, &h).await?))
}

/// The API tokens the server lists, never their secrets.
async fn vms_list(agent: &Agent, h: &Held) -> Result<Vec<ServerToken>, Failure> {
    let (status, body) =
        h.call(agent, reqwest::Method::GET, "/api/apitokens/", ApiBody::None).await?;
    if status != 200 {
        return Err(api_failure("list tokens", status, &body));
    }
    let v = json(&body, "list tokens")?;
    let items = v
        .get("results")
        .and_then(Value::as_array)
        .or_else(|| v.as_array())
        .cloned()
        .unwrap_or_default();
    let mine = vms_own_id(h);
    Ok(items
        .iter()
        .filter_map(|t| {
            let id = str_field(t, "id")?;
            Some(ServerToken {
                current: mine.as_deref() == Some(id.as_str()),
                id,
                name: str_field(t, "name"),
                owner: str_field(t, "owner"),
                created: str_field(t, "created"),
                expiry: str_field(t, "expiry_date"),
                last_used: str_field(t, "last_used"),
                revoked: t.get("revoked").and_then(Value::as_bool),
            })
        })
        .collect())
}

async fn vms_mint(
    agent: &Agent,
    h: &Held,
    token_name: Option<String>,
    expires: Option<String>,
    owner: Option<String>,
) -> Result<Secret, Failure> {
    let mut body = serde_json::Map::new();
    if let Some(n) = token_name {
        body.insert("name".into(), Value::String(n));
    }
    if let Some(x) = expires {
        body.insert("expiry_date".into(), Value::String(x));
    }
    if let Some(o) = owner {
        body.insert("owner".into(), Value::String(o));
    }
    let (status, resp) = h
        .call(agent, reqwest::Method::POST, "/api/apitokens/", ApiBody::Json(Value::Object(body)))
        .await?;
    if !(200..300).contains(&status) {
        return Err(api_failure("create token", status, &resp));
    }
    let mut raw = resp.to_vec();
    let parsed = json(&raw, "create token");
    raw.zeroize();
    let mut v = parsed?;
    let token = str_field(&v, "token")
        .ok_or_else(|| other("create token: no token in the server's answer"))?;
    if let Some(Value::String(s)) = v.get_mut("token") {
        s.zeroize();
    }
    let secret = Secret::from_str_value(&token);
    let mut token = token;
    token.zeroize();
    parse_api_token(&secret).map_err(|e| other(format!("create token: {e}")))?;
    Ok(secret)
}

async fn vms_revoke_id(agent: &Agent, h: &Held, id: &str) -> Result<(), Failure> {
    let (status, body) = h
        .call(agent, reqwest::Method::PATCH, &format!("/api/apitokens/{id}/revoke"), ApiBody::None)
        .await?;
    if !(200..300).contains(&status) {
        return Err(api_failure("revoke token", status, &body));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn vms_create(
    agent: &Agent,
    peer: Peer,
    name: &str,
    new_name: &str,
    token_name: Option<String>,
    expires: Option<String>,
    owner: Option<String>,
    show: bool,
) -> Result<Response, Failure> {
    name_ok(new_name)?;
    let local_expiry = match &expires {
        Some(x) => Some(
            signet_proto::expiry::parse_expiry(x).map_err(|e| usage(e.to_string()))?.resolve(now()),
        ),
        None => None,
    };
    let h = hold(agent, peer, name, TokenKind::ApiToken).await?;
    if agent.store.get(peer.uid, new_name).is_ok() {
        return Err(Failure::new(
            ErrorCode::Exists,
            format!("a token named `{new_name}` already exists"),
        ));
    }
    let secret = vms_mint(agent, &h, token_name, expires, owner).await?;
    let new_id = parse_api_token(&secret).map(str::to_string).unwrap_or_default();
    let params = TokenParams {
        tenant: h.entry.params.tenant.clone(),
        tls: h.entry.params.tls.clone(),
        ..TokenParams::default()
    };
    let mut e = draft(new_name, TokenKind::ApiToken, h.entry.url.clone(), peer.uid, params);
    e.expires = local_expiry;
    let shown = show.then(|| secret.clone());
    match agent.store.add(e, secret, agent.config.max_tokens_per_owner).await {
        Ok(added) => Ok(Response::Minted { token: info(&added, now()), shown, notes: Vec::new() }),
        Err(err) => {
            let undo = vms_revoke_id(agent, &h, &new_id).await;
            let mut f: Failure = err.into();
            if let Err(u) = undo {
                f.message.push_str(&format!(
                    "; and the token minted on the server ({new_id}) could not be revoked: {}",
                    u.message
                ));
            }
            Err(f)
        }
    }
}

async fn vms_revoke(
    agent: &Agent,
    peer: Peer,
    name: &str,
    id: &str,
    force: bool,
) -> Result<Response, Failure> {
    let id = vms_id(id)?;
    let h = hold(agent, peer, name, TokenKind::ApiToken).await?;
    let own = vms_own_id(&h).as_deref() == Some(id);
    check_own(own, force, name, id, ("revoke", "revoking"))?;
    vms_revoke_id(agent, &h, id).await?;
    finish_own(agent, peer, name, own).await
}

async fn vms_rotate(agent: &Agent, peer: Peer, name: &str) -> Result<Response, Failure> {
    let h = hold(agent, peer, name, TokenKind::ApiToken).await?;
    let old_id = vms_own_id(&h).ok_or_else(|| other("the stored VMS token has no id"))?;
    // Same name; the same expiry instant, as the time that remains.
    let token_name =
        vms_list(agent, &h).await?.into_iter().find(|t| t.id == old_id).and_then(|t| t.name);
    let remaining = h.entry.expires.map(|t| (t - now()).max(1));
    let secret = vms_mint(agent, &h, token_name, remaining.map(|s| format!("{s}s")), None).await?;
    let new_id = parse_api_token(&secret).map(str::to_string).unwrap_or_default();
    let probe =
        Held { entry: h.entry.clone(), secret: Arc::new(secret.clone()), client: h.client.clone() };
    let (status, body) = probe
        .call(agent, reqwest::Method::GET, &format!("/api/apitokens/{new_id}/"), ApiBody::None)
        .await?;
    if status != 200 {
        let _ = vms_revoke_id(agent, &h, &new_id).await;
        let f = api_failure("verify the new token", status, &body);
        return Err(Failure::new(
            f.code,
            format!("rotate: {}; the new token was revoked, the old one is unchanged", f.message),
        ));
    }
    let swapped = agent
        .store
        .swap_secret(peer.uid, name, secret, h.entry.params.clone(), h.entry.expires)
        .await?;
    let mut notes = Vec::new();
    if let Err(f) = vms_revoke_id(agent, &probe, &old_id).await {
        notes.push(format!(
            "the old token {old_id} could not be revoked ({}); `signet vms revoke-token {name} {old_id}` revokes it",
            f.message
        ));
    }
    tracing::info!(token = %name, "rotated");
    Ok(Response::Minted { token: info(&swapped, now()), shown: None, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_url_as_python_libmaas() {
        let cases = [
            ("http://h:5240/MAAS/", "http://h:5240/MAAS/api/2.0/"),
            ("http://h:5240/MAAS", "http://h:5240/MAAS/api/2.0/"),
            ("http://h:5240/MAAS/api/2.0/", "http://h:5240/MAAS/api/2.0/"),
            ("http://h:5240/MAAS/api/2.0", "http://h:5240/MAAS/api/2.0/"),
            ("http://h/api/1.0/", "http://h/api/1.0/"),
            ("http://h/", "http://h/api/2.0/"),
        ];
        for (raw, want) in cases {
            assert_eq!(maas_api_url(raw).unwrap().as_str(), want, "{raw}");
        }
        assert_eq!(
            maas_root(&maas_api_url("http://h:5240/MAAS/").unwrap()).as_str(),
            "http://h:5240/MAAS/"
        );
        assert_eq!(maas_root(&maas_api_url("http://h/").unwrap()).as_str(), "http://h/");
    }

    #[test]
    fn server_refusals_map_to_exit_codes() {
        assert_eq!(api_failure("x", 401, b"").code.exit_code(), 5);
        assert_eq!(api_failure("x", 403, b"{\"detail\":\"no\"}").code.exit_code(), 5);
        assert_eq!(api_failure("x", 404, b"").code.exit_code(), 4);
        assert_eq!(api_failure("x", 500, b"").code.exit_code(), 1);
        let f = api_failure("create token", 400, b"{\"detail\":\"limit of 5 tokens reached\"}");
        assert!(f.message.contains("limit of 5 tokens reached"), "{}", f.message);
    }
}
