//! A MAAS region API test server: the OAuth 1.0 check of MAAS's server (piston's rules, see
//! `oauth.rs`; empty consumer secret; PLAINTEXT and HMAC-SHA1) and the account API
//! that `signet maas …` drives, over one in-memory user and its tokens.
//!
//! Paths, under `root` (default `/MAAS/`):
//! - `accounts/authenticate/` POST (form username, password, consumer): no OAuth;
//!   200 JSON {consumer_key, token_key, token_secret, name} (reusing the token named
//!   after the consumer), 403 on bad credentials;
//! - `api/2.0/describe/` GET: no OAuth (MAAS serves it anonymously); the API
//!   description python-libmaas reads, for the handlers below, each with its
//!   absolute `uri` built from the request's Host header as MAAS builds it;
//! - `api/2.0/users/?op=whoami` GET: 200 {username, email, is_superuser, is_local,
//!   resource_uri};
//! - `api/2.0/account/?op=list_authorisation_tokens` GET: [{name, token: "ck:tk:ts"}];
//! - `api/2.0/account/?op=create_authorisation_token` POST [name]: 200
//!   {token_key, token_secret, consumer_key, name} (default name "MAAS consumer");
//! - `api/2.0/account/?op=delete_authorisation_token` POST token_key: 204, 404 unknown;
//! - `api/2.0/account/?op=update_token_name` POST token (whole or key), name: 202
//!   "Accepted", 404 unknown;
//! - `api/2.0/echo…`, `api/2.0/big/<n>`, `api/2.0/redirect?to=`: see `server.rs`.
//!
//! Form parameters may come urlencoded or multipart (MAAS accepts both, and parts in
//! base64 transfer encoding as python-libmaas sends them; only the
//! urlencoded ones enter the HMAC base string). Every `api/2.0/` request needs valid
//! OAuth: anything else is a 401 whose body says why.
//!
//! `fail_next` operation names: whoami, list_authorisation_tokens,
//! create_authorisation_token, delete_authorisation_token, update_token_name,
//! authenticate, echo, big, redirect.

use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::upstream::oauth::{Credentials, SignatureMethod, SignedRequest, Verifier, unix_now};
use crate::upstream::server::{Handler, HttpServer, Reply, Req, generic_endpoint};
use crate::upstream::{Failures, server_common};

/// One MAAS API key: `consumer_key:token_key:token_secret`, with its name.
#[derive(Clone, PartialEq, Eq)]
pub struct MaasToken {
    pub name: String,
    pub consumer_key: String,
    pub token_key: String,
    pub token_secret: String,
}

impl MaasToken {
    /// A fresh token as MAAS mints them (18-character keys, 32-character secret).
    pub fn generate(name: &str) -> MaasToken {
        MaasToken {
            name: name.to_string(),
            consumer_key: random_alnum(18),
            token_key: random_alnum(18),
            token_secret: random_alnum(32),
        }
    }

    /// The API key as `maas apikey` prints it: `consumer_key:token_key:token_secret`.
    pub fn api_key(&self) -> String {
        format!("{}:{}:{}", self.consumer_key, self.token_key, self.token_secret)
    }
}

impl std::fmt::Debug for MaasToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaasToken")
            .field("name", &self.name)
            .field("consumer_key", &self.consumer_key)
            .field("token_key", &self.token_key)
            .finish_non_exhaustive()
    }
}

/// The account every token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaasUser {
    pub username: String,
    pub email: String,
    pub password: String,
    pub is_superuser: bool,
    pub is_local: bool,
}

