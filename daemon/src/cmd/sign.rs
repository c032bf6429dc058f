//! `Sign`: the header lines that authenticate one request, for tools that
//! make their own calls. Scope, expiry and the export rule are checked
//! first: a header that contains the secret itself leaves the agent only
//! for an exportable token.
//!
//! # Format
//! `Request::Sign(SignRequest)`, answered with `Response::Signed`.

use signet_proto::{Failure, Response, Secret, SignRequest};

use crate::access::Destination;
use crate::agent::{Agent, Peer, now};
use crate::sign::{self, SignInput};
use crate::{policy, validate};

/// Also returns the URL the sign is for, once resolved and in scope: the
/// trail records its origin and path without resolving it again.
pub async fn apply(
    agent: &Agent,
    peer: Peer,
    r: &SignRequest,
) -> (Result<Response, Failure>, Option<url::Url>) {
    let mut resolved = None;
    let result = signed(agent, peer, r, &mut resolved).await;
    (result, resolved)
}

async fn signed(
    agent: &Agent,
    peer: Peer,
    r: &SignRequest,
    resolved: &mut Option<url::Url>,
) -> Result<Response, Failure> {
    validate::name(&r.name)?;
    let e = agent.store.get(peer.uid, &r.name)?;
    let now = now();
    policy::check_not_expired(&e, now)?;
    let (_, url) = policy::scoped_url(&e, &r.url)?;
    let url = resolved.insert(url);
    let method = validate::method(&r.method)?;
    policy::check_export(&e, sign::reveals_secret(e.kind, &e.params))?;
    agent.access.admit_use(peer, &e, &Destination { method: &method, url }, now).await?;
    let secret = agent.store.secret(&e).await?;
    let lines = sign::now(&e, &secret, &SignInput { method: &method, url, form: &r.form })?;
    agent.store.record_use(&e.id, now);
    Ok(Response::Signed(
        lines.into_iter().map(|h| (h.name, Secret::new(h.value.as_bytes().to_vec()))).collect(),
    ))
}
