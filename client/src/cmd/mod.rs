//! One file per command group; each owns its arguments and its output.

pub mod access;
pub mod audit;
pub mod http;
pub mod lifecycle;
pub mod proxy;
pub mod store;
pub mod tokens;
