//! The rules a request must pass, as pure functions over metadata.
//!
//! Nothing here touches a socket, a file or the keyring, so every rule is
//! unit-tested on its own. The handler calls these before it does anything
//! with a secret.

use signet_proto::secret::{self, ShapeError};
use signet_proto::token::{UrlError, normalize_base_url};
use signet_proto::{ErrorCode, Failure, Secret, SignatureMethod, TokenKind, TokenParams};

use crate::store::index::Entry;

/// Comments are shown in listings: bounded, one line.
pub const MAX_COMMENT: usize = 256;
/// A CA bundle is kept in the index; anything bigger is not a CA bundle.
pub const MAX_CACERT: usize = 256 * 1024;

fn usage(msg: impl Into<String>) -> Failure {
    Failure::new(ErrorCode::Usage, msg)
}

/// Refuses every use of an expired token, saying when it expired.
pub fn check_not_expired(e: &Entry, now: i64) -> Result<(), Failure> {
    match e.expires {
        Some(t) if t <= now => Err(Failure::new(
            ErrorCode::Policy,
            format!("token `{}` expired at {}", e.name, signet_proto::expiry::format_time(t)),
        )
        .with_hint("add a new token, or rotate this one")),
        _ => Ok(()),
    }
}

pub fn is_expired(e: &Entry, now: i64) -> bool {
    check_not_expired(e, now).is_err()
}

/// The failure for a full quota, naming the limit and how to raise it.
pub fn limit_failure(limit: u32) -> Failure {
    Failure::new(
        ErrorCode::Policy,
        format!("token limit reached: this agent allows at most {limit} tokens per owner"),
    )
    .with_hint(
        "remove a token with `signet rm NAME`, or raise max_tokens_per_owner in the agent's config.toml and restart it",
    )
}

