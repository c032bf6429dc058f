//! `Rotate`: replace a token's secret with a freshly minted one, without a
//! moment in which no credential works (see `service::rotate`).
//!
//! # Format
//! `Request::Lifecycle(LifecycleOp::Rotate { name })`, answered with
//! `Response::Minted`.

use signet_proto::{Failure, Response, TokenKind};

use crate::agent::{Agent, Peer};
use crate::service::{self, maas::Maas, vms::Vms};
use crate::validate;

pub async fn apply(agent: &Agent, peer: Peer, name: &str) -> Result<Response, Failure> {
    validate::name(name)?;
    match agent.store.get(peer.uid, name)?.kind {
        TokenKind::Maas => service::rotate(&Maas, agent, peer, name).await,
        TokenKind::ApiToken => service::rotate(&Vms, agent, peer, name).await,
        k => Err(Failure::usage(format!("rotate works for maas and api-token tokens, not {k}"))),
    }
}
