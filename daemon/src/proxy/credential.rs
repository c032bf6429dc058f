//! The local credential a tool presents to a proxy: made fresh for each
//! proxy, in the shape the token's kind uses, so that the tool needs no
//! change; checked on every request, then removed before the request is
//! signed with the real token.
//!
//! - `maas`, `oauth1`: an OAuth key `consumer:token:secret` (no consumer
//!   secret, as MAAS keys have none). The tool's signature, PLAINTEXT or
//!   HMAC, is verified against it; the timestamp must be within
//!   [`WINDOW_SECS`] of now and the nonce new.
//! - `api-token`, `bearer`, `header`: a token of the same shape, compared
//!   in constant time with what the tool sends.
//! - `basic`: `username:password`, the token's own user name and a fresh
//!   password.

use std::collections::HashMap;
use std::sync::Mutex;

use signet_proto::secret::parse_maas;
use signet_proto::{Secret, TokenKind, TokenParams};
use subtle::ConstantTimeEq as _;

use crate::sign::{self, Freshness, LocalKey, SignInput};

/// How far an OAuth timestamp may be from now, either way: MAAS's own
/// window.
pub const WINDOW_SECS: i64 = 300;
/// Nonces remembered at most; a tool that makes more requests than this in
/// one window is refused until older nonces expire.
const MAX_NONCES: usize = 200_000;

/// A proxy's local credential.
pub struct Local {
    kind: TokenKind,
    params: TokenParams,
    /// In the token kind's own secret shape (a MAAS-shaped key for both
    /// OAuth kinds), so that the signer makes what the tool must send.
    secret: Secret,
    /// OAuth nonces seen within the window, with their timestamps.
    nonces: Mutex<HashMap<String, i64>>,
}

/// Why a request's credential was refused; never quotes it.
pub type Refusal = &'static str;

fn hex<const N: usize>() -> Result<String, signet_proto::Failure> {
    crate::random::hex::<N>()
        .map_err(|e| signet_proto::Failure::other(format!("the OS random source failed: {e}")))
}

impl Local {
    /// A fresh credential for a token of `kind`.
    pub fn new(kind: TokenKind, params: &TokenParams) -> Result<Local, signet_proto::Failure> {
        let text = match kind {
            TokenKind::Maas | TokenKind::Oauth1 => {
                format!("{}:{}:{}", hex::<9>()?, hex::<9>()?, hex::<16>()?)
            }
            TokenKind::ApiToken => format!("{}.{}", hex::<4>()?, hex::<16>()?),
            TokenKind::Bearer | TokenKind::Basic | TokenKind::Header => hex::<20>()?,
        };
        Ok(Local {
            kind,
            params: params.clone(),
            secret: Secret::new(text.into_bytes()),
            nonces: Mutex::default(),
        })
    }

    /// What the tool is given.
    pub fn shown(&self) -> Secret {
        match (self.kind, self.params.username.as_deref()) {
            (TokenKind::Basic, Some(user)) => {
                let mut v = user.as_bytes().to_vec();
                v.push(b':');
                v.extend_from_slice(self.secret.expose());
                Secret::new(v)
            }
            _ => self.secret.clone(),
        }
    }

    /// The token kind it stands in for.
    pub fn kind(&self) -> TokenKind {
        self.kind
    }

    /// The request header that carries the credential.
    pub fn header_name(&self) -> &str {
        match self.kind {
            TokenKind::Header => self.params.header_name.as_deref().unwrap_or("Authorization"),
            _ => "Authorization",
        }
    }

    /// The (lower-case) names of the headers the token's signature sets,
    /// which a tool's own copies must not reach upstream beside them.
    pub fn header_names(&self, base: &url::Url) -> Vec<String> {
        let input = SignInput { method: "GET", url: base, form: &[] };
        let fresh = Freshness { timestamp: 0, nonce: "0".into() };
        sign::sign(self.kind, &self.params, &self.secret, &input, &fresh)
            .map(|lines| lines.into_iter().map(|l| l.name.to_ascii_lowercase()).collect())
            .unwrap_or_else(|_| vec!["authorization".to_string()])
    }

    /// Whether the credential's header, as the tool sent it, is an OAuth
    /// HMAC signature: then a form body is part of what it signed.
    pub fn signs_form(&self, sent: Option<&str>) -> bool {
        matches!(self.kind, TokenKind::Maas | TokenKind::Oauth1)
            && sent.is_some_and(|v| v.contains("HMAC-SHA"))
    }

    /// Checks the credential header `sent` of a request the tool made to
    /// `input.url` (the local URL, as the tool saw it).
    pub fn check(
        &self,
        sent: Option<&str>,
        input: &SignInput<'_>,
        now: i64,
    ) -> Result<(), Refusal> {
        let sent = sent.ok_or("no credential")?;
        match self.kind {
            TokenKind::Maas | TokenKind::Oauth1 => self.check_oauth(sent, input, now),
            _ => {
                // The signer makes the exact header the tool must send.
                let fresh = Freshness { timestamp: now, nonce: String::new() };
                let lines = sign::sign(self.kind, &self.params, &self.secret, input, &fresh)
                    .map_err(|_| "the local credential cannot be checked")?;
                let want = lines.first().ok_or("the local credential cannot be checked")?;
                if bool::from(sent.trim().as_bytes().ct_eq(want.value.as_bytes())) {
                    Ok(())
                } else {
                    Err("the credential is not this proxy's")
                }
            }
        }
    }

