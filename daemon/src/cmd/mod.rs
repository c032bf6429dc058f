//! One file per request kind, each with one `apply`, and the single
//! dispatch `match` of the whole agent (as OpenSSH's ssh-agent has one
//! `process_message` switch).
//!
//! Commands check input with [`crate::validate`], authorise with
//! [`crate::policy`], act through [`crate::service`], [`crate::sign`],
//! [`crate::http`] and [`crate::store`], and turn the outcome into a
//! [`Response`]. Only `perform` streams, through the connection's body
//! streams; every other command answers with one frame, sent here. Every
//! failure leaves as a [`Failure`] whose code the client turns into an exit
//! status; none carries a secret.
//!
//! While the agent is locked, only `List`, `Status`, `Lock` and `Unlock`
//! are served; everything else is refused here, before its command runs.

mod add;
mod audit;
mod create_token;
mod delete_token;
mod list;
mod list_tokens;
mod lock;
mod maas_import;
mod maas_login;
mod migrate;
mod perform;
mod proxy;
mod remove;
mod rename;
mod rename_token;
mod rotate;
mod show;
mod sign;
mod status;
mod unlock;
mod vault_passwd;
mod whoami;

use std::sync::Arc;

use signet_proto::{ErrorCode, Failure, LifecycleOp, Request, Response};

use crate::agent::{Agent, Peer};
use crate::audit::{self as trail, Record};
use crate::conn::{Closed, Conn};
use crate::restrict::Restriction;
use crate::service::MintRequest;

/// Who is asking, as the listener saw the connection.
#[derive(Debug, Clone)]
pub struct Caller {
    pub peer: Peer,
    /// The peer's program, read when it connected (for the audit trail).
    pub exe: Option<String>,
    /// Set on the restricted socket: what it may ask for.
    pub restricted: Option<Arc<Restriction>>,
}

impl Caller {
    /// A caller on the main socket.
    pub fn main(peer: Peer) -> Caller {
        Caller { peer, exe: None, restricted: None }
    }
}

/// What the trail calls a request, and what it records of it. `None`: a
/// read that changes nothing and uses no token (list, show, status, the
/// trail itself); it is recorded only when the restricted socket refuses
/// it. A new recorded request is one line here.
fn audited(req: &Request) -> (&'static str, bool, Record) {
    let named = |n: &str| Record { token: Some(n.to_string()), ..Record::default() };
    match req {
        Request::Hello { .. } => ("hello", false, Record::default()),
        Request::Add(a) => ("add", true, named(&a.name)),
        Request::List => ("list", false, Record::default()),
        Request::Show { name } => ("show", false, named(name)),
        Request::Remove { name } => ("rm", true, named(name)),
        Request::Rename { old, new } => {
            ("rename", true, Record { new_name: Some(new.clone()), ..named(old) })
        }
        Request::Status => ("status", false, Record::default()),
        Request::Sign(r) => {
            ("sign", true, Record { method: Some(r.method.clone()), ..named(&r.name) })
        }
        Request::Perform(p) => {
            ("request", true, Record { method: Some(p.method.clone()), ..named(&p.name) })
        }
        Request::BodyChunk(_) | Request::BodyEnd => ("body", false, Record::default()),
        Request::MaasLogin(l) => {
            let (origin, path) = trail::origin_and_path(&l.url);
            ("login", true, Record { origin, path, ..named(&l.name) })
        }
        Request::Lifecycle(op) => match op {
            LifecycleOp::Whoami { name } => ("whoami", true, named(name)),
            LifecycleOp::ListTokens { name, .. } => ("list-tokens", true, named(name)),
            LifecycleOp::CreateToken { name, new_name, .. } => {
                ("create-token", true, Record { new_name: Some(new_name.clone()), ..named(name) })
            }
            LifecycleOp::DeleteToken { name, .. } => ("delete-token", true, named(name)),
            LifecycleOp::RenameToken { name, .. } => ("rename-token", true, named(name)),
            LifecycleOp::Rotate { name } => ("rotate", true, named(name)),
            LifecycleOp::MaasImport { .. } => ("maas-import", true, Record::default()),
        },
        Request::Audit(q) => {
            ("audit", false, Record { token: q.token.clone(), ..Record::default() })
        }
        Request::ProxyStart(p) => ("proxy-start", true, named(&p.name)),
        Request::ProxyStop { name } => ("proxy-stop", true, named(name)),
        Request::ProxyList => ("proxy-list", false, Record::default()),
        Request::Lock { .. } => ("lock", true, Record::default()),
        Request::Unlock { .. } => ("unlock", true, Record::default()),
        Request::VaultPasswd { .. } => ("vault-passwd", true, Record::default()),
        Request::Migrate { .. } => ("migrate", true, Record::default()),
    }
}

