//! A VAST VMS test server: `Authorization: Api-Token <id>.<secret>` on every call (and
//! `X-Tenant-Name` when the test requires one), and the API-token API of the VMS
//! OpenAPI schema, over in-memory tokens:
//!
//! - POST `/api/apitokens/` JSON {name?, expiry_date?, owner?} → 201 {id, token};
//!   at most `max_tokens_per_owner` (5) live tokens per owner, else 400
//!   {"detail": …}; another owner than the caller needs the caller to have the
//!   permission (`set_can_create_for_others`), else 403;
//! - GET `/api/apitokens/` (the caller's tokens; all with the permission) and
//!   `/api/apitokens/<id>/` → {id, name, owner, created, expiry_date, last_used,
//!   revoked, revocation_time};
//! - PATCH `/api/apitokens/<id>/` {name?, expiry_date?} → 200 (the updated token);
//! - PATCH `/api/apitokens/<id>/revoke` → 200; a revoked token is refused (401);
//! - GET `/api/clusters/` → 200 JSON list;
//! - each of these also under a version segment, `/api/latest/…` or
//!   `/api/v<N>/…`, as vastpy calls them;
//! - `/api/echo…`, `/api/big/<n>`, `/api/redirect?to=`: see `server.rs`.
//!
//! Refusals are DRF-style JSON `{"detail": …}`: 401 for bad auth (unknown, wrong
//! secret, revoked, expired, wrong or missing tenant), 403 permission, 404 unknown id,
//! 400 bad input. `expiry_date`: a whole number and a unit (Y M w d h m s,
//! the units `signet add --expires` takes) or an RFC 3339 UTC time (`…Z` /
//! `…+00:00`).
//!
//! `fail_next` operation names: create, list, show, update, revoke, clusters, echo,
//! big, redirect.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::upstream::maas::random_alnum;
use crate::upstream::oauth::unix_now;
use crate::upstream::server::{Handler, HttpServer, Reply, Req, generic_endpoint};
use crate::upstream::{Failures, server_common};

/// One API token as the server holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct VmsToken {
    /// 8 letters and digits; the part before the dot.
    pub id: String,
    pub secret: String,
    pub name: String,
    pub owner: String,
    /// Unix seconds.
    pub created: u64,
    pub expires: Option<u64>,
    pub last_used: Option<u64>,
    pub revoked: bool,
    pub revocation_time: Option<u64>,
}

impl VmsToken {
    /// `<id>.<secret>`, what `Authorization: Api-Token` carries.
    pub fn token(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    fn live(&self, now: u64) -> bool {
        !self.revoked && self.expires.is_none_or(|e| e > now)
    }

    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "created": rfc3339(self.created),
            "expiry_date": self.expires.map(rfc3339),
            "last_used": self.last_used.map(rfc3339),
            "revoked": self.revoked,
            "revocation_time": self.revocation_time.map(rfc3339),
        })
    }
}

impl std::fmt::Debug for VmsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmsToken")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("owner", &self.owner)
            .field("expires", &self.expires)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

pub struct VmsServer {
    http: HttpServer,
    state: Arc<VmsState>,
}

struct VmsState {
    inner: Mutex<Inner>,
    failures: Failures,
}

struct Inner {
    tokens: Vec<VmsToken>,
    can_create_for_others: HashMap<String, bool>,
    tenant: Option<String>,
    max_per_owner: usize,
}

server_common!(VmsServer);

impl VmsServer {
    pub fn start() -> VmsServer {
        Self::start_inner(false)
    }

    pub fn start_tls() -> VmsServer {
        Self::start_inner(true)
    }

    fn start_inner(tls: bool) -> VmsServer {
        let state = Arc::new(VmsState {
            inner: Mutex::new(Inner {
                tokens: Vec::new(),
                can_create_for_others: HashMap::new(),
                tenant: None,
                max_per_owner: 5,
            }),
            failures: Failures::default(),
        });
        let http = HttpServer::start(state.clone(), tls);
        VmsServer { http, state }
    }

    /// `origin()` + "/" (the API lives under `/api/`).
    pub fn url(&self) -> String {
        format!("{}/", self.origin())
    }

    /// Creates a token for `owner` directly (test set-up: no limit check) and returns
    /// it; `token.token()` is the `<id>.<secret>` to give signet.
    pub fn issue_token(&self, owner: &str, name: &str) -> VmsToken {
        let token = new_token(owner, name, None);
        if let Ok(mut inner) = self.state.inner.lock() {
            inner.tokens.push(token.clone());
        }
        token
    }

    pub fn tokens(&self) -> Vec<VmsToken> {
        self.state.inner.lock().map(|i| i.tokens.clone()).unwrap_or_default()
    }

