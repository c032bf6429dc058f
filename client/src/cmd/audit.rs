//! `signet audit`: the agent's audit trail, as a table or JSON lines.

use std::path::Path;
use std::time::Duration;

use clap::Args;
use signet_client::{AuditFilter, AuditRecord, Client, Expiry};

use crate::{Failed, name_ok};

#[derive(Args)]
pub struct AuditArgs {
    /// Only the records of this token.
    #[arg(long, value_name = "NAME")]
    token: Option<String>,
    /// Only the records of the last DUR (`30m`, `12h`, `7d`) or since an
    /// RFC 3339 time.
    #[arg(long, value_name = "DUR")]
    since: Option<String>,
    /// Print one JSON object per line, as the trail holds them.
    #[arg(long)]
    json: bool,
}

fn since(text: &str) -> Result<Duration, Failed> {
    match signet_proto::expiry::parse_expiry(text) {
        Ok(Expiry::After(secs)) => Ok(Duration::from_secs(secs)),
        Ok(Expiry::At(t)) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            Ok(Duration::from_secs(now.saturating_sub(t).max(0) as u64))
        }
        Err(e) => Err(Failed::usage(format!(
            "--since: {}",
            e.to_string().replacen("invalid expiry", "invalid duration", 1)
        ))),
    }
}

pub fn audit(socket: Option<&Path>, a: AuditArgs) -> Result<(), Failed> {
    if let Some(t) = &a.token {
        name_ok(t)?;
    }
    let filter = AuditFilter { token: a.token, since: a.since.as_deref().map(since).transpose()? };
    let log = Client::connect(socket)?.audit(&filter)?;
    if a.json {
        for r in &log.records {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        }
    } else if log.records.is_empty() {
        eprintln!("No audit records match.");
    } else {
        print!("{}", table(&log.records));
    }
    if log.omitted > 0 {
        eprintln!(
            "signet: {} older matching records left out (one answer holds about 1 MiB); narrow with --since or --token",
            log.omitted
        );
    }
    Ok(())
}

fn cell(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("-")
}

fn table(records: &[AuditRecord]) -> String {
    let rows: Vec<[String; 6]> = records
        .iter()
        .map(|r| {
            let target = match (&r.method, &r.origin, &r.path) {
                (None, None, None) => match (&r.new_name, r.dropped) {
                    (Some(n), _) => format!("-> {n}"),
                    (None, Some(n)) => format!("{n} records lost"),
                    _ => "-".into(),
                },
                (m, o, p) => format!(
                    "{} {}{}",
                    cell(m),
                    o.as_deref().unwrap_or(""),
                    p.as_deref().unwrap_or("")
                )
                .trim()
                .to_string(),
            };
            let outcome = match (r.status, r.exit) {
                (Some(s), _) => format!("{} ({s})", r.outcome),
                (None, Some(e)) if e != 0 => format!("{} (exit {e})", r.outcome),
                _ => r.outcome.clone(),
            };
            let who = match (r.pid, &r.exe) {
                (Some(p), Some(e)) => format!("{p} {e}"),
                (Some(p), None) => p.to_string(),
                _ => "-".into(),
            };
            // Seconds are enough on screen; --json has the rest.
            let time =
                r.time.get(..19).map(|t| format!("{}Z", t.replace('T', " "))).unwrap_or_default();
            [time, r.action.clone(), cell(&r.token).to_string(), target, outcome, who]
        })
        .collect();
    let head = ["TIME (UTC)", "ACTION", "TOKEN", "TARGET", "OUTCOME", "PEER"];
    let mut width = head.map(str::len);
    for row in &rows {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let n = cells.len();
        for (i, (c, w)) in cells.iter().zip(width).enumerate() {
            if i + 1 == n {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push('\n');
    };
    line(&head);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells);
    }
    out
}
