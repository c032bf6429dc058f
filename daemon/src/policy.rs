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

/// The URL a request is for: `target` as given when absolute, else joined
/// to the token's base URL (`api/2.0/users/?op=whoami`).
pub fn resolve_url(base: &url::Url, target: &str) -> Result<url::Url, Failure> {
    let t = target.trim();
    if t.is_empty() {
        return Err(usage("no URL given"));
    }
    let absolute = t.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    });
    let url = if absolute { url::Url::parse(t) } else { base.join(t) };
    let url = url.map_err(|e| usage(format!("invalid URL `{}`: {e}", t.escape_debug())))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(usage(format!("invalid URL: scheme `{}` is not http or https", url.scheme())));
    }
    Ok(url)
}

fn out_of_scope(name: &str, base: &url::Url, why: String) -> Failure {
    Failure::new(
        ErrorCode::Policy,
        format!("refused: {why}; token `{name}` is only for URLs under {base}"),
    )
}

/// Whether the percent-decoded path has a `.` or `..` segment that the URL
/// parser left alone because it was encoded (`%2e%2e%2f`): a server that
/// decodes before resolving would step out of the base path.
fn has_hidden_dot_segment(path: &str) -> bool {
    let mut decoded = Vec::with_capacity(path.len());
    let b = path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            decoded.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        decoded.push(b[i]);
        i += 1;
    }
    decoded.split(|&c| c == b'/' || c == b'\\').any(|seg| seg == b"." || seg == b"..")
}

/// SPEC §3: a token is used only for URLs under its base URL: same scheme
/// (no downgrade), host and port, and a path under the base path. Both URLs
/// are already normalised by the WHATWG parser (case, default ports, dot
/// segments); what it leaves, this refuses.
pub fn check_scope(name: &str, base: &url::Url, target: &url::Url) -> Result<(), Failure> {
    if !target.username().is_empty() || target.password().is_some() {
        return Err(out_of_scope(name, base, "the URL contains user info".into()));
    }
    if target.scheme() != base.scheme() {
        return Err(out_of_scope(
            name,
            base,
            format!("scheme {} is not the token's {}", target.scheme(), base.scheme()),
        ));
    }
    if target.host_str() != base.host_str() {
        return Err(out_of_scope(
            name,
            base,
            format!("host {} is not the token's host", target.host_str().unwrap_or("(none)")),
        ));
    }
    if target.port_or_known_default() != base.port_or_known_default() {
        return Err(out_of_scope(
            name,
            base,
            format!(
                "port {} is not the token's port",
                target.port_or_known_default().map_or("(none)".into(), |p| p.to_string())
            ),
        ));
    }
    let (bp, tp) = (base.path(), target.path());
    let under = tp.starts_with(bp) || Some(tp) == bp.strip_suffix('/');
    if !under || has_hidden_dot_segment(tp) || tp.contains('\\') {
        return Err(out_of_scope(name, base, format!("path {tp} is not under {bp}")));
    }
    Ok(())
}

/// The token's base URL and `target` resolved against it, refused unless
/// in scope: what every use of a token (sign, request, the lifecycle
/// APIs) goes through.
pub fn scoped_url(e: &Entry, target: &str) -> Result<(url::Url, url::Url), Failure> {
    let base = url::Url::parse(&e.url)
        .map_err(|err| Failure::new(ErrorCode::Other, format!("stored base URL: {err}")))?;
    let url = resolve_url(&base, target)?;
    check_scope(&e.name, &base, &url)?;
    Ok((base, url))
}

/// SPEC §3: output that contains the secret itself leaves the agent only
/// for tokens added with --exportable.
pub fn check_export(e: &Entry, reveals_secret: bool) -> Result<(), Failure> {
    if reveals_secret && !e.exportable {
        return Err(Failure::new(
            ErrorCode::Policy,
            format!(
                "refused: token `{}` is not exportable, and its {} header would contain the secret itself",
                e.name, e.kind
            ),
        )
        .with_hint(format!(
            "use `signet request {} URL` (the agent makes the call), or re-add the token with --exportable",
            e.name
        )));
    }
    Ok(())
}

/// An HTTP method: an RFC 9110 token, upper-cased as curl sends it.
pub fn check_method(m: &str) -> Result<String, Failure> {
    if m.is_empty() || m.len() > 32 || !header_token_ok(m) {
        return Err(usage(format!("invalid HTTP method `{}`", m.escape_debug())));
    }
    Ok(m.to_ascii_uppercase())
}