    pub fn token(&self, id: &str) -> Option<VmsToken> {
        self.tokens().into_iter().find(|t| t.id == id)
    }

    /// Revokes as `PATCH …/revoke` would; false for an unknown id.
    pub fn revoke(&self, id: &str) -> bool {
        self.with_token(id, |t| {
            t.revoked = true;
            t.revocation_time = Some(unix_now());
        })
    }

    /// Makes a token expire at `unix_secs` (the past, to test expiry).
    pub fn set_expiry(&self, id: &str, unix_secs: Option<u64>) -> bool {
        self.with_token(id, |t| t.expires = unix_secs)
    }

    /// Whether `owner` may create tokens for other owners (the Security realm's
    /// Create permission). Default: no.
    pub fn set_can_create_for_others(&self, owner: &str, allowed: bool) {
        if let Ok(mut inner) = self.state.inner.lock() {
            inner.can_create_for_others.insert(owner.into(), allowed);
        }
    }

    /// Require `X-Tenant-Name: <tenant>` on every request (None: no tenant check).
    pub fn require_tenant(&self, tenant: Option<&str>) {
        if let Ok(mut inner) = self.state.inner.lock() {
            inner.tenant = tenant.map(str::to_string);
        }
    }

    /// Live (neither revoked nor expired) tokens an owner may hold. Default 5.
    pub fn set_max_tokens_per_owner(&self, max: usize) {
        if let Ok(mut inner) = self.state.inner.lock() {
            inner.max_per_owner = max;
        }
    }

    fn with_token(&self, id: &str, f: impl FnOnce(&mut VmsToken)) -> bool {
        let Ok(mut inner) = self.state.inner.lock() else { return false };
        match inner.tokens.iter_mut().find(|t| t.id == id) {
            Some(t) => {
                f(t);
                true
            }
            None => false,
        }
    }
}

fn new_token(owner: &str, name: &str, expires: Option<u64>) -> VmsToken {
    VmsToken {
        id: random_alnum(8),
        secret: random_alnum(40),
        name: name.to_string(),
        owner: owner.to_string(),
        created: unix_now(),
        expires,
        last_used: None,
        revoked: false,
        revocation_time: None,
    }
}

fn detail(status: u16, text: &str) -> Reply {
    Reply::json(status, &json!({ "detail": text }), text)
}

fn unauthorized(text: &str) -> Reply {
    detail(401, text).with_header("www-authenticate", "Api-Token")
}

enum Route {
    Create,
    List,
    Show(String),
    Update(String),
    Revoke(String),
    Clusters,
    Generic(String),
}

impl Handler for VmsState {
    async fn handle(&self, req: &mut Req) -> Reply {
        let caller = match self.authenticate(req) {
            Ok(owner) => owner,
            Err(reply) => return reply,
        };
        let path = req.path.clone();
        let Some(rest) = path.strip_prefix("/api/") else {
            return detail(404, "Not found.");
        };
        // A version segment, as vastpy sends (`/api/latest/…`, `/api/v5/…`).
        let rest = match rest.split_once('/') {
            Some((v, after))
                if v == "latest"
                    || (v.len() > 1
                        && v.starts_with('v')
                        && v[1..].bytes().all(|b| b.is_ascii_digit())) =>
            {
                after
            }
            _ => rest,
        };
        let method = req.method.as_str().to_string();
        let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        let route = match (method.as_str(), segments.as_slice()) {
            ("POST", ["apitokens"]) => Route::Create,
            ("GET", ["apitokens"]) => Route::List,
            ("GET", ["apitokens", id]) => Route::Show(id.to_string()),
            ("PATCH", ["apitokens", id]) => Route::Update(id.to_string()),
            ("PATCH", ["apitokens", id, "revoke"]) => Route::Revoke(id.to_string()),
            ("GET", ["clusters"]) => Route::Clusters,
            (_, ["apitokens", ..]) | (_, ["clusters"]) => {
                return detail(405, &format!("Method \"{method}\" not allowed."));
            }
            _ if rest.starts_with("echo")
                || rest.starts_with("big/")
                || rest.starts_with("redirect") =>
            {
                Route::Generic(rest.to_string())
            }
            _ => return detail(404, "Not found."),
        };
        let op = match &route {
            Route::Create => "create",
            Route::List => "list",
            Route::Show(_) => "show",
            Route::Update(_) => "update",
            Route::Revoke(_) => "revoke",
            Route::Clusters => "clusters",
            Route::Generic(r) if r.starts_with("big/") => "big",
            Route::Generic(r) if r.starts_with("redirect") => "redirect",
            Route::Generic(_) => "echo",
        };
        if let Some(reply) = self.failures.take(op) {
            return reply;
        }
        match route {
            Route::Create => self.create(req, &caller).await,
            Route::List => self.list(&caller),
            Route::Show(id) => self.show(&caller, &id),
            Route::Update(id) => self.update(req, &caller, &id).await,
            Route::Revoke(id) => self.revoke(&caller, &id),
            Route::Clusters => Reply::json(
                200,
                &json!([{"id": 1, "name": "vast-test", "guid": "00000000-0000-4000-8000-000000000001",
                         "state": "ONLINE", "sw_version": "5.2.0"}]),
                "ok",
            ),
            Route::Generic(rest) => match generic_endpoint(req, &rest).await {
                Some(reply) => reply,
                None => detail(404, "Not found."),
            },
        }
    }
}

