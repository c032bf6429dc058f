//! The HTTP client side: one reqwest client (rustls) per token, with that
//! token's TLS settings, kept so connections to a server are reused; what
//! an upstream failure is called; and the whole-answer calls the token APIs
//! make.
//!
//! Redirects are never followed here: the perform command follows them by
//! hand, so that each hop is scope-checked and signed afresh.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use signet_proto::{Failure, TlsOptions};
use zeroize::{Zeroize, Zeroizing};

use crate::entry::Entry;
use crate::policy;
use crate::sign::{self, SignInput};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// HTTP clients, one per token (its TLS settings), kept so that connections
/// to the same server are reused across requests.
pub struct Http {
    clients: Mutex<HashMap<String, reqwest::Client>>,
    /// How long an upstream may stay silent before it is given up on.
    idle: Duration,
    /// Every call fails at once: for fuzzing the agent, whose inputs may
    /// name any host.
    offline: bool,
}

impl Http {
    pub fn new(idle: Duration) -> Self {
        Http { clients: Mutex::default(), idle, offline: false }
    }

    /// An HTTP side that reaches no network: every call fails as if the
    /// upstream were unreachable (exit 7).
    pub fn offline() -> Self {
        Http { clients: Mutex::default(), idle: CONNECT_TIMEOUT, offline: true }
    }

    /// Fails at once when this agent reaches no network (a fuzzing agent),
    /// before anything that would need it is set up.
    pub fn reachable(&self) -> Result<(), Failure> {
        if self.offline {
            Err(Failure::upstream("offline: no network for this agent"))
        } else {
            Ok(())
        }
    }

    /// A client for TLS settings that belong to no stored token yet (a
    /// login being verified): not cached.
    pub fn uncached(&self, tls: &TlsOptions) -> Result<reqwest::Client, Failure> {
        self.reachable()?;
        build_client(tls, self.idle)
    }

    pub fn client(&self, e: &Entry) -> Result<reqwest::Client, Failure> {
        self.reachable()?;
        let mut clients =
            self.clients.lock().map_err(|_| Failure::other("internal error: client cache"))?;
        if let Some(c) = clients.get(&e.id) {
            return Ok(c.clone());
        }
        let c = build_client(&e.params.tls, self.idle)?;
        clients.insert(e.id.clone(), c.clone());
        Ok(c)
    }

    /// Drops every client, and with them their pooled connections and
    /// TLS state: the agent is being locked.
    pub fn forget_all(&self) {
        let dropped = match self.clients.lock() {
            Ok(mut c) => std::mem::take(&mut *c),
            Err(_) => return,
        };
        drop(dropped);
    }

    /// Drops the client of a removed token.
    pub fn forget(&self, id: &str) {
        if let Ok(mut c) = self.clients.lock() {
            c.remove(id);
        }
    }
}

/// Proves that TLS settings make a working client, before a token that
/// carries them is stored: a CA bundle that looks like PEM but holds no
/// certificate must be refused at add, not at every later use.
pub fn check_tls(tls: &TlsOptions) -> Result<(), Failure> {
    if tls.cacert_pem.is_none() {
        return Ok(());
    }
    build_client(tls, CONNECT_TIMEOUT)
        .map(drop)
        .map_err(|f| Failure::usage(format!("invalid --cacert: {}", f.message)))
}

fn build_client(tls: &TlsOptions, idle: Duration) -> Result<reqwest::Client, Failure> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        // Redirects are ours to follow: each hop is scope-checked and re-signed.
        .redirect(reqwest::redirect::Policy::none())
        // The destination is the token's scope, not whatever a proxy
        // variable in the agent's environment says.
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        // A silent upstream must not hold a connection slot for ever.
        .read_timeout(idle)
        .user_agent(concat!("signet/", env!("CARGO_PKG_VERSION")));
    if tls.insecure {
        b = b.danger_accept_invalid_certs(true);
    }
    if let Some(pem) = &tls.cacert_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| Failure::other(format!("the token's CA bundle is unusable: {e}")))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| Failure::other(format!("cannot build an HTTP client: {e}")))
}

