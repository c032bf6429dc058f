//! Secrets in memory, and the shapes a secret of each kind must have.
//!
//! [`Secret`] is the only type that holds secret bytes. It has no `Display`,
//! its `Debug` prints nothing of the value, and it is wiped when dropped.
//! The shape checkers never put any part of the secret into their errors: an
//! error message may be logged or printed, a secret never.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::token::TokenKind;

/// Secret bytes: wiped on drop, never shown.
#[derive(Clone, Default, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }

    pub fn from_str_value(s: &str) -> Self {
        Secret(s.as_bytes().to_vec())
    }

    /// The raw bytes, for the few places that must use them (a signer, the
    /// keyring). Keep the borrow short.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret as text; `None` when it is not UTF-8.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Zeroizing<Vec<u8>>> for Secret {
    fn from(mut z: Zeroizing<Vec<u8>>) -> Self {
        Secret(std::mem::take(&mut *z))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::codec::deserialize_bytes(d).map(Secret)
    }
}

/// Why a secret does not have the shape its kind needs. Names the shape,
/// never the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {kind} secret: {problem}; expected {expected}")]
pub struct ShapeError {
    pub kind: TokenKind,
    pub problem: &'static str,
    pub expected: &'static str,
}

/// The expected shape of a secret of `kind`, for messages and prompts.
pub fn expected_shape(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::Maas => {
            "a MAAS API key `consumer_key:token_key:token_secret` (three non-empty parts separated by two colons, as `maas apikey` prints it)"
        }
        TokenKind::Oauth1 => "two lines: the consumer secret, then the token secret",
        TokenKind::ApiToken => "a VMS API token `<id>.<secret>`",
        TokenKind::Bearer => "a non-empty token without whitespace",
        TokenKind::Basic => "a non-empty password on one line",
        TokenKind::Header => "a non-empty header value on one line",
    }
}

fn shape(kind: TokenKind, problem: &'static str) -> ShapeError {
    ShapeError { kind, problem, expected: expected_shape(kind) }
}

/// A MAAS API key split into its parts, borrowed from the secret.
pub struct MaasKey<'a> {
    pub consumer_key: &'a str,
    pub token_key: &'a str,
    pub token_secret: &'a str,
}

impl fmt::Debug for MaasKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaasKey")
            .field("consumer_key", &self.consumer_key)
            .field("token_key", &self.token_key)
            .field("token_secret", &"[redacted]")
            .finish()
    }
}

/// An OAuth 1.0 secret pair, borrowed from the secret.
pub struct OAuthSecrets<'a> {
    pub consumer_secret: &'a str,
    pub token_secret: &'a str,
}

impl fmt::Debug for OAuthSecrets<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OAuthSecrets([redacted])")
    }
}

fn text(kind: TokenKind, secret: &Secret) -> Result<&str, ShapeError> {
    let s = secret.expose_str().ok_or_else(|| shape(kind, "it is not valid UTF-8"))?;
    if s.is_empty() {
        return Err(shape(kind, "it is empty"));
    }
    Ok(s)
}

fn has_space_or_control(s: &str) -> bool {
    s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Splits a MAAS API key. Exactly three non-empty parts: `a::b`, `:a:b`,
/// `a:b:` and `a:b:c:d` are all refused, as the MAAS CLI's own parser would
/// fail on them later in a less helpful way.
pub fn parse_maas(secret: &Secret) -> Result<MaasKey<'_>, ShapeError> {
    let kind = TokenKind::Maas;
    let s = text(kind, secret)?;
    if has_space_or_control(s) {
        return Err(shape(kind, "it contains whitespace or control characters"));
    }
    let colons = s.bytes().filter(|&b| b == b':').count();
    if colons != 2 {
        return Err(shape(
            kind,
            if colons < 2 { "it has fewer than two colons" } else { "it has more than two colons" },
        ));
    }
    let mut parts = s.split(':');
    let (Some(ck), Some(tk), Some(ts)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(shape(kind, "it does not have three parts"));
    };
    if ck.is_empty() || tk.is_empty() || ts.is_empty() {
        return Err(shape(kind, "one of its three parts is empty"));
    }
    Ok(MaasKey { consumer_key: ck, token_key: tk, token_secret: ts })
}

/// Splits a VMS API token `<id>.<secret>` and returns the id. The id is
/// alphanumeric (VMS issues eight characters); the secret part is opaque.
pub fn parse_api_token(secret: &Secret) -> Result<&str, ShapeError> {
    let kind = TokenKind::ApiToken;
    let s = text(kind, secret)?;
    if has_space_or_control(s) {
        return Err(shape(kind, "it contains whitespace or control characters"));
    }
    let Some((id, rest)) = s.split_once('.') else {
        return Err(shape(kind, "it has no `.` between the id and the secret"));
    };
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(shape(kind, "the id before the `.` is empty or not alphanumeric"));
    }
    if rest.is_empty() {
        return Err(shape(kind, "the secret after the `.` is empty"));
    }
    Ok(id)
}

