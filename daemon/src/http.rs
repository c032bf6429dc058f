//! Requests the agent performs for a client (`signet request`): the client
//! never sees the secret, only the response.
//!
//! Both bodies stream: the request body arrives as chunk frames and goes
//! upstream through a small bounded channel; the response body goes back
//! in chunk frames as it arrives. Memory stays constant whatever the size.
//!
//! Redirects are followed by hand, never by the HTTP client: each hop is
//! checked against the token's scope and signed afresh (a new nonce and
//! timestamp, as MAAS demands). A redirect out of scope is returned to the
//! client as it is, so no credential is ever sent to another origin.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use signet_proto::frame::{read_frame_async, write_frame_async};
use signet_proto::{
    Chunk, ErrorCode, Failure, MAX_CHUNK, PerformRequest, Request, Response, ResponseHead,
    TlsOptions,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::handler::{Agent, Peer};
use crate::policy;
use crate::sign::{self, Freshness, SignInput};
use crate::store::index::Entry;

/// At most this many redirects are followed, as curl's default of 50 is
/// more than any API needs.
pub const MAX_REDIRECTS: usize = 10;
/// A form body that OAuth HMAC must sign is read whole before sending; it
/// may not be larger than this.
pub const MAX_SIGNED_FORM: usize = 1 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// HTTP clients, one per token (its TLS settings), kept so that connections
/// to the same server are reused across requests.
#[derive(Default)]
pub struct Http {
    clients: Mutex<HashMap<String, reqwest::Client>>,
}

fn upstream(msg: impl Into<String>) -> Failure {
    Failure::new(ErrorCode::Upstream, msg)
}

fn other(msg: impl Into<String>) -> Failure {
    Failure::new(ErrorCode::Other, msg)
}

impl Http {
    /// A client for TLS settings that belong to no stored token yet (a
    /// login being verified): not cached.
    pub fn uncached(&self, tls: &TlsOptions) -> Result<reqwest::Client, Failure> {
        build_client(tls)
    }

    pub fn client(&self, e: &Entry) -> Result<reqwest::Client, Failure> {
        let mut clients = self.clients.lock().map_err(|_| other("internal error: client cache"))?;
        if let Some(c) = clients.get(&e.id) {
            return Ok(c.clone());
        }
        let c = build_client(&e.params.tls)?;
        clients.insert(e.id.clone(), c.clone());
        Ok(c)
    }

    /// Drops the client of a removed token.
    pub fn forget(&self, id: &str) {
        if let Ok(mut c) = self.clients.lock() {
            c.remove(id);
        }
    }
}

fn build_client(tls: &TlsOptions) -> Result<reqwest::Client, Failure> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        // Redirects are ours to follow: each hop is scope-checked and re-signed.
        .redirect(reqwest::redirect::Policy::none())
        // The destination is the token's scope, not whatever a proxy
        // variable in the agent's environment says.
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("signet/", env!("CARGO_PKG_VERSION")));
    if tls.insecure {
        b = b.danger_accept_invalid_certs(true);
    }
    if let Some(pem) = &tls.cacert_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| other(format!("the token's CA bundle is unusable: {e}")))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| other(format!("cannot build an HTTP client: {e}")))
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
    upstream(format!("{origin}: {what}{detail}"))
}

/// The header lines that authenticate one request with `e`, made now: a
/// fresh nonce and timestamp every time (MAAS refuses a nonce it has seen
/// and a timestamp over 300 s old), so every retry and redirect hop calls
/// this again.
pub fn sign_now(
    e: &Entry,
    secret: &signet_proto::Secret,
    method: &str,
    url: &url::Url,
    form: &[(String, String)],
) -> Result<Vec<sign::HeaderLine>, Failure> {
    let fresh = Freshness::now().map_err(|err| other(err.to_string()))?;
    let input = SignInput { method, url, form };
    sign::sign(e.kind, &e.params, secret, &input, &fresh)
        .map_err(|err| other(format!("cannot sign with token `{}`: {err}", e.name)))
}

/// Adds signed header lines to a request, marked sensitive so that the
/// HTTP stack never prints them.
fn attach(
    mut rb: reqwest::RequestBuilder,
    lines: &[sign::HeaderLine],
) -> Result<reqwest::RequestBuilder, Failure> {
    for h in lines {
        let mut v = reqwest::header::HeaderValue::from_str(&h.value)
            .map_err(|_| other("the signed header is not a valid HTTP header value"))?;
        v.set_sensitive(true);
        rb = rb.header(h.name.as_str(), v);
    }
    Ok(rb)
}

/// Everything checked before the client may send a body.
struct Prepared {
    entry: Entry,
    secret: std::sync::Arc<signet_proto::Secret>,
    client: reqwest::Client,
    base: url::Url,
    url: url::Url,
    method: reqwest::Method,
    headers: Vec<(String, String)>,
    /// OAuth HMAC signs form parameters: such a body is read whole first.
    sign_form_body: bool,
}

