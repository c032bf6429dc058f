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

use signet_proto::{ErrorCode, Failure, LifecycleOp, Request, Response};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::agent::{Agent, Peer};
use crate::conn::{Closed, Conn};
use crate::service::MintRequest;

/// Serves one request on `conn`. `Err` means the connection must close.
pub async fn dispatch<S: AsyncRead + AsyncWrite + Unpin>(
    agent: &Arc<Agent>,
    peer: Peer,
    req: Request,
    conn: &mut Conn<S>,
) -> Result<(), Closed> {
    if agent.access.is_locked() && !served_while_locked(&req) {
        // A refused Perform is answered before Proceed: no body follows.
        return conn.send(&Response::Failure(crate::access::locked())).await;
    }
    let result = match req {
        Request::Hello { .. } => Err(Failure::new(
            ErrorCode::Protocol,
            "unexpected Hello: the handshake was already done on this connection",
        )),
        Request::Add(a) => add::apply(agent, peer, *a).await,
        Request::List => list::apply(agent, peer),
        Request::Show { name } => show::apply(agent, peer, &name),
        Request::Remove { name } => remove::apply(agent, peer, &name).await,
        Request::Rename { old, new } => rename::apply(agent, peer, &old, &new).await,
        Request::Status => status::apply(agent, peer),
        Request::Sign(r) => sign::apply(agent, peer, r).await,
        Request::Perform(p) => return perform::apply(agent, peer, p, conn).await,
        Request::BodyChunk(_) | Request::BodyEnd => Err(Failure::new(
            ErrorCode::Protocol,
            "a body frame outside of a request that has a body",
        )),
        Request::MaasLogin(l) => maas_login::apply(agent, peer, *l).await,
        Request::Lifecycle(LifecycleOp::Whoami { name }) => whoami::apply(agent, peer, &name).await,
        Request::Lifecycle(LifecycleOp::ListTokens { service, name }) => {
            list_tokens::apply(agent, peer, service, &name).await
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
            create_token::apply(agent, peer, service, &name, &new_name, req, show).await
        }
        Request::Lifecycle(LifecycleOp::DeleteToken { service, name, token, force }) => {
            delete_token::apply(agent, peer, service, &name, &token, force).await
        }
        Request::Lifecycle(LifecycleOp::RenameToken { service, name, token, new_token_name }) => {
            rename_token::apply(agent, peer, service, &name, &token, &new_token_name).await
        }
        Request::Lifecycle(LifecycleOp::Rotate { name }) => rotate::apply(agent, peer, &name).await,
        Request::Lifecycle(LifecycleOp::MaasImport { db, scrub }) => {
            maas_import::apply(agent, peer, &db, scrub).await
        }
        Request::ProxyStart(p) => return proxy::start(agent, peer, p, conn).await,
        Request::ProxyStop { name } => proxy::stop(agent, peer, &name),
        Request::ProxyList => Ok(proxy::list(agent, peer)),
        Request::Lock { passphrase } => lock::apply(agent, peer, passphrase).await,
        Request::Unlock { passphrase } => unlock::apply(agent, peer, passphrase).await,
        Request::VaultPasswd { old, new } => vault_passwd::apply(agent, peer, old, new).await,
        Request::Migrate { to, passphrase } => migrate::apply(agent, peer, &to, passphrase).await,
    };
    conn.send(&result.unwrap_or_else(Response::Failure)).await
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