fn header_token_ok(name: &str) -> bool {
    // RFC 9110 token characters.
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn one_line(what: &str, v: &str, max: usize) -> Result<(), Failure> {
    if v.is_empty() || v.len() > max || v.chars().any(char::is_control) {
        return Err(usage(format!(
            "invalid {what}: it must be 1 to {max} bytes on one line, without control characters"
        )));
    }
    Ok(())
}

fn shape_failure(e: ShapeError) -> Failure {
    usage(e.to_string())
}

fn url_failure(e: UrlError) -> Failure {
    usage(e.to_string())
}

/// Checks a new token's URL, secret and kind-specific settings, and returns
/// the normalised base URL and the settings as they will be stored. For a
/// `maas` token the consumer and token keys are taken from the key: they
/// name the token (as `maas tokens` lists it) without authenticating it.
pub fn check_new_token(
    kind: TokenKind,
    url: &str,
    secret: &Secret,
    params: &TokenParams,
    comment: Option<&str>,
) -> Result<(String, TokenParams), Failure> {
    let url = normalize_base_url(url).map_err(url_failure)?;
    secret::validate(kind, secret).map_err(shape_failure)?;
    if let Some(c) = comment {
        one_line("comment", c, MAX_COMMENT)?;
    }
    let mut p = params.clone();
    let only = |what: &str, set: bool, kinds: &str| -> Result<(), Failure> {
        if set {
            Err(usage(format!("{what} applies only to {kinds} tokens, not to {kind}")))
        } else {
            Ok(())
        }
    };
    only("--username", p.username.is_some() && kind != TokenKind::Basic, "basic")?;
    only("--header-name", p.header_name.is_some() && kind != TokenKind::Header, "header")?;
    only(
        "--consumer-key/--token-key",
        (p.consumer_key.is_some() || p.token_key.is_some()) && kind != TokenKind::Oauth1,
        "oauth1",
    )?;
    only(
        "--signature",
        p.signature.is_some() && !matches!(kind, TokenKind::Maas | TokenKind::Oauth1),
        "maas and oauth1",
    )?;
    only("--tenant", p.tenant.is_some() && kind != TokenKind::ApiToken, "api-token")?;

    match kind {
        TokenKind::Basic => {
            let u = p.username.as_deref().ok_or_else(|| usage("a basic token needs --username"))?;
            one_line("username", u, 256)?;
            if u.contains(':') {
                return Err(usage("invalid username: it cannot contain `:` (RFC 7617)"));
            }
        }
        TokenKind::Header => {
            let h = p
                .header_name
                .as_deref()
                .ok_or_else(|| usage("a header token needs --header-name"))?;
            if !header_token_ok(h) || h.len() > 128 {
                return Err(usage(format!(
                    "invalid header name `{}`: expected an HTTP field name such as X-Api-Key",
                    h.escape_debug()
                )));
            }
        }
        TokenKind::Oauth1 => {
            let ck = p
                .consumer_key
                .as_deref()
                .ok_or_else(|| usage("an oauth1 token needs --consumer-key and --token-key"))?;
            let tk = p
                .token_key
                .as_deref()
                .ok_or_else(|| usage("an oauth1 token needs --consumer-key and --token-key"))?;
            one_line("consumer key", ck, 512)?;
            one_line("token key", tk, 512)?;
        }
        TokenKind::Maas => {
            if p.signature == Some(SignatureMethod::HmacSha256) {
                return Err(usage(
                    "MAAS accepts PLAINTEXT and HMAC-SHA1 only: use --signature plaintext or hmac-sha1",
                ));
            }
            let key = secret::parse_maas(secret).map_err(shape_failure)?;
            p.consumer_key = Some(key.consumer_key.to_string());
            p.token_key = Some(key.token_key.to_string());
        }
        TokenKind::ApiToken => {
            if let Some(t) = p.tenant.as_deref() {
                one_line("tenant", t, 256)?;
            }
        }
        TokenKind::Bearer => {}
    }
    if p.signature.is_none() {
        p.signature = SignatureMethod::default_for(kind);
    }
    if p.tls.insecure && p.tls.cacert_pem.is_some() {
        return Err(usage("--insecure and --cacert exclude each other"));
    }
    if let Some(pem) = p.tls.cacert_pem.as_deref()
        && (pem.len() > MAX_CACERT || !pem.contains("-----BEGIN CERTIFICATE-----"))
    {
        return Err(usage(format!(
            "invalid --cacert: expected PEM certificates (-----BEGIN CERTIFICATE-----), at most {MAX_CACERT} bytes"
        )));
    }
    Ok((url.to_string(), p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::index::EntryState;

    fn s(v: &str) -> Secret {
        Secret::from_str_value(v)
    }

    fn entry(expires: Option<i64>) -> Entry {
        Entry {
            id: "i".into(),
            state: EntryState::Active,
            name: "t".into(),
            kind: TokenKind::Bearer,
            url: "https://h/".into(),
            owner_uid: 1,
            created: 0,
            expires,
            last_used: None,
            use_count: 0,
            exportable: false,
            comment: None,
            params: TokenParams::default(),
        }
    }

    #[test]
    fn expiry_is_enforced_at_the_instant() {
        assert!(check_not_expired(&entry(None), 100).is_ok());
        assert!(check_not_expired(&entry(Some(101)), 100).is_ok());
        let f = check_not_expired(&entry(Some(100)), 100).unwrap_err();
        assert_eq!(f.code, ErrorCode::Policy);
        assert!(f.message.contains("expired at 1970-01-01T00:01:40Z"), "{}", f.message);
    }

    #[test]
    fn limit_message_names_the_limit_and_the_fix() {
        let f = limit_failure(5);
        assert_eq!(f.code.exit_code(), 5);
        assert!(f.message.contains('5'));
        assert!(f.hint.unwrap().contains("max_tokens_per_owner"));
    }

    #[test]
    fn malformed_new_tokens_are_usage_errors() {
        let p = TokenParams::default();
        let cases: Vec<(TokenKind, &str, &str, TokenParams)> = vec![
            (TokenKind::Maas, "http://h/MAAS/", ":tk:ts", p.clone()),
            (TokenKind::Maas, "ftp://h/", "ck:tk:ts", p.clone()),
            (TokenKind::Basic, "https://h/", "pw", p.clone()),
            (
                TokenKind::Basic,
                "https://h/",
                "pw",
                TokenParams { username: Some("a:b".into()), ..p.clone() },
            ),
            (TokenKind::Header, "https://h/", "v", p.clone()),
            (
                TokenKind::Header,
                "https://h/",
                "v",
                TokenParams { header_name: Some("Bad Name".into()), ..p.clone() },
            ),
            (TokenKind::Oauth1, "https://h/", "cs\nts", p.clone()),
            (
                TokenKind::Bearer,
                "https://h/",
                "t",
                TokenParams { username: Some("u".into()), ..p.clone() },
            ),
            (
                TokenKind::Maas,
                "http://h/",
                "a:b:c",
                TokenParams { signature: Some(SignatureMethod::HmacSha256), ..p.clone() },
            ),
            (
                TokenKind::Bearer,
                "https://h/",
                "t",
                TokenParams {
                    tls: signet_proto::TlsOptions {
                        insecure: true,
                        cacert_pem: Some("-----BEGIN CERTIFICATE-----".into()),
                    },
                    ..p.clone()
                },
            ),
        ];
        for (kind, url, sec, params) in cases {
            let f = check_new_token(kind, url, &s(sec), &params, None).unwrap_err();
            assert_eq!(f.code, ErrorCode::Usage, "{kind} {url} {params:?}: {}", f.message);
            assert!(!f.message.contains(sec) || sec.len() < 3, "{}", f.message);
        }
        let f = check_new_token(TokenKind::Bearer, "https://h/", &s("t"), &p, Some("a\nb"))
            .unwrap_err();
        assert!(f.message.contains("comment"));
    }

    #[test]
    fn maas_keys_are_recorded_and_defaults_filled() {
        let (url, p) = check_new_token(
            TokenKind::Maas,
            "HTTP://Maas.Example:5240/MAAS",
            &s("ck:tk:ts"),
            &TokenParams::default(),
            None,
        )
        .unwrap();
        assert_eq!(url, "http://maas.example:5240/MAAS/");
        assert_eq!(p.consumer_key.as_deref(), Some("ck"));
        assert_eq!(p.token_key.as_deref(), Some("tk"));
        assert_eq!(p.signature, Some(SignatureMethod::Plaintext));
    }
}