impl Default for MaasUser {
    fn default() -> Self {
        MaasUser {
            username: "admin".into(),
            email: "admin@example.com".into(),
            password: "admin-password".into(),
            is_superuser: true,
            is_local: true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct MaasConfig {
    pub tls: bool,
    /// The MAAS root path, with leading and trailing slash: "/MAAS/" (as users give
    /// `http://host:5240/MAAS/`), or "/" for a MAAS served at the top.
    pub root: String,
    pub user: MaasUser,
    /// Signature methods accepted (MAAS: PLAINTEXT and HMAC-SHA1).
    pub accepted: Vec<SignatureMethod>,
}

impl Default for MaasConfig {
    fn default() -> Self {
        MaasConfig {
            tls: false,
            root: "/MAAS/".into(),
            user: MaasUser::default(),
            accepted: vec![SignatureMethod::Plaintext, SignatureMethod::HmacSha1],
        }
    }
}

pub struct MaasServer {
    http: HttpServer,
    state: Arc<MaasState>,
}

struct MaasState {
    root: String,
    user: MaasUser,
    inner: Mutex<Inner>,
    failures: Failures,
}

struct Inner {
    tokens: Vec<MaasToken>,
    verifier: Verifier,
}

server_common!(MaasServer);

impl MaasServer {
    /// Plain HTTP, root `/MAAS/`, user `admin` / `admin-password`, no tokens yet.
    pub fn start() -> MaasServer {
        MaasServer::start_with(MaasConfig::default())
    }

    /// Like `start()`, over HTTPS.
    pub fn start_tls() -> MaasServer {
        MaasServer::start_with(MaasConfig { tls: true, ..MaasConfig::default() })
    }

    pub fn start_with(config: MaasConfig) -> MaasServer {
        let mut root = config.root.clone();
        if !root.starts_with('/') {
            root.insert(0, '/');
        }
        if !root.ends_with('/') {
            root.push('/');
        }
        let mut verifier = Verifier::new();
        verifier.accepted = config.accepted.clone();
        let state = Arc::new(MaasState {
            root,
            user: config.user.clone(),
            inner: Mutex::new(Inner { tokens: Vec::new(), verifier }),
            failures: Failures::default(),
        });
        let http = HttpServer::start(state.clone(), config.tls);
        MaasServer { http, state }
    }

    /// The MAAS URL as users give it: `http://127.0.0.1:PORT/MAAS/`.
    pub fn url(&self) -> String {
        format!("{}{}", self.origin(), self.state.root)
    }

    /// The API root: `url()` + `api/2.0/`.
    pub fn api_url(&self) -> String {
        format!("{}api/2.0/", self.url())
    }

    pub fn user(&self) -> MaasUser {
        self.state.user.clone()
    }

    /// Mints a token on the account (as `create_authorisation_token` would).
    pub fn add_token(&self, name: &str) -> MaasToken {
        let token = MaasToken::generate(name);
        self.insert_token(token.clone());
        token
    }

    /// Adds a given token (replacing one with the same token key).
    pub fn insert_token(&self, token: MaasToken) {
        if let Ok(mut inner) = self.state.inner.lock() {
            inner.tokens.retain(|t| t.token_key != token.token_key);
            inner.tokens.push(token);
        }
    }

    /// Deletes a token by its token key; false when there was none.
    pub fn remove_token(&self, token_key: &str) -> bool {
        match self.state.inner.lock() {
            Ok(mut inner) => {
                let before = inner.tokens.len();
                inner.tokens.retain(|t| t.token_key != token_key);
                inner.tokens.len() != before
            }
            Err(_) => false,
        }
    }

    /// The account's tokens, in creation order.
    pub fn tokens(&self) -> Vec<MaasToken> {
        self.state.inner.lock().map(|i| i.tokens.clone()).unwrap_or_default()
    }

    pub fn token(&self, token_key: &str) -> Option<MaasToken> {
        self.tokens().into_iter().find(|t| t.token_key == token_key)
    }

    /// Nonces recorded so far (one per request that got past the timestamp check).
    pub fn nonce_count(&self) -> usize {
        self.state.inner.lock().map(|i| i.verifier.nonce_count()).unwrap_or(0)
    }
}

impl Handler for MaasState {
    async fn handle(&self, req: &mut Req) -> Reply {
        let path = req.path.clone();
        let Some(rest) = path.strip_prefix(&self.root) else {
            return Reply::refuse(404, "Not Found");
        };
        if rest == "accounts/authenticate/" || rest == "accounts/authenticate" {
            return self.authenticate(req).await;
        }
        let Some(rest) = rest.strip_prefix("api/2.0/") else {
            return Reply::refuse(404, "Not Found");
        };
        if rest == "describe/" && req.method == hyper::Method::GET {
            return self.describe(req);
        }
        if let Err(refusal) = self.check_oauth(req).await {
            return refusal;
        }
        let op = req.query_param("op").unwrap_or_default();
        let method = req.method.as_str().to_string();
        let route = match (rest, op.as_str()) {
            ("users/", "whoami") => "whoami",
            ("account/", "list_authorisation_tokens") => "list_authorisation_tokens",
            ("account/", "create_authorisation_token") => "create_authorisation_token",
            ("account/", "delete_authorisation_token") => "delete_authorisation_token",
            ("account/", "update_token_name") => "update_token_name",
            ("users/" | "account/", _) => {
                return Reply::refuse(
                    400,
                    &format!("Unrecognised signature: method={method} op={op}"),
                );
            }
            _ if rest.starts_with("echo") => "echo",
            _ if rest.starts_with("big/") => "big",
            _ if rest.starts_with("redirect") => "redirect",
            _ => return Reply::refuse(404, "Not Found"),
        };
        let expected_method = match route {
            "whoami" | "list_authorisation_tokens" => Some("GET"),
            "create_authorisation_token" | "delete_authorisation_token" | "update_token_name" => {
                Some("POST")
            }
            _ => None,
        };
        if let Some(m) = expected_method
            && m != method
        {
            return Reply::refuse(400, &format!("Unrecognised signature: method={method} op={op}"));
        }
        if let Some(reply) = self.failures.take(route) {
            return reply;
        }
        match route {
            "whoami" => self.whoami(),
            "list_authorisation_tokens" => self.list_tokens(),
            "create_authorisation_token" => self.create_token(req).await,
            "delete_authorisation_token" => self.delete_token(req).await,
            "update_token_name" => self.rename_token(req).await,
            _ => match generic_endpoint(req, rest).await {
                Some(reply) => reply,
                None => Reply::refuse(404, "Not Found"),
            },
        }
    }
}

impl MaasState {
    async fn check_oauth(&self, req: &mut Req) -> Result<(), Reply> {
        let form_body = if req.media_type() == "application/x-www-form-urlencoded" {
            Some(req.body_bytes().await?)
        } else {
            None
        };
        let fallback_host = req.local_addr.to_string();
        let host = req.header("host").unwrap_or(&fallback_host).to_string();
        let signed = SignedRequest {
            method: req.method.as_str(),
            scheme: req.scheme(),
            host: &host,
            path: &req.path,
            query: req.query.as_deref(),
            authorization: req.header("authorization"),
            form_body: form_body.as_deref(),
        };
        let mut guard = self.inner.lock().map_err(|_| Reply::refuse(500, "state poisoned"))?;
        let inner = &mut *guard;
        let tokens = &inner.tokens;
        let result = inner.verifier.verify(&signed, unix_now(), |ck, tk| {
            if !tokens.iter().any(|t| t.consumer_key == ck) {
                return Err("Invalid consumer.".into());
            }
            match tokens.iter().find(|t| t.consumer_key == ck && t.token_key == tk) {
                // MAAS consumers have an empty secret.
                Some(t) => Ok(Credentials {
                    consumer_secret: String::new(),
                    token_secret: t.token_secret.clone(),
                }),
                None => Err(format!("Invalid access token: {tk}")),
            }
        });
        result.map(|_| ()).map_err(|refusal| {
            Reply::refuse(401, &refusal.0).with_header("www-authenticate", "OAuth realm=\"OAuth\"")
        })
    }

    /// The part of MAAS's API description that python-libmaas needs for
    /// users/whoami and the account's tokens.
    fn describe(&self, req: &Req) -> Reply {
        let fallback = req.local_addr.to_string();
        let host = req.header("host").unwrap_or(&fallback);
        let api = format!("{}://{host}{}api/2.0/", req.scheme(), self.root);
        let action = |name: &str, method: &str| json!({"name": name, "method": method, "op": name, "restful": false, "doc": ""});
        let handler = |name: &str, path: &str, actions: Vec<serde_json::Value>| {
            json!({
                "name": name,
                "doc": "",
                "params": [],
                "path": format!("{}api/2.0/{path}", self.root),
                "uri": format!("{api}{path}"),
                "actions": actions,
            })
        };
        let users = handler("UsersHandler", "users/", vec![action("whoami", "GET")]);
        let account = handler(
            "AccountHandler",
            "account/",
            vec![
                action("list_authorisation_tokens", "GET"),
                action("create_authorisation_token", "POST"),
                action("delete_authorisation_token", "POST"),
                action("update_token_name", "POST"),
            ],
        );
        let value = json!({
            "doc": "MAAS API",
            "hash": "0",
            "resources": [
                {"name": "UsersHandler", "anon": null, "auth": users},
                {"name": "AccountHandler", "anon": null, "auth": account},
            ],
            "handlers": [],
        });
        Reply::json(200, &value, "ok")
    }

    fn whoami(&self) -> Reply {
        let u = &self.user;
        let value = json!({
            "username": u.username,
            "email": u.email,
            "is_superuser": u.is_superuser,
            "is_local": u.is_local,
            "resource_uri": format!("{}api/2.0/users/{}/", self.root, u.username),
        });
        Reply::json(200, &value, "ok")
    }

    fn list_tokens(&self) -> Reply {
        let tokens = self.inner.lock().map(|i| i.tokens.clone()).unwrap_or_default();
        let list: Vec<_> =
            tokens.iter().map(|t| json!({"name": t.name, "token": t.api_key()})).collect();
        Reply::json(200, &serde_json::Value::Array(list), "ok")
    }

    async fn create_token(&self, req: &mut Req) -> Reply {
        let form = match req.form_params().await {
            Ok(f) => f,
            Err(r) => return r,
        };
        let name = form_value(&form, "name").unwrap_or("MAAS consumer").to_string();
        let token = MaasToken::generate(&name);
        if let Ok(mut inner) = self.inner.lock() {
            inner.tokens.push(token.clone());
        }
        token_json(&token)
    }

    async fn delete_token(&self, req: &mut Req) -> Reply {
        let form = match req.form_params().await {
            Ok(f) => f,
            Err(r) => return r,
        };
        let Some(key) = form_value(&form, "token_key") else {
            return Reply::refuse(400, "token_key: This field is required.");
        };
        let Ok(mut inner) = self.inner.lock() else {
            return Reply::refuse(500, "state poisoned");
        };
        let before = inner.tokens.len();
        inner.tokens.retain(|t| t.token_key != key);
        if inner.tokens.len() == before {
            return Reply::refuse(404, &format!("No token with key {key}"));
        }
        Reply::empty(204, "ok")
    }

    async fn rename_token(&self, req: &mut Req) -> Reply {
        let form = match req.form_params().await {
            Ok(f) => f,
            Err(r) => return r,
        };
        let (Some(token), Some(name)) = (form_value(&form, "token"), form_value(&form, "name"))
        else {
            return Reply::refuse(400, "token and name are required.");
        };
        // The whole `ck:tk:ts` or the token key alone.
        let key = match token.split(':').collect::<Vec<_>>()[..] {
            [_, tk, _] => tk.to_string(),
            _ => token.to_string(),
        };
        let Ok(mut inner) = self.inner.lock() else {
            return Reply::refuse(500, "state poisoned");
        };
        match inner.tokens.iter_mut().find(|t| t.token_key == key) {
            Some(t) => {
                t.name = name.to_string();
                Reply::text(202, "Accepted", "ok")
            }
            None => Reply::refuse(404, &format!("No token with key {key}")),
        }
    }

    async fn authenticate(&self, req: &mut Req) -> Reply {
        if req.method != hyper::Method::POST {
            return Reply::refuse(405, "Method Not Allowed");
        }
        let form = match req.form_params().await {
            Ok(f) => f,
            Err(r) => return r,
        };
        if let Some(reply) = self.failures.take("authenticate") {
            return reply;
        }
        let (Some(username), Some(password), Some(consumer)) = (
            form_value(&form, "username"),
            form_value(&form, "password"),
            form_value(&form, "consumer"),
        ) else {
            return Reply::refuse(400, "username, password and consumer are required.");
        };
        if username != self.user.username || password != self.user.password {
            return Reply::refuse(403, "Username or password incorrect.");
        }
        let Ok(mut inner) = self.inner.lock() else {
            return Reply::refuse(500, "state poisoned");
        };
        let token = match inner.tokens.iter().find(|t| t.name == consumer) {
            Some(t) => t.clone(),
            None => {
                let t = MaasToken::generate(consumer);
                inner.tokens.push(t.clone());
                t
            }
        };
        token_json(&token)
    }
}

fn token_json(t: &MaasToken) -> Reply {
    let value = json!({
        "token_key": t.token_key,
        "token_secret": t.token_secret,
        "consumer_key": t.consumer_key,
        "name": t.name,
    });
    Reply::json(200, &value, "ok")
}

fn form_value<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Random letters and digits from the OS CSPRNG.
pub(crate) fn random_alnum(n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(n);
    while out.len() < n {
        let mut buf = [0u8; 64];
        if getrandom::fill(&mut buf).is_err() {
            panic!("getrandom failed");
        }
        // 248 = 4 × 62: rejecting the rest keeps the draw uniform.
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() == n {
                break;
            }
            out.push(char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]));
        }
    }
    out
}
