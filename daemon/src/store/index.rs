//! The token index: every token's metadata, never a secret.
//!
//! Two files in the data directory. `index.json` is a snapshot, replaced
//! atomically (write a temporary file, fsync it, rename it over the old
//! one, fsync the directory), so a crash leaves either the old file or the
//! new one, never a torn one. `index.journal` holds the changes since the
//! snapshot, one checksummed JSON line each, appended and synced
//! (`fdatasync`) before the change is published: a change costs one small
//! append whatever the number of tokens, where rewriting the whole index
//! cost time in proportion to it (29 ms per add at 1,000 tokens). Loading
//! replays the journal over the snapshot; a torn last line (a crash in the
//! middle of an append, never acknowledged) is dropped. When the journal
//! grows past the snapshot, the snapshot is rewritten and the journal
//! emptied; replaying changes the snapshot already holds gives the same
//! result (each sets an entry whole or deletes it), so a crash between the
//! two steps is harmless.
//!
//! Why not SQLite (already linked, for `maas import`): it would give the
//! same one-sync-per-change cost, but a second on-disk format to migrate to
//! and a page cache to tune, for an index that is read whole at start-up
//! and otherwise served from memory.
//!
//! Each entry carries a state that makes the two-step changes (index, then
//! keyring) safe against a crash between the steps: an entry is written as
//! `adding` before its secret goes into the keyring and as `removing` before
//! its secret is deleted. At start-up `Store::recover` rolls
//! `adding` back and `removing` forward. So an index entry never outlives
//! its secret, and a secret never outlives its entry.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::entry::{Entry, EntryState};

pub const INDEX_FILE: &str = "index.json";
pub const JOURNAL_FILE: &str = "index.journal";
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

    pub fn by_id(&self, id: &str) -> Option<&Entry> {
        self.tokens.iter().find(|e| e.id == id)
    }

    /// Applies one journalled change.
    pub fn apply(&mut self, c: &Change) {
        match c {
            Change::Put(e) => match self.by_id_mut(&e.id) {
                Some(t) => *t = (**e).clone(),
                None => self.tokens.push((**e).clone()),
            },
            Change::Delete(id) => self.tokens.retain(|t| &t.id != id),
            Change::Store { store, previous_store } => {
                self.store = store.clone();
                self.previous_store = previous_store.clone();
            }
        }
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

/// One change to the index, as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Sets the entry with this id, whole (adds it when it is not there).
    Put(Box<Entry>),
    /// Deletes the entry with this id.
    Delete(String),
    /// Records the store of record (after a migration).
    Store { store: Option<String>, previous_store: Option<String> },
}

