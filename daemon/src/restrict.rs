//! The restricted socket's rule: what a client of the second listener
//! (`--restricted-socket`) may ask for.
//!
//! That socket is the one handed on: forwarded over `ssh -R` to a remote
//! machine, or given to a CI job. Whoever holds it may use tokens, never
//! manage them, so it serves:
//! - `Sign` and `Perform`, for the allowed tokens only when an allow list
//!   is set;
//! - `List`, limited to the allowed tokens: a remote `signet list` is how a
//!   user finds which names to use, and the metadata (name, kind, base URL,
//!   expiry) holds no secret;
//! - nothing else: not add, rm, rename, login, the server-side lifecycle
//!   operations, status (the agent's paths and token count), show, the
//!   audit trail, nor any request added later unless listed here.
//!
//! A token that is not allowed is refused before it is looked up, so the
//! socket does not tell which other names exist.

use signet_proto::{ErrorCode, Failure, Request};

/// What the restricted socket allows.
#[derive(Debug, Clone, Default)]
pub struct Restriction {
    /// Only these tokens, when set; every token of the owner otherwise.
    pub allow: Option<Vec<String>>,
}

impl Restriction {
    /// Whether `name` may be used through this socket.
    pub fn allows(&self, name: &str) -> bool {
        self.allow.as_ref().is_none_or(|a| a.iter().any(|n| n == name))
    }

    /// `Ok` when `req` may be served here; the refusal otherwise. Frames
    /// that are protocol errors anywhere (`Hello`, stray body frames) pass
    /// on to be refused as such.
    pub fn check(&self, req: &Request, what: &str) -> Result<(), Failure> {
        match req {
            Request::Sign(s) => self.token(&s.name),
            Request::Perform(p) => self.token(&p.name),
            Request::List | Request::Hello { .. } | Request::BodyChunk(_) | Request::BodyEnd => {
                Ok(())
            }
            _ => Err(Failure::new(
                ErrorCode::Policy,
                format!(
                    "refused: this socket is restricted (it serves sign, request and list only), so `{what}` is not served here"
                ),
            )
            .with_hint(format!(
                "run `signet {what}` on the agent's own machine, against its main socket (the SIGNET_AUTH_SOCK that signet-agent printed)"
            ))),
        }
    }

    fn token(&self, name: &str) -> Result<(), Failure> {
        if self.allows(name) {
            return Ok(());
        }
        Err(Failure::new(
            ErrorCode::Policy,
            format!(
                "refused: this socket is restricted, and token `{}` is not allowed on it",
                name.escape_debug()
            ),
        )
        .with_hint(
            "use a token it allows (`signet list` through this socket shows them), or ask the agent's owner to add `--allow NAME` (or restricted_allow in config.toml)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signet_proto::SignRequest;

    fn sign(name: &str) -> Request {
        Request::Sign(SignRequest {
            name: name.into(),
            method: "GET".into(),
            url: "/".into(),
            form: vec![],
        })
    }

    #[test]
    fn only_use_and_list_pass_and_only_allowed_tokens() {
        let open = Restriction::default();
        assert!(open.check(&sign("a"), "sign").is_ok());
        let r = Restriction { allow: Some(vec!["a".into()]) };
        assert!(r.check(&sign("a"), "sign").is_ok());
        assert_eq!(r.check(&sign("b"), "sign").unwrap_err().code, ErrorCode::Policy);
        assert!(r.check(&Request::List, "list").is_ok());
        for req in [Request::Status, Request::Remove { name: "a".into() }] {
            let f = r.check(&req, "x").unwrap_err();
            assert_eq!(f.code, ErrorCode::Policy);
            assert!(f.message.contains("restricted"), "{}", f.message);
        }
    }
}
