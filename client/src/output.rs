//! Output for people (aligned tables, `key: value` lines) and for scripts
//! (`--json`, stable snake_case keys, RFC 3339 UTC times).

use serde_json::{Value, json};
use signet_client::{LockKind, StatusInfo, TokenInfo};
use signet_proto::expiry::format_time;

fn time_or_null(t: Option<i64>) -> Value {
    t.map_or(Value::Null, |t| Value::String(format_time(t)))
}

/// The `list --json` item: its keys are a stable interface for scripts.
pub fn token_json(t: &TokenInfo) -> Value {
    json!({
        "name": t.name,
        "kind": t.kind.as_str(),
        "url": t.url,
        "owner": t.owner,
        "created": format_time(t.created),
        "expires": time_or_null(t.expires),
        "expired": t.expired,
        "last_used": time_or_null(t.last_used),
        "use_count": t.use_count,
        "exportable": t.exportable,
        "comment": t.comment,
        "removes_at": time_or_null(t.removes_at),
        "confirm": t.confirm,
        "confirm_for_secs": t.confirm_for_secs,
    })
}

/// `show --json`: the list item plus the kind's settings.
pub fn token_detail_json(t: &TokenInfo) -> Value {
    let mut v = token_json(t);
    let p = &t.params;
    if let Value::Object(m) = &mut v {
        m.insert("owner_uid".into(), json!(t.owner_uid));
        m.insert("username".into(), json!(p.username));
        m.insert("header_name".into(), json!(p.header_name));
        m.insert("consumer_key".into(), json!(p.consumer_key));
        m.insert("token_key".into(), json!(p.token_key));
        m.insert("signature".into(), json!(p.signature.map(|s| s.as_str())));
        m.insert("tenant".into(), json!(p.tenant));
        m.insert("insecure".into(), json!(p.tls.insecure));
        m.insert("cacert".into(), json!(p.tls.cacert_pem.is_some()));
    }
    v
}

pub fn status_json(s: &StatusInfo) -> Value {
    json!({
        "pid": s.pid,
        "version": s.version,
        "protocol": s.protocol,
        "store": s.store,
        "tokens": s.tokens,
        "uptime_secs": s.uptime_secs,
        "socket": s.socket,
        "data_dir": s.data_dir,
        "max_tokens_per_owner": s.max_tokens_per_owner,
        "locked": s.locked.is_some(),
        "lock": s.locked.map(lock_word),
        "idle_lock_secs": s.idle_lock_secs,
    })
}

fn lock_word(k: LockKind) -> &'static str {
    match k {
        LockKind::Passphrase => "passphrase",
        LockKind::Auto => "auto",
        LockKind::Vault => "vault",
    }
}

/// What the agent does with the token on its own: remove it at the end of
/// its lifetime, ask before each use.
fn access_cell(t: &TokenInfo) -> String {
    let removes = t.removes_at.map(|r| format!("removed {}", format_time(r)));
    let confirm = t.confirm.then(|| match t.confirm_for_secs {
        Some(s) => format!("confirm (remembered {s} s)"),
        None => "confirm".to_string(),
    });
    let parts: Vec<String> = removes.into_iter().chain(confirm).collect();
    if parts.is_empty() { "-".into() } else { parts.join(", ") }
}

fn expires_cell(t: &TokenInfo) -> String {
    match t.expires {
        None => "never".into(),
        Some(e) if t.expired => format!("expired {}", format_time(e)),
        Some(e) => format_time(e),
    }
}

/// Strips control characters so that a stored comment or URL cannot drive
/// the user's terminal.
fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

pub fn token_table(tokens: &[TokenInfo]) -> String {
    let header = ["NAME", "KIND", "URL", "EXPIRES", "LAST USED", "LOCAL"];
    let rows: Vec<[String; 6]> = tokens
        .iter()
        .map(|t| {
            [
                printable(&t.name),
                t.kind.to_string(),
                printable(&t.url),
                expires_cell(t),
                t.last_used.map_or_else(|| "never".into(), format_time),
                access_cell(t),
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header);
    for r in &rows {
        line(&r.each_ref().map(String::as_str));
    }
    out
}

pub fn token_details(t: &TokenInfo) -> String {
    let p = &t.params;
    let mut lines: Vec<(&str, String)> = vec![
        ("name", printable(&t.name)),
        ("kind", t.kind.to_string()),
        ("url", printable(&t.url)),
        ("owner", printable(&t.owner)),
        ("created", format_time(t.created)),
        ("expires", expires_cell(t)),
        ("last used", t.last_used.map_or_else(|| "never".into(), format_time)),
        ("use count", t.use_count.to_string()),
        ("exportable", if t.exportable { "yes" } else { "no" }.into()),
        ("removed at", t.removes_at.map_or_else(|| "never (no lifetime)".into(), format_time)),
        (
            "confirm",
            match (t.confirm, t.confirm_for_secs) {
                (false, _) => "no".into(),
                (true, None) => "yes, each use".into(),
                (true, Some(s)) => format!("yes, a yes remembered {s} s per program"),
            },
        ),
    ];
    let mut opt = |k: &'static str, v: &Option<String>| {
        if let Some(v) = v {
            lines.push((k, printable(v)));
        }
    };
    opt("username", &p.username);
    opt("header name", &p.header_name);
    opt("consumer key", &p.consumer_key);
    opt("token key", &p.token_key);
    opt("tenant", &p.tenant);
    opt("comment", &t.comment);
    if let Some(s) = p.signature {
        lines.push(("signature", s.to_string()));
    }
    if p.tls.insecure {
        lines.push(("tls", "insecure (certificate not verified)".into()));
    } else if p.tls.cacert_pem.is_some() {
        lines.push(("tls", "custom CA bundle".into()));
    }
    let w = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    lines.iter().map(|(k, v)| format!("{:<w$} {v}\n", format!("{k}:"))).collect()
}

pub fn status_text(s: &StatusInfo) -> String {
    let locked = match s.locked {
        None => "no".to_string(),
        Some(LockKind::Passphrase) => "yes (`signet unlock` with the passphrase)".into(),
        Some(LockKind::Auto) => "yes, by the agent itself (`signet unlock`)".into(),
        Some(LockKind::Vault) => {
            "yes: the vault is closed (`signet unlock` with the vault's passphrase)".into()
        }
    };
    let idle =
        s.idle_lock_secs.map_or_else(|| "never".to_string(), |n| format!("after {n} s idle"));
    format!(
        "locked:      {locked}\nidle lock:   {idle}\nagent pid:   {}\nversion:     {} (protocol {})\nstore:       {}\ntokens:      {}{}\nuptime:      {} s\nsocket:      {}\ndata dir:    {}\n",
        s.pid,
        s.version,
        s.protocol,
        s.store,
        s.tokens,
        s.max_tokens_per_owner.map_or_else(String::new, |m| format!(" (limit {m})")),
        s.uptime_secs,
        s.socket,
        s.data_dir
    )
}
