//! `Add`: a new token, its secret straight into the keyring.
//!
//! # Format
//! `Request::Add(AddToken)`, answered with `Response::Token` (the stored
//! metadata) or a failure.

use signet_proto::{AddToken, Failure, Response};

use crate::agent::{Agent, Peer, now};
use crate::entry::Entry;
use crate::{access, http, validate};

#[tracing::instrument(skip_all, fields(uid = peer.uid, token = %add.name, kind = %add.kind))]
pub async fn apply(agent: &Agent, peer: Peer, add: AddToken) -> Result<Response, Failure> {
    validate::name(&add.name)?;
    let (url, params) =
        validate::new_token(add.kind, &add.url, &add.secret, &add.params, add.comment.as_deref())?;
    http::check_tls(&params.tls)?;
    let created = now();
    let mut entry = Entry::draft(&add.name, add.kind, url, peer.uid, created, params);
    entry.expires = validate::expiry_ahead(add.expires.map(|x| x.resolve(created)), created)?;
    entry.exportable = add.exportable;
    entry.comment = add.comment;
    access::apply_settings(&mut entry, &add.access, &agent.config, created)?;
    let added = agent.store.add(entry, add.secret, agent.config.max_tokens_per_owner).await?;
    if added.removes_at.is_some() {
        agent.access.reap.notify_one();
    }
    tracing::info!("token added");
    Ok(Response::Token(agent.info(&added)))
}
