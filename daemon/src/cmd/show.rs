//! `Show`: one token's metadata.
//!
//! # Format
//! `Request::Show { name }`, answered with `Response::Token`.

use signet_proto::{Failure, Response};

use crate::agent::{Agent, Peer};
use crate::validate;

pub fn apply(agent: &Agent, peer: Peer, name: &str) -> Result<Response, Failure> {
    validate::name(name)?;
    Ok(Response::Token(agent.info(&agent.store.get(peer.uid, name)?)))
}
