//! The HTTP/1.1 plumbing every test server shares: a listener on 127.0.0.1 (ephemeral
//! port), optional TLS with a certificate minted at start, a request log, and the
//! generic endpoints (echo, big, redirect).
//!
//! Each server owns one thread running a current-thread tokio runtime; dropping the
//! server stops the accept loop, cancels every connection and joins the thread. A
//! server never trusts what it receives: malformed input gets a 4xx and the server
//! keeps running.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use crate::upstream::Recorded;

/// Largest body a server reads into memory (form and JSON bodies). Bigger ones get 413;
/// the echo endpoint streams instead and has no limit.
pub(crate) const MAX_BUFFERED_BODY: usize = 16 * 1024 * 1024;

pub(crate) type RespBody = BoxBody<Bytes, Infallible>;

/// What a handler answers. `verdict` goes into the request log.
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: RespBody,
    pub verdict: String,
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: impl Into<Bytes>, verdict: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: Full::new(body.into()).boxed(),
            verdict: verdict.to_string(),
        }
    }

    pub fn json(status: u16, value: &serde_json::Value, verdict: &str) -> Reply {
        Reply::new(status, "application/json", value.to_string(), verdict)
    }

    pub fn text(status: u16, text: &str, verdict: &str) -> Reply {
        Reply::new(status, "text/plain; charset=utf-8", text.to_string(), verdict)
    }

    pub fn empty(status: u16, verdict: &str) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Full::new(Bytes::new()).boxed(),
            verdict: verdict.to_string(),
        }
    }

    /// A refusal whose verdict is its own text.
    pub fn refuse(status: u16, text: &str) -> Reply {
        Reply::text(status, text, text)
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// One request as a handler sees it: the head parsed, the body still streaming.
pub(crate) struct Req {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub tls: bool,
    pub local_addr: SocketAddr,
    body: Option<Incoming>,
    body_len: u64,
    buffered: Option<Bytes>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `path?query` exactly as received.
    pub fn target(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// The media type of Content-Type, lowercased, without parameters.
    pub fn media_type(&self) -> String {
        self.header("content-type")
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default()
    }

    /// Decoded query parameters (form decoding: `+` is a space). Malformed escapes → Err.
    pub fn query_params(&self) -> Result<Vec<(String, String)>, String> {
        let q = self.query.as_deref().unwrap_or("");
        crate::upstream::oauth::form_decode(q.as_bytes()).map(|pairs| {
            pairs
                .into_iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(&k).into_owned(),
                        String::from_utf8_lossy(&v).into_owned(),
                    )
                })
                .collect()
        })
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_params().ok()?.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Reads the whole body (at most `MAX_BUFFERED_BODY`). Later calls return the same
    /// bytes. Too large → 413, a broken stream → 400.
    pub async fn body_bytes(&mut self) -> Result<Bytes, Reply> {
        if let Some(b) = &self.buffered {
            return Ok(b.clone());
        }
        let mut buf = Vec::new();
        if let Some(mut body) = self.body.take() {
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| Reply::refuse(400, &format!("bad body: {e}")))?;
                if let Ok(data) = frame.into_data() {
                    self.body_len += data.len() as u64;
                    if buf.len() + data.len() > MAX_BUFFERED_BODY {
                        return Err(Reply::refuse(413, "request body too large"));
                    }
                    buf.extend_from_slice(&data);
                }
            }
        }
        let bytes = Bytes::from(buf);
        self.buffered = Some(bytes.clone());
        Ok(bytes)
    }

    /// Streams the body through SHA-256 without holding it: (length, hex digest).
    pub async fn hash_body(&mut self) -> Result<(u64, String), Reply> {
        // ring's SHA-256 is assembly even in a debug build: 100 MiB in well under a
        // second, where a debug-built pure-Rust one needs seconds.
        let mut hasher = ring::digest::Context::new(&ring::digest::SHA256);
        let mut len = 0u64;
        if let Some(b) = &self.buffered {
            hasher.update(b);
            len = b.len() as u64;
        } else if let Some(mut body) = self.body.take() {
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| Reply::refuse(400, &format!("bad body: {e}")))?;
                if let Ok(data) = frame.into_data() {
                    self.body_len += data.len() as u64;
                    len += data.len() as u64;
                    hasher.update(&data);
                }
            }
        }
        Ok((len, hex(hasher.finish().as_ref())))
    }

    /// Reads the body and only counts it.
    pub async fn count_body(&mut self) -> Result<u64, Reply> {
        let mut len = self.buffered.as_ref().map_or(0, |b| b.len() as u64);
        if let Some(mut body) = self.body.take() {
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| Reply::refuse(400, &format!("bad body: {e}")))?;
                if let Ok(data) = frame.into_data() {
                    self.body_len += data.len() as u64;
                    len += data.len() as u64;
                }
            }
        }
        Ok(len)
    }

    /// Form parameters of the body: urlencoded or multipart/form-data (MAAS accepts
    /// both). Any other media type (or none) gives no parameters.
    pub async fn form_params(&mut self) -> Result<Vec<(String, String)>, Reply> {
        let media = self.media_type();
        if media == "application/x-www-form-urlencoded" {
            let body = self.body_bytes().await?;
            let pairs = crate::upstream::oauth::form_decode(&body)
                .map_err(|e| Reply::refuse(400, &format!("malformed form body: {e}")))?;
            Ok(pairs
                .into_iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(&k).into_owned(),
                        String::from_utf8_lossy(&v).into_owned(),
                    )
                })
                .collect())
        } else if media == "multipart/form-data" {
            let boundary = self
                .header("content-type")
                .and_then(multipart_boundary)
                .ok_or_else(|| Reply::refuse(400, "multipart body without a boundary"))?;
            let body = self.body_bytes().await?;
            parse_multipart(&body, &boundary)
                .map_err(|e| Reply::refuse(400, &format!("malformed multipart body: {e}")))
        } else {
            Ok(Vec::new())
        }
    }

    /// The body as JSON (an empty body is `{}`); malformed → 400.
    pub async fn json_body(&mut self) -> Result<serde_json::Value, Reply> {
        let body = self.body_bytes().await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::json!({}));
        }
        serde_json::from_slice(&body).map_err(|e| {
            Reply::json(
                400,
                &serde_json::json!({"detail": format!("JSON parse error - {e}")}),
                "malformed JSON body",
            )
        })
    }

    /// Reads and discards what the handler left unread, so the log has the true body
    /// length and the client finishes its upload before it sees the answer.
    async fn drain(&mut self) {
        if let Some(mut body) = self.body.take() {
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data() {
                    self.body_len += data.len() as u64;
                }
            }
        }
    }
}

