//! `Rename`: a token's local name; one index write, the keyring untouched
//! (its entry is keyed by the token's immutable id).
//!
//! # Format
//! `Request::Rename { old, new }`, answered with `Response::Token`.

use signet_proto::{Failure, Response};

use crate::agent::{Agent, Peer};
use crate::validate;

#[tracing::instrument(skip_all, fields(uid = peer.uid, token = %old, new = %new))]
pub async fn apply(agent: &Agent, peer: Peer, old: &str, new: &str) -> Result<Response, Failure> {
    validate::name(old)?;
    validate::name(new)?;
    let e = agent.store.rename(peer.uid, old, new).await?;
    tracing::info!("token renamed");
    Ok(Response::Token(agent.info(&e)))
}