/// Splits the two lines of an `oauth1` secret. The consumer secret may be
/// empty (MAAS-style consumers have none); the token secret may not.
pub fn parse_oauth1(secret: &Secret) -> Result<OAuthSecrets<'_>, ShapeError> {
    let kind = TokenKind::Oauth1;
    let s = secret.expose_str().ok_or_else(|| shape(kind, "it is not valid UTF-8"))?;
    let Some((cs, ts)) = s.split_once('\n') else {
        return Err(shape(kind, "it is not two lines"));
    };
    let ts = ts.strip_suffix('\n').unwrap_or(ts);
    if ts.contains('\n') {
        return Err(shape(kind, "it has more than two lines"));
    }
    if ts.is_empty() {
        return Err(shape(kind, "the token secret (second line) is empty"));
    }
    if cs.chars().chain(ts.chars()).any(|c| c.is_control()) {
        return Err(shape(kind, "it contains control characters"));
    }
    Ok(OAuthSecrets { consumer_secret: cs, token_secret: ts })
}

/// Checks that `secret` has the shape `kind` needs.
pub fn validate(kind: TokenKind, secret: &Secret) -> Result<(), ShapeError> {
    match kind {
        TokenKind::Maas => parse_maas(secret).map(drop),
        TokenKind::Oauth1 => parse_oauth1(secret).map(drop),
        TokenKind::ApiToken => parse_api_token(secret).map(drop),
        TokenKind::Bearer => {
            let s = text(kind, secret)?;
            if has_space_or_control(s) {
                return Err(shape(kind, "it contains whitespace or control characters"));
            }
            Ok(())
        }
        TokenKind::Basic | TokenKind::Header => {
            let s = text(kind, secret)?;
            if s.chars().any(|c| c.is_control()) {
                return Err(shape(kind, "it contains a line break or control characters"));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Secret {
        Secret::from_str_value(v)
    }

    #[test]
    fn maas_malformed_keys_are_refused() {
        for bad in [
            "",
            ":tk:ts",
            "ck:tk:",
            "ck::ts",
            "::",
            ":::",
            "ck:tk",
            "cktkts",
            "ck:tk:ts:x",
            "ck:tk:ts:",
            " ck:tk:ts",
            "ck:t k:ts",
            "ck:tk:ts\n",
            "ck:tk:\tts",
        ] {
            let err = parse_maas(&s(bad)).unwrap_err();
            assert_eq!(err.kind, TokenKind::Maas, "{bad:?}");
            let msg = err.to_string();
            assert!(msg.contains("consumer_key:token_key:token_secret"), "{msg}");
        }
        assert!(parse_maas(&Secret::new(vec![0xff, b':', b'a', b':', b'b'])).is_err());
    }

    #[test]
    fn maas_error_never_echoes_the_secret() {
        let err = parse_maas(&s("SuperSecretValue:x")).unwrap_err().to_string();
        assert!(!err.contains("SuperSecretValue"), "{err}");
        assert!(!err.contains(":x"), "{err}");
    }

    #[test]
    fn maas_good_key_splits() {
        let sec = s("ConsumerKeyAAA:TokenKeyBBB:TokenSecretCCC");
        let k = parse_maas(&sec).unwrap();
        assert_eq!(
            (k.consumer_key, k.token_key, k.token_secret),
            ("ConsumerKeyAAA", "TokenKeyBBB", "TokenSecretCCC")
        );
        assert!(!format!("{k:?}").contains("TokenSecretCCC"));
    }

    #[test]
    fn api_token_shapes() {
        for bad in ["", "abc", ".secret", "abcd1234.", "ab-d.x", "ab cd.x", "abcd.x y"] {
            assert!(parse_api_token(&s(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(parse_api_token(&s("Ab12Cd34.s3cr.et")).unwrap(), "Ab12Cd34");
    }

    #[test]
    fn oauth1_shapes() {
        for bad in ["", "one line", "cs\n", "cs\nts\nthird", "cs\nt\rs"] {
            assert!(parse_oauth1(&s(bad)).is_err(), "{bad:?}");
        }
        let sec = s("cs\nts");
        let p = parse_oauth1(&sec).unwrap();
        assert_eq!((p.consumer_secret, p.token_secret), ("cs", "ts"));
        let sec = s("\nts\n");
        let p = parse_oauth1(&sec).unwrap();
        assert_eq!((p.consumer_secret, p.token_secret), ("", "ts"));
    }

    #[test]
    fn header_like_kinds() {
        assert!(validate(TokenKind::Bearer, &s("")).is_err());
        assert!(validate(TokenKind::Bearer, &s("a b")).is_err());
        assert!(validate(TokenKind::Bearer, &s("abc.def-ghi")).is_ok());
        assert!(validate(TokenKind::Basic, &s("pass word")).is_ok());
        assert!(validate(TokenKind::Basic, &s("pw\nx")).is_err());
        assert!(validate(TokenKind::Header, &s("")).is_err());
        assert!(validate(TokenKind::Header, &s("v\r\nInjected: yes")).is_err());
        assert!(validate(TokenKind::Header, &s("value 1")).is_ok());
    }

    #[test]
    fn secret_debug_is_redacted_and_serde_round_trips() {
        let sec = s("hunter2");
        assert!(!format!("{sec:?}").contains("hunter2"));
        let bytes = crate::codec::encode(&sec).unwrap();
        let back: Secret = crate::codec::decode(&bytes).unwrap();
        assert_eq!(back, sec);
    }
}