/// A test server's request logic.
pub(crate) trait Handler: Send + Sync + 'static {
    fn handle(&self, req: &mut Req) -> impl std::future::Future<Output = Reply> + Send;
}

/// A running server: its address, TLS material, request log; stopped on drop.
pub(crate) struct HttpServer {
    addr: SocketAddr,
    ca_pem: Option<String>,
    log: Arc<Mutex<Vec<Recorded>>>,
    handshake_failures: Arc<AtomicU64>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Binds 127.0.0.1:0 and serves `handler` on a thread of its own. Panics only on
    /// set-up failures (no port, no thread, no certificate).
    pub fn start<H: Handler>(handler: Arc<H>, tls: bool) -> HttpServer {
        let listener = StdListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("set_nonblocking");
        let addr = listener.local_addr().expect("local_addr");
        let (acceptor, ca_pem) = if tls {
            let (acceptor, ca) = tls_acceptor().expect("build the test TLS certificate");
            (Some(acceptor), Some(ca))
        } else {
            (None, None)
        };
        let log = Arc::new(Mutex::new(Vec::new()));
        let handshake_failures = Arc::new(AtomicU64::new(0));
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let ctx = Arc::new(ConnCtx {
            log: log.clone(),
            handshake_failures: handshake_failures.clone(),
            tls,
        });
        let thread = std::thread::Builder::new()
            .name(format!("upstream-http-{}", addr.port()))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        eprintln!("test server: cannot build a runtime: {e}");
                        return;
                    }
                };
                rt.block_on(accept_loop(listener, handler, acceptor, ctx, shutdown_rx));
                // Dropping the runtime here cancels every connection still open.
            })
            .expect("spawn the server thread");
        HttpServer {
            addr,
            ca_pem,
            log,
            handshake_failures,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn is_tls(&self) -> bool {
        self.ca_pem.is_some()
    }

    /// `http(s)://127.0.0.1:PORT` (no trailing slash).
    pub fn origin(&self) -> String {
        let scheme = if self.is_tls() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn clear_requests(&self) {
        if let Ok(mut l) = self.log.lock() {
            l.clear();
        }
    }

    pub fn handshake_failures(&self) -> u64 {
        self.handshake_failures.load(Ordering::Relaxed)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct ConnCtx {
    log: Arc<Mutex<Vec<Recorded>>>,
    handshake_failures: Arc<AtomicU64>,
    tls: bool,
}

async fn accept_loop<H: Handler>(
    listener: StdListener,
    handler: Arc<H>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    ctx: Arc<ConnCtx>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("test server: cannot register the listener: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else { continue };
                let local_addr = stream.local_addr().unwrap_or_else(|_| {
                    SocketAddr::from(([127, 0, 0, 1], 0))
                });
                let handler = handler.clone();
                let ctx = ctx.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(tls) => serve(TokioIo::new(tls), handler, ctx, local_addr).await,
                            Err(_) => {
                                ctx.handshake_failures.fetch_add(1, Ordering::Relaxed);
                            }
                        },
                        None => serve(TokioIo::new(stream), handler, ctx, local_addr).await,
                    }
                });
            }
        }
    }
}

