//! Token kinds, the metadata the agent keeps about a token, and the rules for
//! names and base URLs.
//!
//! Nothing here is secret: these types are what `list` and `show` print and
//! what the agent writes to its index file.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a token authenticates a request (docs/signing.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenKind {
    Maas,
    Oauth1,
    ApiToken,
    Bearer,
    Basic,
    Header,
}

impl TokenKind {
    pub const ALL: [TokenKind; 6] = [
        TokenKind::Maas,
        TokenKind::Oauth1,
        TokenKind::ApiToken,
        TokenKind::Bearer,
        TokenKind::Basic,
        TokenKind::Header,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Maas => "maas",
            TokenKind::Oauth1 => "oauth1",
            TokenKind::ApiToken => "api-token",
            TokenKind::Bearer => "bearer",
            TokenKind::Basic => "basic",
            TokenKind::Header => "header",
        }
    }
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TokenKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TokenKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            format!(
                "unknown token kind `{s}`; expected one of: {}",
                TokenKind::ALL.map(|k| k.as_str()).join(", ")
            )
        })
    }
}

/// The OAuth signature method of a `maas` or `oauth1` token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureMethod {
    Plaintext,
    HmacSha1,
    HmacSha256,
}

impl SignatureMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureMethod::Plaintext => "plaintext",
            SignatureMethod::HmacSha1 => "hmac-sha1",
            SignatureMethod::HmacSha256 => "hmac-sha256",
        }
    }

    /// The default for a kind: PLAINTEXT for MAAS, as every MAAS client
    /// sends it; HMAC-SHA1 for generic OAuth 1.0a.
    pub fn default_for(kind: TokenKind) -> Option<SignatureMethod> {
        match kind {
            TokenKind::Maas => Some(SignatureMethod::Plaintext),
            TokenKind::Oauth1 => Some(SignatureMethod::HmacSha1),
            _ => None,
        }
    }
}

impl fmt::Display for SignatureMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SignatureMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "plaintext" => Ok(SignatureMethod::Plaintext),
            "hmac-sha1" => Ok(SignatureMethod::HmacSha1),
            "hmac-sha256" => Ok(SignatureMethod::HmacSha256),
            _ => Err(format!(
                "unknown signature method `{s}`; expected plaintext, hmac-sha1 or hmac-sha256"
            )),
        }
    }
}

/// The largest CA bundle a token may carry: it is kept in the index, and
/// anything bigger is not a CA bundle.
pub const MAX_CACERT: usize = 256 * 1024;

/// TLS options the agent applies when it performs a request with a token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsOptions {
    /// Skip certificate verification (`--insecure`).
    pub insecure: bool,
    /// Extra trusted roots, PEM (`--cacert`): kept as text so that the token
    /// does not break when the file moves.
    pub cacert_pem: Option<String>,
}

/// The non-secret, kind-specific settings of a token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenParams {
    /// `basic`: the user name.
    pub username: Option<String>,
    /// `header`: the header's name.
    pub header_name: Option<String>,
    /// `oauth1`: given as flags. `maas`: taken from the key at add time
    /// (they identify the token, they do not authenticate it).
    pub consumer_key: Option<String>,
    pub token_key: Option<String>,
    /// `maas` and `oauth1`.
    pub signature: Option<SignatureMethod>,
    /// `api-token`: sent as `X-Tenant-Name`.
    pub tenant: Option<String>,
    pub tls: TlsOptions,
}

/// How the agent guards a token locally, set when it is added: how long
/// the agent keeps it, and whether each use asks the user first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenAccess {
    /// Seconds after which the agent removes the token (index and
    /// keyring); `None`: the agent's default (`lifetime_secs` in its
    /// config), if any. Unlike an expiry, nothing on the server changes.
    pub lifetime_secs: Option<u64>,
    /// Ask the user (through the agent's askpass program) before each use.
    pub confirm: bool,
    /// After a yes, do not ask the same program again for this many
    /// seconds. Implies `confirm`.
    pub confirm_for_secs: Option<u64>,
}

/// What the agent tells a client about a token: metadata, never the secret.
/// Times are Unix seconds, UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub name: String,
    pub kind: TokenKind,
    pub url: String,
    pub owner_uid: u32,
    /// The owner's user name, or the uid as text when it has none.
    pub owner: String,
    pub created: i64,
    pub expires: Option<i64>,
    /// Computed by the agent when it answers, from its clock.
    pub expired: bool,
    pub last_used: Option<i64>,
    pub use_count: u64,
    pub exportable: bool,
    pub comment: Option<String>,
    pub params: TokenParams,
    /// When the agent removes the token (its lifetime ends), Unix seconds.
    pub removes_at: Option<i64>,
    /// Each use asks the user first.
    pub confirm: bool,
    /// How long a yes is remembered for the program that got it.
    pub confirm_for_secs: Option<u64>,
}

/// Why a token name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid token name `{0}`: a name is 1 to 64 characters from A-Z a-z 0-9 . _ @ -, starting with a letter or digit"
)]
pub struct NameError(pub String);

/// `^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`
pub fn validate_name(name: &str) -> Result<(), NameError> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'@' | b'-'));
    if ok {
        Ok(())
    } else {
        // The name is not a secret, but it may be anything: show it escaped
        // and bounded so a terminal never receives raw control bytes.
        let shown: String = name.chars().take(80).flat_map(char::escape_debug).collect();
        Err(NameError(shown))
    }
}

/// An RFC 9110 field name (also the grammar of a method): one or more
/// `tchar`. Anything else (a colon, a space, a line break) would make a
/// header line mean something else.
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Why a base URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid URL: {0}")]
pub struct UrlError(pub String);

