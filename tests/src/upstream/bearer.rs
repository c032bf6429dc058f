//! A server that wants one fixed header (and optionally more): the header-only kinds
//! (`bearer`, `basic`, `api-token`, `header`). The value must match exactly, as a real
//! API's token check would; a missing or different header is a 401 that names which.
//! Paths: `…/big/<n>`, `…/redirect?to=` as in `server.rs`, anything else the echo.
//!
//! `fail_next` operation names: echo, big, redirect.

use std::sync::{Arc, Mutex};

use base64::Engine;

use crate::upstream::oauth1::generic_tail;
use crate::upstream::server::{Handler, HttpServer, Reply, Req, generic_endpoint};
use crate::upstream::{Failures, server_common};

/// The auth a `BearerLikeServer` expects.
#[derive(Clone, PartialEq, Eq)]
pub enum ExpectedAuth {
    /// `Authorization: Bearer <token>`
    Bearer(String),
    /// `Authorization: Basic base64(username:password)` (standard alphabet, padded)
    Basic { username: String, password: String },
    /// `Authorization: Api-Token <id>.<secret>`
    ApiToken(String),
    /// `<name>: <value>`
    Header { name: String, value: String },
}

impl ExpectedAuth {
    pub fn bearer(token: &str) -> Self {
        ExpectedAuth::Bearer(token.into())
    }

    pub fn basic(username: &str, password: &str) -> Self {
        ExpectedAuth::Basic { username: username.into(), password: password.into() }
    }

    pub fn api_token(token: &str) -> Self {
        ExpectedAuth::ApiToken(token.into())
    }

    pub fn header(name: &str, value: &str) -> Self {
        ExpectedAuth::Header { name: name.into(), value: value.into() }
    }

    /// The header line a correct client sends: (name, value).
    pub fn expected_header(&self) -> (String, String) {
        match self {
            ExpectedAuth::Bearer(t) => ("Authorization".into(), format!("Bearer {t}")),
            ExpectedAuth::Basic { username, password } => {
                let b64 = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                ("Authorization".into(), format!("Basic {b64}"))
            }
            ExpectedAuth::ApiToken(t) => ("Authorization".into(), format!("Api-Token {t}")),
            ExpectedAuth::Header { name, value } => (name.clone(), value.clone()),
        }
    }
}

impl std::fmt::Debug for ExpectedAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            ExpectedAuth::Bearer(_) => "Bearer",
            ExpectedAuth::Basic { .. } => "Basic",
            ExpectedAuth::ApiToken(_) => "ApiToken",
            ExpectedAuth::Header { .. } => "Header",
        };
        write!(f, "ExpectedAuth::{kind}(..)")
    }
}

pub struct BearerLikeServer {
    http: HttpServer,
    state: Arc<BearerState>,
}

struct BearerState {
    expected: Mutex<Vec<(String, String)>>,
    failures: Failures,
}

server_common!(BearerLikeServer);

impl BearerLikeServer {
    pub fn start(auth: ExpectedAuth) -> BearerLikeServer {
        Self::start_inner(auth, false)
    }

    pub fn start_tls(auth: ExpectedAuth) -> BearerLikeServer {
        Self::start_inner(auth, true)
    }

    fn start_inner(auth: ExpectedAuth, tls: bool) -> BearerLikeServer {
        let state = Arc::new(BearerState {
            expected: Mutex::new(vec![auth.expected_header()]),
            failures: Failures::default(),
        });
        let http = HttpServer::start(state.clone(), tls);
        BearerLikeServer { http, state }
    }

    /// `origin()` + "/".
    pub fn url(&self) -> String {
        format!("{}/", self.origin())
    }

    /// Replaces the expected auth (other required headers stay).
    pub fn set_expected(&self, auth: ExpectedAuth) {
        let (name, value) = auth.expected_header();
        if let Ok(mut e) = self.state.expected.lock() {
            e.retain(|(n, _)| !n.eq_ignore_ascii_case("authorization"));
            if !name.eq_ignore_ascii_case("authorization") {
                e.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
            }
            e.insert(0, (name, value));
        }
    }

    /// Also require `name: value` on every request (e.g. X-Tenant-Name).
    pub fn require_header(&self, name: &str, value: &str) {
        if let Ok(mut e) = self.state.expected.lock() {
            e.push((name.into(), value.into()));
        }
    }
}

impl Handler for BearerState {
    async fn handle(&self, req: &mut Req) -> Reply {
        let expected = match self.expected.lock() {
            Ok(e) => e.clone(),
            Err(_) => return Reply::refuse(500, "state poisoned"),
        };
        for (name, value) in &expected {
            let got: Vec<_> = req.headers.get_all(name.as_str()).iter().collect();
            match got.as_slice() {
                [] => return Reply::refuse(401, &format!("missing header {name}")),
                [one] if one.as_bytes() == value.as_bytes() => {}
                [_] => return Reply::refuse(401, &format!("wrong value for header {name}")),
                _ => return Reply::refuse(401, &format!("header {name} sent more than once")),
            }
        }
        let path = req.path.clone();
        let rest = generic_tail(&path);
        let op = if rest.starts_with("big/") {
            "big"
        } else if rest.starts_with("redirect") {
            "redirect"
        } else {
            "echo"
        };
        if let Some(reply) = self.failures.take(op) {
            return reply;
        }
        match generic_endpoint(req, rest).await {
            Some(reply) => reply,
            None => Reply::refuse(404, "Not Found"),
        }
    }
}