async fn serve<IO, H>(io: IO, handler: Arc<H>, ctx: Arc<ConnCtx>, local_addr: SocketAddr)
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    H: Handler,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let handler = handler.clone();
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(handle_one(req, &*handler, &ctx, local_addr).await) }
    });
    // A malformed request line or header block is answered 400 by hyper itself.
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
}

async fn handle_one<H: Handler>(
    req: Request<Incoming>,
    handler: &H,
    ctx: &ConnCtx,
    local_addr: SocketAddr,
) -> Response<RespBody> {
    let (parts, body) = req.into_parts();
    let mut req = Req {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        tls: ctx.tls,
        local_addr,
        body: Some(body),
        body_len: 0,
        buffered: None,
    };
    let reply = handler.handle(&mut req).await;
    req.drain().await;

    let headers = req
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let record = Recorded {
        method: req.method.as_str().to_string(),
        target: req.target(),
        headers,
        body_len: req.body_len,
        status: reply.status,
        verdict: reply.verdict.clone(),
    };
    if let Ok(mut log) = ctx.log.lock() {
        log.push(record);
    }

    let mut resp = Response::new(reply.body);
    *resp.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in reply.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            resp.headers_mut().append(k, v);
        }
    }
    resp
}

/// A self-signed CA and a leaf for 127.0.0.1 and localhost signed by it. A real CA
/// (rather than one self-signed leaf) keeps every verifier happy: rustls/webpki refuse
/// a CA certificate used as an end entity, OpenSSL is fine either way.
fn tls_acceptor() -> Result<(tokio_rustls::TlsAcceptor, String), String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let err = |e: rcgen::Error| format!("rcgen: {e}");

    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.distinguished_name.push(DnType::CommonName, "signet test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().map_err(err)?;
    let mut leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .map_err(err)?;
    leaf_params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).map_err(err)?;

    let chain = vec![leaf.der().clone()];
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    // An explicit provider: the process may link more than one, and then rustls has
    // no default.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("rustls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("rustls: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), ca_cert.pem()))
}

/// The `big/<n>` body: n bytes of the deterministic pattern, streamed in 64 KiB frames
/// sliced out of one shared buffer (so 100 MiB costs no memory).
pub(crate) struct PatternBody {
    offset: u64,
    remaining: u64,
}

const PATTERN_PERIOD: u64 = 251;
const CHUNK: usize = 64 * 1024;

fn pattern_buffer() -> &'static Bytes {
    static BUF: OnceLock<Bytes> = OnceLock::new();
    BUF.get_or_init(|| {
        Bytes::from(crate::upstream::pattern_bytes(0, CHUNK + PATTERN_PERIOD as usize))
    })
}