/// Headers the caller may not set: the agent owns authentication, and
/// framing headers are the HTTP client's business.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
];

/// Checks `-H` headers: valid names, one-line values, nothing reserved.
pub fn check_headers(headers: &[(String, String)]) -> Result<(), Failure> {
    for (k, v) in headers {
        if !header_token_ok(k) || k.len() > 256 {
            return Err(usage(format!("invalid header name `{}`", k.escape_debug())));
        }
        if RESERVED_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
            return Err(usage(format!("header {k} is set by the agent and cannot be given")));
        }
        if v.len() > 8192 || v.chars().any(|c| c.is_control() && c != '\t') {
            return Err(usage(format!("invalid value for header {k}: one line, at most 8 KiB")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::index::EntryState;

    fn u(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn scope_refusals() {
        let base = u("https://maas.example:5240/MAAS/");
        let refused = [
            "https://other.example:5240/MAAS/",
            "https://maas.example:5241/MAAS/",
            "http://maas.example:5240/MAAS/",
            "https://maas.example:5240/MAASX/",
            "https://maas.example:5240/",
            "https://maas.example:5240/MAAS/..%2f..%2fadmin",
            "https://maas.example:5240/MAAS/%2e%2e/admin",
            "https://maas.example:5240/MAAS/a/%2E%2E/%2E%2E/x",
            "https://user@maas.example:5240/MAAS/",
            "https://maas.example.evil.com:5240/MAAS/",
            "https://maas.example:5240@evil.com/MAAS/",
        ];
        for t in refused {
            let f = check_scope("m", &base, &u(t)).unwrap_err();
            assert_eq!(f.code, ErrorCode::Policy, "{t}");
            assert!(f.message.contains("refused"), "{t}: {}", f.message);
        }
        let allowed = [
            "https://maas.example:5240/MAAS/",
            "https://maas.example:5240/MAAS",
            "https://MAAS.example:5240/MAAS/api/2.0/users/?op=whoami",
            "https://maas.example:5240/MAAS/a/../b",
            "https://maas.example:5240/MAAS/a%2Fb",
        ];
        for t in allowed {
            assert!(check_scope("m", &base, &u(t)).is_ok(), "{t}");
        }
        // Default ports compare equal whether written or not.
        let base = u("https://h/x/");
        assert!(check_scope("m", &base, &u("https://h:443/x/y")).is_ok());
        assert!(check_scope("m", &base, &u("https://h:8443/x/y")).is_err());
    }

    #[test]
    fn relative_urls_join_the_base_and_escapes_are_caught() {
        let base = u("http://maas.example:5240/MAAS/");
        let r = resolve_url(&base, "api/2.0/users/?op=whoami").unwrap();
        assert_eq!(r.as_str(), "http://maas.example:5240/MAAS/api/2.0/users/?op=whoami");
        for escape in ["../etc", "/etc", "//evil.com/MAAS/", "http://evil.com/MAAS/"] {
            let r = resolve_url(&base, escape).unwrap();
            assert!(check_scope("m", &base, &r).is_err(), "{escape} -> {r}");
        }
        assert_eq!(resolve_url(&base, "").unwrap_err().code, ErrorCode::Usage);
        assert_eq!(resolve_url(&base, "ftp://maas.example/").unwrap_err().code, ErrorCode::Usage);
    }

    #[test]
    fn export_needs_the_flag_only_for_revealing_headers() {
        let mut e = entry(None);
        assert!(check_export(&e, false).is_ok());
        let f = check_export(&e, true).unwrap_err();
        assert_eq!(f.code, ErrorCode::Policy);
        assert!(f.hint.unwrap().contains("signet request"));
        e.exportable = true;
        assert!(check_export(&e, true).is_ok());
    }

    #[test]
    fn methods_and_headers() {
        assert_eq!(check_method("post").unwrap(), "POST");
        assert!(check_method("GE T").is_err());
        assert!(check_method("").is_err());
        let h = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert!(check_headers(&h("Accept", "application/json")).is_ok());
        assert!(check_headers(&h("authorization", "Bearer x")).is_err());
        assert!(check_headers(&h("X-A", "a\r\nInjected: 1")).is_err());
        assert!(check_headers(&h("Bad Name", "v")).is_err());
    }

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
