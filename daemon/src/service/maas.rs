//! The MAAS token API (`/MAAS/api/2.0/account/`), and logging in: with an
//! API key checked by `whoami`, or with a user name and password that the
//! server exchanges for a key at `/MAAS/accounts/authenticate/`.

use serde_json::Value;
use signet_proto::secret::parse_maas;
use signet_proto::{
    AccountInfo, ErrorCode, Failure, MaasLogin, Response, Secret, ServerToken, SignatureMethod,
    TokenKind, TokenParams,
};
use zeroize::{Zeroize, Zeroizing};

use super::{
    Held, MintRequest, Minted, TokenApi, Verbs, api_failure, expect_success, json, str_field,
};
use crate::agent::{Agent, Peer, now};
use crate::entry::Entry;
use crate::http::ApiBody;
use crate::validate;

/// The MAAS token service.
pub struct Maas;

/// MAAS's default name for a new token, as the server gives it.
pub const DEFAULT_TOKEN_NAME: &str = "MAAS consumer";

/// A MAAS URL as users give it becomes the API root, as python-libmaas's
/// `api_url` does: `api/2.0/` is appended unless the path already ends in
/// `/api/<version>/`.
pub fn api_url(raw: &str) -> Result<url::Url, Failure> {
    let mut u =
        signet_proto::token::normalize_base_url(raw).map_err(|e| Failure::usage(e.to_string()))?;
    let path = u.path().to_string();
    let segs: Vec<&str> = path.trim_end_matches('/').rsplit('/').take(2).collect();
    let versioned = segs.len() == 2
        && segs[1] == "api"
        && !segs[0].is_empty()
        && segs[0].bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if !versioned {
        u.set_path(&format!("{path}api/2.0/"));
    }
    Ok(u)
}

/// `http://h/MAAS/api/2.0/` -> `http://h/MAAS/`: where `accounts/` lives.
fn root(api: &url::Url) -> url::Url {
    let mut u = api.clone();
    let p = u.path().trim_end_matches('/');
    let root = p.rsplitn(3, '/').nth(2).unwrap_or("");
    u.set_path(&format!("{root}/"));
    u
}

/// A minted key's settings: its consumer and token keys (which name it),
/// the signature method and TLS settings of the token that minted it.
fn params_for(key: &Secret, base: &TokenParams) -> Result<TokenParams, Failure> {
    let k = parse_maas(key).map_err(|e| Failure::other(format!("the server's key: {e}")))?;
    Ok(TokenParams {
        consumer_key: Some(k.consumer_key.to_string()),
        token_key: Some(k.token_key.to_string()),
        signature: base.signature.or(Some(SignatureMethod::Plaintext)),
        tls: base.tls.clone(),
        ..TokenParams::default()
    })
}

/// The account `h` authenticates as.
pub async fn whoami(agent: &Agent, h: &Held) -> Result<AccountInfo, Failure> {
    let (status, body) =
        h.call(agent, reqwest::Method::GET, "users/?op=whoami", ApiBody::None).await?;
    if status != 200 {
        return Err(api_failure("who am I", status, &body));
    }
    let v = json(&body, "who am I")?;
    Ok(AccountInfo {
        username: str_field(&v, "username")
            .ok_or_else(|| Failure::other("who am I: no username in the answer"))?,
        email: str_field(&v, "email"),
        is_superuser: v.get("is_superuser").and_then(Value::as_bool),
        is_local: v.get("is_local").and_then(Value::as_bool),
    })
}

/// `signet maas login`: verify a key (or obtain one with a password) and
/// store it. Nothing is stored unless the server accepted it.
pub async fn login(agent: &Agent, peer: Peer, l: MaasLogin) -> Result<Response, Failure> {
    validate::name(&l.name)?;
    let api = api_url(&l.url)?;
    let params = TokenParams { tls: l.tls.clone(), ..TokenParams::default() };
    crate::http::check_tls(&l.tls)?;
    let client = agent.http.uncached(&l.tls)?;
    let key = match &l.username {
        None => {
            signet_proto::secret::validate(TokenKind::Maas, &l.secret)
                .map_err(|e| Failure::usage(e.to_string()))?;
            l.secret.clone()
        }
        Some(user) => obtain_key(&client, &api, user, &l.secret).await?,
    };
    // The same checks as `signet add`, which also fill in the key's parts.
    let (url, params) =
        validate::new_token(TokenKind::Maas, api.as_str(), &key, &params, l.comment.as_deref())?;
    let created = now();
    let mut e = Entry::draft(&l.name, TokenKind::Maas, url, peer.uid, created, params);
    e.comment = l.comment.clone();
    crate::access::apply_settings(&mut e, &l.access, &agent.config, created)?;
    if l.verify || l.username.is_some() {
        let probe = Held { entry: e.clone(), secret: std::sync::Arc::new(key.clone()), client };
        whoami(agent, &probe).await?;
    }
    let added = agent.store.add(e, key, agent.config.max_tokens_per_owner).await?;
    if added.removes_at.is_some() {
        agent.access.reap.notify_one();
    }
    tracing::info!(token = %added.name, "MAAS login stored");
    Ok(Response::Token(agent.info(&added)))
}

