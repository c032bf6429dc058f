//! `Audit`: the audit trail's records for `signet audit`, read through the
//! agent rather than from the file, so that the restricted socket can
//! refuse it, and so that lines still queued are written first.
//!
//! # Format
//! `Request::Audit(AuditQuery)`, answered with `Response::AuditLines`:
//! the newest matching records that fit in one frame, oldest first.

use std::time::Duration;

use signet_proto::{AuditQuery, Failure, Response};

use crate::agent::Agent;
use crate::audit;

/// Room left in a frame for everything but the lines themselves.
const FRAME_MARGIN: usize = 64 * 1024;
/// How long the queued lines may take to reach the file before reading.
const SYNC_WAIT: Duration = Duration::from_secs(2);

pub async fn apply(agent: &Agent, q: AuditQuery) -> Result<Response, Failure> {
    if !agent.audit.enabled() {
        return Err(Failure::policy("the audit trail is off in this agent's config")
            .with_hint("set `audit = true` in the agent's config.toml and restart it"));
    }
    if let Some(t) = &q.token {
        crate::validate::name(t)?;
    }
    let cutoff = q.since_secs.map(|s| {
        let secs = i64::try_from(s).unwrap_or(i64::MAX);
        let t = time::OffsetDateTime::now_utc()
            .checked_sub(time::Duration::seconds(secs))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        audit::timestamp(t)
    });
    let trail = agent.audit.clone();
    // The files may be large and the disk slow: off the request threads.
    let read = tokio::task::spawn_blocking(move || {
        trail.sync(SYNC_WAIT);
        trail.read(|r| {
            // A gap in the trail concerns every token.
            (r.action == "dropped" || q.token.as_ref().is_none_or(|t| r.token.as_ref() == Some(t)))
                && cutoff.as_ref().is_none_or(|c| r.time.as_str() >= c.as_str())
        })
    })
    .await
    .map_err(|e| Failure::other(format!("reading the audit trail: {e}")))?
    .map_err(|e| {
        Failure::new(signet_proto::ErrorCode::Store, format!("cannot read the audit trail: {e}"))
    })?;
    let mut lines = Vec::new();
    let mut size = 0;
    let budget = signet_proto::MAX_FRAME - FRAME_MARGIN;
    for r in read.iter().rev() {
        let Ok(line) = serde_json::to_string(r) else { continue };
        if size + line.len() + 8 > budget {
            break;
        }
        size += line.len() + 8;
        lines.push(line);
    }
    let omitted = (read.len() - lines.len()) as u64;
    lines.reverse();
    Ok(Response::AuditLines { lines, omitted })
}
