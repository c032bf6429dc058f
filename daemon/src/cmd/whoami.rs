//! `Whoami`: the MAAS account a stored `maas` token authenticates as.
//!
//! # Format
//! `Request::Lifecycle(LifecycleOp::Whoami { name })`, answered with
//! `Response::Account`.

use signet_proto::{Failure, Response};

use crate::agent::{Agent, Peer};
use crate::service::maas::{self, Maas};
use crate::service::{TokenApi, hold};

pub async fn apply(agent: &Agent, peer: Peer, name: &str) -> Result<Response, Failure> {
    let h = hold(agent, peer, name, Maas::KIND).await?;
    Ok(Response::Account(maas::whoami(agent, &h).await?))
}
