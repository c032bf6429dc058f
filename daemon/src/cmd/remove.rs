//! `Remove`: a token and its secret, from the index and the keyring.
//!
//! # Format
//! `Request::Remove { name }`, answered with `Response::Ok`.

use signet_proto::{Failure, Response};

use crate::agent::{Agent, Peer};
use crate::validate;

#[tracing::instrument(skip_all, fields(uid = peer.uid, token = %name))]
pub async fn apply(agent: &Agent, peer: Peer, name: &str) -> Result<Response, Failure> {
    validate::name(name)?;
    let removed = agent.store.remove(peer.uid, name).await?;
    agent.http.forget(&removed.id);
    // Its proxies would refuse every request from now on: stop them, so
    // that their ports and local credentials go too.
    agent.proxies.stop_named(peer.uid, name);
    tracing::info!("token removed");
    Ok(Response::Ok)
}