    fn check_oauth(&self, sent: &str, input: &SignInput<'_>, now: i64) -> Result<(), Refusal> {
        let key = parse_maas(&self.secret).map_err(|_| "the local credential cannot be checked")?;
        let local = LocalKey {
            consumer_key: key.consumer_key,
            consumer_secret: "",
            token: key.token_key,
            token_secret: key.token_secret,
        };
        let v = sign::verify_oauth(sent, input, &local)?;
        if (now - v.timestamp).abs() > WINDOW_SECS {
            return Err("the OAuth timestamp is too far from now (is the clock right?)");
        }
        let mut seen = self.nonces.lock().map_err(|_| "internal error: nonce cache")?;
        if seen.len() >= MAX_NONCES / 2 {
            seen.retain(|_, t| (now - *t).abs() <= WINDOW_SECS);
        }
        if seen.len() >= MAX_NONCES {
            return Err("too many requests in one timestamp window");
        }
        if seen.insert(v.nonce, v.timestamp).is_some() {
            return Err("the OAuth nonce was used before (a replayed request)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> url::Url {
        url::Url::parse("http://127.0.0.1:4000/api/2.0/users/?op=whoami").unwrap()
    }

    fn oauth_header(
        local: &Local,
        method: signet_proto::SignatureMethod,
        nonce: &str,
        ts: i64,
    ) -> String {
        let params = TokenParams { signature: Some(method), ..TokenParams::default() };
        let u = url();
        let input = SignInput { method: "GET", url: &u, form: &[] };
        let fresh = Freshness { timestamp: ts, nonce: nonce.into() };
        let lines = sign::sign(TokenKind::Maas, &params, &local.secret, &input, &fresh).unwrap();
        lines[0].value.to_string()
    }

    #[test]
    fn oauth_signatures_are_verified_and_nonces_not_replayed() {
        use signet_proto::SignatureMethod::*;
        let local = Local::new(TokenKind::Maas, &TokenParams::default()).unwrap();
        let u = url();
        let input = SignInput { method: "GET", url: &u, form: &[] };
        let now = 1_800_000_000;
        for (i, m) in [Plaintext, HmacSha1].into_iter().enumerate() {
            let h = oauth_header(&local, m, &format!("n{i}"), now);
            assert_eq!(local.check(Some(&h), &input, now), Ok(()), "{m:?}");
            assert!(local.check(Some(&h), &input, now).unwrap_err().contains("nonce"));
        }
        let stale = oauth_header(&local, HmacSha1, "old", now - 1000);
        assert!(local.check(Some(&stale), &input, now).unwrap_err().contains("timestamp"));
        // Signed for another URL: the HMAC does not match.
        let other = url::Url::parse("http://127.0.0.1:4000/api/2.0/machines/").unwrap();
        let h = oauth_header(&local, HmacSha1, "n9", now);
        let wrong = SignInput { method: "GET", url: &other, form: &[] };
        assert_eq!(local.check(Some(&h), &wrong, now), Err("the signature is wrong"));
        // Another key entirely.
        let stranger = Local::new(TokenKind::Maas, &TokenParams::default()).unwrap();
        let h = oauth_header(&stranger, Plaintext, "n10", now);
        assert!(local.check(Some(&h), &input, now).is_err());
        assert_eq!(local.check(None, &input, now), Err("no credential"));
    }

    #[test]
    fn header_kinds_compare_the_whole_value() {
        let u = url();
        let input = SignInput { method: "GET", url: &u, form: &[] };
        let local = Local::new(TokenKind::Bearer, &TokenParams::default()).unwrap();
        let good = format!("Bearer {}", local.shown().expose_str().unwrap());
        assert_eq!(local.check(Some(&good), &input, 0), Ok(()));
        assert!(local.check(Some(&good[..good.len() - 1]), &input, 0).is_err());
        assert!(local.check(Some("Bearer x"), &input, 0).is_err());

        let params = TokenParams { username: Some("alice".into()), ..TokenParams::default() };
        let local = Local::new(TokenKind::Basic, &params).unwrap();
        let shown = local.shown();
        assert!(shown.expose_str().unwrap().starts_with("alice:"));
        use base64::Engine as _;
        let b = base64::engine::general_purpose::STANDARD.encode(shown.expose());
        assert_eq!(local.check(Some(&format!("Basic {b}")), &input, 0), Ok(()));

        let local = Local::new(TokenKind::ApiToken, &TokenParams::default()).unwrap();
        let good = format!("Api-Token {}", local.shown().expose_str().unwrap());
        assert_eq!(local.check(Some(&good), &input, 0), Ok(()));
    }
}