fn line_sum(json: &[u8]) -> String {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(json);
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The journal, open for appending: one line per commit, each a batch of
/// changes applied together.
pub struct Journal {
    file: File,
    dir: PathBuf,
    /// Lines in the journal since the snapshot.
    pub len: usize,
}

impl Journal {
    /// Appends `changes` as one line and syncs it: durable when this
    /// returns, and all or nothing (a torn line is dropped whole at load).
    pub fn append(&mut self, changes: &[Change]) -> Result<(), IndexError> {
        let werr = |err| IndexError::Write { dir: self.dir.clone(), err };
        let json = serde_json::to_vec(changes).map_err(|e| werr(std::io::Error::other(e)))?;
        let mut buf = Vec::with_capacity(json.len() + 18);
        buf.extend_from_slice(line_sum(&json).as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(&json);
        buf.push(b'\n');
        self.file.write_all(&buf).map_err(werr)?;
        self.file.sync_data().map_err(werr)?;
        self.len += 1;
        Ok(())
    }

    /// Writes `index` as the new snapshot, then empties the journal.
    pub fn compact(&mut self, index: &Index) -> Result<(), IndexError> {
        save(&self.dir, index)?;
        let werr = |err| IndexError::Write { dir: self.dir.clone(), err };
        self.file.set_len(0).map_err(werr)?;
        self.file.sync_all().map_err(werr)?;
        self.len = 0;
        Ok(())
    }

    /// Whether the journal has grown enough to be folded into the snapshot.
    pub fn wants_compaction(&self, tokens: usize) -> bool {
        self.len > 1024 && self.len > tokens
    }
}

/// Opens the journal of `dir` for appending, creating it (durably) when
/// there is none.
pub fn open_journal(dir: &Path, len: usize) -> Result<Journal, IndexError> {
    let werr = |err| IndexError::Write { dir: dir.to_path_buf(), err };
    let path = dir.join(JOURNAL_FILE);
    let existed = path.exists();
    let file =
        OpenOptions::new().append(true).create(true).mode(0o600).open(&path).map_err(werr)?;
    if !existed {
        File::open(dir).and_then(|d| d.sync_all()).map_err(werr)?;
    }
    Ok(Journal { file, dir: dir.to_path_buf(), len })
}

/// Entries by id while the journal is replayed.
struct Replay {
    slots: Vec<Option<Entry>>,
    by_id: std::collections::HashMap<String, usize>,
}

impl Replay {
    fn new(tokens: Vec<Entry>) -> Replay {
        let by_id = tokens.iter().enumerate().map(|(i, e)| (e.id.clone(), i)).collect();
        Replay { slots: tokens.into_iter().map(Some).collect(), by_id }
    }

    fn apply(&mut self, index: &mut Index, c: Change) {
        match c {
            Change::Put(e) => match self.by_id.get(&e.id) {
                Some(&i) => self.slots[i] = Some(*e),
                None => {
                    self.by_id.insert(e.id.clone(), self.slots.len());
                    self.slots.push(Some(*e));
                }
            },
            Change::Delete(id) => {
                if let Some(i) = self.by_id.remove(&id) {
                    self.slots[i] = None;
                }
            }
            other @ Change::Store { .. } => index.apply(&other),
        }
    }

    fn finish(self) -> Vec<Entry> {
        self.slots.into_iter().flatten().collect()
    }
}

/// Replays the journal of `dir` over `index`; returns how many changes it
/// held. A torn last line is cut off the file.
fn replay(dir: &Path, index: &mut Index, repair: bool) -> Result<usize, IndexError> {
    let path = dir.join(JOURNAL_FILE);
    let mut bytes = Vec::new();
    match File::open(&path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes).map_err(|err| IndexError::Read { path: path.clone(), err })?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(IndexError::Read { path, err }),
    };
    if bytes.is_empty() {
        return Ok(0);
    }
    let corrupt = |why: &str| IndexError::Corrupt { path: path.clone(), err: why.to_string() };
    // Replay against a map by id: looking each id up in the list would
    // make start-up quadratic in the number of tokens.
    let mut replay = Replay::new(std::mem::take(&mut index.tokens));
    let mut pos = 0usize;
    let mut n = 0usize;
    while pos < bytes.len() {
        let Some(nl) = bytes[pos..].iter().position(|b| *b == b'\n') else { break };
        let line = &bytes[pos..pos + nl];
        let last = pos + nl + 1 == bytes.len();
        let parsed = (line.len() > 17 && line[16] == b' ')
            .then(|| (&line[..16], &line[17..]))
            .filter(|(sum, json)| line_sum(json).as_bytes() == *sum)
            .and_then(|(_, json)| serde_json::from_slice::<Vec<Change>>(json).ok());
        match parsed {
            Some(batch) => batch.into_iter().for_each(|c| replay.apply(index, c)),
            None if last => break,
            None => return Err(corrupt("a journal line in the middle is damaged")),
        }
        n += 1;
        pos += nl + 1;
    }
    index.tokens = replay.finish();
    if repair && pos < bytes.len() {
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|err| IndexError::Write { dir: dir.to_path_buf(), err })?;
        f.set_len(pos as u64)
            .and_then(|()| f.sync_all())
            .map_err(|err| IndexError::Write { dir: dir.to_path_buf(), err })?;
    }
    Ok(n)
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

/// Reads the index in `dir`, journal replayed; `None` when there is none
/// yet. Also returns the number of changes in the journal. With `repair`
/// (the agent that owns the directory, at start-up), a torn last line is
/// cut off the journal.
pub fn load_with_journal(dir: &Path, repair: bool) -> Result<Option<(Index, usize)>, IndexError> {
    let Some(mut index) = load_snapshot(dir)? else { return Ok(None) };
    let n = replay(dir, &mut index, repair)?;
    Ok(Some((index, n)))
}

/// Reads the index in `dir`, journal replayed, without writing anything
/// (safe while an agent runs); `None` when there is none yet.
pub fn load(dir: &Path) -> Result<Option<Index>, IndexError> {
    Ok(load_with_journal(dir, false)?.map(|(i, _)| i))
}

fn load_snapshot(dir: &Path) -> Result<Option<Index>, IndexError> {
    let path = dir.join(INDEX_FILE);
    // One read of the file's size (fs::read sizes its buffer from the
    // metadata), parsed in place: no UTF-8 pass over the whole text first.
    let bytes = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(IndexError::Read { path, err }),
    };
    let index: Index = serde_json::from_slice(&bytes)
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
        serde_json::to_vec(index).map_err(|e| werr(std::io::Error::other(e.to_string())))?;
    // 0600 from creation: metadata is not secret, but it is nobody else's
    // business which APIs this user holds tokens for.
    crate::paths::replace_file(&dir.join(INDEX_FILE), &[&bytes, b"\n"]).map_err(werr)?;
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
            removes_at: None,
            confirm: false,
            confirm_for: None,
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
    fn the_journal_replays_whole_lines_and_drops_a_torn_one() {
        let d = tempfile::tempdir().unwrap();
        let mut idx = Index::new("abc".into());
        idx.tokens.push(entry("1", "a", EntryState::Active));
        save(d.path(), &idx).unwrap();
        let mut j = open_journal(d.path(), 0).unwrap();
        j.append(&[Change::Put(Box::new(entry("2", "b", EntryState::Adding)))]).unwrap();
        let good = fs::metadata(d.path().join(JOURNAL_FILE)).unwrap().len() as usize;
        // A swap: two changes in one line, applied together or not at all.
        j.append(&[
            Change::Put(Box::new(entry("1", "a", EntryState::Removing))),
            Change::Put(Box::new(entry("2", "b", EntryState::Active))),
        ])
        .unwrap();
        let full = fs::read(d.path().join(JOURNAL_FILE)).unwrap();
        let (after, n) = load_with_journal(d.path(), false).unwrap().unwrap();
        assert_eq!(n, 2);
        assert_eq!(after.by_id("1").unwrap().state, EntryState::Removing);
        assert_eq!(after.by_id("2").unwrap().state, EntryState::Active);
        for cut in good..full.len() {
            fs::write(d.path().join(JOURNAL_FILE), &full[..cut]).unwrap();
            let (i, _) = load_with_journal(d.path(), true).unwrap().unwrap();
            assert_eq!(i.by_id("1").unwrap().state, EntryState::Active, "cut at {cut}");
            assert_eq!(i.by_id("2").unwrap().state, EntryState::Adding, "cut at {cut}");
            assert_eq!(fs::metadata(d.path().join(JOURNAL_FILE)).unwrap().len() as usize, good);
        }
        // A damaged line in the middle is an error, not a silent loss.
        let mut bad = full.clone();
        bad[3] ^= 1;
        fs::write(d.path().join(JOURNAL_FILE), &bad).unwrap();
        assert!(matches!(load(d.path()), Err(IndexError::Corrupt { .. })));
    }

    #[test]
    fn compaction_folds_the_journal_and_a_replay_over_it_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        save(d.path(), &Index::new("abc".into())).unwrap();
        let mut j = open_journal(d.path(), 0).unwrap();
        let mut idx = Index::new("abc".into());
        let batches = [
            vec![Change::Put(Box::new(entry("1", "a", EntryState::Adding)))],
            vec![Change::Put(Box::new(entry("1", "a", EntryState::Active)))],
            vec![Change::Put(Box::new(entry("2", "b", EntryState::Active)))],
            vec![Change::Delete("2".into())],
            vec![Change::Store { store: Some("file".into()), previous_store: None }],
        ];
        for b in &batches {
            j.append(b).unwrap();
            b.iter().for_each(|c| idx.apply(c));
        }
        let journal = fs::read(d.path().join(JOURNAL_FILE)).unwrap();
        j.compact(&idx).unwrap();
        assert_eq!(fs::metadata(d.path().join(JOURNAL_FILE)).unwrap().len(), 0);
        assert_eq!(load(d.path()).unwrap().unwrap(), idx);
        // Killed between the snapshot and emptying the journal: the same.
        fs::write(d.path().join(JOURNAL_FILE), &journal).unwrap();
        assert_eq!(load(d.path()).unwrap().unwrap(), idx);
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
