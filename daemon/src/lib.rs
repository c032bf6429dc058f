//! signet-agent: keeps API tokens in the OS keyring and signs or performs
//! HTTP requests with them for local tools, over a Unix socket.
//!
//! A request flows one way: [`server`] (peer check, frames, limits) ->
//! [`handler`] (one function per request) -> [`policy`] (scope, expiry,
//! export, limits) -> [`store`] (index file + keyring). The binary's
//! `main.rs` parses flags, binds, detaches and runs this.

pub mod config;
pub mod handler;
pub mod harden;
pub mod http;
pub mod lifecycle;
pub mod maas_import;
pub mod paths;
pub mod policy;
pub mod server;
pub mod sign;
pub mod store;
