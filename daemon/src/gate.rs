//! The one way in for every request the agent sends upstream on a peer's
//! behalf, whether it came as `signet request` or through a local proxy:
//! the name, the owner, expiry, scope, method and headers are checked
//! here, in this order, and only then is the secret fetched.
//!
//! Every rule on the use of a token (the lock, its lifetime, confirmation
//! on use) is applied in [`admit`], so that no path to upstream can skip
//! it.

use std::sync::Arc;

use signet_proto::{Failure, Secret};

use crate::access::Destination;
use crate::agent::{Agent, Peer, now};
use crate::entry::Entry;
use crate::{policy, sign, validate};

/// A form body that OAuth HMAC must sign is read whole before sending; it
/// may not be larger than this.
pub const MAX_SIGNED_FORM: usize = 1 << 20;

/// One use of a token, as asked for.
#[derive(Debug, Clone, Copy)]
pub struct Use<'a> {
    pub name: &'a str,
    pub method: &'a str,
    /// Absolute, or relative to the token's base URL.
    pub target: &'a str,
    /// Extra request headers: neither authorization nor framing.
    pub headers: &'a [(String, String)],
    /// The body is `application/x-www-form-urlencoded`.
    pub form_body: bool,
    /// Where the use comes from, for the log: `request` or `proxy`.
    pub via: &'static str,
}

/// A use that passed every check: what the caller needs to send it.
pub struct Granted {
    pub entry: Entry,
    pub secret: Arc<Secret>,
    pub client: reqwest::Client,
    pub base: url::Url,
    pub url: url::Url,
    pub method: reqwest::Method,
    /// OAuth HMAC signs form parameters: such a body is read whole first.
    pub sign_form_body: bool,
}

/// Decides whether `peer` may make this request with the token, and
/// hands back what it takes to make it.
pub async fn admit(agent: &Agent, peer: Peer, u: &Use<'_>) -> Result<Granted, Failure> {
    validate::name(u.name)?;
    // Ownership: the store answers only with the peer's own tokens.
    let entry = agent.store.get(peer.uid, u.name)?;
    let at = now();
    policy::check_not_expired(&entry, at)?;
    let (base, url) = policy::scoped_url(&entry, u.target)?;
    let method = validate::method(u.method)?;
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| Failure::usage("invalid HTTP method"))?;
    validate::headers(u.headers)?;
    // Locked, past its lifetime, or not confirmed: refused before the
    // secret is read.
    agent
        .access
        .admit_use(peer, &entry, &Destination { method: method.as_str(), url: &url }, at)
        .await?;
    let sign_form_body = u.form_body && sign::signs_form_body(entry.kind, &entry.params);
    let secret = agent.store.secret(&entry).await?;
    let client = agent.http.client(&entry)?;
    tracing::debug!(token = %entry.name, via = u.via, method = %method, "use granted");
    Ok(Granted { entry, secret, client, base, url, method, sign_form_body })
}

/// Whether a header list says the body is a form.
pub fn is_form(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("content-type")
            && v.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded")
    })
}