impl PatternBody {
    pub fn new(len: u64) -> PatternBody {
        PatternBody { offset: 0, remaining: len }
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let len = self.remaining.min(CHUNK as u64) as usize;
        let start = (self.offset % PATTERN_PERIOD) as usize;
        let chunk = pattern_buffer().slice(start..start + len);
        self.offset += len as u64;
        self.remaining -= len as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// The endpoints every server offers after its auth check, keyed by the path that
/// follows the server's prefix:
/// - `echo…` (any method): 200 JSON {method, target, body_len, body_sha256,
///   content_type, headers (all but Authorization)};
/// - `big/<n>`: 200, n bytes of the pattern (`pattern_bytes`);
/// - `sink` (any method): reads the body and answers 200 JSON {body_len}, doing
///   no other work, so that an upload measures the path and not the server;
/// - `redirect?to=<url>[&status=30x]`: a redirect (302 by default) to `to`.
///
/// Returns None when `rest` is none of them.
pub(crate) async fn generic_endpoint(req: &mut Req, rest: &str) -> Option<Reply> {
    if rest.starts_with("echo") {
        return Some(echo(req).await);
    }
    if rest.starts_with("sink") {
        return Some(match req.count_body().await {
            Ok(len) => Reply::json(200, &serde_json::json!({ "body_len": len }), "ok"),
            Err(r) => r,
        });
    }
    if let Some(n) = rest.strip_prefix("big/") {
        let n = n.trim_end_matches('/');
        return Some(match n.parse::<u64>() {
            Ok(n) => Reply {
                status: 200,
                headers: vec![("content-type".into(), "application/octet-stream".into())],
                body: PatternBody::new(n).boxed(),
                verdict: "ok".into(),
            },
            Err(_) => Reply::refuse(400, "big/<n>: n must be a byte count"),
        });
    }
    if rest == "redirect" || rest == "redirect/" {
        let Some(to) = req.query_param("to") else {
            return Some(Reply::refuse(400, "redirect needs ?to=<url>"));
        };
        let status = match req.query_param("status").map(|s| s.parse::<u16>()) {
            None => 302,
            Some(Ok(s)) if matches!(s, 301 | 302 | 303 | 307 | 308) => s,
            Some(_) => {
                return Some(Reply::refuse(400, "redirect status must be 301/302/303/307/308"));
            }
        };
        if HeaderValue::try_from(to.as_str()).is_err() {
            return Some(Reply::refuse(400, "redirect target is not a valid header value"));
        }
        return Some(Reply::empty(status, "ok").with_header("location", &to));
    }
    None
}

async fn echo(req: &mut Req) -> Reply {
    let (len, sha) = match req.hash_body().await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers
        .iter()
        .filter(|(k, _)| *k != hyper::header::AUTHORIZATION)
        .map(|(k, v)| {
            (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned().into())
        })
        .collect();
    let value = serde_json::json!({
        "method": req.method.as_str(),
        "target": req.target(),
        "body_len": len,
        "body_sha256": sha,
        "content_type": req.header("content-type"),
        "headers": headers,
    });
    Reply::json(200, &value, "ok")
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn multipart_boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim().trim_matches('"').to_string())
    })
}

/// A minimal multipart/form-data reader: each part's `name` and its content as text.
fn parse_multipart(body: &[u8], boundary: &str) -> Result<Vec<(String, String)>, String> {
    let delim = format!("--{boundary}").into_bytes();
    let mut out = Vec::new();
    let mut parts = split_on(body, &delim).into_iter();
    // What precedes the first delimiter is a preamble.
    parts.next();
    let mut closed = false;
    for part in parts {
        if part.starts_with(b"--") {
            closed = true;
            break;
        }
        let part = part.strip_prefix(b"\r\n").ok_or("delimiter not followed by CRLF")?;
        // An empty part: python-libmaas sends one for a POST without
        // parameters (an empty MIME multipart), and Django reads it as none.
        if part.iter().all(|b| matches!(b, b'\r' | b'\n')) {
            continue;
        }
        let head_end = find(part, b"\r\n\r\n").ok_or("part without a header block")?;
        let head = String::from_utf8_lossy(&part[..head_end]);
        let mut content = &part[head_end + 4..];
        content = content.strip_suffix(b"\r\n").ok_or("part not followed by CRLF")?;
        let name = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .and_then(|l| {
                l.split(';').find_map(|p| {
                    let (k, v) = p.trim().split_once('=')?;
                    (k.trim() == "name").then(|| v.trim().trim_matches('"').to_string())
                })
            })
            .ok_or("part without a name")?;
        // Content-Transfer-Encoding base64, as python-libmaas sends every
        // part and Django decodes.
        let base64 = head.lines().any(|l| {
            l.split_once(':').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("content-transfer-encoding")
                    && v.trim().eq_ignore_ascii_case("base64")
            })
        });
        let decoded;
        if base64 {
            use base64::Engine as _;
            let compact: Vec<u8> =
                content.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
            decoded = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map_err(|e| format!("part {name}: bad base64: {e}"))?;
            content = &decoded;
        }
        out.push((name, String::from_utf8_lossy(content).into_owned()));
    }
    if !closed {
        return Err("no closing delimiter".into());
    }
    Ok(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn split_on<'a>(mut hay: &'a [u8], delim: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    while let Some(i) = find(hay, delim) {
        out.push(&hay[..i]);
        hay = &hay[i + delim.len()..];
    }
    out.push(hay);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_parses_python_requests_style_bodies() {
        let body = b"--xyz\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nmy token\r\n\
                     --xyz\r\nContent-Disposition: form-data; name=\"token_key\"\r\n\
                     Content-Type: text/plain\r\n\r\nabc\r\n--xyz--\r\n";
        let parts = parse_multipart(body, "xyz").expect("parse");
        assert_eq!(
            parts,
            vec![("name".to_string(), "my token".to_string()), ("token_key".into(), "abc".into())]
        );
        assert!(parse_multipart(b"--xyz\r\nno header end", "xyz").is_err());
        assert!(parse_multipart(b"garbage", "xyz").is_err());
        assert_eq!(
            multipart_boundary("multipart/form-data; boundary=\"a b\"").as_deref(),
            Some("a b")
        );
    }
}