/// The trail's name of a failure code.
pub fn code_name(c: ErrorCode) -> &'static str {
    match c {
        ErrorCode::Other => "other",
        ErrorCode::Usage => "usage",
        ErrorCode::Protocol => "protocol",
        ErrorCode::NoSuchToken => "no-such-token",
        ErrorCode::Policy => "policy",
        ErrorCode::Store => "store",
        ErrorCode::Upstream => "upstream",
        ErrorCode::Exists => "exists",
    }
}

/// The origin and path a sign or request is for: the URL as given,
/// joined to the token's base URL when relative. Only the origin and the
/// path are kept, never the query. `None` for other requests.
fn target(agent: &Agent, peer: Peer, req: &Request) -> Option<(Option<String>, Option<String>)> {
    let (name, url) = match req {
        Request::Sign(s) => (&s.name, &s.url),
        Request::Perform(p) => (&p.name, &p.url),
        _ => return None,
    };
    let resolved = agent
        .store
        .get(peer.uid, name)
        .ok()
        .and_then(|e| url::Url::parse(&e.url).ok())
        .and_then(|base| crate::policy::resolve_url(&base, url).ok());
    Some(match resolved {
        Some(u) => trail::origin_and_path_of(&u),
        None => trail::origin_and_path(url),
    })
}

/// `r` with [`target`] filled in. A sign that resolves its URL itself
/// hands it over instead (see [`dispatch`]), so this runs for it only when
/// it is refused before.
fn with_target(agent: &Agent, peer: Peer, req: &Request, mut r: Record) -> Record {
    if let Some((origin, path)) = target(agent, peer, req) {
        (r.origin, r.path) = (origin, path);
    }
    r
}

/// Writes the trail's line for a finished request.
fn record(agent: &Agent, caller: &Caller, action: &'static str, mut r: Record, outcome: Outcome) {
    r.action = action.to_string();
    r.uid = Some(caller.peer.uid);
    r.pid = Some(caller.peer.pid);
    r.exe = caller.exe.clone();
    r.socket = Some(if caller.restricted.is_some() { "restricted" } else { "main" }.to_string());
    let (name, exit) = match outcome {
        Outcome::Ok(status) => {
            r.status = status;
            ("ok", Some(0))
        }
        Outcome::Failed(c) => (code_name(c), Some(c.exit_code())),
        Outcome::ClientLeft => ("client-left", None),
    };
    r.outcome = name.to_string();
    r.exit = exit;
    agent.audit.record(r);
}

enum Outcome {
    Ok(Option<u16>),
    Failed(ErrorCode),
    ClientLeft,
}

