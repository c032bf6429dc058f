//! `signet maas import`: MAAS CLI profiles (`~/.maascli.db`) into the
//! keyring, and with `--scrub` out of that file.
//!
//! The MAAS CLI keeps each profile as a JSON blob in an SQLite table
//! `profiles (id, name, data)`, its key in plaintext under `credentials`.
//! Scrubbing sets `credentials` to null (the CLI then treats the profile as
//! anonymous, i.e. logged out) with SQLite's secure_delete on, then VACUUMs,
//! so that no page of the file still holds the old key.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use signet_proto::{
    ErrorCode, Failure, ImportOutcome, Response, Secret, TlsOptions, TokenKind, TokenParams,
};
use zeroize::{Zeroize, Zeroizing};

use super::maas::api_url;
use crate::agent::{Agent, Peer, now};
use crate::entry::Entry;
use crate::store::StoreError;
use crate::validate;

struct Profile {
    name: String,
    url: Option<String>,
    key: Option<Secret>,
    cacerts: Option<String>,
}

fn db_failure(path: &Path, e: impl std::fmt::Display) -> Failure {
    Failure::other(format!("MAAS CLI database {}: {e}", path.display()))
}

fn read_profiles(path: &Path) -> Result<Vec<Profile>, Failure> {
    if !path.exists() {
        return Err(Failure::new(
            ErrorCode::Usage,
            format!("no MAAS CLI database at {}", path.display()),
        )
        .with_hint("pass --db PATH"));
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| db_failure(path, e))?;
    let mut stmt = conn
        .prepare("SELECT name, data FROM profiles ORDER BY id")
        .map_err(|e| db_failure(path, e))?;
    let rows = stmt
        .query_map([], |r| {
            let name: String = r.get(0)?;
            // The CLI stores the JSON as a BLOB; accept TEXT too.
            let data: Vec<u8> = match r.get_ref(1)? {
                rusqlite::types::ValueRef::Blob(b) | rusqlite::types::ValueRef::Text(b) => {
                    b.to_vec()
                }
                _ => Vec::new(),
            };
            Ok((name, data))
        })
        .map_err(|e| db_failure(path, e))?;
    let mut out = Vec::new();
    for row in rows {
        let (name, mut data) = row.map_err(|e| db_failure(path, e))?;
        let parsed: Option<Value> = serde_json::from_slice(&data).ok();
        data.zeroize();
        let mut v = parsed.unwrap_or(Value::Null);
        let key = match v.get("credentials").and_then(Value::as_array) {
            Some(parts) if parts.len() == 3 && parts.iter().all(Value::is_string) => {
                let p: Vec<&str> = parts.iter().filter_map(Value::as_str).collect();
                Some(Secret::from_str_value(&Zeroizing::new(p.join(":"))))
            }
            _ => None,
        };
        wipe_credentials(&mut v);
        out.push(Profile {
            name,
            url: v.get("url").and_then(Value::as_str).map(str::to_string),
            key,
            cacerts: v
                .get("cacerts")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        });
    }
    Ok(out)
}

/// Wipes the key parts of a parsed profile before it is dropped.
fn wipe_credentials(v: &mut Value) {
    if let Some(Value::Array(parts)) = v.get_mut("credentials") {
        for p in parts {
            if let Value::String(s) = p {
                s.zeroize();
            }
        }
    }
}

/// Logs the named profiles out in the file and leaves no readable copy of
/// their keys in it.
fn scrub(path: &Path, names: &[String]) -> Result<(), Failure> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|e| db_failure(path, e))?;
    // Freed pages are overwritten with zeros instead of left as they were.
    conn.execute_batch("PRAGMA secure_delete = ON;").map_err(|e| db_failure(path, e))?;
    let tx = conn.unchecked_transaction().map_err(|e| db_failure(path, e))?;
    for name in names {
        let data: Vec<u8> = tx
            .query_row("SELECT data FROM profiles WHERE name = ?1", [name], |r| {
                match r.get_ref(0)? {
                    rusqlite::types::ValueRef::Blob(b) | rusqlite::types::ValueRef::Text(b) => {
                        Ok(b.to_vec())
                    }
                    _ => Ok(Vec::new()),
                }
            })
            .map_err(|e| db_failure(path, e))?;
        let mut v: Value = serde_json::from_slice(&data).unwrap_or(Value::Null);
        let mut data = data;
        data.zeroize();
        wipe_credentials(&mut v);
        if let Value::Object(m) = &mut v {
            m.insert("credentials".into(), Value::Null);
        }
        tx.execute(
            "UPDATE profiles SET data = ?1 WHERE name = ?2",
            rusqlite::params![v.to_string().into_bytes(), name],
        )
        .map_err(|e| db_failure(path, e))?;
    }
    tx.commit().map_err(|e| db_failure(path, e))?;
    conn.execute_batch("VACUUM;").map_err(|e| db_failure(path, e))?;
    Ok(())
}

