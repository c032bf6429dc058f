//! Session events from systemd-logind on the system bus: the login session
//! locking (`org.freedesktop.login1.Session.Lock`, which `loginctl
//! lock-session` and desktop screen lockers send) and the machine about to
//! sleep (`org.freedesktop.login1.Manager.PrepareForSleep(true)`). The
//! agent locks itself on either.
//!
//! The session is the one logind names for `XDG_SESSION_ID` of the agent's
//! environment, else for the agent's pid. Where no system bus or no logind
//! answers (containers, CI), there is nothing to watch and this says so
//! once in the log.

use futures_util::StreamExt;
use tokio::sync::mpsc;
use zbus::zvariant::OwnedObjectPath;

const LOGIND: &str = "org.freedesktop.login1";

/// What logind told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    SessionLocked,
    Sleep,
}

impl std::fmt::Display for SessionEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SessionEvent::SessionLocked => "the login session was locked",
            SessionEvent::Sleep => "the machine is about to sleep",
        })
    }
}

/// Sends each session event on `events` until the bus goes away or the
/// receiver is dropped. `Err`: logind could not be reached at all.
pub async fn watch(events: mpsc::Sender<SessionEvent>) -> Result<(), zbus::Error> {
    // DBUS_SYSTEM_BUS_ADDRESS, else the system bus's well-known socket.
    let conn = zbus::Connection::system().await?;
    let manager = zbus::Proxy::new(
        &conn,
        LOGIND,
        "/org/freedesktop/login1",
        "org.freedesktop.login1.Manager",
    )
    .await?;
    // Subscribed before the session is looked up: a sleep meanwhile counts.
    let mut sleep = manager.receive_signal("PrepareForSleep").await?;
    let session: Result<OwnedObjectPath, zbus::Error> =
        match std::env::var("XDG_SESSION_ID").ok().filter(|s| !s.is_empty()) {
            Some(id) => manager.call("GetSession", &(id.as_str(),)).await,
            None => manager.call("GetSessionByPID", &(std::process::id(),)).await,
        };
    let mut locks = match session {
        Ok(path) => {
            let s = zbus::Proxy::new(&conn, LOGIND, path, "org.freedesktop.login1.Session").await?;
            let locks = s.receive_signal("Lock").await?;
            // Said once the subscription stands: from now on no Lock is missed.
            tracing::info!(session = %s.path(), "watching the login session for locks and sleep");
            Some(locks)
        }
        Err(e) => {
            tracing::info!(error = %e, "no login session found; watching for sleep only");
            None
        }
    };
    loop {
        let event = tokio::select! {
            m = sleep.next() => match m {
                Some(m) => match m.body().deserialize::<bool>() {
                    Ok(true) => SessionEvent::Sleep,
                    _ => continue,
                },
                None => return Ok(()),
            },
            m = async {
                match locks.as_mut() {
                    Some(l) => l.next().await,
                    None => std::future::pending().await,
                }
            } => match m {
                Some(_) => SessionEvent::SessionLocked,
                None => return Ok(()),
            },
        };
        if events.send(event).await.is_err() {
            return Ok(());
        }
    }
}
