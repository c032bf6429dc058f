//! `Perform`: the agent makes the HTTP request for the client, which sees
//! only the response, never the secret.
//!
//! Both bodies stream: the request body arrives as chunk frames and goes
//! upstream through a small bounded channel; the response body goes back in
//! chunk frames as it arrives. Memory stays constant whatever the size.
//! When the client passes a file's descriptor instead, the agent reads the
//! request body from that file, or writes the response body into it
//! (see [`crate::fdio`]), and the body never crosses the socket.
//!
//! Redirects are followed by hand, never by the HTTP client: each hop is
//! checked against the token's scope and signed afresh (a new nonce and
//! timestamp, as MAAS demands). A redirect out of scope is returned to the
//! client as it is, so no credential is ever sent to another origin.
//!
//! # Format
//! `Request::Perform(PerformRequest)`, answered with `Response::Proceed` or
//! a failure; with `has_body`, the client then sends `BodyChunk` frames and
//! a `BodyEnd`; the agent sends `Head`, `BodyChunk` frames and `BodyEnd`, or
//! a failure at any point before `BodyEnd` (docs/protocol.md). With
//! `body_fd`, one byte carrying a descriptor replaces the client's body
//! frames; with `response_fd`, the client answers `Head` with one byte, and
//! a usable descriptor on it replaces the agent's body frames.

use std::os::fd::OwnedFd;
use std::time::Duration;

use bytes::Bytes;
use signet_proto::{Chunk, ErrorCode, Failure, PerformRequest, Response, ResponseHead};
use tokio::sync::{mpsc, oneshot};

use crate::agent::{Agent, Peer, now};
use crate::conn::{BodyItem, BodyOut, Closed, Conn};
use crate::fdio;
use crate::gate::{self, Granted, MAX_SIGNED_FORM, Use};
use crate::http::{attach, describe};
use crate::policy;
use crate::sign::{self, SignInput};

/// At most this many redirects are followed, as curl's default of 50 is
/// more than any API needs.
pub const MAX_REDIRECTS: usize = 10;

/// Everything checked before the client may send a body: the shared
/// checks of [`gate::admit`], and the headers to send.
struct Prepared {
    granted: Granted,
    headers: Vec<(String, String)>,
}

async fn prepare(agent: &Agent, peer: Peer, req: &PerformRequest) -> Result<Prepared, Failure> {
    let u = Use {
        name: &req.name,
        method: &req.method,
        target: &req.url,
        headers: &req.headers,
        form_body: req.has_body && gate::is_form(&req.headers),
        via: "request",
    };
    let granted = gate::admit(agent, peer, &u).await?;
    Ok(Prepared { granted, headers: req.headers.clone() })
}

/// How a `Perform` ended, for the audit trail.
#[derive(Debug, Clone, Copy)]
pub enum Performed {
    /// The upstream answer went to the client whole; its HTTP status.
    Answered(u16),
    /// Refused or failed, and the client was told.
    Failed(ErrorCode),
    /// The client went away, or its connection broke, before the end.
    ClientLeft,
}

/// Serves one `Perform`. The second half is `Err` when the connection is no
/// longer in step and must be closed; a refused or failed request is `Ok`
/// (its failure went to the client).
pub async fn apply(
    agent: &Agent,
    peer: Peer,
    req: PerformRequest,
    conn: &mut Conn,
) -> (Performed, Result<(), Closed>) {
    let p = match prepare(agent, peer, &req).await {
        Ok(p) => p,
        // Refused before Proceed: the client sends no body.
        Err(f) => return (Performed::Failed(f.code), conn.send(&Response::Failure(f)).await),
    };
    if let Err(e) = conn.send(&Response::Proceed).await {
        return (Performed::ClientLeft, Err(e));
    }
    let (mut body_in, mut out) = conn.streams();
    let (tx, rx) = mpsc::channel::<BodyItem>(4);
    if req.has_body && req.body_fd {
        // Taken before anything else, so a descriptor that will not do is
        // refused before the upstream call begins.
        let refused = match body_in.take_fd().await {
            Err(e) => return (Performed::ClientLeft, Err(e)),
            Ok(None) => Some("no descriptor came"),
            Ok(Some(fd)) => fdio::read_body(fd, tx.clone()).err(),
        };
        if let Some(why) = refused {
            let f = Failure::usage(format!("the request body's file: {why}"));
            return (Performed::Failed(f.code), out.send(&Response::Failure(f)).await);
        }
    }
    let (body_read, body_was_read) = oneshot::channel::<()>();
    let (sink_tx, sink_rx) = oneshot::channel::<Option<OwnedFd>>();
    // The client's side is read for the whole exchange: the body first, if
    // any, then the descriptor for the response, if one is due, then only
    // to notice the client leaving (Ctrl-C, its own timeout), which
    // abandons the upstream call with it.
    let client_side = async {
        if req.has_body && !req.body_fd {
            body_in.forward(tx).await?;
        } else {
            drop(tx);
        }
        let _ = body_read.send(());
        if req.response_fd {
            let _ = sink_tx.send(body_in.take_fd().await?);
        }
        Err::<(), Closed>(body_in.until_closed().await)
    };
    let exchanged = async {
        let body = if req.has_body { Some(rx) } else { None };
        let delivery = req.response_fd.then_some(Delivery { body_was_read, sink: sink_rx });
        let upstream = Upstream { body, body_len: req.body_len, timeout_secs: req.timeout_secs };
        match exchange(agent, p, upstream, delivery, &mut out).await {
            Ok(status) => (Performed::Answered(status), Ok(())),
            Err(Outcome::Failed(f)) => match (f.code, out.send(&Response::Failure(f)).await) {
                (code, Ok(())) => (Performed::Failed(code), Ok(())),
                (_, Err(e)) => (Performed::ClientLeft, Err(e)),
            },
            Err(Outcome::Broken(e)) => (Performed::ClientLeft, Err(e)),
        }
    };
    tokio::select! {
        biased;
        done = exchanged => done,
        gone = client_side => {
            tracing::info!(token = %req.name, "the client left; its upstream call is abandoned");
            (Performed::ClientLeft, gone)
        }
    }
}

