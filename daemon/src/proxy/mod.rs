//! `signet proxy`: a loopback HTTP endpoint whose root stands for a
//! token's base URL, so that a tool that wants a URL and a key (curl, the
//! MAAS CLI, python-libmaas, vastpy) can use the token without ever holding
//! it.
//!
//! Each request passes, in order: the Host guard (the Host header must
//! name the proxy's own address, or a web page that rebinds a DNS name to
//! 127.0.0.1 could reach it: 421), the local credential (401), then
//! [`gate::admit`], the same checks as `signet request` (scope 403, expiry,
//! ownership). Only then is it signed with the real token and sent
//! upstream. Bodies stream both ways; only a form body that OAuth HMAC
//! signs is read whole first, bounded. Redirects are not followed: one
//! within the token's scope has its Location rewritten to the local
//! origin, one out of scope is handed back as it is.

mod credential;
mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::{BodyExt as _, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Body as _, Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use signet_proto::{ErrorCode, Failure, ProxyInfo, ProxyStart, TokenKind};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::agent::{Agent, Peer, now};
use crate::gate::{self, MAX_SIGNED_FORM, Use};
use crate::http::{attach, describe};
use crate::proxies::StopSignal;
use crate::sign::{self, SignInput};
use crate::{policy, validate};

use credential::Local;

/// Connections one proxy serves at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 512;
/// How long a client may take to send a request's head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

type ProxyBody = BoxBody<Bytes, std::io::Error>;

/// Everything a proxy's requests are served with.
struct Ctx {
    agent: Arc<Agent>,
    /// Who started the proxy: every request is made as this peer.
    owner: Peer,
    name: String,
    local: Local,
    /// Host header values that name this proxy; empty on a Unix socket,
    /// where no web page can reach it.
    hosts: Vec<String>,
    scheme: &'static str,
    /// Headers the token's signature sets, which the tool may not set.
    signed_headers: Vec<String>,
    /// The upstream URL the proxy's root stands for.
    root: url::Url,
}

/// The upstream URL a proxy's root stands for: the token's base URL, but
/// for a MAAS token stored as its API root (`…/MAAS/api/2.0/`, as `maas
/// login` stores it) the MAAS URL above it, which is what MAAS clients are
/// given and append `api/2.0/` to. Scope is still the token's.
fn proxy_root(kind: TokenKind, base: &url::Url) -> url::Url {
    if kind == TokenKind::Maas
        && let Some(above) = base.path().strip_suffix("api/2.0/")
    {
        let mut root = base.clone();
        root.set_path(above);
        return root;
    }
    base.clone()
}

/// Starts a proxy for `peer`; answers with its address and local
/// credential, and the id to stop it with.
pub async fn start(
    agent: &Arc<Agent>,
    peer: Peer,
    req: &ProxyStart,
) -> Result<(u64, ProxyInfo), Failure> {
    validate::name(&req.name)?;
    // An agent without network (one being fuzzed) opens no listener either.
    agent.http.reachable()?;
    let entry = agent.store.get(peer.uid, &req.name)?;
    policy::check_not_expired(&entry, now())?;
    let local = Local::new(entry.kind, &entry.params)?;
    let base =
        url::Url::parse(&entry.url).map_err(|e| Failure::other(format!("stored base URL: {e}")))?;
    let signed_headers = local.header_names(&base);
    let root = proxy_root(entry.kind, &base);
    let runtime_dir = agent
        .socket
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| Failure::other("the agent's socket has no directory"))?;

    let (acceptor, ca_pem) = if req.tls {
        let (a, pem) = tls::acceptor()?;
        (Some(a), Some(pem))
    } else {
        (None, None)
    };
    let scheme = if req.tls { "https" } else { "http" };
    let mut files = Vec::new();

    enum Bound {
        Tcp(tokio::net::TcpListener),
        Unix(tokio::net::UnixListener),
    }
    let (bound, url, hosts, tag) = match (&req.unix, &req.listen) {
        (Some(_), Some(_)) => {
            return Err(Failure::usage("give --listen or --unix, not both"));
        }
        (Some(path), None) => {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(Failure::usage("--unix needs an absolute path"));
            }
            let listener = bind_unix(&path)?;
            files.push(path.clone());
            let url = format!("{scheme}://localhost/");
            (Bound::Unix(listener), url, Vec::new(), "unix".to_string())
        }
        (None, listen) => {
            let addr = loopback_addr(listen.as_deref().unwrap_or("127.0.0.1:0"))?;
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                Failure::usage(format!("cannot listen on {addr}: {e}"))
                    .with_hint("pick another port, or port 0 for any free one")
            })?;
            let addr = listener
                .local_addr()
                .map_err(|e| Failure::other(format!("cannot read the proxy's address: {e}")))?;
            let port = addr.port();
            let hosts = vec![addr.to_string(), format!("localhost:{port}")];
            let url = format!("{scheme}://{addr}/");
            (Bound::Tcp(listener), url, hosts, port.to_string())
        }
    };
    let ca_file = match &ca_pem {
        Some(pem) => {
            let path = runtime_dir.join(format!(
                "proxy-{}-{tag}-{}.pem",
                req.name,
                crate::random::hex::<4>().unwrap_or_default()
            ));
            if let Err(f) = tls::write_ca(&path, pem) {
                files.iter().for_each(|p| drop(std::fs::remove_file(p)));
                return Err(f);
            }
            files.push(path.clone());
            Some(path.to_string_lossy().into_owned())
        }
        None => None,
    };

    let info = ProxyInfo {
        name: entry.name.clone(),
        kind: entry.kind,
        url,
        upstream: root.to_string(),
        unix: req.unix.clone(),
        ca_file,
        credential: Some(local.shown()),
        started: now(),
        tied: req.tie,
    };
    let (id, stop) = agent.proxies.insert(peer.uid, info.clone(), files);
    let ctx = Arc::new(Ctx {
        agent: agent.clone(),
        owner: peer,
        name: entry.name.clone(),
        local,
        hosts,
        scheme,
        signed_headers,
        root,
    });
    match bound {
        Bound::Tcp(l) => {
            let l = Arc::new(l);
            tokio::spawn(accept_loop(ctx, stop, acceptor, move || {
                let l = l.clone();
                async move { l.accept().await.map(|(s, _)| (s, None)) }
            }));
        }
        Bound::Unix(l) => {
            let l = Arc::new(l);
            tokio::spawn(accept_loop(ctx, stop, acceptor, move || {
                let l = l.clone();
                async move {
                    let (s, _) = l.accept().await?;
                    let uid = s.peer_cred().map(|c| c.uid()).ok();
                    Ok((s, Some(uid)))
                }
            }));
        }
    }
    tracing::info!(token = %entry.name, id, "proxy started");
    Ok((id, info))
}

