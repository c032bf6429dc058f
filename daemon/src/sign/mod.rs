//! Request signers: turn a token and a request into the header lines that
//! authenticate it (docs/signing.md).
//!
//! Everything here is a pure function of its inputs, apart from
//! [`Freshness::now`], which reads the clock and the OS random source. No
//! network, no files, no keyring: the caller fetches the secret, checks scope
//! and policy, and decides whether the result may leave the agent
//! ([`reveals_secret`]). Header values are wiped on drop and never printed by
//! `Debug`; errors never carry any part of a secret.

mod header;
mod oauth1;

pub use oauth1::{LocalKey, Verified, verify as verify_oauth};

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use signet_proto::Failure;
use signet_proto::secret::{Secret, ShapeError};
use signet_proto::token::{SignatureMethod, TokenKind, TokenParams};
use zeroize::Zeroizing;

use crate::entry::Entry;

/// The parts of an HTTP request a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct SignInput<'a> {
    /// The HTTP method, any case (OAuth upper-cases it).
    pub method: &'a str,
    pub url: &'a url::Url,
    /// `application/x-www-form-urlencoded` body parameters, already decoded.
    /// OAuth signs them; leave empty for any other kind of body.
    pub form: &'a [(String, String)],
}

/// One header to attach to the request, e.g. `Authorization: OAuth ...`.
pub struct HeaderLine {
    pub name: String,
    /// Often the secret itself (see [`reveals_secret`]), hence wiped on drop.
    pub value: Zeroizing<String>,
}

impl fmt::Debug for HeaderLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderLine")
            .field("name", &self.name)
            .field("value", &"[redacted]")
            .finish()
    }
}

/// The per-request timestamp and nonce OAuth needs. MAAS refuses a nonce it
/// has seen before and a timestamp older than 300 s, so make a new one for
/// every request, retries and redirect hops included. Deliberately not
/// `Clone`, to make reuse a visible act.
#[derive(Debug)]
pub struct Freshness {
    /// Unix seconds.
    pub timestamp: i64,
    pub nonce: String,
}

impl Freshness {
    /// The current time and 128 bits from the OS CSPRNG as 32 lowercase hex
    /// characters: unguessable, and short enough for piston's 255-character
    /// nonce column.
    pub fn now() -> Result<Self, SignError> {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| SignError::Random("the system clock is set before 1970".into()))?
            .as_secs();
        let timestamp = i64::try_from(secs)
            .map_err(|_| SignError::Random("the system clock is out of range".into()))?;
        let nonce = crate::random::hex::<16>()
            .map_err(|e| SignError::Random(format!("the OS random source failed: {e}")))?;
        Ok(Freshness { timestamp, nonce })
    }
}

/// Why a request could not be signed. No variant carries secret material.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The stored secret does not have the shape its kind needs.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// A setting the kind needs is absent or unusable (it would break the
    /// header line), or the URL has no host to sign.
    #[error("cannot sign: {0} is missing or unusable")]
    MissingParam(&'static str),
    /// No clock or no randomness for a fresh nonce and timestamp.
    #[error("cannot make a fresh nonce and timestamp: {0}")]
    Random(String),
}

/// The header lines that authenticate `input` with a token of `kind`.
///
/// `fresh` is used only by the OAuth kinds; pass a new one per request.
pub fn sign(
    kind: TokenKind,
    params: &TokenParams,
    secret: &Secret,
    input: &SignInput<'_>,
    fresh: &Freshness,
) -> Result<Vec<HeaderLine>, SignError> {
    match kind {
        TokenKind::Maas => oauth1::sign_maas(params, secret, input, fresh).map(|h| vec![h]),
        TokenKind::Oauth1 => oauth1::sign_oauth1(params, secret, input, fresh).map(|h| vec![h]),
        TokenKind::ApiToken => header::api_token(params, secret),
        TokenKind::Bearer => header::bearer(secret).map(|h| vec![h]),
        TokenKind::Basic => header::basic(params, secret).map(|h| vec![h]),
        TokenKind::Header => header::header(params, secret).map(|h| vec![h]),
    }
}

