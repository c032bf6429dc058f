//! Authorisation: whether a stored token may be used for a request, as
//! pure functions over its metadata. Expiry, scope, export and the owner's
//! own-token rule live here.
//!
//! Nothing here touches a socket, a file or the keyring, so every rule is
//! unit-tested on its own. Commands call these before they touch a secret.
//! Whether new input is well formed is the `validate` module's question.

use signet_proto::{ErrorCode, Failure, TokenKind};

use crate::entry::Entry;

/// Refuses every use of an expired token, saying when it expired.
pub fn check_not_expired(e: &Entry, now: i64) -> Result<(), Failure> {
    match e.expires {
        Some(t) if e.is_expired(now) => Err(Failure::policy(format!(
            "token `{}` expired at {}",
            e.name,
            signet_proto::expiry::format_time(t)
        ))
        .with_hint(if matches!(e.kind, TokenKind::Maas | TokenKind::ApiToken) {
            format!("`signet rotate {}` mints a fresh one, or add a new token", e.name)
        } else {
            "add a new token with a fresh secret".to_string()
        })),
        _ => Ok(()),
    }
}

/// The URL a request is for: `target` as given when absolute, else joined
/// to the token's base URL (`api/2.0/users/?op=whoami`).
pub fn resolve_url(base: &url::Url, target: &str) -> Result<url::Url, Failure> {
    let t = target.trim();
    if t.is_empty() {
        return Err(Failure::usage("no URL given"));
    }
    signet_proto::token::check_url_text(t)
        .map_err(|e| Failure::usage(format!("invalid URL `{}`: {}", t.escape_debug(), e.0)))?;
    let absolute = t.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    });
    let url = if absolute { url::Url::parse(t) } else { base.join(t) };
    let url =
        url.map_err(|e| Failure::usage(format!("invalid URL `{}`: {e}", t.escape_debug())))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Failure::usage(format!(
            "invalid URL: scheme `{}` is not http or https",
            url.scheme()
        )));
    }
    Ok(url)
}

fn out_of_scope(name: &str, base: &url::Url, why: String) -> Failure {
    Failure::new(
        ErrorCode::Policy,
        format!("refused: {why}; token `{name}` is only for URLs under {base}"),
    )
}

/// Whether the path has a `.` or `..` segment that the URL parser left
/// alone because it was hidden: percent-encoded once or more (`%2e%2e`,
/// `%252e%252e`: a server or proxy that decodes before resolving steps out
/// of the base path), or followed by a `;` parameter (`..;/`, which Tomcat
/// and Spring resolve as `..`).
fn has_hidden_dot_segment(path: &str) -> bool {
    let dotted = |layer: &[u8]| {
        layer.split(|&c| c == b'/' || c == b'\\').any(|seg| {
            let seg = seg.split(|&c| c == b';').next().unwrap_or(seg);
            seg == b"." || seg == b".."
        })
    };
    // Without a `%` there is no layer to peel: one look, no copy.
    if !path.contains('%') {
        return dotted(path.as_bytes());
    }
    let mut layer: Vec<u8> = path.as_bytes().to_vec();
    // Each round peels one layer of encoding; a path that still changes
    // after a few is refused anyway below.
    for _ in 0..4 {
        if dotted(&layer) {
            return true;
        }
        let next: Vec<u8> = percent_encoding::percent_decode(&layer).collect();
        if next == layer {
            return false;
        }
        layer = next;
    }
    true
}

/// A token is used only for URLs under its base URL: same scheme
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
    let base =
        parse_base(&e.url).map_err(|err| Failure::other(format!("stored base URL: {err}")))?;
    let url = resolve_url(&base, target)?;
    check_scope(&e.name, &base, &url)?;
    Ok((base, url))
}

/// A token's base URL, parsed. Each thread keeps the last one it parsed:
/// a client signing in a loop names the same token each time, and parsing
/// was a tenth of a sign's instructions. A base URL is not a secret.
fn parse_base(text: &str) -> Result<url::Url, url::ParseError> {
    use std::cell::RefCell;
    thread_local!(static LAST: RefCell<Option<(String, url::Url)>> = const { RefCell::new(None) });
    LAST.with_borrow_mut(|last| {
        if let Some((_, u)) = last.as_ref().filter(|(t, _)| t == text) {
            return Ok(u.clone());
        }
        let u = url::Url::parse(text)?;
        *last = Some((text.to_string(), u.clone()));
        Ok(u)
    })
}

/// Output that contains the secret itself leaves the agent only
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

/// Deleting or revoking the very server token a local token uses ends that
/// token's access, as the MAAS CLI warns: only with `--force`.
pub fn check_own(
    own: bool,
    force: bool,
    name: &str,
    token: &str,
    (verb, verbing): (&str, &str),
) -> Result<(), Failure> {
    if own && !force {
        return Err(Failure::policy(format!(
            "{token} is the token `{name}` itself uses: {verbing} it ends its access"
        ))
        .with_hint(format!(
            "pass --force to {verb} it anyway (the local token is then removed too)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use signet_proto::TokenParams;

    fn u(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    fn entry(expires: Option<i64>) -> Entry {
        let mut e =
            Entry::draft("t", TokenKind::Bearer, "https://h/".into(), 1, 0, TokenParams::default());
        e.expires = expires;
        e
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
            "https://maas.example:5240/MAAS/..;/admin",
            "https://maas.example:5240/MAAS/a/..;x=1/..;/b",
            "https://maas.example:5240/MAAS/%252e%252e/admin",
            "https://maas.example:5240/MAAS/%25252e%25252e/admin",
            "https://maas.example:5240/MAAS/.%252e/admin",
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
        for confusing in ["http://maas.example:5240\\@evil:2/MAAS/", "api/a b", "api/\u{e9}"] {
            assert_eq!(
                resolve_url(&base, confusing).unwrap_err().code,
                ErrorCode::Usage,
                "{confusing}"
            );
        }
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
    fn expiry_is_enforced_at_the_instant() {
        assert!(check_not_expired(&entry(None), 100).is_ok());
        assert!(check_not_expired(&entry(Some(101)), 100).is_ok());
        let f = check_not_expired(&entry(Some(100)), 100).unwrap_err();
        assert_eq!(f.code, ErrorCode::Policy);
        assert!(f.message.contains("expired at 1970-01-01T00:01:40Z"), "{}", f.message);
    }

    #[test]
    fn own_token_needs_force() {
        let f = check_own(true, false, "m", "tk", ("delete", "deleting")).unwrap_err();
        assert_eq!(f.code, ErrorCode::Policy);
        assert!(f.message.contains("deleting it ends its access"), "{}", f.message);
        assert!(f.hint.unwrap().contains("--force"));
        assert!(check_own(true, true, "m", "tk", ("delete", "deleting")).is_ok());
        assert!(check_own(false, false, "m", "tk", ("delete", "deleting")).is_ok());
    }
}
