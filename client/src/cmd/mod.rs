//! One file per command group; each owns its arguments and its output.

pub mod http;
pub mod lifecycle;
pub mod store;
pub mod tokens;