/// python-libmaas `login`: POST the user name and password to
/// `accounts/authenticate/`; the answer is the key. The password is sent
/// only there, over the URL the user gave.
async fn obtain_key(
    client: &reqwest::Client,
    api: &url::Url,
    user: &str,
    password: &Secret,
) -> Result<Secret, Failure> {
    let url = root(api)
        .join("accounts/authenticate/")
        .map_err(|e| Failure::other(format!("cannot build the login URL: {e}")))?;
    let pw =
        password.expose_str().ok_or_else(|| Failure::usage("the password is not valid UTF-8"))?;
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    let form = [("username", user), ("password", pw), ("consumer", &format!("{user}@{host}"))];
    let resp = client
        .post(url.clone())
        .form(&form)
        .timeout(std::time::Duration::from_secs(60))
        .send()
        .await
        .map_err(|e| crate::http::describe(&e, &url))?;
    let status = resp.status().as_u16();
    let body = Zeroizing::new(
        resp.bytes()
            .await
            .map_err(|e| {
                Failure::new(ErrorCode::Upstream, format!("cannot read the login answer: {e}"))
            })?
            .to_vec(),
    );
    if status == 403 {
        return Err(Failure::policy("log in: the server refused the user name or password (403)"));
    }
    if status != 200 {
        return Err(api_failure("log in", status, &body));
    }
    key_from_answer(&body, "log in")
}

/// A MAAS key from a server answer that carries one (`consumer_key`,
/// `token_key`, `token_secret`), with every parsed copy of the secret wiped.
fn key_from_answer(body: &[u8], what: &str) -> Result<Secret, Failure> {
    let mut v = json(body, what)?;
    let part = |k: &str| str_field(&v, k).filter(|s| !s.is_empty()).map(Zeroizing::new);
    let key = match (part("consumer_key"), part("token_key"), part("token_secret")) {
        (Some(ck), Some(tk), Some(ts)) => {
            // Sized up front: the joined key never reallocates, so no
            // unwiped copy of it is left behind.
            let mut joined =
                Zeroizing::new(String::with_capacity(ck.len() + tk.len() + ts.len() + 2));
            joined.push_str(&ck);
            joined.push(':');
            joined.push_str(&tk);
            joined.push(':');
            joined.push_str(&ts);
            Some(Secret::from_str_value(&joined))
        }
        _ => None,
    };
    wipe_field(&mut v, "token_secret");
    key.ok_or_else(|| Failure::other(format!("{what}: the server's answer has no complete key")))
}

fn wipe_field(v: &mut Value, k: &str) {
    if let Some(Value::String(s)) = v.get_mut(k) {
        s.zeroize();
    }
}

impl TokenApi for Maas {
    const KIND: TokenKind = TokenKind::Maas;
    const VERBS: Verbs = Verbs {
        verb: "delete",
        verbing: "deleting",
        done: "deleted",
        command: "maas delete-token",
    };
    const SERVER_EXPIRY: bool = false;
    const DEFAULT_TOKEN_NAME: Option<&'static str> = Some(DEFAULT_TOKEN_NAME);

    fn check_mint(&self, req: &MintRequest) -> Result<(), Failure> {
        if req.expires.is_some() || req.owner.is_some() {
            return Err(Failure::usage(
                "MAAS tokens have no server-side expiry or owner: --expires and --owner apply to VMS tokens only",
            ));
        }
        Ok(())
    }

    fn own_id(&self, h: &Held) -> Option<String> {
        h.entry.params.token_key.clone()
    }