/// `ADDR:PORT` on a loopback address, else a usage error: a proxy that
/// signs with the token must not be reachable from another machine.
fn loopback_addr(text: &str) -> Result<SocketAddr, Failure> {
    let addr: SocketAddr = text.parse().map_err(|_| {
        Failure::usage(format!("invalid --listen address `{}`", text.escape_debug())).with_hint(
            "give a loopback IP and a port, such as 127.0.0.1:8080 (port 0: any free one)",
        )
    })?;
    if !addr.ip().is_loopback() {
        return Err(Failure::policy(format!(
            "refused: {} is not a loopback address; a proxy listens on loopback only",
            addr.ip()
        ))
        .with_hint("use 127.0.0.1 or ::1"));
    }
    Ok(addr)
}

/// A Unix socket, 0600 from birth; never over an existing file.
fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener, Failure> {
    use nix::sys::stat::{Mode, umask};
    if std::fs::symlink_metadata(path).is_ok() {
        return Err(Failure::usage(format!("{} already exists", path.display()))
            .with_hint("remove it, or pick another path"));
    }
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = std::os::unix::net::UnixListener::bind(path);
    umask(old);
    let l =
        bound.map_err(|e| Failure::usage(format!("cannot listen on {}: {e}", path.display())))?;
    l.set_nonblocking(true)
        .map_err(|e| Failure::other(format!("cannot listen on {}: {e}", path.display())))?;
    tokio::net::UnixListener::from_std(l)
        .map_err(|e| Failure::other(format!("cannot listen on {}: {e}", path.display())))
}