/// Imports every MAAS CLI profile with credentials from `db` as a `maas`
/// token named after it; with `do_scrub`, erases the imported keys there.
pub async fn import(
    agent: &Agent,
    peer: Peer,
    db: &str,
    do_scrub: bool,
) -> Result<Response, Failure> {
    let path = PathBuf::from(db);
    if !path.is_absolute() {
        return Err(Failure::usage("the MAAS CLI database path must be absolute"));
    }
    let p = path.clone();
    let profiles = tokio::task::spawn_blocking(move || read_profiles(&p))
        .await
        .map_err(|e| Failure::other(format!("import failed: {e}")))??;
    let mut outcomes = Vec::new();
    let mut imported = Vec::new();
    for prof in profiles {
        let mut outcome = ImportOutcome {
            profile: prof.name.clone(),
            imported: false,
            scrubbed: false,
            note: String::new(),
        };
        let (Some(key), Some(url)) = (prof.key, prof.url) else {
            outcome.note = "anonymous profile (no credentials): skipped".into();
            outcomes.push(outcome);
            continue;
        };
        if let Err(e) = signet_proto::token::validate_name(&prof.name) {
            outcome.note = format!("skipped: {e}");
            outcomes.push(outcome);
            continue;
        }
        let api = match api_url(&url) {
            Ok(u) => u,
            Err(f) => {
                outcome.note = format!("skipped: {}", f.message);
                outcomes.push(outcome);
                continue;
            }
        };
        let params = TokenParams {
            tls: TlsOptions { insecure: false, cacert_pem: prof.cacerts },
            ..TokenParams::default()
        };
        let checked = validate::new_token(TokenKind::Maas, api.as_str(), &key, &params, None);
        let (url, params) = match checked {
            Ok(x) => x,
            Err(f) => {
                outcome.note = format!("skipped: {}", f.message);
                outcomes.push(outcome);
                continue;
            }
        };
        let created = now();
        let mut entry = Entry::draft(&prof.name, TokenKind::Maas, url, peer.uid, created, params);
        entry.comment = Some("imported from the MAAS CLI".into());
        // The agent's default lifetime, if it has one, as for any token added.
        let defaults = signet_proto::TokenAccess::default();
        crate::access::apply_settings(&mut entry, &defaults, &agent.config, created)?;
        match agent.store.add(entry, key, agent.config.max_tokens_per_owner).await {
            Ok(added) => {
                if added.removes_at.is_some() {
                    agent.access.reap.notify_one();
                }
                outcome.imported = true;
                outcome.note = "imported".into();
                imported.push(prof.name.clone());
            }
            Err(StoreError::Exists(_)) => {
                outcome.note = "a token with this name already exists: skipped (its credentials stay in the file)".into();
            }
            Err(e) => return Err(e.into()),
        }
        outcomes.push(outcome);
    }
    if do_scrub && !imported.is_empty() {
        let names = imported.clone();
        tokio::task::spawn_blocking(move || scrub(&path, &names))
            .await
            .map_err(|e| Failure::other(format!("scrub failed: {e}")))??;
        for o in &mut outcomes {
            if o.imported {
                o.scrubbed = true;
                o.note = "imported; credentials erased from the MAAS CLI database".into();
            }
        }
    }
    tracing::info!(imported = imported.len(), scrubbed = do_scrub, "MAAS CLI import");
    Ok(Response::Imported(outcomes))
}
