//! `MaasImport`: MAAS CLI profiles into the keyring, and with `scrub` out
//! of the MAAS CLI's database.
//!
//! # Format
//! `Request::Lifecycle(LifecycleOp::MaasImport { db, scrub })`, answered
//! with `Response::Imported`.

use signet_proto::{Failure, Response};

use crate::agent::{Agent, Peer};
use crate::service::maas_import;

pub async fn apply(agent: &Agent, peer: Peer, db: &str, scrub: bool) -> Result<Response, Failure> {
    maas_import::import(agent, peer, db, scrub).await
}
