//! `Migrate`: move every token's secret into another store.
//!
//! # Format
//! `Request::Migrate { to, passphrase }`, answered with
//! `Response::Migrated`, or a `Failure`: `Usage` for an unknown store name,
//! `Store` (exit 6) when the target cannot be opened (a wrong vault
//! passphrase, no Secret Service) or a copy fails; the old store then stays
//! in use with every secret in it.

use signet_proto::{Failure, Response, Secret};

use crate::agent::{Agent, Peer};
use crate::store::keyring::StoreChoice;

pub async fn apply(
    agent: &Agent,
    _peer: Peer,
    to: &str,
    passphrase: Option<Secret>,
) -> Result<Response, Failure> {
    let choice = match to.parse::<StoreChoice>() {
        Ok(StoreChoice::Auto) | Err(_) => {
            return Err(Failure::usage(format!("cannot migrate to `{}`", to.escape_debug()))
                .with_hint("name a store: --to file, --to secret-service or --to keyutils"));
        }
        Ok(c) => c,
    };
    let outcome = agent.store.migrate(choice, passphrase).await?;
    tracing::info!(from = %outcome.from, to = %outcome.to, moved = outcome.moved, left_behind = outcome.left_behind, "secrets migrated");
    Ok(Response::Migrated(outcome))
}
