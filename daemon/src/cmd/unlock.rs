//! `Unlock`: the passphrase given to `Lock` opens the agent again; a lock
//! the agent took itself needs none. A wrong passphrase is answered late,
//! later each time (see [`crate::access`]).
//!
//! # Format
//! `Request::Unlock { passphrase }`, answered with `Response::Ok`.

use signet_proto::{Failure, Response, Secret};

use crate::agent::{Agent, Peer};

#[tracing::instrument(skip_all, fields(uid = peer.uid, pid = peer.pid))]
pub async fn apply(
    agent: &Agent,
    peer: Peer,
    passphrase: Option<Secret>,
) -> Result<Response, Failure> {
    agent.unlock(passphrase).await?;
    tracing::info!("agent unlocked");
    Ok(Response::Ok)
}
