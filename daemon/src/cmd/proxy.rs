//! `ProxyStart`, `ProxyStop`, `ProxyList`: local re-signing proxies
//! (the proxy itself is [`crate::proxy`]).
//!
//! # Format
//! `Request::ProxyStart(ProxyStart)` is answered with
//! `Response::ProxyStarted(ProxyInfo)`, which carries the local credential.
//! With `tie`, the connection is then held: the agent reads nothing more on
//! it and stops the proxy when the client closes it, however the client
//! ends. `ProxyStop { name }` and `ProxyList` are answered with
//! `Response::Proxies` (docs/protocol.md).

use std::sync::Arc;

use signet_proto::{ErrorCode, Failure, ProxyStart, Response};

use crate::agent::{Agent, Peer};
use crate::conn::{Closed, Conn};
use crate::{proxy, validate};

/// Starts a proxy; a tied one lives as long as this connection.
pub async fn start(
    agent: &Arc<Agent>,
    peer: Peer,
    req: ProxyStart,
    conn: &mut Conn,
    recorded: impl FnOnce(Option<ErrorCode>),
) -> Result<(), Closed> {
    let (id, info) = match proxy::start(agent, peer, &req).await {
        Ok(started) => started,
        Err(f) => {
            recorded(Some(f.code));
            return conn.send(&Response::Failure(f)).await;
        }
    };
    recorded(None);
    let sent = conn.send(&Response::ProxyStarted(info)).await;
    if !req.tie || sent.is_err() {
        if sent.is_err() {
            agent.proxies.stop_id(id);
        }
        return sent;
    }
    let why = conn.held().await;
    agent.proxies.stop_id(id);
    Err(why)
}

/// Stops the caller's proxies for the token `name`.
pub fn stop(agent: &Agent, peer: Peer, name: &str) -> Result<Response, Failure> {
    validate::name(name)?;
    let stopped = agent.proxies.stop_named(peer.uid, name);
    if stopped.is_empty() {
        return Err(Failure::new(
            signet_proto::ErrorCode::NoSuchToken,
            format!("no proxy of yours is running for token `{name}`"),
        )
        .with_hint("`signet proxy --list` shows the running ones"));
    }
    Ok(Response::Proxies(stopped))
}

/// The caller's running proxies.
pub fn list(agent: &Agent, peer: Peer) -> Response {
    Response::Proxies(agent.proxies.list(peer.uid))
}
