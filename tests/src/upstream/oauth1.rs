//! A generic OAuth 1.0a service (RFC 5849): one consumer and one token, with their
//! secrets configured; HMAC-SHA1, HMAC-SHA256 and PLAINTEXT; the same timestamp and
//! nonce rules as the MAAS test server (see `oauth.rs`). Every path answers after the check:
//! a path whose last segments are `big/<n>` or `redirect` gets those endpoints, any
//! other path the echo (200 JSON). Bad auth: 401 with the reason.
//!
//! `fail_next` operation names: echo, big, redirect.

use std::sync::{Arc, Mutex};

use crate::upstream::oauth::{Credentials, SignatureMethod, SignedRequest, Verifier, unix_now};
use crate::upstream::server::{Handler, HttpServer, Reply, Req, generic_endpoint};
use crate::upstream::{Failures, server_common};

#[derive(Clone)]
pub struct OAuth1Config {
    pub consumer_key: String,
    pub consumer_secret: String,
    pub token_key: String,
    pub token_secret: String,
    /// Accepted signature methods; empty = all three.
    pub accepted: Vec<SignatureMethod>,
    pub tls: bool,
}

impl OAuth1Config {
    pub fn new(
        consumer_key: &str,
        consumer_secret: &str,
        token_key: &str,
        token_secret: &str,
    ) -> Self {
        OAuth1Config {
            consumer_key: consumer_key.into(),
            consumer_secret: consumer_secret.into(),
            token_key: token_key.into(),
            token_secret: token_secret.into(),
            accepted: Vec::new(),
            tls: false,
        }
    }
}

impl std::fmt::Debug for OAuth1Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth1Config")
            .field("consumer_key", &self.consumer_key)
            .field("token_key", &self.token_key)
            .field("accepted", &self.accepted)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

pub struct OAuth1Server {
    http: HttpServer,
    state: Arc<OAuth1State>,
}

struct OAuth1State {
    creds: Mutex<OAuth1Config>,
    verifier: Mutex<Verifier>,
    failures: Failures,
}

server_common!(OAuth1Server);

impl OAuth1Server {
    pub fn start(config: OAuth1Config) -> OAuth1Server {
        let mut verifier = Verifier::new();
        verifier.accepted = config.accepted.clone();
        let tls = config.tls;
        let state = Arc::new(OAuth1State {
            creds: Mutex::new(config),
            verifier: Mutex::new(verifier),
            failures: Failures::default(),
        });
        let http = HttpServer::start(state.clone(), tls);
        OAuth1Server { http, state }
    }

    /// `origin()` + "/".
    pub fn url(&self) -> String {
        format!("{}/", self.origin())
    }

    /// Replaces the credentials the server accepts (e.g. after a rotation).
    pub fn set_credentials(
        &self,
        consumer_key: &str,
        consumer_secret: &str,
        token_key: &str,
        token_secret: &str,
    ) {
        if let Ok(mut c) = self.state.creds.lock() {
            c.consumer_key = consumer_key.into();
            c.consumer_secret = consumer_secret.into();
            c.token_key = token_key.into();
            c.token_secret = token_secret.into();
        }
    }
}

impl Handler for OAuth1State {
    async fn handle(&self, req: &mut Req) -> Reply {
        let form_body = if req.media_type() == "application/x-www-form-urlencoded" {
            match req.body_bytes().await {
                Ok(b) => Some(b),
                Err(r) => return r,
            }
        } else {
            None
        };
        let Ok(creds) = self.creds.lock().map(|c| c.clone()) else {
            return Reply::refuse(500, "state poisoned");
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
        let result = match self.verifier.lock() {
            Ok(mut v) => v.verify(&signed, unix_now(), |ck, tk| {
                if ck != creds.consumer_key {
                    Err("Invalid consumer.".into())
                } else if tk != creds.token_key {
                    Err(format!("Invalid access token: {tk}"))
                } else {
                    Ok(Credentials {
                        consumer_secret: creds.consumer_secret.clone(),
                        token_secret: creds.token_secret.clone(),
                    })
                }
            }),
            Err(_) => return Reply::refuse(500, "state poisoned"),
        };
        if let Err(refusal) = result {
            return Reply::refuse(401, &refusal.0).with_header("www-authenticate", "OAuth");
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
            None => generic_endpoint(req, "echo")
                .await
                .unwrap_or_else(|| Reply::refuse(404, "Not Found")),
        }
    }
}

/// For servers without a fixed prefix: the tail of `path` from a `big/` or `redirect`
/// segment on, else "echo".
pub(crate) fn generic_tail(path: &str) -> &str {
    if let Some(i) = path.rfind("/big/") {
        return &path[i + 1..];
    }
    if (path.ends_with("/redirect") || path.ends_with("/redirect/"))
        && let Some(i) = path.rfind("/redirect")
    {
        return &path[i + 1..];
    }
    "echo"
}
