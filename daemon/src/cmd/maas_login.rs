//! `MaasLogin`: verify a MAAS key with whoami, or obtain one with a user
//! name and password, and store it.
//!
//! # Format
//! `Request::MaasLogin(MaasLogin)`, answered with `Response::Token`.

use signet_proto::{Failure, MaasLogin, Response};

use crate::agent::{Agent, Peer};
use crate::service::maas;

pub async fn apply(agent: &Agent, peer: Peer, l: MaasLogin) -> Result<Response, Failure> {
    maas::login(agent, peer, l).await
}
