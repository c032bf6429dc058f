//! `CreateToken`: the server mints a token, which goes straight into the
//! keyring under a new local name; it is shown only with `show`.
//!
//! # Format
//! `Request::Lifecycle(LifecycleOp::CreateToken { service, name, new_name,
//! token_name, expires, owner, show })`, answered with `Response::Minted`.

use signet_proto::{Failure, Response, Service};

use crate::agent::{Agent, Peer};
use crate::service::{self, MintRequest, maas::Maas, vms::Vms};

pub async fn apply(
    agent: &Agent,
    peer: Peer,
    which: Service,
    name: &str,
    new_name: &str,
    req: MintRequest,
    show: bool,
) -> Result<Response, Failure> {
    match which {
        Service::Maas => service::create(&Maas, agent, peer, name, new_name, req, show).await,
        Service::Vms => service::create(&Vms, agent, peer, name, new_name, req, show).await,
    }
}
