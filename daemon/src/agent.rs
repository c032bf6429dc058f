//! The shared context every command works in: the store, the config, the
//! HTTP clients, who is asking, and the clock.
//!
//! It sits at the bottom of the command layer: commands, services and the
//! server use it; it uses only what it holds.

use std::path::PathBuf;
use std::time::Instant;

use signet_proto::TokenInfo;

use signet_proto::{Failure, Secret};

pub use crate::access::Peer;
use crate::access::{self, Access};
use crate::audit::Audit;
use crate::config::Config;
use crate::entry::Entry;
use crate::http::Http;
use crate::proxies::Proxies;
use crate::store::Store;

/// Everything a command may use.
pub struct Agent {
    pub store: Store,
    pub config: Config,
    pub started: Instant,
    pub socket: PathBuf,
    pub http: Http,
    /// The local proxies it serves (`signet proxy`, `signet exec`).
    pub proxies: Proxies,
    pub access: Access,
    pub audit: Audit,
}

/// The agent's clock: Unix seconds, UTC.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The user name of `uid`, or the uid as text when it has none.
pub fn owner_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

impl Agent {
    /// What a client is told about `e`, now.
    pub fn info(&self, e: &Entry) -> TokenInfo {
        e.info(now(), owner_name(e.owner_uid))
    }

    /// Locks the agent: every use refused, every secret out of memory
    /// (the store's cache wiped and sealed, the HTTP clients dropped) until
    /// unlocked. `passphrase`: `signet lock`'s; `None`: the agent locks
    /// itself (idle, session locked, sleep).
    pub async fn lock(&self, passphrase: Option<Secret>) -> Result<(), Failure> {
        let hash = match passphrase {
            Some(p) => Some(
                tokio::task::spawn_blocking(move || access::hash_passphrase(&p)).await.map_err(
                    |_| Failure::other("internal error: hashing the passphrase failed"),
                )??,
            ),
            None => None,
        };
        self.access.set_locked(hash)?;
        self.store.seal();
        self.http.forget_all();
        Ok(())
    }

    /// Unlocks the agent if `passphrase` opens its lock (or, for an agent
    /// started without the vault's passphrase, the vault).
    pub async fn unlock(&self, passphrase: Option<Secret>) -> Result<(), Failure> {
        let open_vault = |p: Secret| async move { Ok(self.store.open_vault(p).await?) };
        self.access.unlock(passphrase, open_vault).await?;
        self.store.unseal();
        // Lifetimes that ended while the vault was closed.
        self.access.reap.notify_one();
        Ok(())
    }
}
