//! signet's wire protocol and the vocabulary the agent and its clients share.
//!
//! Everything a message can carry is defined here and nowhere else: the
//! [`Request`] and [`Response`] enums, the framing ([`frame`]), the token
//! kinds and metadata ([`token`]), and the parsers that decide whether a
//! secret, a token name, a base URL or an expiry is well formed. Both binaries
//! use the same parsers, so the client can refuse bad input early and the agent
//! refuses it again without trusting the client.
//!
//! This crate does no I/O beyond reading and writing frames on a stream the
//! caller hands it.

pub mod codec;
pub mod expiry;
pub mod frame;
pub mod msg;
pub mod secret;
pub mod token;

pub use msg::{
    AccountInfo, AddToken, AuditQuery, Chunk, ErrorCode, Failure, ImportOutcome, LifecycleOp,
    LockKind, MAX_CHUNK, MaasLogin, MigrateOutcome, PerformRequest, ProxyInfo, ProxyStart, Request,
    Response, ResponseHead, ServerToken, Service, SignRequest, StatusInfo, agent_version_string,
};
pub use secret::Secret;
pub use token::{SignatureMethod, TlsOptions, TokenAccess, TokenInfo, TokenKind, TokenParams};

/// Bumped on any change to the encoding of an existing message. Appending a
/// new variant at the end of [`Request`] or [`Response`] does not need a bump:
/// an older peer answers it with an "unknown request" error instead of
/// misreading it.
pub const PROTOCOL_VERSION: u32 = 4;

/// The largest frame either side sends or accepts, length prefix excluded.
/// Bodies larger than this travel as a sequence of chunk frames.
pub const MAX_FRAME: usize = 1 << 20;
