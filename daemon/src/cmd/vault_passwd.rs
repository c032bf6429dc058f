//! `VaultPasswd`: re-seal the vault file under a new passphrase.
//!
//! # Format
//! `Request::VaultPasswd { old, new }`, answered with `Response::Ok`, or a
//! `Failure`: `Store` (exit 6) for a wrong `old` passphrase (nothing is
//! changed) or an agent whose store is not the vault; `Usage` for an empty
//! new passphrase.

use signet_proto::{Failure, Response, Secret};

use crate::agent::{Agent, Peer};

pub async fn apply(
    agent: &Agent,
    _peer: Peer,
    old: Secret,
    new: Secret,
) -> Result<Response, Failure> {
    // Only the agent's own user can connect (server::peer_allowed), and
    // the vault is that user's: no further check of who asks.
    if new.is_empty() {
        return Err(Failure::usage("the new vault passphrase is empty")
            .with_hint("choose a passphrase of several words"));
    }
    agent.store.change_vault_passphrase(old, new).await?;
    tracing::info!("the vault was sealed under a new passphrase");
    Ok(Response::Ok)
}
