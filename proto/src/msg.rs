//! The messages: one [`Request`] variant per operation, and its answers.
//!
//! A connection starts with `Hello` both ways, carrying [`PROTOCOL_VERSION`];
//! the agent answers a mismatch with a [`Failure`] of code
//! [`ErrorCode::Protocol`] and closes. After that the client sends one request
//! and reads its answer, as many times as it likes.
//!
//! New variants go at the end of each enum: bincode encodes the variant
//! index, so appending keeps every existing message's encoding.
//!
//! [`PROTOCOL_VERSION`]: crate::PROTOCOL_VERSION

use serde::{Deserialize, Serialize};

use crate::expiry::Expiry;
use crate::secret::Secret;
use crate::token::{TokenInfo, TokenKind, TokenParams};

/// `signet add`: everything about a new token, its secret included.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddToken {
    pub name: String,
    pub kind: TokenKind,
    pub url: String,
    pub expires: Option<Expiry>,
    pub exportable: bool,
    pub comment: Option<String>,
    pub params: TokenParams,
    pub secret: Secret,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// First message on every connection.
    Hello {
        version: u32,
        software: String,
    },
    Add(Box<AddToken>),
    /// Every token of the caller, sorted by name. Never touches the keyring.
    List,
    Show {
        name: String,
    },
    Remove {
        name: String,
    },
    /// Changes the name only: the keyring entry is keyed by an immutable id.
    Rename {
        old: String,
        new: String,
    },
    Status,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    Hello { version: u32, software: String },
    Ok,
    Failure(Failure),
    Token(TokenInfo),
    Tokens(Vec<TokenInfo>),
    Status(StatusInfo),
}

/// What `signet status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    pub pid: u32,
    pub version: String,
    pub protocol: u32,
    /// `secret-service` or `keyutils`.
    pub store: String,
    /// Tokens the caller owns.
    pub tokens: u32,
    pub uptime_secs: u64,
    pub socket: String,
    pub data_dir: String,
    pub max_tokens_per_owner: Option<u32>,
}

/// The class of a failure; each maps to one exit code of SPEC §4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    Other,
    /// Malformed input: bad name, URL, duration, secret shape.
    Usage,
    /// Protocol version mismatch or a message the agent cannot read.
    Protocol,
    NoSuchToken,
    /// Refused by policy: expired, out of scope, not exportable, limit,
    /// permission.
    Policy,
    /// The keyring or the index could not be read or written.
    Store,
    /// The upstream server could not be reached.
    Upstream,
    /// A token with that name already exists.
    Exists,
}

impl ErrorCode {
    /// The process exit code for this failure (SPEC §4).
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorCode::Other | ErrorCode::Exists => 1,
            ErrorCode::Usage => 2,
            ErrorCode::Protocol => 3,
            ErrorCode::NoSuchToken => 4,
            ErrorCode::Policy => 5,
            ErrorCode::Store => 6,
            ErrorCode::Upstream => 7,
        }
    }
}

/// A refused or failed request: what went wrong and, where it helps, what
/// to do about it. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Failure { code, message: message.into(), hint: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// `signet-agent/<version>` or `signet/<version>`, sent in `Hello`.
pub fn agent_version_string(program: &str) -> String {
    format!("{program}/{}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[test]
    fn add_request_debug_hides_the_secret() {
        let add = AddToken {
            name: "m1".into(),
            kind: TokenKind::Maas,
            url: "http://h/MAAS/".into(),
            expires: None,
            exportable: false,
            comment: None,
            params: TokenParams::default(),
            secret: Secret::from_str_value("ck:tk:VerySecret"),
        };
        let dbg = format!("{:?}", Request::Add(Box::new(add.clone())));
        assert!(!dbg.contains("VerySecret"), "{dbg}");
        let back: Request =
            codec::decode(&codec::encode(&Request::Add(Box::new(add))).unwrap()).unwrap();
        let Request::Add(back) = back else { panic!("wrong variant") };
        assert_eq!(back.secret.expose(), b"ck:tk:VerySecret");
    }

    #[test]
    fn the_hello_encoding_is_stable() {
        // Variant 0, version 1, "x": a peer of any later version must still
        // be able to read this and answer with a clear mismatch.
        let bytes = codec::encode(&Request::Hello { version: 1, software: "x".into() }).unwrap();
        assert_eq!(bytes, [0, 1, 1, b'x']);
        let bytes = codec::encode(&Response::Hello { version: 1, software: "x".into() }).unwrap();
        assert_eq!(bytes, [0, 1, 1, b'x']);
    }

    #[test]
    fn exit_codes_match_the_spec() {
        use ErrorCode::*;
        let got: Vec<i32> = [Other, Usage, Protocol, NoSuchToken, Policy, Store, Upstream, Exists]
            .iter()
            .map(|c| c.exit_code())
            .collect();
        assert_eq!(got, [1, 2, 3, 4, 5, 6, 7, 1]);
    }
}
