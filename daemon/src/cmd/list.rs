//! `List`: the caller's tokens, sorted by name; never touches the keyring.
//!
//! # Format
//! `Request::List`, answered with `Response::Tokens`.

use signet_proto::{Failure, Response};

use crate::agent::{Agent, Peer, now, owner_name};

pub fn apply(agent: &Agent, peer: Peer) -> Result<Response, Failure> {
    let now = now();
    // One passwd lookup per listing, not one per token.
    let owner = owner_name(peer.uid);
    let tokens = agent.store.list(peer.uid)?;
    Ok(Response::Tokens(tokens.iter().map(|e| e.info(now, owner.clone())).collect()))
}