/// Accepts until the proxy stops; stopping drops every open connection.
/// `accept` yields a stream and, on a Unix socket, its peer's uid.
async fn accept_loop<S, F, Fut>(
    ctx: Arc<Ctx>,
    mut stop: StopSignal,
    tls: Option<tokio_rustls::TlsAcceptor>,
    accept: F,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<(S, Option<Option<u32>>)>>,
{
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            a = accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        // Reap finished connections so the set does not grow.
        while conns.try_join_next().is_some() {}
        let (stream, unix_peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "proxy accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // On a Unix socket, only the owner's uid is served (the socket is
        // 0600 already; this holds even for a process with CAP_DAC_OVERRIDE).
        if let Some(uid) = unix_peer
            && uid != Some(ctx.owner.uid)
        {
            tracing::warn!(?uid, "proxy refused a connection from another user");
            continue;
        }
        let ctx = ctx.clone();
        let tls = tls.clone();
        conns.spawn(async move {
            match tls {
                None => serve_conn(ctx, stream).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HEAD_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => serve_conn(ctx, s).await,
                        _ => tracing::debug!("proxy TLS handshake failed"),
                    }
                }
            }
            drop(permit);
        });
    }
    tracing::info!(token = %ctx.name, "proxy stopped");
}

async fn serve_conn<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(ctx: Arc<Ctx>, stream: S) {
    let svc = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .serve_connection(TokioIo::new(stream), svc)
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, "proxy connection ended");
    }
}

