//! `RenameToken`: a server token's name on the server (`maas account
//! update-token-name`, VMS `apitoken` rename); local names are untouched.
//!
//! # Format
//! `Request::Lifecycle(LifecycleOp::RenameToken { service, name, token,
//! new_token_name })`, answered with `Response::Ok`.

use signet_proto::{Failure, Response, Service};

use crate::agent::{Agent, Peer};
use crate::service::{self, maas::Maas, vms::Vms};

pub async fn apply(
    agent: &Agent,
    peer: Peer,
    which: Service,
    name: &str,
    token: &str,
    new_token_name: &str,
) -> Result<Response, Failure> {
    match which {
        Service::Maas => service::rename(&Maas, agent, peer, name, token, new_token_name).await,
        Service::Vms => service::rename(&Vms, agent, peer, name, token, new_token_name).await,
    }
}