impl VmsState {
    /// The caller's owner name, or the 401 a real VMS gives.
    fn authenticate(&self, req: &Req) -> Result<String, Reply> {
        let Some(header) = req.header("authorization") else {
            return Err(unauthorized("Authentication credentials were not provided."));
        };
        let mut words = header.split_whitespace();
        let (Some(scheme), Some(token), None) = (words.next(), words.next(), words.next()) else {
            return Err(unauthorized("Invalid token header."));
        };
        if !scheme.eq_ignore_ascii_case("Api-Token") {
            return Err(unauthorized("Authentication credentials were not provided."));
        }
        let Some((id, secret)) = token.split_once('.') else {
            return Err(unauthorized("Invalid token."));
        };
        let now = unix_now();
        let mut inner = self.inner.lock().map_err(|_| detail(500, "state poisoned"))?;
        if let Some(tenant) = inner.tenant.clone() {
            match req.header("x-tenant-name") {
                Some(t) if t == tenant => {}
                Some(_) => return Err(unauthorized("Invalid tenant.")),
                None => return Err(unauthorized("X-Tenant-Name is required.")),
            }
        }
        let Some(t) = inner.tokens.iter_mut().find(|t| t.id == id) else {
            return Err(unauthorized("Invalid token."));
        };
        if !constant_time_eq(t.secret.as_bytes(), secret.as_bytes()) {
            return Err(unauthorized("Invalid token."));
        }
        if t.revoked {
            return Err(unauthorized("Token has been revoked."));
        }
        if t.expires.is_some_and(|e| e <= now) {
            return Err(unauthorized("Token has expired."));
        }
        t.last_used = Some(now);
        Ok(t.owner.clone())
    }