/// Refuses, before any parser sees it, URL text that parsers read
/// differently: a backslash (WHATWG parsers, like the agent's, read it as
/// `/` in http(s); curl and Python's urlsplit keep it, so
/// `http://good:1\@evil:2/` is `good` to one and `evil` to the others),
/// whitespace and control characters (which some parsers strip and others
/// stop at), and non-ASCII outside the host (which must be percent-encoded
/// to mean one thing). A URL that passes means the same to every parser.
pub fn check_url_text(raw: &str) -> Result<(), UrlError> {
    // The authority is the only place a non-ASCII host (IDN) may stand.
    let authority = raw.find("://").map(|i| {
        let start = i + 3;
        let end = raw[start..].find(['/', '?', '#']).map_or(raw.len(), |j| start + j);
        start..end
    });
    for (i, c) in raw.char_indices() {
        let problem = if c == '\\' {
            "it contains a backslash, which URL parsers disagree on"
        } else if c.is_whitespace() || c.is_control() {
            "it contains whitespace or a control character; percent-encode it"
        } else if !c.is_ascii() && !authority.as_ref().is_some_and(|a| a.contains(&i)) {
            "it contains a non-ASCII character outside the host; percent-encode it"
        } else {
            continue;
        };
        return Err(UrlError(problem.into()));
    }
    Ok(())
}

/// Parses and normalises a token's base URL: http or https, a host, no
/// user info (credentials belong in the keyring, and `user@host` tricks
/// confuse scope checks), no query or fragment. Scheme and host are
/// lower-cased, a default port is dropped and dot segments are resolved (the
/// `url` crate's WHATWG parsing), and the path always ends in `/` so that a
/// path-prefix scope check cannot match `/MAASX` against `/MAAS`.
pub fn normalize_base_url(raw: &str) -> Result<url::Url, UrlError> {
    let raw = raw.trim();
    check_url_text(raw)?;
    let mut u = url::Url::parse(raw).map_err(|e| {
        UrlError(format!("cannot parse it ({e}); expected e.g. http://host:5240/MAAS/"))
    })?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(UrlError(format!("scheme `{}` is not http or https", u.scheme())));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(UrlError("it has no host".into()));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(UrlError(
            "it contains user info (user@ or user:password@); give credentials as the secret instead"
                .into(),
        ));
    }
    if u.query().is_some() {
        return Err(UrlError("a base URL cannot have a query string".into()));
    }
    if u.fragment().is_some() {
        return Err(UrlError("a base URL cannot have a fragment".into()));
    }
    if !u.path().ends_with('/') {
        let p = format!("{}/", u.path());
        u.set_path(&p);
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for bad in ["", "-a", ".a", "@a", "_a", "a b", "a/b", "a:b", "é", &"a".repeat(65), "a\n"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "m1", "maas-prod", "me@host", "A.b_c-d", &"a".repeat(64), "9"] {
            assert!(validate_name(good).is_ok(), "{good:?}");
        }
        let msg = validate_name("a\u{1b}[31m").unwrap_err().to_string();
        assert!(!msg.contains('\u{1b}'), "{msg}");
    }

    #[test]
    fn base_urls_refused() {
        for bad in [
            "",
            "maas.example:5240/MAAS",
            "ftp://h/",
            "file:///etc/passwd",
            "http://user:pw@h/",
            "http://user@h/",
            "http://h/?op=x",
            "http://h/#frag",
            "not a url",
        ] {
            assert!(normalize_base_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls_that_parsers_disagree_on_are_refused_before_parsing() {
        for bad in [
            "http://good:1\\@evil:2/",
            "http://good/a\\b",
            "http://good/a b",
            "http://good/\ta",
            "http://good/\u{0}",
            "http://good/\u{7f}",
            "http://good/caf\u{e9}",
            "http://good/?q=\u{e9}",
            "http://good/\u{202e}",
            "api/\u{e9}",
        ] {
            assert!(check_url_text(bad).is_err(), "{bad:?}");
            assert!(normalize_base_url(bad).is_err(), "{bad:?}");
        }
        for good in ["http://b\u{fc}cher.example/", "https://h/a%20b?q=%C3%A9", "api/2.0/?op=x"] {
            assert!(check_url_text(good).is_ok(), "{good:?}");
        }
        assert!(normalize_base_url("http://b\u{fc}cher.example/").is_ok());
    }

    #[test]
    fn base_urls_normalised() {
        let cases = [
            ("http://maas.example:5240/MAAS/", "http://maas.example:5240/MAAS/"),
            ("HTTP://MAAS.Example:80/MAAS", "http://maas.example/MAAS/"),
            ("https://h:443", "https://h/"),
            ("https://h/a/../b/./c", "https://h/b/c/"),
            (" https://h/x ", "https://h/x/"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_base_url(raw).unwrap().as_str(), want, "{raw}");
        }
    }

    #[test]
    fn header_names_are_tokens() {
        assert!(is_header_name("X-Auth_Token.v2!#$%&'*+^`|~"));
        for bad in ["", "X Key", "X-Key:", "X\r\nEvil", "Ä", "a\tb"] {
            assert!(!is_header_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn kinds_parse_and_print() {
        for k in TokenKind::ALL {
            assert_eq!(k.as_str().parse::<TokenKind>().unwrap(), k);
        }
        let err = "ssh".parse::<TokenKind>().unwrap_err();
        assert!(err.contains("api-token"), "{err}");
        assert_eq!("HMAC-SHA1".parse::<SignatureMethod>().unwrap(), SignatureMethod::HmacSha1);
        assert!("rsa-sha1".parse::<SignatureMethod>().is_err());
    }
}