fn text(status: StatusCode, msg: &str) -> Response<ProxyBody> {
    let mut r = Response::new(
        Full::new(Bytes::from(format!("signet proxy: {msg}\n"))).map_err(|e| match e {}).boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn refuse(f: &Failure) -> Response<ProxyBody> {
    let status = match f.code {
        ErrorCode::Usage => StatusCode::BAD_REQUEST,
        ErrorCode::Policy | ErrorCode::NoSuchToken => StatusCode::FORBIDDEN,
        ErrorCode::Upstream => StatusCode::BAD_GATEWAY,
        ErrorCode::Store => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let msg = match &f.hint {
        Some(h) => format!("{}; {h}", f.message),
        None => f.message.clone(),
    };
    text(status, &msg)
}

/// Headers that belong to one hop, or that the proxy sets itself.
const HOP_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
];

async fn handle(ctx: &Ctx, req: Request<Incoming>) -> Response<ProxyBody> {
    // For the audit trail: where the request was meant to go upstream, by
    // its path alone (a query may carry secrets of its own).
    let method = req.method().as_str().to_string();
    let upstream = ctx.root.join(&format!("./{}", req.uri().path().trim_start_matches('/')));
    let (answer, outcome) = match exchange(ctx, req).await {
        Ok(r) => (r, "ok"),
        // Refused by the proxy itself: nothing reached upstream.
        Err(r) => (r, "refused"),
    };
    if ctx.agent.audit.enabled() {
        let (origin, path) = match &upstream {
            Ok(u) => crate::audit::origin_and_path(u.as_str()),
            Err(_) => (None, None),
        };
        ctx.agent.audit.record(crate::audit::Record {
            action: "proxy".into(),
            uid: Some(ctx.owner.uid),
            pid: Some(ctx.owner.pid),
            socket: Some("proxy".into()),
            token: Some(ctx.name.clone()),
            method: Some(method),
            origin,
            path,
            status: Some(answer.status().as_u16()),
            outcome: outcome.into(),
            ..Default::default()
        });
    }
    answer
}

async fn exchange(
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Response<ProxyBody>> {
    // The Host guard first: nothing else is looked at for a request meant
    // for another name.
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
    let host = match (&host, ctx.hosts.is_empty()) {
        (_, true) => "localhost".to_string(),
        (Some(h), false) if ctx.hosts.iter().any(|ok| ok == h) => h.clone(),
        _ => {
            return Err(text(
                StatusCode::MISDIRECTED_REQUEST,
                "the Host header does not name this proxy; use the URL it was started with",
            ));
        }
    };
    let origin = format!("{}://{host}", ctx.scheme);
    let pq = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let Some(rest) = pq.strip_prefix('/') else {
        return Err(text(StatusCode::BAD_REQUEST, "the request target is not a path"));
    };
    // As the tool saw it: what an OAuth signature covers.
    let local_url = url::Url::parse(&format!("{origin}/{rest}"))
        .map_err(|_| text(StatusCode::BAD_REQUEST, "the request target is not a usable URL"))?;
    // The same text checks as a URL given to `signet request`, before the
    // URL parser normalises anything away; then relative to the root, never
    // absolute, whatever the path looks like.
    if let Err(e) = signet_proto::token::check_url_text(rest) {
        return Err(text(StatusCode::BAD_REQUEST, &format!("invalid request target: {}", e.0)));
    }
    let target = ctx
        .root
        .join(&format!("./{rest}"))
        .map_err(|_| text(StatusCode::BAD_REQUEST, "the request target is not a usable URL"))?
        .to_string();
    let method = req.method().as_str().to_string();

    let cred_name = ctx.local.header_name().to_ascii_lowercase();
    let sent =
        req.headers().get(cred_name.as_str()).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut body_len: Option<u64> = None;
    for (k, v) in req.headers() {
        let name = k.as_str();
        if name == "content-length" {
            body_len = v.to_str().ok().and_then(|v| v.parse().ok());
            continue;
        }
        if name == "host"
            || name == cred_name
            || name == "authorization"
            || HOP_HEADERS.contains(&name)
            || ctx.signed_headers.iter().any(|s| s == name)
            || validate::FRAMING_HEADERS.contains(&name)
        {
            continue;
        }
        let Ok(v) = v.to_str() else {
            return Err(text(StatusCode::BAD_REQUEST, &format!("header {name} is not text")));
        };
        headers.push((name.to_string(), v.to_string()));
    }
    let form_body = gate::is_form(&headers);
    let incoming = req.into_body();
    let has_body = !incoming.is_end_stream();

    // A form body an OAuth HMAC covers, the tool's or the token's, is read
    // whole (bounded); any other body streams.
    let must_buffer = has_body
        && form_body
        && (ctx.local.signs_form(sent.as_deref()) || {
            let params = sign_params(ctx);
            params.is_some_and(|(k, p)| sign::signs_form_body(k, &p))
        });
    let (buffered, streamed) = if must_buffer {
        let limited = http_body_util::Limited::new(incoming, MAX_SIGNED_FORM);
        match limited.collect().await {
            Ok(c) => (Some(c.to_bytes()), None),
            Err(_) => {
                return Err(text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("a signed form body may be at most {MAX_SIGNED_FORM} bytes"),
                ));
            }
        }
    } else {
        (None, has_body.then_some(incoming))
    };
    let form: Vec<(String, String)> = match &buffered {
        Some(b) => {
            url::form_urlencoded::parse(b).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
        }
        None => Vec::new(),
    };

    let checked = {
        let input = SignInput {
            method: &method,
            url: &local_url,
            form: if ctx.local.signs_form(sent.as_deref()) { &form } else { &[] },
        };
        ctx.local.check(sent.as_deref(), &input, now())
    };
    // MAAS serves its API description to anyone, and python-libmaas reads
    // it before it signs anything: that one request passes unsigned.
    let public = checked.is_err()
        && sent.is_none()
        && !has_body
        && method == "GET"
        && ctx.local.kind() == TokenKind::Maas
        && local_url.path() == "/api/2.0/describe/";
    if let (Err(why), false) = (checked, public) {
        tracing::info!(token = %ctx.name, reason = why, has_body, path = local_url.path(), "proxy refused a request");
        let mut r = text(
            StatusCode::UNAUTHORIZED,
            &format!("{why}; use the credential this proxy was started with"),
        );
        r.headers_mut()
            .insert(hyper::header::WWW_AUTHENTICATE, HeaderValue::from_static("signet-proxy"));
        return Err(r);
    }

    let u = Use {
        name: &ctx.name,
        method: &method,
        target: &target,
        headers: &headers,
        form_body: has_body && form_body,
        via: "proxy",
    };
    let g = gate::admit(&ctx.agent, ctx.owner, &u).await.map_err(|f| refuse(&f))?;

    let sign_form: &[(String, String)] = if g.sign_form_body { &form } else { &[] };
    let mut rb = g.client.request(g.method.clone(), g.url.clone());
    for (k, v) in &headers {
        rb = rb.header(k.as_str(), v.as_str());
    }
    if !public {
        let input = SignInput { method: g.method.as_str(), url: &g.url, form: sign_form };
        let lines = sign::now(&g.entry, &g.secret, &input).map_err(|f| refuse(&f))?;
        rb = attach(rb, &lines).map_err(|f| refuse(&f))?;
    }
    if let Some(b) = buffered {
        rb = rb.body(b);
    } else if let Some(incoming) = streamed {
        if let Some(n) = body_len {
            rb = rb.header(reqwest::header::CONTENT_LENGTH, n);
        }
        rb = rb.body(reqwest::Body::wrap_stream(incoming.into_data_stream()));
    }
    let resp = rb.send().await.map_err(|e| refuse(&describe(&e, &g.url)))?;
    ctx.agent.store.record_use(&g.entry.id, now());

    // A small JSON answer that names the API by its absolute upstream URL
    // (MAAS's API description does, and python-libmaas then calls those
    // URLs) is read whole and pointed at the proxy; anything else streams.
    let relink = is_small_json(&resp);
    let mut out = Response::builder().status(resp.status().as_u16());
    for (k, v) in resp.headers() {
        if HOP_HEADERS.contains(&k.as_str()) || (relink && k == reqwest::header::CONTENT_LENGTH) {
            continue;
        }
        if k == reqwest::header::LOCATION {
            let v = rewrite_location(v, &g.url, &g.base, &ctx.root, &origin, &g.entry.name);
            if let Ok(name) = HeaderName::from_bytes(k.as_str().as_bytes()) {
                out = out.header(name, v);
            }
            continue;
        }
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(k.as_str().as_bytes()), HeaderValue::from_bytes(v.as_bytes()))
        {
            out = out.header(name, value);
        }
    }
    if relink {
        let upstream_url = g.url.clone();
        let whole = resp.bytes().await.map_err(|e| refuse(&describe(&e, &upstream_url)))?;
        let body = relink_json(&whole, ctx.root.as_str(), &format!("{origin}/"));
        return out
            .body(Full::new(body).map_err(|e| match e {}).boxed())
            .map_err(|_| text(StatusCode::BAD_GATEWAY, "the upstream answer cannot be relayed"));
    }
    let stream = resp.bytes_stream().map(|r| r.map(Frame::data).map_err(std::io::Error::other));
    let body = http_body_util::BodyExt::boxed(StreamBody::new(stream));
    out.body(body)
        .map_err(|_| text(StatusCode::BAD_GATEWAY, "the upstream answer cannot be relayed"))
}

/// The largest JSON answer whose upstream URLs are pointed at the proxy.
const MAX_RELINKED: u64 = 1 << 20;

/// A JSON answer of known length, at most [`MAX_RELINKED`] bytes.
fn is_small_json(resp: &reqwest::Response) -> bool {
    let json = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"));
    json && resp.content_length().is_some_and(|n| n <= MAX_RELINKED)
}

/// Replaces every occurrence of the upstream base URL `from` with the
/// local one `to`, as a JSON string would hold it (plain, or with its
/// slashes escaped).
fn relink_json(body: &[u8], from: &str, to: &str) -> Bytes {
    let mut out = body.to_vec();
    for (f, t) in
        [(from.to_string(), to.to_string()), (from.replace('/', "\\/"), to.replace('/', "\\/"))]
    {
        if f.is_empty() || !out.windows(f.len()).any(|w| w == f.as_bytes()) {
            continue;
        }
        let mut next = Vec::with_capacity(out.len());
        let mut i = 0;
        while i < out.len() {
            if out[i..].starts_with(f.as_bytes()) {
                next.extend_from_slice(t.as_bytes());
                i += f.len();
            } else {
                next.push(out[i]);
                i += 1;
            }
        }
        out = next;
    }
    Bytes::from(out)
}

/// The token's kind and settings, for whether its signature covers a form
/// body; looked up afresh, as the token may have changed.
fn sign_params(ctx: &Ctx) -> Option<(TokenKind, signet_proto::TokenParams)> {
    ctx.agent.store.get(ctx.owner.uid, &ctx.name).ok().map(|e| (e.kind, e.params.clone()))
}

/// A redirect within the token's scope points at the same place through
/// the proxy; one out of scope is left as it is, and not followed.
fn rewrite_location(
    v: &reqwest::header::HeaderValue,
    from: &url::Url,
    base: &url::Url,
    root: &url::Url,
    origin: &str,
    name: &str,
) -> HeaderValue {
    let keep =
        || HeaderValue::from_bytes(v.as_bytes()).unwrap_or_else(|_| HeaderValue::from_static("/"));
    let Some(next) = v.to_str().ok().and_then(|l| from.join(l).ok()) else {
        return keep();
    };
    if policy::check_scope(name, base, &next).is_err() {
        return keep();
    }
    let rel = next.path().strip_prefix(root.path()).unwrap_or("").trim_start_matches('/');
    let mut local = format!("{origin}/{rel}");
    if let Some(q) = next.query() {
        local.push('?');
        local.push_str(q);
    }
    HeaderValue::from_str(&local).unwrap_or_else(|_| keep())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_maas_api_root_is_served_from_the_maas_url_above_it() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        let api = u("http://maas:5240/MAAS/api/2.0/");
        assert_eq!(proxy_root(TokenKind::Maas, &api).as_str(), "http://maas:5240/MAAS/");
        let maas = u("http://maas:5240/MAAS/");
        assert_eq!(proxy_root(TokenKind::Maas, &maas), maas);
        assert_eq!(proxy_root(TokenKind::Bearer, &api), api);
    }

    #[test]
    fn json_answers_name_the_proxy_instead_of_upstream() {
        let body = br#"{"uri": "http://maas:5240/MAAS/api/2.0/users/", "e": "http:\/\/maas:5240\/MAAS\/x", "o": "http://maas:5240/other"}"#;
        let out = relink_json(body, "http://maas:5240/MAAS/", "http://127.0.0.1:9/");
        let out = String::from_utf8(out.to_vec()).unwrap();
        assert!(out.contains(r#""uri": "http://127.0.0.1:9/api/2.0/users/""#), "{out}");
        assert!(out.contains(r#""e": "http:\/\/127.0.0.1:9\/x""#), "{out}");
        assert!(out.contains(r#""o": "http://maas:5240/other""#), "{out}");
    }
}