    fn check_id<'a>(&self, id: &'a str) -> Result<&'a str, Failure> {
        // A token key, or a whole `consumer:token:secret` for rename (as
        // `maas account update-token-name` takes it): one line, bounded.
        if id.is_empty() || id.len() > 512 || id.chars().any(char::is_control) {
            return Err(Failure::usage("invalid MAAS token: expected a token key"));
        }
        Ok(id)
    }

    async fn mint(&self, agent: &Agent, h: &Held, req: MintRequest) -> Result<Minted, Failure> {
        let form: Vec<(String, String)> =
            req.token_name.into_iter().map(|n| ("name".to_string(), n)).collect();
        let (status, body) = h
            .call(
                agent,
                reqwest::Method::POST,
                "account/?op=create_authorisation_token",
                ApiBody::Form(form),
            )
            .await?;
        if status != 200 {
            return Err(api_failure("create token", status, &body));
        }
        let secret = key_from_answer(&body, "create token")?;
        let params = params_for(&secret, &h.entry.params)?;
        let remote_id = params.token_key.clone().unwrap_or_default();
        Ok(Minted { secret, remote_id, params })
    }

    async fn verify(&self, agent: &Agent, fresh: &Held, _remote_id: &str) -> Result<(), Failure> {
        whoami(agent, fresh).await.map(drop)
    }

    /// The account's tokens: name and key only, whatever else the server sent.
    async fn list(&self, agent: &Agent, h: &Held) -> Result<Vec<ServerToken>, Failure> {
        let (status, body) = h
            .call(
                agent,
                reqwest::Method::GET,
                "account/?op=list_authorisation_tokens",
                ApiBody::None,
            )
            .await?;
        if status != 200 {
            return Err(api_failure("list tokens", status, &body));
        }
        let mut v = json(&body, "list tokens")?;
        let mine = self.own_id(h);
        let mut out = Vec::new();
        if let Some(items) = v.as_array_mut() {
            for item in items.iter_mut() {
                let key = item
                    .get("token")
                    .and_then(Value::as_str)
                    .and_then(|t| t.split(':').nth(1))
                    .map(str::to_string);
                wipe_field(item, "token");
                let Some(key) = key else { continue };
                out.push(ServerToken {
                    current: mine.as_deref() == Some(key.as_str()),
                    id: key,
                    name: str_field(item, "name"),
                    owner: None,
                    created: None,
                    expiry: None,
                    last_used: None,
                    revoked: None,
                });
            }
        }
        Ok(out)
    }

    async fn rename(&self, agent: &Agent, h: &Held, id: &str, new: &str) -> Result<(), Failure> {
        let form = vec![("token".into(), id.to_string()), ("name".into(), new.to_string())];
        let (status, body) = h
            .call(
                agent,
                reqwest::Method::POST,
                "account/?op=update_token_name",
                ApiBody::Form(form),
            )
            .await?;
        expect_success("rename token", status, &body)
    }

    async fn revoke(&self, agent: &Agent, h: &Held, id: &str) -> Result<(), Failure> {
        let form = vec![("token_key".to_string(), id.to_string())];
        let (status, body) = h
            .call(
                agent,
                reqwest::Method::POST,
                "account/?op=delete_authorisation_token",
                ApiBody::Form(form),
            )
            .await?;
        expect_success("delete token", status, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_url_as_python_libmaas() {
        let cases = [
            ("http://h:5240/MAAS/", "http://h:5240/MAAS/api/2.0/"),
            ("http://h:5240/MAAS", "http://h:5240/MAAS/api/2.0/"),
            ("http://h:5240/MAAS/api/2.0/", "http://h:5240/MAAS/api/2.0/"),
            ("http://h:5240/MAAS/api/2.0", "http://h:5240/MAAS/api/2.0/"),
            ("http://h/api/1.0/", "http://h/api/1.0/"),
            ("http://h/", "http://h/api/2.0/"),
        ];
        for (raw, want) in cases {
            assert_eq!(api_url(raw).unwrap().as_str(), want, "{raw}");
        }
        assert_eq!(root(&api_url("http://h:5240/MAAS/").unwrap()).as_str(), "http://h:5240/MAAS/");
        assert_eq!(root(&api_url("http://h/").unwrap()).as_str(), "http://h/");
    }

    #[test]
    fn keys_come_from_complete_answers_only() {
        let k = key_from_answer(
            br#"{"consumer_key":"ck","token_key":"tk","token_secret":"ts"}"#,
            "create token",
        )
        .unwrap();
        assert_eq!(k.expose(), b"ck:tk:ts");
        for bad in [&br#"{"consumer_key":"ck","token_key":"tk"}"#[..], b"{}", b"not json"] {
            let f = key_from_answer(bad, "create token").unwrap_err();
            assert!(f.message.starts_with("create token"), "{}", f.message);
        }
    }

    #[test]
    fn maas_cannot_mint_with_vms_only_settings() {
        let f = Maas
            .check_mint(&MintRequest { expires: Some("1D".into()), ..Default::default() })
            .unwrap_err();
        assert_eq!(f.code.exit_code(), 2);
        assert!(
            Maas.check_mint(&MintRequest { owner: Some("u".into()), ..Default::default() })
                .is_err()
        );
        assert!(
            Maas.check_mint(&MintRequest { token_name: Some("n".into()), ..Default::default() })
                .is_ok()
        );
    }
}