/// The header lines that authenticate one request with the stored token
/// `e`, made now: a fresh nonce and timestamp every time (MAAS refuses a
/// nonce it has seen and a timestamp over 300 s old), so every retry and
/// redirect hop calls this again.
pub fn now(e: &Entry, secret: &Secret, input: &SignInput<'_>) -> Result<Vec<HeaderLine>, Failure> {
    let fresh = Freshness::now().map_err(|err| Failure::other(err.to_string()))?;
    sign(e.kind, &e.params, secret, input, &fresh)
        .map_err(|err| Failure::other(format!("cannot sign with token `{}`: {err}", e.name)))
}

/// Whether the headers [`sign`] makes for this token contain the secret
/// itself, so that they may leave the agent only for exportable tokens
/// (docs/security.md). Only an HMAC signature keeps the secret inside.
pub fn reveals_secret(kind: TokenKind, params: &TokenParams) -> bool {
    match kind {
        TokenKind::Maas | TokenKind::Oauth1 => {
            oauth_method(kind, params) == SignatureMethod::Plaintext
        }
        TokenKind::ApiToken | TokenKind::Bearer | TokenKind::Basic | TokenKind::Header => true,
    }
}

/// Whether the signature covers form body parameters (OAuth HMAC, RFC 5849
/// §3.4.1.3.1), so that a form body must be known before signing.
pub fn signs_form_body(kind: TokenKind, params: &TokenParams) -> bool {
    matches!(kind, TokenKind::Maas | TokenKind::Oauth1)
        && oauth_method(kind, params) != SignatureMethod::Plaintext
}

