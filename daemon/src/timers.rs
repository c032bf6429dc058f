//! The agent's own clocks: the idle lock (`idle_lock_secs`) and the reaper
//! that removes a token when its lifetime ends, from the index and the
//! keyring alike. Each runs as one task until shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::agent::{Agent, now};
use crate::store::StoreError;

/// Locks the agent once no token has been used for `limit`. While locked,
/// it waits for the unlock; the clock then starts over.
pub async fn idle_lock(agent: Arc<Agent>, limit: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        if agent.access.is_locked() {
            let unlocked = agent.access.unlocked.notified();
            tokio::pin!(unlocked);
            // Registered before the check, so an unlock in between is seen.
            unlocked.as_mut().enable();
            if agent.access.is_locked() {
                tokio::select! {
                    _ = unlocked => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            continue;
        }
        let idle = agent.access.idle_for();
        if idle >= limit {
            match agent.lock(None).await {
                Ok(()) => tracing::info!(idle_secs = idle.as_secs(), "agent locked: idle"),
                Err(f) => tracing::warn!(error = %f, "cannot lock the idle agent"),
            }
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(limit - idle) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// How long the reaper sleeps at most: a clock that jumps (suspend, NTP)
/// is caught within this.
const REAP_CHECK: Duration = Duration::from_secs(60);

/// Removes every token whose lifetime has ended, then sleeps until the
/// next one ends, or until woken (a token added with a lifetime, or a use
/// that found one past it).
pub async fn reaper(agent: Arc<Agent>, mut stop: watch::Receiver<bool>) {
    loop {
        let at = now();
        // A closed vault cannot delete anything: wait for `signet unlock`.
        let entries = if agent.store.awaits_vault() {
            Vec::new()
        } else {
            agent.store.all_active().unwrap_or_default()
        };
        let mut failed = false;
        for e in entries.iter().filter(|e| e.removes_at.is_some_and(|t| t <= at)) {
            match agent.store.remove_id(&e.id).await {
                Ok(removed) => {
                    agent.http.forget(&removed.id);
                    tracing::info!(token = %removed.name, uid = removed.owner_uid, "token removed: its lifetime ended");
                }
                Err(StoreError::NoSuchToken(_)) => {}
                Err(err) => {
                    failed = true;
                    tracing::warn!(token = %e.name, error = %err, "cannot remove a token whose lifetime ended; will retry");
                }
            }
        }
        let next = entries.iter().filter_map(|e| e.removes_at).filter(|t| *t > at).min();
        let mut wait = match next {
            Some(t) => Duration::from_secs(u64::try_from(t - at).unwrap_or(1)).min(REAP_CHECK),
            None => REAP_CHECK,
        };
        if failed {
            wait = wait.min(Duration::from_secs(5));
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = agent.access.reap.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
