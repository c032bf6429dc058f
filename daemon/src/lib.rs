//! signet-agent: keeps API tokens in the OS keyring and signs or performs
//! HTTP requests with them for local tools, over a Unix socket.
//!
//! A request flows one way: [`server`] (peer check, connection cap) ->
//! [`conn`] (frames, timeouts, body streams) -> [`cmd`] (one file per
//! request, one dispatch) -> [`policy`] and [`validate`] (the rules) ->
//! [`service`], [`sign`] and [`http`] (the work) -> [`store`] (index file +
//! keyring). [`agent`] and [`entry`] sit at the bottom, used by all; [`access`]
//! (lock, lifetimes, confirmation) gates every use, and [`timers`] and
//! [`logind`] lock the agent and reap tokens on their own. The
//! binary's `main.rs` parses flags, binds, detaches and runs this.

pub mod access;
pub mod agent;
pub mod audit;
pub mod blocking;
pub mod cmd;
pub mod config;
pub mod conn;
pub mod entry;
pub mod fdio;
pub mod gate;
pub mod harden;
pub mod http;
pub mod logind;
pub mod paths;
pub mod policy;
pub mod proxies;
pub mod proxy;
pub mod random;
pub mod restrict;
pub mod server;
pub mod service;
pub mod sign;
pub mod store;
pub mod systemd;
pub mod timers;
pub mod validate;