/// The one place that decides an OAuth token's method, so that
/// [`reveals_secret`] and [`sign`] cannot disagree.
fn oauth_method(kind: TokenKind, params: &TokenParams) -> SignatureMethod {
    params
        .signature
        .or_else(|| SignatureMethod::default_for(kind))
        .unwrap_or(SignatureMethod::Plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    fn fixed() -> Freshness {
        Freshness { timestamp: 1_700_000_000, nonce: "1234567890".into() }
    }

    fn params_with(sig: Option<SignatureMethod>) -> TokenParams {
        TokenParams { signature: sig, ..TokenParams::default() }
    }

    #[test]
    fn freshness_nonces_are_hex_and_distinct() {
        let a = Freshness::now().unwrap();
        let b = Freshness::now().unwrap();
        for f in [&a, &b] {
            assert_eq!(f.nonce.len(), 32, "{}", f.nonce);
            assert!(
                f.nonce.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
                "{}",
                f.nonce
            );
        }
        assert_ne!(a.nonce, b.nonce);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            assert!(seen.insert(Freshness::now().unwrap().nonce));
        }
    }

    #[test]
    fn freshness_timestamp_is_now() {
        let f = Freshness::now().unwrap();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        assert!((now - f.timestamp).abs() <= 2, "{} vs {now}", f.timestamp);
    }

    #[test]
    fn reveals_secret_for_every_kind_and_method() {
        use SignatureMethod::*;
        let cases = [
            (TokenKind::Maas, None, true),
            (TokenKind::Maas, Some(Plaintext), true),
            (TokenKind::Maas, Some(HmacSha1), false),
            (TokenKind::Maas, Some(HmacSha256), false),
            (TokenKind::Oauth1, None, false),
            (TokenKind::Oauth1, Some(Plaintext), true),
            (TokenKind::Oauth1, Some(HmacSha1), false),
            (TokenKind::Oauth1, Some(HmacSha256), false),
        ];
        for (kind, sig, want) in cases {
            assert_eq!(reveals_secret(kind, &params_with(sig)), want, "{kind} {sig:?}");
        }
        for kind in [TokenKind::ApiToken, TokenKind::Bearer, TokenKind::Basic, TokenKind::Header] {
            assert!(reveals_secret(kind, &TokenParams::default()), "{kind}");
        }
    }

    /// `reveals_secret` must agree with what `sign` actually emits.
    #[test]
    fn reveals_secret_matches_the_signature() {
        let u = url("http://maas.example:5240/MAAS/api/2.0/users/?op=whoami");
        let input = SignInput { method: "GET", url: &u, form: &[] };
        let secret = Secret::from_str_value("ck:tk:VerySecretTS");
        for sig in [None, Some(SignatureMethod::Plaintext), Some(SignatureMethod::HmacSha1)] {
            let p = params_with(sig);
            let h = sign(TokenKind::Maas, &p, &secret, &input, &fixed()).unwrap();
            assert_eq!(h[0].value.contains("VerySecretTS"), reveals_secret(TokenKind::Maas, &p));
        }
    }

    #[test]
    fn header_line_debug_redacts_the_value() {
        let h = HeaderLine {
            name: "Authorization".into(),
            value: Zeroizing::new("Bearer hunter2".into()),
        };
        let shown = format!("{h:?}");
        assert!(shown.contains("Authorization"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn dispatch_reaches_every_kind() {
        let u = url("https://api.example.com/v1/x");
        let input = SignInput { method: "GET", url: &u, form: &[] };
        let p = TokenParams {
            username: Some("u".into()),
            header_name: Some("X-Key".into()),
            consumer_key: Some("ck".into()),
            token_key: Some("tk".into()),
            ..TokenParams::default()
        };
        let cases = [
            (TokenKind::Maas, "ck:tk:ts", "Authorization", "OAuth realm=\"OAuth\", "),
            (TokenKind::Oauth1, "cs\nts", "Authorization", "OAuth oauth_nonce="),
            (TokenKind::ApiToken, "Ab12Cd34.s", "Authorization", "Api-Token Ab12Cd34.s"),
            (TokenKind::Bearer, "tok", "Authorization", "Bearer tok"),
            (TokenKind::Basic, "pw", "Authorization", "Basic dTpwdw=="),
            (TokenKind::Header, "v", "X-Key", "v"),
        ];
        for (kind, secret, name, prefix) in cases {
            let h = sign(kind, &p, &Secret::from_str_value(secret), &input, &fixed()).unwrap();
            assert_eq!(h.len(), 1, "{kind}");
            assert_eq!(h[0].name, name, "{kind}");
            assert!(h[0].value.starts_with(prefix), "{kind}: {}", &*h[0].value);
        }
    }

    #[test]
    fn malformed_secrets_are_shape_errors_without_the_secret() {
        let u = url("https://api.example.com/v1/x");
        let input = SignInput { method: "GET", url: &u, form: &[] };
        let p = TokenParams {
            username: Some("u".into()),
            header_name: Some("X-Key".into()),
            consumer_key: Some("ck".into()),
            token_key: Some("tk".into()),
            ..TokenParams::default()
        };
        let cases = [
            (TokenKind::Maas, "SecretPartOne:SecretPartTwo"),
            (TokenKind::Maas, "SecretPartOne::SecretPartTwo"),
            (TokenKind::Oauth1, "SecretPartOne SecretPartTwo"),
            (TokenKind::Oauth1, "SecretPartOne\n"),
            (TokenKind::ApiToken, "SecretPartOne"),
            (TokenKind::ApiToken, "Ab12.SecretPartOne SecretPartTwo"),
            (TokenKind::Bearer, "SecretPartOne SecretPartTwo"),
            (TokenKind::Basic, "SecretPartOne\r\nSecretPartTwo"),
            (TokenKind::Header, "SecretPartOne\r\nX-Injected: SecretPartTwo"),
        ];
        for (kind, secret) in cases {
            let err = sign(kind, &p, &Secret::from_str_value(secret), &input, &fixed())
                .expect_err(kind.as_str());
            assert!(matches!(err, SignError::Shape(_)), "{kind}: {err:?}");
            for shown in [err.to_string(), format!("{err:?}")] {
                assert!(!shown.contains("SecretPart"), "{kind}: {shown}");
            }
        }
        for kind in TokenKind::ALL {
            let err = sign(kind, &p, &Secret::new(vec![0xff, 0xfe]), &input, &fixed())
                .expect_err(kind.as_str());
            assert!(matches!(err, SignError::Shape(_)), "{kind}: {err:?}");
        }
    }

    #[test]
    fn missing_params_are_named() {
        let u = url("https://api.example.com/v1/x");
        let input = SignInput { method: "GET", url: &u, form: &[] };
        let none = TokenParams::default();
        let cases =
            [(TokenKind::Oauth1, "cs\nts"), (TokenKind::Basic, "pw"), (TokenKind::Header, "v")];
        for (kind, secret) in cases {
            let err = sign(kind, &none, &Secret::from_str_value(secret), &input, &fixed())
                .expect_err(kind.as_str());
            assert!(matches!(err, SignError::MissingParam(_)), "{kind}: {err:?}");
        }
    }
}