    async fn create(&self, req: &mut Req, caller: &str) -> Reply {
        let body = match req.json_body().await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let Some(obj) = body.as_object() else {
            return detail(400, "Expected a JSON object.");
        };
        let owner = match obj.get("owner") {
            None | Some(Value::Null) => caller.to_string(),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return detail(400, "owner must be a user name."),
        };
        let name = match obj.get("name") {
            None | Some(Value::Null) => format!("{owner}_api_token"),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return detail(400, "name must be a non-empty string."),
        };
        let now = unix_now();
        let expires = match obj.get("expiry_date") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match parse_expiry(s, now) {
                Some(t) => Some(t),
                None => return detail(400, &format!("Invalid expiry_date: {s}")),
            },
            Some(_) => return detail(400, "expiry_date must be a string."),
        };
        let Ok(mut inner) = self.inner.lock() else { return detail(500, "state poisoned") };
        if owner != caller && !inner.can_create_for_others.get(caller).copied().unwrap_or(false) {
            return detail(403, "You do not have permission to perform this action.");
        }
        let live = inner.tokens.iter().filter(|t| t.owner == owner && t.live(now)).count();
        if live >= inner.max_per_owner {
            return detail(
                400,
                &format!(
                    "User {owner} already has the maximum number of API tokens ({}).",
                    inner.max_per_owner
                ),
            );
        }
        let token = new_token(&owner, &name, expires);
        inner.tokens.push(token.clone());
        Reply::json(201, &json!({"id": token.id, "token": token.token()}), "ok")
    }

    fn visible(inner: &Inner, caller: &str, t: &VmsToken) -> bool {
        t.owner == caller || inner.can_create_for_others.get(caller).copied().unwrap_or(false)
    }

    fn list(&self, caller: &str) -> Reply {
        let Ok(inner) = self.inner.lock() else { return detail(500, "state poisoned") };
        let list: Vec<Value> = inner
            .tokens
            .iter()
            .filter(|t| Self::visible(&inner, caller, t))
            .map(VmsToken::to_json)
            .collect();
        Reply::json(200, &Value::Array(list), "ok")
    }

    fn show(&self, caller: &str, id: &str) -> Reply {
        let Ok(inner) = self.inner.lock() else { return detail(500, "state poisoned") };
        match inner.tokens.iter().find(|t| t.id == id && Self::visible(&inner, caller, t)) {
            Some(t) => Reply::json(200, &t.to_json(), "ok"),
            None => detail(404, "Not found."),
        }
    }

    async fn update(&self, req: &mut Req, caller: &str, id: &str) -> Reply {
        let body = match req.json_body().await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let Some(obj) = body.as_object() else {
            return detail(400, "Expected a JSON object.");
        };
        let name = match obj.get("name") {
            None => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => return detail(400, "name must be a non-empty string."),
        };
        let now = unix_now();
        let expires = match obj.get("expiry_date") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(s)) => match parse_expiry(s, now) {
                Some(t) => Some(Some(t)),
                None => return detail(400, &format!("Invalid expiry_date: {s}")),
            },
            Some(_) => return detail(400, "expiry_date must be a string."),
        };
        let Ok(mut guard) = self.inner.lock() else { return detail(500, "state poisoned") };
        let inner = &mut *guard;
        let may_see_all = inner.can_create_for_others.get(caller).copied().unwrap_or(false);
        let Some(t) =
            inner.tokens.iter_mut().find(|t| t.id == id && (t.owner == caller || may_see_all))
        else {
            return detail(404, "Not found.");
        };
        if let Some(name) = name {
            t.name = name;
        }
        if let Some(expires) = expires {
            t.expires = expires;
        }
        Reply::json(200, &t.to_json(), "ok")
    }

    fn revoke(&self, caller: &str, id: &str) -> Reply {
        let Ok(mut guard) = self.inner.lock() else { return detail(500, "state poisoned") };
        let inner = &mut *guard;
        let may_see_all = inner.can_create_for_others.get(caller).copied().unwrap_or(false);
        let Some(t) =
            inner.tokens.iter_mut().find(|t| t.id == id && (t.owner == caller || may_see_all))
        else {
            return detail(404, "Not found.");
        };
        if !t.revoked {
            t.revoked = true;
            t.revocation_time = Some(unix_now());
        }
        Reply::json(200, &t.to_json(), "ok")
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `<n><unit>` (Y=365d, M=30d, w/W, d/D, h/H, m, s/S) from `now`, or an RFC 3339 UTC
/// time. None when malformed.
fn parse_expiry(s: &str, now: u64) -> Option<u64> {
    let s = s.trim();
    if let Some(unit) = s.chars().last()
        && unit.is_ascii_alphabetic()
        && s.len() > 1
        && s[..s.len() - 1].bytes().all(|b| b.is_ascii_digit())
    {
        let n: u64 = s[..s.len() - 1].parse().ok()?;
        let secs = match unit {
            'Y' => 365 * 86_400,
            'M' => 30 * 86_400,
            'w' | 'W' => 7 * 86_400,
            'd' | 'D' => 86_400,
            'h' | 'H' => 3_600,
            'm' => 60,
            's' | 'S' => 1,
            _ => return None,
        };
        return now.checked_add(n.checked_mul(secs)?);
    }
    parse_rfc3339_utc(s)
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|+00:00)`.
fn parse_rfc3339_utc(s: &str) -> Option<u64> {
    let rest = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = rest.split_once(['T', 't', ' '])?;
    let time = time.split('.').next()?;
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<&str> = time.split(':').collect();
    let ([y, mo, da], [h, mi, se]) = (d.as_slice(), t.as_slice()) else { return None };
    let (y, mo, da): (i64, u32, u32) = (y.parse().ok()?, mo.parse().ok()?, da.parse().ok()?);
    let (h, mi, se): (u64, u64, u64) = (h.parse().ok()?, mi.parse().ok()?, se.parse().ok()?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, da);
    u64::try_from(days).ok().map(|d| d * 86_400 + h * 3_600 + mi * 60 + se)
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3_600, secs % 3_600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        for t in [0, 1_700_000_000, 951_782_400, 4_102_444_799] {
            assert_eq!(parse_rfc3339_utc(&rfc3339(t)), Some(t));
        }
        assert_eq!(parse_expiry("1D", 10), Some(86_410));
        assert_eq!(parse_expiry("2Y", 0), Some(2 * 365 * 86_400));
        assert_eq!(parse_expiry("90m", 0), Some(5_400));
        assert_eq!(parse_expiry("1x", 0), None);
        assert_eq!(parse_expiry("D", 0), None);
        assert_eq!(parse_expiry("2023-11-14T22:13:20+00:00", 0), Some(1_700_000_000));
        assert_eq!(parse_expiry("2023-13-14T22:13:20Z", 0), None);
    }
}