/// What is wrong with an upstream call, from the innermost cause out,
/// naming the origin but never the headers.
pub fn describe(e: &reqwest::Error, url: &url::Url) -> Failure {
    let origin = url.origin().ascii_serialization();
    let mut causes = Vec::new();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        let text = s.to_string();
        if causes.last() != Some(&text) {
            causes.push(text);
        }
        src = s.source();
    }
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let detail = if causes.is_empty() { String::new() } else { format!(": {}", causes.join(": ")) };
    Failure::upstream(format!("{origin}: {what}{detail}"))
}

/// Adds signed header lines to a request, marked sensitive so that the
/// HTTP stack never prints them.
pub fn attach(
    mut rb: reqwest::RequestBuilder,
    lines: &[sign::HeaderLine],
) -> Result<reqwest::RequestBuilder, Failure> {
    for h in lines {
        let mut v = reqwest::header::HeaderValue::from_str(&h.value)
            .map_err(|_| Failure::other("the signed header is not a valid HTTP header value"))?;
        v.set_sensitive(true);
        rb = rb.header(h.name.as_str(), v);
    }
    Ok(rb)
}

/// The largest answer the agent reads from a lifecycle API.
pub const MAX_API_RESPONSE: usize = 4 << 20;

/// A request body for [`call_api`].
pub enum ApiBody {
    None,
    Form(Vec<(String, String)>),
    Json(serde_json::Value),
}

/// A call the agent makes for itself (the MAAS and VMS token APIs): scope
/// checked and signed like any other, redirects not followed, the answer
/// read whole (at most [`MAX_API_RESPONSE`]). `entry` need not be stored:
/// a login is verified before it is. The caller records the use.
pub async fn call_api(
    client: &reqwest::Client,
    entry: &Entry,
    secret: &signet_proto::Secret,
    method: reqwest::Method,
    target: &str,
    body: ApiBody,
) -> Result<(u16, Zeroizing<Vec<u8>>), Failure> {
    let (_, url) = policy::scoped_url(entry, target)?;
    let form = match &body {
        ApiBody::Form(f) => f.clone(),
        _ => Vec::new(),
    };
    let auth =
        sign::now(entry, secret, &SignInput { method: method.as_str(), url: &url, form: &form })?;
    let rb = client.request(method, url.clone()).header("Accept", "application/json");
    let mut rb = attach(rb, &auth)?;
    rb = match body {
        ApiBody::None => rb,
        ApiBody::Form(f) => rb.form(&f),
        ApiBody::Json(j) => {
            rb.header(reqwest::header::CONTENT_TYPE, "application/json").body(j.to_string())
        }
    };
    let mut resp =
        rb.timeout(Duration::from_secs(60)).send().await.map_err(|e| describe(&e, &url))?;
    let status = resp.status().as_u16();
    // The answer may carry a secret (a minted key, a token list): the copy
    // kept here is wiped on drop, and so is each chunk the HTTP stack hands
    // over when no other reference to it remains.
    let mut buf = Zeroizing::new(Vec::new());
    while let Some(c) = resp.chunk().await.map_err(|e| describe(&e, &url))? {
        if buf.len() + c.len() > MAX_API_RESPONSE {
            return Err(Failure::upstream(format!(
                "{}: the answer is larger than {MAX_API_RESPONSE} bytes",
                url.origin().ascii_serialization()
            )));
        }
        append_wiped(&mut buf, &c);
        wipe(c);
    }
    Ok((status, buf))
}

/// Wipes `b` if this is its only reference; a shared buffer is left to
/// its other owners.
fn wipe(b: Bytes) {
    if let Ok(mut m) = b.try_into_mut() {
        m.as_mut().zeroize();
    }
}

/// Appends to a buffer that holds a secret without leaving a copy behind:
/// a `Vec` that grows in place frees its old allocation unwiped, so growth
/// goes through a fresh buffer and the old one is wiped as it drops.
fn append_wiped(buf: &mut Zeroizing<Vec<u8>>, data: &[u8]) {
    let need = buf.len() + data.len();
    if need > buf.capacity() {
        let mut bigger = Zeroizing::new(Vec::with_capacity(need.max(2 * buf.capacity())));
        bigger.extend_from_slice(buf);
        *buf = bigger;
    }
    buf.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appending_keeps_every_byte_in_order() {
        let mut buf = Zeroizing::new(Vec::new());
        let mut want = Vec::new();
        for i in 0..200u8 {
            let piece = vec![i; usize::from(i) + 1];
            append_wiped(&mut buf, &piece);
            want.extend_from_slice(&piece);
        }
        assert_eq!(*buf, want);
    }
}
