//! `ListTokens`: the server's tokens (MAAS keys, VMS ids), never a secret.
//!
//! # Format
//! `Request::Lifecycle(LifecycleOp::ListTokens { service, name })`,
//! answered with `Response::ServerTokens`.

use signet_proto::{Failure, Response, Service};

use crate::agent::{Agent, Peer};
use crate::service::{self, maas::Maas, vms::Vms};

pub async fn apply(
    agent: &Agent,
    peer: Peer,
    which: Service,
    name: &str,
) -> Result<Response, Failure> {
    match which {
        Service::Maas => service::list(&Maas, agent, peer, name).await,
        Service::Vms => service::list(&Vms, agent, peer, name).await,
    }
}
