//! The VMS API token service (`/api/apitokens/`): list, create, rename and
//! revoke, through a stored `api-token` token.

use serde_json::Value;
use signet_proto::secret::parse_api_token;
use signet_proto::{Failure, Secret, ServerToken, TokenKind, TokenParams};
use zeroize::Zeroize;

use super::{
    Held, MintRequest, Minted, TokenApi, Verbs, api_failure, expect_success, json, str_field,
};
use crate::agent::Agent;
use crate::http::ApiBody;

/// The VMS token service.
pub struct Vms;

impl TokenApi for Vms {
    const KIND: TokenKind = TokenKind::ApiToken;
    const VERBS: Verbs =
        Verbs { verb: "revoke", verbing: "revoking", done: "revoked", command: "vms revoke-token" };
    const SERVER_EXPIRY: bool = true;
    const DEFAULT_TOKEN_NAME: Option<&'static str> = None;

    fn check_mint(&self, req: &MintRequest) -> Result<(), Failure> {
        if let Some(o) = &req.owner
            && (o.is_empty() || o.len() > 256 || o.chars().any(char::is_control))
        {
            return Err(Failure::usage("invalid --owner: a user name on one line"));
        }
        Ok(())
    }

    fn own_id(&self, h: &Held) -> Option<String> {
        parse_api_token(&h.secret).ok().map(str::to_string)
    }

    fn check_id<'a>(&self, id: &'a str) -> Result<&'a str, Failure> {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Failure::usage(format!("invalid VMS token id `{}`", id.escape_debug())));
        }
        Ok(id)
    }

    async fn mint(&self, agent: &Agent, h: &Held, req: MintRequest) -> Result<Minted, Failure> {
        let mut body = serde_json::Map::new();
        if let Some(n) = req.token_name {
            body.insert("name".into(), Value::String(n));
        }
        if let Some(x) = req.expires {
            body.insert("expiry_date".into(), Value::String(x));
        }
        if let Some(o) = req.owner {
            body.insert("owner".into(), Value::String(o));
        }
        let (status, resp) = h
            .call(
                agent,
                reqwest::Method::POST,
                "/api/apitokens/",
                ApiBody::Json(Value::Object(body)),
            )
            .await?;
        if !(200..300).contains(&status) {
            return Err(api_failure("create token", status, &resp));
        }
        let mut v = json(&resp, "create token")?;
        let secret = match v.get_mut("token") {
            Some(Value::String(t)) => {
                let s = Secret::from_str_value(t);
                t.zeroize();
                s
            }
            _ => return Err(Failure::other("create token: no token in the server's answer")),
        };
        let remote_id = parse_api_token(&secret)
            .map_err(|e| Failure::other(format!("create token: {e}")))?
            .to_string();
        let params = TokenParams {
            tenant: h.entry.params.tenant.clone(),
            tls: h.entry.params.tls.clone(),
            ..TokenParams::default()
        };
        Ok(Minted { secret, remote_id, params })
    }

    async fn verify(&self, agent: &Agent, fresh: &Held, remote_id: &str) -> Result<(), Failure> {
        let (status, body) = fresh
            .call(
                agent,
                reqwest::Method::GET,
                &format!("/api/apitokens/{remote_id}/"),
                ApiBody::None,
            )
            .await?;
        if status != 200 {
            return Err(api_failure("verify the new token", status, &body));
        }
        Ok(())
    }

    /// The API tokens the server lists, never their secrets.
    async fn list(&self, agent: &Agent, h: &Held) -> Result<Vec<ServerToken>, Failure> {
        let (status, body) =
            h.call(agent, reqwest::Method::GET, "/api/apitokens/", ApiBody::None).await?;
        if status != 200 {
            return Err(api_failure("list tokens", status, &body));
        }
        let v = json(&body, "list tokens")?;
        let items = v.get("results").and_then(Value::as_array).or_else(|| v.as_array());
        let mine = self.own_id(h);
        Ok(items
            .into_iter()
            .flatten()
            .filter_map(|t| {
                let id = str_field(t, "id")?;
                Some(ServerToken {
                    current: mine.as_deref() == Some(id.as_str()),
                    id,
                    name: str_field(t, "name"),
                    owner: str_field(t, "owner"),
                    created: str_field(t, "created"),
                    expiry: str_field(t, "expiry_date"),
                    last_used: str_field(t, "last_used"),
                    revoked: t.get("revoked").and_then(Value::as_bool),
                })
            })
            .collect())
    }

    async fn rename(&self, agent: &Agent, h: &Held, id: &str, new: &str) -> Result<(), Failure> {
        let (status, body) = h
            .call(
                agent,
                reqwest::Method::PATCH,
                &format!("/api/apitokens/{id}/"),
                ApiBody::Json(serde_json::json!({ "name": new })),
            )
            .await?;
        expect_success("rename token", status, &body)
    }

    async fn revoke(&self, agent: &Agent, h: &Held, id: &str) -> Result<(), Failure> {
        let (status, body) = h
            .call(
                agent,
                reqwest::Method::PATCH,
                &format!("/api/apitokens/{id}/revoke"),
                ApiBody::None,
            )
            .await?;
        expect_success("revoke token", status, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_alphanumeric_and_bounded() {
        assert_eq!(Vms.check_id("Ab12Cd34").unwrap(), "Ab12Cd34");
        for bad in ["", "a/b", "../x", "a b", &"a".repeat(65)] {
            assert_eq!(Vms.check_id(bad).unwrap_err().code.exit_code(), 2, "{bad}");
        }
    }
}
