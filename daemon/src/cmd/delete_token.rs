//! `DeleteToken`: delete (MAAS) or revoke (VMS) a server token. The token
//! the local one itself uses needs `force`, and then the local one goes
//! too.
//!
//! # Format
//! `Request::Lifecycle(LifecycleOp::DeleteToken { service, name, token,
//! force })`, answered with `Response::Ok`.

use signet_proto::{Failure, Response, Service};

use crate::agent::{Agent, Peer};
use crate::service::{self, maas::Maas, vms::Vms};

pub async fn apply(
    agent: &Agent,
    peer: Peer,
    which: Service,
    name: &str,
    token: &str,
    force: bool,
) -> Result<Response, Failure> {
    match which {
        Service::Maas => service::revoke(&Maas, agent, peer, name, token, force).await,
        Service::Vms => service::revoke(&Vms, agent, peer, name, token, force).await,
    }
}