async fn prepare(agent: &Agent, peer: Peer, req: &PerformRequest) -> Result<Prepared, Failure> {
    crate::handler::name_ok(&req.name)?;
    let entry = agent.store.get(peer.uid, &req.name)?;
    policy::check_not_expired(&entry, crate::handler::now())?;
    let (base, url) = policy::scoped_url(&entry, &req.url)?;
    let method = policy::check_method(&req.method)?;
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| Failure::new(ErrorCode::Usage, "invalid HTTP method"))?;
    policy::check_headers(&req.headers)?;
    let is_form = req.headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("content-type")
            && v.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded")
    });
    let sign_form_body =
        req.has_body && is_form && sign::signs_form_body(entry.kind, &entry.params);
    let secret = agent.store.secret(&entry).await?;
    let client = agent.http.client(&entry)?;
    Ok(Prepared {
        entry,
        secret,
        client,
        base,
        url,
        method,
        headers: req.headers.clone(),
        sign_form_body,
    })
}

type BodyItem = Result<Bytes, std::io::Error>;

/// Reads the client's body frames until `BodyEnd`, feeding them upstream.
/// It keeps reading after the upstream side has stopped listening, so the
/// client is never left blocked on a write and the connection stays in step.
async fn read_body<R: AsyncRead + Unpin>(
    rd: &mut R,
    tx: mpsc::Sender<BodyItem>,
    idle: Duration,
) -> Result<(), String> {
    loop {
        let frame = tokio::time::timeout(idle, read_frame_async::<_, Request>(rd)).await;
        let frame = match frame {
            Err(_) => return Err("request body timed out".into()),
            Ok(Err(e)) => {
                let _ = tx.send(Err(std::io::Error::other("client stopped sending"))).await;
                return Err(format!("reading the request body: {e}"));
            }
            Ok(Ok(f)) => f,
        };
        match frame {
            Request::BodyChunk(Chunk(bytes)) => {
                // A closed receiver means the upstream exchange is over; drain.
                let _ = tx.send(Ok(Bytes::from(bytes))).await;
            }
            Request::BodyEnd => return Ok(()),
            _ => {
                let _ = tx.send(Err(std::io::Error::other("malformed body"))).await;
                return Err("expected a body chunk or the end of the body".into());
            }
        }
    }
}

async fn send<W: AsyncWrite + Unpin>(
    wr: &mut W,
    agent: &Agent,
    r: &Response,
) -> Result<(), String> {
    match tokio::time::timeout(agent.config.frame_timeout(), write_frame_async(wr, r)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write: {e}")),
        Err(_) => Err("write timed out".into()),
    }
}

/// Serves one `Perform` on `stream`. `Err` means the connection is no longer
/// in step and must be closed; a refused or failed request is `Ok` (its
/// failure went to the client).
pub async fn perform<S>(
    agent: &Agent,
    peer: Peer,
    req: PerformRequest,
    stream: &mut S,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let p = match prepare(agent, peer, &req).await {
        Ok(p) => p,
        // Refused before Proceed: the client sends no body.
        Err(f) => return send(stream, agent, &Response::Failure(f)).await,
    };
    send(stream, agent, &Response::Proceed).await?;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel::<BodyItem>(4);
    let reader = async {
        if req.has_body {
            read_body(&mut rd, tx, agent.config.idle_timeout()).await
        } else {
            drop(tx);
            Ok(())
        }
    };
    let exchange = async {
        let body = if req.has_body { Some(rx) } else { None };
        match exchange(agent, p, body, req.body_len, req.timeout_secs, &mut wr).await {
            Ok(()) => Ok(()),
            Err(Outcome::Failed(f)) => send(&mut wr, agent, &Response::Failure(f)).await,
            Err(Outcome::Broken(e)) => Err(e),
        }
    };
    let (read, exchanged) = tokio::join!(reader, exchange);
    read.and(exchanged)
}

enum Outcome {
    /// Tell the client and carry on.
    Failed(Failure),
    /// The client connection is broken.
    Broken(String),
}

impl From<Failure> for Outcome {
    fn from(f: Failure) -> Self {
        Outcome::Failed(f)
    }
}

/// The request body as it stands between hops.
enum Body {
    None,
    Stream(mpsc::Receiver<BodyItem>),
    Buffered(Bytes),
}