enum Outcome {
    /// Tell the client and carry on.
    Failed(Failure),
    /// The client connection is broken.
    Broken(Closed),
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
        let b = item.map_err(|e| Failure::other(format!("request body: {e}")))?;
        if buf.len() + b.len() > MAX_SIGNED_FORM {
            return Err(Failure::usage(format!(
                "a form body signed with OAuth HMAC may be at most {MAX_SIGNED_FORM} bytes"
            )));
        }
        buf.extend_from_slice(&b);
    }
    Ok(Bytes::from(buf))
}

fn is_redirect(s: reqwest::StatusCode) -> bool {
    matches!(s.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// What goes upstream besides the prepared request.
struct Upstream {
    body: Option<mpsc::Receiver<BodyItem>>,
    body_len: Option<u64>,
    timeout_secs: Option<u64>,
}

/// How a client that asked for `response_fd` takes the response body.
struct Delivery {
    /// Resolves once the client's body has been read whole: only then is
    /// `Head` sent, as the client answers it with a descriptor that must
    /// not be read together with the body's last frames.
    body_was_read: oneshot::Receiver<()>,
    /// The client's answer to `Head`: a descriptor, or none.
    sink: oneshot::Receiver<Option<OwnedFd>>,
}

async fn exchange(
    agent: &Agent,
    prepared: Prepared,
    upstream: Upstream,
    delivery: Option<Delivery>,
    out: &mut BodyOut<'_>,
) -> Result<u16, Outcome> {
    let Prepared { granted: p, headers } = prepared;
    let Upstream { body, body_len, timeout_secs } = upstream;
    let mut body = match body {
        None => Body::None,
        Some(mut rx) if p.sign_form_body => Body::Buffered(buffer_form(&mut rx).await?),
        Some(rx) => Body::Stream(rx),
    };
    let mut url = p.url.clone();
    let mut method = p.method.clone();
    let mut headers = headers;
    let mut hops = 0;
    // Why a redirect in the answer was handed back instead of followed.
    let mut unfollowed = None;
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
        // Signed afresh for every hop (see `sign::now`).
        let input = SignInput { method: method.as_str(), url: &url, form: &form };
        rb = attach(rb, &sign::now(&p.entry, &p.secret, &input)?)?;
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
        agent.store.record_use(&p.entry.id, now());

        let status = resp.status();
        if !is_redirect(status) {
            break resp;
        }
        if hops >= MAX_REDIRECTS {
            unfollowed = Some(format!("it is past the {MAX_REDIRECTS}th redirect"));
            break resp;
        }
        let location = resp.headers().get(reqwest::header::LOCATION).and_then(|l| l.to_str().ok());
        // The same check as a URL given on the command line: a Location
        // that parsers read differently is not followed.
        let next = location.and_then(|l| {
            signet_proto::token::check_url_text(l).ok()?;
            url.join(l).ok()
        });
        let Some(next) = next else {
            unfollowed = Some("its Location is missing or not a usable URL".into());
            break resp;
        };
        if let Err(f) = policy::check_scope(&p.entry.name, &p.base, &next) {
            // Out of scope: hand the redirect back, follow nothing.
            tracing::info!(token = %p.entry.name, "not following a redirect out of the token's scope");
            unfollowed = Some(f.message);
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
            unfollowed = Some(format!(
                "a {} asks for the request body again, and it was streamed",
                status.as_u16()
            ));
            break resp;
        }
        hops += 1;
        url = next;
    };

    let status = resp.status().as_u16();
    let head = ResponseHead {
        status,
        reason: resp.status().canonical_reason().unwrap_or("").to_string(),
        version: format!("{:?}", resp.version()),
        headers: resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), Chunk(v.as_bytes().to_vec())))
            .collect(),
        url: url.to_string(),
        unfollowed,
    };
    let answer = match delivery {
        Some(d) => {
            // An error means the client's side has ended, and with it the
            // whole exchange.
            let _ = d.body_was_read.await;
            Some(d.sink)
        }
        None => None,
    };
    out.send(&Response::Head(head)).await.map_err(Outcome::Broken)?;
    let mut sink = None;
    if let Some(answer) = answer
        && let Ok(Some(fd)) = answer.await
    {
        // A descriptor that will not do is not an error: the body goes
        // through the socket, which the client reads either way.
        sink = fdio::Sink::new(fd)
            .inspect_err(|why| tracing::debug!(why, "response body through the socket"))
            .ok();
    }
    let mut resp = resp;
    let mut sent: u64 = 0;
    loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                let n = bytes.len() as u64;
                match &mut sink {
                    Some(s) => {
                        if s.write(bytes).await.is_err() {
                            break;
                        }
                    }
                    None => out.body(&bytes).await.map_err(Outcome::Broken)?,
                }
                sent += n;
            }
            Ok(None) => break,
            Err(e) => {
                let f = describe(&e, &url);
                return Err(Outcome::Failed(Failure::upstream(format!(
                    "{} (after {sent} bytes of the response body)",
                    f.message
                ))));
            }
        }
    }
    if let Some(s) = sink {
        s.finish().await.map_err(|e| {
            Outcome::Failed(Failure::other(format!("cannot write the response body: {e}")))
        })?;
    }
    out.send(&Response::BodyEnd).await.map_err(Outcome::Broken)?;
    Ok(status)
}
