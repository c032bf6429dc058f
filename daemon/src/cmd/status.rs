//! `Status`: who the agent is and how it is set up.
//!
//! # Format
//! `Request::Status`, answered with `Response::Status`.

use signet_proto::{Failure, PROTOCOL_VERSION, Response, StatusInfo};

use crate::agent::{Agent, Peer};

pub fn apply(agent: &Agent, peer: Peer) -> Result<Response, Failure> {
    Ok(Response::Status(StatusInfo {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: PROTOCOL_VERSION,
        store: agent.store.keyring_name().to_string(),
        tokens: u32::try_from(agent.store.list(peer.uid)?.len()).unwrap_or(u32::MAX),
        uptime_secs: agent.started.elapsed().as_secs(),
        socket: agent.socket.display().to_string(),
        data_dir: agent.store.data_dir().display().to_string(),
        max_tokens_per_owner: agent.config.max_tokens_per_owner,
        locked: agent.access.lock_kind(),
        idle_lock_secs: agent.config.idle_lock_secs,
    }))
}
