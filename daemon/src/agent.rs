//! The shared context every command works in: the store, the config, the
//! HTTP clients, who is asking, and the clock.
//!
//! It sits at the bottom of the command layer: commands, services and the
//! server use it; it uses only what it holds.

use std::path::PathBuf;
use std::time::Instant;

use signet_proto::TokenInfo;

use crate::audit::Audit;
use crate::config::Config;
use crate::entry::Entry;
use crate::http::Http;
use crate::store::Store;

/// Everything a command may use.
pub struct Agent {
    pub store: Store,
    pub config: Config,
    pub started: Instant,
    pub socket: PathBuf,
    pub http: Http,
    pub audit: Audit,
}

/// Who is asking: from SO_PEERCRED on the connection.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub uid: u32,
    pub pid: i32,
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
}