/// The trail's line a request will get, as far as it is known before the
/// request runs; `None` with the trail off, so that a request then costs
/// nothing more.
type Pending = Option<(&'static str, bool, Record)>;

fn pending(agent: &Agent, peer: Peer, req: &Request) -> Pending {
    agent.audit.enabled().then(|| {
        let (action, recorded, r) = audited(req);
        // A sign's target is filled in from the URL it resolves (in
        // `respond`), not resolved a second time here: it is the request
        // the agent serves most.
        let r = if matches!(req, Request::Sign(_)) { r } else { with_target(agent, peer, req, r) };
        (action, recorded, r)
    })
}

/// Refuses what the restricted socket, or a locked agent, does not serve,
/// and records the refusal.
fn gate(agent: &Agent, caller: &Caller, req: &Request, audit: &mut Pending) -> Result<(), Failure> {
    let refusal = match &caller.restricted {
        Some(rule) => rule.check(req, audited(req).0).err(),
        None => None,
    }
    .or_else(|| {
        (agent.access.is_locked() && !served_while_locked(req)).then(crate::access::locked)
    });
    let Some(f) = refusal else { return Ok(()) };
    if let Some((action, _, r)) = audit.take() {
        let r = if matches!(req, Request::Sign(_)) {
            with_target(agent, caller.peer, req, r)
        } else {
            r
        };
        record(agent, caller, action, r, Outcome::Failed(f.code));
    }
    Err(f)
}

/// Whether a request needs its connection for more than one answer frame:
/// its bodies stream over it, or its effect lasts as long as it. Every
/// other request is served by [`answer`], wherever its connection is read.
pub fn needs_connection(req: &Request) -> bool {
    matches!(req, Request::Perform(_) | Request::ProxyStart(_))
}

/// Serves one request on `conn`. `Err` means the connection must close.
pub async fn dispatch(
    agent: &Arc<Agent>,
    caller: &Caller,
    req: Request,
    conn: &mut Conn,
) -> Result<(), Closed> {
    let peer = caller.peer;
    let mut audit = pending(agent, peer, &req);
    if let Err(f) = gate(agent, caller, &req, &mut audit) {
        // A refused Perform is answered before Proceed: no body follows.
        return conn.send(&Response::Failure(f)).await;
    }
    match req {
        Request::Perform(p) => {
            let (done, sent) = perform::apply(agent, peer, p, conn).await;
            if let Some((action, _, r)) = audit {
                let outcome = match done {
                    perform::Performed::Answered(s) => Outcome::Ok(Some(s)),
                    perform::Performed::Failed(c) => Outcome::Failed(c),
                    perform::Performed::ClientLeft => Outcome::ClientLeft,
                };
                record(agent, caller, action, r, outcome);
            }
            sent
        }
        Request::ProxyStart(p) => {
            let recorded = |failed: Option<ErrorCode>| {
                if let Some((action, _, r)) = audit {
                    let outcome = failed.map_or(Outcome::Ok(None), Outcome::Failed);
                    record(agent, caller, action, r, outcome);
                }
            };
            proxy::start(agent, peer, p, conn, recorded).await
        }
        req => conn.send(&respond(agent, caller, req, audit).await).await,
    }
}

/// The one frame that answers a request that does not
/// [need its connection](needs_connection).
pub async fn answer(agent: &Arc<Agent>, caller: &Caller, req: Request) -> Response {
    let mut audit = pending(agent, caller.peer, &req);
    match gate(agent, caller, &req, &mut audit) {
        Ok(()) => respond(agent, caller, req, audit).await,
        Err(f) => Response::Failure(f),
    }
}

/// Runs an admitted request and records it. Every command but `sign` is
/// boxed: a future is as large as its largest arm, and a held
/// connection's thread keeps a sign's on its stack, where it should be
/// small.
async fn respond(
    agent: &Arc<Agent>,
    caller: &Caller,
    req: Request,
    mut audit: Pending,
) -> Response {
    let peer = caller.peer;
    let result = match req {
        Request::Hello { .. } => Err(Failure::new(
            ErrorCode::Protocol,
            "unexpected Hello: the handshake was already done on this connection",
        )),
        Request::Add(a) => Box::pin(add::apply(agent, peer, *a)).await,
        Request::List => list::apply(agent, peer).map(|resp| match (resp, &caller.restricted) {
            (Response::Tokens(all), Some(rule)) => {
                Response::Tokens(all.into_iter().filter(|t| rule.allows(&t.name)).collect())
            }
            (resp, _) => resp,
        }),
        Request::Show { name } => show::apply(agent, peer, &name),
        Request::Remove { name } => Box::pin(remove::apply(agent, peer, &name)).await,
        Request::Rename { old, new } => Box::pin(rename::apply(agent, peer, &old, &new)).await,
        Request::Status => status::apply(agent, peer),
        Request::Sign(ref r) => {
            let (result, resolved) = sign::apply(agent, peer, r).await;
            if let Some((_, _, rec)) = audit.as_mut() {
                (rec.origin, rec.path) = match &resolved {
                    Some(u) => trail::origin_and_path_of(u),
                    None => target(agent, peer, &req).unwrap_or_default(),
                };
            }
            result
        }
        Request::Perform(_) | Request::ProxyStart(_) => Err(Failure::new(
            ErrorCode::Protocol,
            "this request needs its connection, and cannot be answered with one frame",
        )),
        Request::BodyChunk(_) | Request::BodyEnd => Err(Failure::new(
            ErrorCode::Protocol,
            "a body frame outside of a request that has a body",
        )),
        Request::MaasLogin(l) => Box::pin(maas_login::apply(agent, peer, *l)).await,
        Request::Lifecycle(LifecycleOp::Whoami { name }) => {
            Box::pin(whoami::apply(agent, peer, &name)).await
        }
        Request::Lifecycle(LifecycleOp::ListTokens { service, name }) => {
            Box::pin(list_tokens::apply(agent, peer, service, &name)).await
        }
        Request::Lifecycle(LifecycleOp::CreateToken {
            service,
            name,
            new_name,
            token_name,
            expires,
            owner,
            show,
            access,
        }) => {
            let req = MintRequest { token_name, expires, owner, access };
            Box::pin(create_token::apply(agent, peer, service, &name, &new_name, req, show)).await
        }
        Request::Lifecycle(LifecycleOp::DeleteToken { service, name, token, force }) => {
            Box::pin(delete_token::apply(agent, peer, service, &name, &token, force)).await
        }
        Request::Lifecycle(LifecycleOp::RenameToken { service, name, token, new_token_name }) => {
            Box::pin(rename_token::apply(agent, peer, service, &name, &token, &new_token_name))
                .await
        }
        Request::Lifecycle(LifecycleOp::Rotate { name }) => {
            Box::pin(rotate::apply(agent, peer, &name)).await
        }
        Request::Lifecycle(LifecycleOp::MaasImport { db, scrub }) => {
            Box::pin(maas_import::apply(agent, peer, &db, scrub)).await
        }
        Request::ProxyStop { name } => proxy::stop(agent, peer, &name),
        Request::ProxyList => Ok(proxy::list(agent, peer)),
        Request::Lock { passphrase } => Box::pin(lock::apply(agent, peer, passphrase)).await,
        Request::Unlock { passphrase } => Box::pin(unlock::apply(agent, peer, passphrase)).await,
        Request::VaultPasswd { old, new } => {
            Box::pin(vault_passwd::apply(agent, peer, old, new)).await
        }
        Request::Migrate { to, passphrase } => {
            Box::pin(migrate::apply(agent, peer, &to, passphrase)).await
        }
        Request::Audit(q) => Box::pin(audit::apply(agent, q)).await,
    };
    if let Some((action, true, r)) = audit {
        let outcome = match &result {
            Ok(_) => Outcome::Ok(None),
            Err(f) => Outcome::Failed(f.code),
        };
        record(agent, caller, action, r, outcome);
    }
    result.unwrap_or_else(Response::Failure)
}

/// What a locked agent still answers: what shows the tokens (never a
/// secret), the status, and the lock itself. Body frames reach here only
/// out of place, and get their own error.
fn served_while_locked(req: &Request) -> bool {
    matches!(
        req,
        Request::List
            | Request::Status
            | Request::Lock { .. }
            | Request::Unlock { .. }
            | Request::Hello { .. }
            | Request::BodyChunk(_)
            | Request::BodyEnd
    )
}
