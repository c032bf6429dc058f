//! Validation of what a client asks the agent to store or send: token
//! names, new tokens (URL, secret shape, kind-specific settings), expiry
//! times, HTTP methods and extra headers.
//!
//! Every rule the client checks before it sends is checked here again: the
//! agent trusts nothing that arrives on its socket. Pure functions, so each
//! rule is unit-tested on its own. Whether an existing token may be *used*
//! is a different question, answered by the `policy` module.

use signet_proto::expiry::MAX_EXPIRY;
use signet_proto::secret::{self, ShapeError};
use signet_proto::token::{UrlError, is_header_name, normalize_base_url, validate_name};
use signet_proto::{Failure, Secret, SignatureMethod, TokenKind, TokenParams};

/// Comments are shown in listings: bounded, one line.
pub const MAX_COMMENT: usize = 256;
pub use signet_proto::token::MAX_CACERT;

fn usage(msg: impl Into<String>) -> Failure {
    Failure::usage(msg)
}

/// A token name as the agent accepts it.
pub fn name(name: &str) -> Result<(), Failure> {
    validate_name(name).map_err(|e| usage(e.to_string()))
}

/// Characters that reorder the text around them on a terminal: a comment
/// holding one could make `signet list` show a name or URL that is not
/// there.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn one_line(what: &str, v: &str, max: usize) -> Result<(), Failure> {
    if v.is_empty() || v.len() > max || v.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Err(usage(format!(
            "invalid {what}: it must be 1 to {max} bytes on one line, without control or bidirectional formatting characters"
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
pub fn new_token(
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
            if !is_header_name(h) || h.len() > 128 {
                return Err(usage(format!(
                    "invalid header name `{}`: expected an HTTP field name such as X-Api-Key",
                    h.escape_debug()
                )));
            }
            if FRAMING_HEADERS.contains(&h.to_ascii_lowercase().as_str()) {
                return Err(usage(format!(
                    "invalid header name `{h}`: it frames the HTTP message, which is the HTTP client's business"
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

/// An expiry instant for a token created at `created`: it must lie ahead,
/// and no later than RFC 3339 can write.
pub fn expiry_ahead(expires: Option<i64>, created: i64) -> Result<Option<i64>, Failure> {
    match expires {
        Some(t) if t <= created => Err(usage(format!(
            "expiry {} is not in the future",
            signet_proto::expiry::format_time(t)
        ))),
        Some(t) if t > MAX_EXPIRY => {
            Err(usage("invalid expiry: it lies beyond 9999-12-31T23:59:59Z"))
        }
        other => Ok(other),
    }
}

/// Methods refused whatever the token: TRACE and TRACK echo the request,
/// signed headers included, back in the response body (a non-exportable
/// secret would leave that way), and CONNECT asks for a tunnel, not a
/// request.
const REFUSED_METHODS: &[&str] = &["TRACE", "TRACK", "CONNECT"];

/// An HTTP method: an RFC 9110 token, upper-cased as curl sends it.
pub fn method(m: &str) -> Result<String, Failure> {
    if m.is_empty() || m.len() > 32 || !is_header_name(m) {
        return Err(usage(format!("invalid HTTP method `{}`", m.escape_debug())));
    }
    let m = m.to_ascii_uppercase();
    if REFUSED_METHODS.contains(&m.as_str()) {
        return Err(usage(format!(
            "method {m} is refused: it would echo the signed request back, or open a tunnel"
        )));
    }
    Ok(m)
}

/// Headers that frame the HTTP message or the connection: the HTTP
/// client sets them, and a value from elsewhere could split or smuggle a
/// request. Neither `-H` nor a `header` token may name one.
pub const FRAMING_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Headers the agent sets itself, which `-H` may not give. (A `header`
/// token may be named `Authorization`, for schemes other than Bearer and
/// Basic.)
pub const AUTH_HEADERS: &[&str] = &["authorization", "proxy-authorization"];

/// Checks `-H` headers: valid names, one-line values, neither an
/// authorization nor a framing header.
pub fn headers(headers: &[(String, String)]) -> Result<(), Failure> {
    for (k, v) in headers {
        if !is_header_name(k) || k.len() > 256 {
            return Err(usage(format!("invalid header name `{}`", k.escape_debug())));
        }
        let lower = k.to_ascii_lowercase();
        if AUTH_HEADERS.contains(&lower.as_str()) || FRAMING_HEADERS.contains(&lower.as_str()) {
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

    fn s(v: &str) -> Secret {
        Secret::from_str_value(v)
    }

    #[test]
    fn methods_and_headers() {
        assert_eq!(method("post").unwrap(), "POST");
        assert!(method("GE T").is_err());
        assert!(method("").is_err());
        for refused in ["TRACE", "trace", "Track", "CONNECT"] {
            assert!(method(refused).unwrap_err().message.contains("refused"), "{refused}");
        }
        let h = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert!(headers(&h("Accept", "application/json")).is_ok());
        assert!(headers(&h("authorization", "Bearer x")).is_err());
        assert!(headers(&h("X-A", "a\r\nInjected: 1")).is_err());
        assert!(headers(&h("Bad Name", "v")).is_err());
        for framing in FRAMING_HEADERS {
            assert!(headers(&h(framing, "v")).is_err(), "{framing}");
        }
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
            let f = new_token(kind, url, &s(sec), &params, None).unwrap_err();
            assert_eq!(
                f.code,
                signet_proto::ErrorCode::Usage,
                "{kind} {url} {params:?}: {}",
                f.message
            );
            assert!(!f.message.contains(sec) || sec.len() < 3, "{}", f.message);
        }
        let f = new_token(TokenKind::Bearer, "https://h/", &s("t"), &p, Some("a\nb")).unwrap_err();
        assert!(f.message.contains("comment"));
    }

    #[test]
    fn maas_keys_are_recorded_and_defaults_filled() {
        let (url, p) = new_token(
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
    #[test]
    fn expiry_must_lie_ahead() {
        assert_eq!(expiry_ahead(None, 10).unwrap(), None);
        assert_eq!(expiry_ahead(Some(11), 10).unwrap(), Some(11));
        let f = expiry_ahead(Some(10), 10).unwrap_err();
        assert!(f.message.contains("not in the future"), "{}", f.message);
        assert!(expiry_ahead(Some(MAX_EXPIRY), 10).is_ok());
        assert!(expiry_ahead(Some(MAX_EXPIRY + 1), 10).unwrap_err().message.contains("9999"));
    }

    #[test]
    fn header_tokens_cannot_name_framing_headers_and_comments_cannot_reorder_text() {
        let p = |h: &str| TokenParams { header_name: Some(h.into()), ..TokenParams::default() };
        for framing in ["Host", "content-length", "Transfer-Encoding", "Connection", "Upgrade"] {
            let f =
                new_token(TokenKind::Header, "https://h/", &s("v"), &p(framing), None).unwrap_err();
            assert!(f.message.contains("frames the HTTP message"), "{framing}: {}", f.message);
        }
        assert!(
            new_token(TokenKind::Header, "https://h/", &s("Token v"), &p("Authorization"), None)
                .is_ok()
        );
        for spoof in ["prod\u{202e}dorp", "a\u{2066}b", "a\u{200f}", "a\u{1b}[31m"] {
            let f = new_token(
                TokenKind::Bearer,
                "https://h/",
                &s("t"),
                &TokenParams::default(),
                Some(spoof),
            )
            .unwrap_err();
            assert!(f.message.contains("comment"), "{spoof:?}: {}", f.message);
        }
    }
}