fn stream_body(rx: mpsc::Receiver<BodyItem>) -> reqwest::Body {
    reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

async fn buffer_form(rx: &mut mpsc::Receiver<BodyItem>) -> Result<Bytes, Failure> {
    let mut buf = Vec::new();
    while let Some(item) = rx.recv().await {
        let b = item.map_err(|e| other(format!("request body: {e}")))?;
        if buf.len() + b.len() > MAX_SIGNED_FORM {
            return Err(Failure::new(
                ErrorCode::Usage,
                format!(
                    "a form body signed with OAuth HMAC may be at most {MAX_SIGNED_FORM} bytes"
                ),
            ));
        }
        buf.extend_from_slice(&b);
    }
    Ok(Bytes::from(buf))
}

fn is_redirect(s: reqwest::StatusCode) -> bool {
    matches!(s.as_u16(), 301 | 302 | 303 | 307 | 308)
}

async fn exchange<W: AsyncWrite + Unpin>(
    agent: &Agent,
    p: Prepared,
    body: Option<mpsc::Receiver<BodyItem>>,
    body_len: Option<u64>,
    timeout_secs: Option<u64>,
    wr: &mut W,
) -> Result<(), Outcome> {
    let mut body = match body {
        None => Body::None,
        Some(mut rx) if p.sign_form_body => Body::Buffered(buffer_form(&mut rx).await?),
        Some(rx) => Body::Stream(rx),
    };
    let mut url = p.url.clone();
    let mut method = p.method.clone();
    let mut headers = p.headers.clone();
    let mut hops = 0;
    let resp = loop {
        let form: Vec<(String, String)> = match &body {
            Body::Buffered(b) if p.sign_form_body => url::form_urlencoded::parse(b)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            _ => Vec::new(),
        };
        let mut rb = p.client.request(method.clone(), url.clone());
        for (k, v) in &headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        // Signed afresh for every hop (see `sign_now`).
        rb = attach(rb, &sign_now(&p.entry, &p.secret, method.as_str(), &url, &form)?)?;
        let streamed = matches!(body, Body::Stream(_));
        rb = match std::mem::replace(&mut body, Body::None) {
            Body::None => rb,
            Body::Stream(rx) => {
                if let Some(n) = body_len {
                    rb = rb.header(reqwest::header::CONTENT_LENGTH, n);
                }
                rb.body(stream_body(rx))
            }
            Body::Buffered(b) => {
                body = Body::Buffered(b.clone());
                rb.body(b)
            }
        };
        if let Some(t) = timeout_secs {
            rb = rb.timeout(Duration::from_secs(t));
        }
        let resp = rb.send().await.map_err(|e| describe(&e, &url))?;
        agent.store.record_use(&p.entry.id, crate::handler::now());

        let status = resp.status();
        if !is_redirect(status) || hops >= MAX_REDIRECTS {
            break resp;
        }
        let Some(next) = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| url.join(l).ok())
        else {
            break resp;
        };
        if policy::check_scope(&p.entry.name, &p.base, &next).is_err() {
            // Out of scope: hand the redirect back, follow nothing.
            tracing::info!(token = %p.entry.name, "not following a redirect out of the token's scope");
            break resp;
        }
        // 303, and 301/302 after POST, become a GET without a body (as curl
        // and browsers do); 307/308 repeat the request, which a streamed
        // body cannot be.
        let to_get = status.as_u16() == 303
            || (matches!(status.as_u16(), 301 | 302) && method == reqwest::Method::POST);
        if to_get {
            method = reqwest::Method::GET;
            body = Body::None;
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
        } else if streamed {
            break resp;
        }
        hops += 1;
        url = next;
    };

    let head = ResponseHead {
        status: resp.status().as_u16(),
        reason: resp.status().canonical_reason().unwrap_or("").to_string(),
        version: format!("{:?}", resp.version()),
        headers: resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), Chunk(v.as_bytes().to_vec())))
            .collect(),
        url: url.to_string(),
    };
    send(wr, agent, &Response::Head(head)).await.map_err(Outcome::Broken)?;
    let mut resp = resp;
    let mut sent: u64 = 0;
    loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                for piece in bytes.chunks(MAX_CHUNK) {
                    send(wr, agent, &Response::BodyChunk(Chunk(piece.to_vec())))
                        .await
                        .map_err(Outcome::Broken)?;
                }
                sent += bytes.len() as u64;
            }
            Ok(None) => break,
            Err(e) => {
                let f = describe(&e, &url);
                return Err(Outcome::Failed(Failure::new(
                    ErrorCode::Upstream,
                    format!("{} (after {sent} bytes of the response body)", f.message),
                )));
            }
        }
    }
    send(wr, agent, &Response::BodyEnd).await.map_err(Outcome::Broken)
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
/// a login is verified before it is.
pub async fn call_api(
    agent: &Agent,
    client: &reqwest::Client,
    entry: &Entry,
    secret: &signet_proto::Secret,
    method: reqwest::Method,
    target: &str,
    body: ApiBody,
) -> Result<(u16, Bytes), Failure> {
    let (_, url) = policy::scoped_url(entry, target)?;
    let form = match &body {
        ApiBody::Form(f) => f.clone(),
        _ => Vec::new(),
    };
    let auth = sign_now(entry, secret, method.as_str(), &url, &form)?;
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
    if !entry.id.is_empty() {
        agent.store.record_use(&entry.id, crate::handler::now());
    }
    let status = resp.status().as_u16();
    let mut buf = Vec::new();
    while let Some(c) = resp.chunk().await.map_err(|e| describe(&e, &url))? {
        if buf.len() + c.len() > MAX_API_RESPONSE {
            return Err(upstream(format!(
                "{}: the answer is larger than {MAX_API_RESPONSE} bytes",
                url.origin().ascii_serialization()
            )));
        }
        buf.extend_from_slice(&c);
    }
    Ok((status, Bytes::from(buf)))
}
