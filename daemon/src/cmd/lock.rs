//! `Lock`: every secret out of the agent's memory, every use refused,
//! until `Unlock` with the same passphrase (see [`crate::access`]).
//!
//! # Format
//! `Request::Lock { passphrase }`, answered with `Response::Ok`.

use signet_proto::{Failure, Response, Secret};

use crate::access::MIN_PASSPHRASE;
use crate::agent::{Agent, Peer};

#[tracing::instrument(skip_all, fields(uid = peer.uid, pid = peer.pid))]
pub async fn apply(agent: &Agent, peer: Peer, passphrase: Secret) -> Result<Response, Failure> {
    if passphrase.len() < MIN_PASSPHRASE {
        return Err(Failure::usage(format!(
            "a lock passphrase must be at least {MIN_PASSPHRASE} bytes"
        ))
        .with_hint("run `signet lock` again with a longer passphrase"));
    }
    agent.lock(Some(passphrase)).await?;
    tracing::info!("agent locked");
    Ok(Response::Ok)
}
