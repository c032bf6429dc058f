//! The token index: every token's metadata, never a secret.
//!
//! One JSON file, `index.json` in the data directory, replaced atomically on
//! every change (write a temporary file, fsync it, rename it over the old
//! one, fsync the directory), so a crash leaves either the old file or the
//! new one, never a torn one.
//!
//! Each entry carries a state that makes the two-step changes (index, then
//! keyring) safe against a crash between the steps: an entry is written as
//! `adding` before its secret goes into the keyring and as `removing` before
//! its secret is deleted. At start-up `Store::recover` rolls
//! `adding` back and `removing` forward. So an index entry never outlives
//! its secret, and a secret never outlives its entry.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::entry::{Entry, EntryState};

pub const INDEX_FILE: &str = "index.json";
const FORMAT_VERSION: u32 = 1;

/// The whole index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    pub version: u32,
    /// Random, fixed at creation: names this index's entries in the keyring.
    pub store_id: String,
    /// The store that holds the secrets (`secret-service`, `keyutils`,
    /// `file`), written at the first start and changed only by a migration:
    /// `--store auto` follows it, and another explicit `--store` is refused
    /// while tokens would be left behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// After a migration, the store the secrets came from, until their old
    /// copies are deleted there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_store: Option<String>,
    pub tokens: Vec<Entry>,
}

impl Index {
    pub fn new(store_id: String) -> Self {
        Index {
            version: FORMAT_VERSION,
            store_id,
            store: None,
            previous_store: None,
            tokens: Vec::new(),
        }
    }

    /// The active token `name` of `owner`.
    pub fn find(&self, owner: u32, name: &str) -> Option<&Entry> {
        self.tokens
            .iter()
            .find(|e| e.state == EntryState::Active && e.owner_uid == owner && e.name == name)
    }

    pub fn find_mut(&mut self, owner: u32, name: &str) -> Option<&mut Entry> {
        self.tokens
            .iter_mut()
            .find(|e| e.state == EntryState::Active && e.owner_uid == owner && e.name == name)
    }

    pub fn by_id_mut(&mut self, id: &str) -> Option<&mut Entry> {
        self.tokens.iter_mut().find(|e| e.id == id)
    }

    /// Tokens `owner` has or is adding: what counts against the limit.
    pub fn count_owned(&self, owner: u32) -> usize {
        self.tokens
            .iter()
            .filter(|e| e.owner_uid == owner && e.state != EntryState::Removing)
            .count()
    }

    /// Whether `owner` has a token, or one being added, called `name`. A
    /// name being added is taken too: two concurrent adds of one name must
    /// not both succeed.
    pub fn name_taken(&self, owner: u32, name: &str) -> bool {
        self.tokens
            .iter()
            .any(|e| e.owner_uid == owner && e.name == name && e.state != EntryState::Removing)
    }
}

/// Why the index could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("cannot read the token index {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error(
        "the token index {path} is corrupt ({err}); it holds no secret: move it aside to start afresh (its tokens' secrets stay in the keyring under signet:<store id>)"
    )]
    Corrupt { path: PathBuf, err: String },
    #[error(
        "the token index {path} has format version {found}; this agent reads version {FORMAT_VERSION}"
    )]
    Version { path: PathBuf, found: u32 },
    #[error("cannot write the token index in {dir}: {err}")]
    Write { dir: PathBuf, err: std::io::Error },
}

/// Reads the index in `dir`; `None` when there is none yet.
pub fn load(dir: &Path) -> Result<Option<Index>, IndexError> {
    let path = dir.join(INDEX_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(IndexError::Read { path, err }),
    };
    let index: Index = serde_json::from_str(&text)
        .map_err(|e| IndexError::Corrupt { path: path.clone(), err: e.to_string() })?;
    if index.version != FORMAT_VERSION {
        return Err(IndexError::Version { path, found: index.version });
    }
    Ok(Some(index))
}

/// Replaces the index in `dir` atomically and durably.
pub fn save(dir: &Path, index: &Index) -> Result<(), IndexError> {
    let werr = |err| IndexError::Write { dir: dir.to_path_buf(), err };
    let bytes =
        serde_json::to_vec_pretty(index).map_err(|e| werr(std::io::Error::other(e.to_string())))?;
    let tmp = dir.join(format!("{INDEX_FILE}.tmp"));
    {
        // 0600 from creation: metadata is not secret, but it is nobody
        // else's business which APIs this user holds tokens for.
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(werr)?;
        f.write_all(&bytes).map_err(werr)?;
        f.write_all(b"\n").map_err(werr)?;
        f.sync_all().map_err(werr)?;
    }
    fs::rename(&tmp, dir.join(INDEX_FILE)).map_err(werr)?;
    // The rename is durable only once the directory itself is synced.
    File::open(dir).and_then(|d| d.sync_all()).map_err(werr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use signet_proto::{TokenKind, TokenParams};

    fn entry(id: &str, name: &str, state: EntryState) -> Entry {
        Entry {
            id: id.into(),
            state,
            name: name.into(),
            kind: TokenKind::Bearer,
            url: "https://h/".into(),
            owner_uid: 1000,
            created: 1,
            expires: None,
            last_used: None,
            use_count: 0,
            exportable: false,
            comment: None,
            params: TokenParams::default(),
        }
    }

    #[test]
    fn save_load_round_trip_and_no_tmp_left() {
        let d = tempfile::tempdir().unwrap();
        assert!(load(d.path()).unwrap().is_none());
        let mut idx = Index::new("abc".into());
        idx.tokens.push(entry("1", "a", EntryState::Active));
        save(d.path(), &idx).unwrap();
        assert_eq!(load(d.path()).unwrap().unwrap(), idx);
        assert!(!d.path().join("index.json.tmp").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(d.path().join(INDEX_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn corrupt_and_future_indexes_are_errors() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(INDEX_FILE), "{not json").unwrap();
        assert!(matches!(load(d.path()), Err(IndexError::Corrupt { .. })));
        fs::write(d.path().join(INDEX_FILE), r#"{"version":9,"store_id":"x","tokens":[]}"#)
            .unwrap();
        assert!(matches!(load(d.path()), Err(IndexError::Version { found: 9, .. })));
    }

    #[test]
    fn lookups_see_active_entries_only_but_names_in_flight_are_taken() {
        let mut idx = Index::new("s".into());
        idx.tokens.push(entry("1", "a", EntryState::Adding));
        idx.tokens.push(entry("2", "b", EntryState::Removing));
        idx.tokens.push(entry("3", "c", EntryState::Active));
        assert!(idx.find(1000, "a").is_none());
        assert!(idx.find(1000, "b").is_none());
        assert!(idx.find(1000, "c").is_some());
        assert!(idx.find(1001, "c").is_none());
        assert!(idx.name_taken(1000, "a"));
        assert!(!idx.name_taken(1000, "b"));
        assert_eq!(idx.count_owned(1000), 2);
    }
}
