//! The token store: metadata in the index file, secrets in the keyring.
//!
//! Every change takes the writer lock, so changes happen one at a time, in
//! an order that a crash at any instant cannot turn into a token without a
//! secret or a secret without a token (see [`index`] for the states, and
//! [`Store::recover`] for how start-up finishes what a crash interrupted).
//! Reads (`list`, `show`) take a snapshot of the published index and never
//! wait for the keyring.
//!
//! Secrets read from the keyring are cached in memory (a keyring read costs
//! about 40 times a socket round trip) and wiped on removal, at exit and
//! when the agent locks. A locked agent's store is sealed: it reads no
//! secret from the keyring and caches none until unsealed.

pub mod index;
pub mod keyring;
pub mod vault;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use signet_proto::{ErrorCode, Failure, MigrateOutcome, Secret};

use self::index::{Change, Entry, EntryState, Index, IndexError, Journal};
use self::keyring::{Keyring, KeyringError, StoreChoice, VaultAccess};
use self::vault::Vault;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no token named `{0}`")]
    NoSuchToken(String),
    #[error("a token named `{0}` already exists")]
    Exists(String),
    #[error("token limit reached: at most {0} tokens per owner")]
    LimitReached(u32),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Directory(#[from] crate::paths::DirError),
    #[error("{0}")]
    Setup(String),
    #[error("the agent is locked")]
    Sealed,
}

fn lock_poisoned() -> StoreError {
    StoreError::Setup("internal error: a store lock was poisoned".into())
}

pub struct Store {
    dir: PathBuf,
    /// Replaced, once, by a migration to another store.
    keyring: RwLock<Keyring>,
    keyring_timeout: std::time::Duration,
    /// The published index: what reads see.
    index: RwLock<Index>,
    /// Where changes go before they are published.
    journal: Arc<Mutex<Journal>>,
    /// Serialises changes: held across index write, keyring call, index write.
    writer: tokio::sync::Mutex<()>,
    cache: Mutex<HashMap<String, Arc<Secret>>>,
    /// Set (under the cache's lock) while the agent is locked: no secret
    /// is read or cached.
    sealed: AtomicBool,
    /// Uses since the index was last written, by token id: kept apart from
    /// the index so that a use never takes the index's write lock, which
    /// would stall every concurrent reader.
    usage: Mutex<HashMap<String, Usage>>,
    /// Held for the agent's life: one agent per data directory.
    _lock: nix::fcntl::Flock<File>,
}

/// Uses of one token not yet written to the index.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    count: u64,
    last: i64,
}

fn apply_usage(e: &mut Entry, u: Usage) {
    e.use_count += u.count;
    e.last_used = e.last_used.max(Some(u.last));
}

/// What start-up recovery did, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    pub rolled_back: usize,
    pub rolled_forward: usize,
    pub orphans_removed: usize,
    pub pending: usize,
}

/// A fresh random id: 128 bits from the OS, hex.
pub fn random_id() -> Result<String, StoreError> {
    crate::random::hex::<16>().map_err(|e| StoreError::Setup(format!("no randomness: {e}")))
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        match e {
            StoreError::NoSuchToken(_) => Failure::new(ErrorCode::NoSuchToken, e.to_string())
                .with_hint("`signet list` shows your tokens"),
            StoreError::Exists(_) => Failure::new(ErrorCode::Exists, e.to_string())
                .with_hint("choose another name, or `signet rm` the old token first"),
            StoreError::LimitReached(limit) => Failure::policy(format!(
                "token limit reached: this agent allows at most {limit} tokens per owner"
            ))
            .with_hint(
                "remove a token with `signet rm NAME`, or raise max_tokens_per_owner in the agent's config.toml and restart it",
            ),
            StoreError::Keyring(k) => {
                let f = Failure::new(ErrorCode::Store, k.to_string());
                match k {
                    KeyringError::Locked(_) => f.with_hint(
                        "unlock your keyring (e.g. log in to the desktop session, or `gnome-keyring-daemon --unlock`) and try again",
                    ),
                    KeyringError::WrongPassphrase => {
                        f.with_hint("nothing was changed; give the vault's current passphrase")
                    }
                    _ => f,
                }
            }
            StoreError::Sealed => {
                Failure::policy(e.to_string()).with_hint("`signet unlock` unlocks it")
            }
            StoreError::Index(_) | StoreError::Directory(_) | StoreError::Setup(_) => {
                Failure::new(ErrorCode::Store, e.to_string())
            }
        }
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, starts the keyring and
    /// finishes whatever a crash interrupted. Blocking: call before the
    /// async runtime serves anything.
    pub fn open(
        dir: &Path,
        choice: StoreChoice,
        keyring_timeout: std::time::Duration,
    ) -> Result<(Store, Option<String>, Recovery), StoreError> {
        Store::open_with_passphrase(dir, choice, keyring_timeout, None)
    }

    /// [`Store::open`], with the vault passphrase for `--store file` (or
    /// `auto` landing on an existing vault).
    pub fn open_with_passphrase(
        dir: &Path,
        choice: StoreChoice,
        keyring_timeout: std::time::Duration,
        passphrase: Option<Secret>,
    ) -> Result<(Store, Option<String>, Recovery), StoreError> {
        crate::paths::ensure_private_dir(dir)?;
        let lock = lock_data_dir(dir)?;
        // The key derivation runs while the index is read.
        let vault = VaultAccess::new(dir.to_path_buf(), passphrase).open_early();
        let (index, journalled) = match index::load_with_journal(dir, true)? {
            Some(loaded) => loaded,
            None => {
                let i = Index::new(random_id()?);
                index::save(dir, &i)?;
                (i, 0)
            }
        };
        let journal = index::open_journal(dir, journalled)?;
        let (choice, mut notes) = resolve_choice(dir, &index, choice)?;
        let (keyring, warning) =
            match Keyring::open(choice, &index.store_id, keyring_timeout, vault) {
                // An existing vault and no passphrase (no terminal, no file):
                // serve locked, and open the vault at `signet unlock`.
                Err(KeyringError::NoPassphrase) if Vault::exists_in(dir) => (
                    Keyring::closed_vault(keyring_timeout),
                    Some(
                        "the vault stays closed until `signet unlock` gives its passphrase".into(),
                    ),
                ),
                opened => opened?,
            };
        notes.extend(warning);
        let warning = if notes.is_empty() { None } else { Some(notes.join("; ")) };
        let record = keyring.name() != "memory" && index.store.as_deref() != Some(keyring.name());
        let store = Store {
            dir: dir.to_path_buf(),
            keyring: RwLock::new(keyring),
            keyring_timeout,
            index: RwLock::new(index),
            journal: Arc::new(Mutex::new(journal)),
            writer: tokio::sync::Mutex::new(()),
            cache: Mutex::new(HashMap::new()),
            sealed: AtomicBool::new(false),
            usage: Mutex::new(HashMap::new()),
            _lock: lock,
        };
        if record {
            let previous_store = store.read()?.previous_store.clone();
            let name = store.keyring_name().to_string();
            store.commit_blocking(vec![Change::Store { store: Some(name), previous_store }])?;
        }
        if store.awaits_vault() {
            store.seal();
            return Ok((store, warning, Recovery::default()));
        }
        let recovery = store.recover()?;
        store.finish_migration();
        Ok((store, warning, recovery))
    }

    /// Whether the store is the vault, not opened yet for want of its
    /// passphrase. The agent stays locked meanwhile.
    pub fn awaits_vault(&self) -> bool {
        self.keyring().is_ok_and(|k| k.is_closed())
    }

    /// Opens the vault the store awaits with `passphrase`, then finishes
    /// what a crash interrupted, as a start with the passphrase would have.
    /// `Ok(false)`: the wrong passphrase, nothing changed.
    pub async fn open_vault(&self, passphrase: Secret) -> Result<bool, StoreError> {
        let _w = self.writer.lock().await;
        if !self.awaits_vault() {
            return Ok(true);
        }
        let (dir, timeout, store_id) = (self.dir.clone(), self.keyring_timeout, self.store_id());
        let opened = tokio::task::spawn_blocking(move || {
            let vault = VaultAccess::new(dir, Some(passphrase));
            Keyring::open(StoreChoice::File, &store_id, timeout, vault)
        })
        .await
        .map_err(|e| StoreError::Setup(format!("cannot open the vault: {e}")))?;
        let keyring = match opened {
            Ok((k, _)) => k,
            Err(KeyringError::WrongPassphrase) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        *self.keyring.write().map_err(|_| lock_poisoned())? = keyring;
        // Keyring calls block (each at most the keyring timeout), and the
        // source store of a cut-short migration may be slow to answer.
        let finish = || {
            let recovery = self.recover()?;
            if recovery != Recovery::default() {
                tracing::info!(?recovery, "finished changes interrupted by a crash");
            }
            self.finish_migration();
            Ok::<_, StoreError>(())
        };
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(finish)?,
            _ => finish()?,
        }
        Ok(true)
    }

    /// The keyring in use now.
    fn keyring(&self) -> Result<Keyring, StoreError> {
        Ok(self.keyring.read().map_err(|_| lock_poisoned())?.clone())
    }

    pub fn keyring_name(&self) -> &'static str {
        self.keyring().map(|k| k.name()).unwrap_or("unknown")
    }

    pub fn store_id(&self) -> String {
        self.read().map(|i| i.store_id.clone()).unwrap_or_default()
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, Index>, StoreError> {
        self.index.read().map_err(|_| lock_poisoned())
    }

    /// Rolls `adding` entries back and `removing` entries forward, then
    /// deletes keyring entries of this store that the index does not know
    /// (where the keyring can list them). An entry whose keyring call fails
    /// (a locked keyring) stays pending, hidden, for the next start.
    fn recover(&self) -> Result<Recovery, StoreError> {
        let pending: Vec<Entry> =
            self.read()?.tokens.iter().filter(|e| e.state != EntryState::Active).cloned().collect();
        let mut report = Recovery::default();
        let mut changes = Vec::new();
        for e in pending {
            let id = e.id.clone();
            match self.keyring()?.call(move |b| b.delete(&id)) {
                Ok(()) if e.state == EntryState::Adding => report.rolled_back += 1,
                Ok(()) => report.rolled_forward += 1,
                Err(err) => {
                    tracing::warn!(token = %e.name, error = %err, "cannot finish an interrupted change; will retry at next start");
                    report.pending += 1;
                    continue;
                }
            }
            changes.push(Change::Delete(e.id));
        }
        if !changes.is_empty() {
            self.commit_blocking(changes)?;
        }
        match self.keyring()?.call(|b| b.list_ids()) {
            Ok(Some(ids)) => {
                let known: std::collections::HashSet<String> =
                    self.read()?.tokens.iter().map(|e| e.id.clone()).collect();
                for id in ids {
                    if known.contains(&id) {
                        continue;
                    }
                    let del = id.clone();
                    match self.keyring()?.call(move |b| b.delete(&del)) {
                        Ok(()) => report.orphans_removed += 1,
                        Err(err) => {
                            tracing::warn!(%id, error = %err, "cannot delete an orphaned keyring entry")
                        }
                    }
                }
            }
            Ok(None) => {}
            Err(err) => tracing::warn!(error = %err, "cannot list keyring entries to find orphans"),
        }
        Ok(report)
    }

    /// Deletes the old copies a migration cut short left in its source
    /// store, when that store can be opened without asking anyone.
    fn finish_migration(&self) {
        // Nearly always nothing to do: look before cloning the index.
        let Some(prev) = self.read().ok().and_then(|i| i.previous_store.clone()) else { return };
        let Ok(idx) = self.read().map(|i| i.clone()) else { return };
        let outcome =
            prev.parse::<StoreChoice>().map_err(KeyringError::Unavailable).and_then(|c| {
                let vault = VaultAccess::new(self.dir.clone(), None);
                Keyring::open(c, &idx.store_id, self.keyring_timeout, vault)
            });
        let mut left = 0usize;
        match outcome {
            Ok((old, _)) => {
                for e in &idx.tokens {
                    let id = e.id.clone();
                    if old.call(move |b| b.delete(&id)).is_err() {
                        left += 1;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(store = %prev, error = %e, "cannot open the store a migration left copies in; they stay there");
            }
        }
        if left > 0 {
            tracing::warn!(store = %prev, left, "old copies of migrated secrets could not be deleted");
        }
        let done = Change::Store { store: idx.store.clone(), previous_store: None };
        if let Err(e) = self.commit_blocking(vec![done]) {
            tracing::warn!(error = %e, "cannot record the end of a migration");
        }
    }

    /// Moves every secret into the store `to`, with no moment at which a
    /// token's secret is in neither: each is copied and read back, then one
    /// index write makes `to` the store of record (a crash before it leaves
    /// the old store in use, one after it the new), and only then are the
    /// old copies deleted. The agent uses `to` from then on.
    pub async fn migrate(
        &self,
        to: StoreChoice,
        passphrase: Option<Secret>,
    ) -> Result<MigrateOutcome, StoreError> {
        let _w = self.writer.lock().await;
        let from = self.keyring()?;
        let Some(to_name) = to.name() else {
            return Err(StoreError::Setup("migrate to file, secret-service or keyutils".into()));
        };
        if from.name() == to_name {
            return Err(StoreError::Setup(format!(
                "the secrets are already in the {to_name} store"
            )));
        }
        let store_id = self.store_id();
        let (dir, timeout) = (self.dir.clone(), self.keyring_timeout);
        let (target, _) = tokio::task::spawn_blocking(move || {
            Keyring::open(to, &store_id, timeout, VaultAccess::new(dir, passphrase))
        })
        .await
        .map_err(|e| StoreError::Setup(format!("cannot open the target store: {e}")))??;

        let ids: Vec<String> = self
            .read()?
            .tokens
            .iter()
            .filter(|e| e.state == EntryState::Active)
            .map(|e| e.id.clone())
            .collect();
        let mut copied: Vec<String> = Vec::with_capacity(ids.len());
        for id in &ids {
            let result = self.copy_secret(&from, &target, id).await;
            if let Err(e) = result {
                // The old store is still the store of record: take the
                // copies out of the new one again, as far as it lets us.
                for done in copied.iter().chain(std::iter::once(id)) {
                    let done = done.clone();
                    let _ = target.call_async(move |b| b.delete(&done)).await;
                }
                return Err(e);
            }
            copied.push(id.clone());
        }

        let store = Some(to_name.to_string());
        let switch =
            Change::Store { store: store.clone(), previous_store: Some(from.name().to_string()) };
        self.commit(vec![switch]).await?;
        *self.keyring.write().map_err(|_| lock_poisoned())? = target;

        let mut left_behind = 0u32;
        for id in &ids {
            let id = id.clone();
            if from.call_async(move |b| b.delete(&id)).await.is_err() {
                left_behind += 1;
            }
        }
        if left_behind == 0 {
            self.commit(vec![Change::Store { store, previous_store: None }]).await?;
        }
        Ok(MigrateOutcome {
            from: from.name().to_string(),
            to: to_name.to_string(),
            moved: u32::try_from(ids.len()).unwrap_or(u32::MAX),
            left_behind,
        })
    }

    /// Copies one secret from `from` to `to` and reads it back.
    async fn copy_secret(&self, from: &Keyring, to: &Keyring, id: &str) -> Result<(), StoreError> {
        let cached = self.cache.lock().map_err(|_| lock_poisoned())?.get(id).cloned();
        let secret = match cached {
            Some(s) => s,
            None => {
                let id = id.to_string();
                Arc::new(from.call_async(move |b| b.get(&id)).await?)
            }
        };
        let (put, sid) = (secret.clone(), id.to_string());
        to.call_async(move |b| b.set(&sid, &put)).await?;
        let sid = id.to_string();
        let back = to.call_async(move |b| b.get(&sid)).await?;
        if back.expose() != secret.expose() {
            return Err(StoreError::Keyring(KeyringError::Failure(
                "a secret read back from the new store differs from the one written".into(),
            )));
        }
        Ok(())
    }

    /// Re-seals the vault under a new passphrase (`--store file` only).
    pub async fn change_vault_passphrase(
        &self,
        old: Secret,
        new: Secret,
    ) -> Result<(), StoreError> {
        let _w = self.writer.lock().await;
        let kr = self.keyring()?;
        Ok(kr.call_async(move |b| b.change_passphrase(&old, &new)).await?)
    }

    /// The active tokens of `owner`, sorted by name.
    pub fn list(&self, owner: u32) -> Result<Vec<Entry>, StoreError> {
        let idx = self.read()?;
        let mut v: Vec<Entry> = idx
            .tokens
            .iter()
            .filter(|e| e.state == EntryState::Active && e.owner_uid == owner)
            .cloned()
            .collect();
        drop(idx);
        let usage = self.usage.lock().map_err(|_| lock_poisoned())?;
        for e in &mut v {
            if let Some(u) = usage.get(&e.id) {
                apply_usage(e, *u);
            }
        }
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    /// The active token `name` of `owner`, use counts included.
    pub fn get(&self, owner: u32, name: &str) -> Result<Entry, StoreError> {
        let mut e = self
            .read()?
            .find(owner, name)
            .cloned()
            .ok_or_else(|| StoreError::NoSuchToken(name.into()))?;
        if let Some(u) = self.usage.lock().map_err(|_| lock_poisoned())?.get(&e.id) {
            apply_usage(&mut e, *u);
        }
        Ok(e)
    }

    /// Journals `changes` durably, then publishes them. Only called under
    /// the writer lock (or before serving), so nothing else changes the
    /// index meanwhile.
    async fn commit(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        let journal = self.journal.clone();
        let changes = tokio::task::spawn_blocking(move || {
            journal.lock().map_err(|_| lock_poisoned())?.append(&changes)?;
            Ok::<_, StoreError>(changes)
        })
        .await
        .map_err(|e| StoreError::Setup(format!("index writer failed: {e}")))??;
        if let Some(snapshot) = self.publish(&changes)?
            && let Err(e) = self.compact(snapshot).await
        {
            // The journal holds every change: compaction retries later.
            tracing::warn!(error = %e, "cannot compact the index yet");
        }
        Ok(())
    }

    /// Writes `snapshot` as the index and empties the journal, off the
    /// runtime's threads.
    async fn compact(&self, snapshot: Index) -> Result<(), StoreError> {
        let journal = self.journal.clone();
        tokio::task::spawn_blocking(move || {
            journal.lock().map_err(|_| lock_poisoned())?.compact(&snapshot)?;
            Ok::<_, StoreError>(())
        })
        .await
        .map_err(|e| StoreError::Setup(format!("index writer failed: {e}")))?
    }

    /// [`Store::commit`] for blocking contexts (start-up).
    fn commit_blocking(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        self.journal.lock().map_err(|_| lock_poisoned())?.append(&changes)?;
        if let Some(snapshot) = self.publish(&changes)?
            && let Err(e) = self.journal.lock().map_err(|_| lock_poisoned())?.compact(&snapshot)
        {
            tracing::warn!(error = %e, "cannot compact the index yet");
        }
        Ok(())
    }

    /// Applies journalled changes to the published index; returns a
    /// snapshot to write when the journal has grown enough to fold it in.
    fn publish(&self, changes: &[Change]) -> Result<Option<Index>, StoreError> {
        let mut idx = self.index.write().map_err(|_| lock_poisoned())?;
        for c in changes {
            idx.apply(c);
        }
        let compact =
            self.journal.lock().map_err(|_| lock_poisoned())?.wants_compaction(idx.tokens.len());
        Ok(compact.then(|| idx.clone()))
    }

    /// Adds a token: index entry `adding`, secret into the keyring, entry
    /// `active`. A failure in the keyring takes the entry out again.
    pub async fn add(
        &self,
        mut entry: Entry,
        secret: Secret,
        limit: Option<u32>,
    ) -> Result<Entry, StoreError> {
        let _w = self.writer.lock().await;
        {
            let idx = self.read()?;
            if idx.name_taken(entry.owner_uid, &entry.name) {
                return Err(StoreError::Exists(entry.name));
            }
            if let Some(limit) = limit
                && idx.count_owned(entry.owner_uid) >= limit as usize
            {
                return Err(StoreError::LimitReached(limit));
            }
        }
        entry.id = random_id()?;
        entry.state = EntryState::Adding;
        let secret = self.put_pending(&entry, secret).await?;

        entry.state = EntryState::Active;
        self.commit(vec![Change::Put(Box::new(entry.clone()))]).await?;
        // Sealed meanwhile: the token is stored, only not cached.
        let _ = self.cache_insert(&entry.id, secret);
        Ok(entry)
    }

    /// Writes `entry` (state `adding`) into the index, then its secret into
    /// the keyring. If the keyring refuses, the entry is taken out again:
    /// the keyring may hold half a write, so it is deleted while the entry
    /// still says `adding`; if that fails too, the entry stays pending and
    /// start-up recovery deletes it.
    async fn put_pending(&self, entry: &Entry, secret: Secret) -> Result<Arc<Secret>, StoreError> {
        self.commit(vec![Change::Put(Box::new(entry.clone()))]).await?;
        let id = entry.id.clone();
        let secret = Arc::new(secret);
        let to_keyring = secret.clone();
        if let Err(e) = self.keyring()?.call_async(move |b| b.set(&id, &to_keyring)).await {
            let id = entry.id.clone();
            if self.keyring()?.call_async(move |b| b.delete(&id)).await.is_ok() {
                self.commit(vec![Change::Delete(entry.id.clone())]).await?;
            }
            return Err(e.into());
        }
        Ok(secret)
    }

    /// Removes a token: entry `removing`, secret out of the keyring, entry
    /// gone. If the keyring refuses, the token stays as it was.
    pub async fn remove(&self, owner: u32, name: &str) -> Result<Entry, StoreError> {
        let _w = self.writer.lock().await;
        let entry = self
            .read()?
            .find(owner, name)
            .cloned()
            .ok_or_else(|| StoreError::NoSuchToken(name.into()))?;
        self.remove_held(entry).await
    }

    /// Removes the active token with this id, whatever it is called now.
    pub async fn remove_id(&self, id: &str) -> Result<Entry, StoreError> {
        let _w = self.writer.lock().await;
        let entry = self
            .read()?
            .tokens
            .iter()
            .find(|e| e.id == id && e.state == EntryState::Active)
            .cloned()
            .ok_or_else(|| StoreError::NoSuchToken(id.into()))?;
        self.remove_held(entry).await
    }

    /// The steps of a removal, under the writer lock.
    async fn remove_held(&self, entry: Entry) -> Result<Entry, StoreError> {
        let mut removing = entry.clone();
        removing.state = EntryState::Removing;
        self.commit(vec![Change::Put(Box::new(removing))]).await?;
        self.forget(&entry.id)?;

        let id = entry.id.clone();
        if let Err(e) = self.keyring()?.call_async(move |b| b.delete(&id)).await {
            self.commit(vec![Change::Put(Box::new(entry))]).await?;
            return Err(e.into());
        }
        self.commit(vec![Change::Delete(entry.id.clone())]).await?;
        Ok(entry)
    }

    /// Renames a token: one atomic index write; the keyring is not touched.
    pub async fn rename(&self, owner: u32, old: &str, new: &str) -> Result<Entry, StoreError> {
        let _w = self.writer.lock().await;
        let mut renamed = {
            let idx = self.read()?;
            let current =
                idx.find(owner, old).cloned().ok_or_else(|| StoreError::NoSuchToken(old.into()))?;
            if old == new {
                return Ok(current);
            }
            if idx.name_taken(owner, new) {
                return Err(StoreError::Exists(new.into()));
            }
            current
        };
        renamed.name = new.to_string();
        self.commit(vec![Change::Put(Box::new(renamed.clone()))]).await?;
        Ok(renamed)
    }

    /// Replaces the secret (and the settings that describe it) of token
    /// `name`, keeping its name, in steps a crash cannot split: the new
    /// secret goes into the keyring under a new id while the old token is
    /// untouched; then one journal line makes the new entry active and marks
    /// the old one `removing`; then the old secret is deleted. Killed at any
    /// point, the token works afterwards with the old secret or the new one.
    pub async fn swap_secret(
        &self,
        owner: u32,
        name: &str,
        secret: Secret,
        params: signet_proto::TokenParams,
        expires: Option<i64>,
        created: i64,
    ) -> Result<Entry, StoreError> {
        let _w = self.writer.lock().await;
        let old = self
            .read()?
            .find(owner, name)
            .cloned()
            .ok_or_else(|| StoreError::NoSuchToken(name.into()))?;
        let mut new = old.clone();
        new.id = random_id()?;
        new.state = EntryState::Adding;
        new.params = params;
        new.expires = expires;
        new.created = created;
        let secret = self.put_pending(&new, secret).await?;

        // The swap: one journal line, applied whole or not at all.
        let mut retired = old.clone();
        retired.state = EntryState::Removing;
        new.state = EntryState::Active;
        self.commit(vec![Change::Put(Box::new(retired)), Change::Put(Box::new(new.clone()))])
            .await?;
        self.forget(&old.id)?;
        let _ = self.cache_insert(&new.id, secret);

        let id = old.id.clone();
        match self.keyring()?.call_async(move |b| b.delete(&id)).await {
            Ok(()) => self.commit(vec![Change::Delete(old.id.clone())]).await?,
            // Left `removing`: start-up recovery deletes it.
            Err(e) => tracing::warn!(error = %e, "cannot delete the replaced secret yet"),
        }
        Ok(new)
    }

    /// The secret of `entry`, from memory or, the first time, the keyring.
    /// Refused while sealed.
    pub async fn secret(&self, entry: &Entry) -> Result<Arc<Secret>, StoreError> {
        {
            let cache = self.cache.lock().map_err(|_| lock_poisoned())?;
            if self.sealed.load(Ordering::Acquire) {
                return Err(StoreError::Sealed);
            }
            if let Some(s) = cache.get(&entry.id) {
                return Ok(s.clone());
            }
        }
        let id = entry.id.clone();
        // Boxed: a miss is rare and its future large, and a sign's future
        // holds this one.
        let s = Arc::new(Box::pin(self.keyring()?.call_async(move |b| b.get(&id))).await?);
        self.cache_insert(&entry.id, s.clone())?;
        Ok(s)
    }

    /// Caches a secret, unless the store was sealed meanwhile: then the
    /// secret is refused, and wiped as its last holder drops it.
    fn cache_insert(&self, id: &str, secret: Arc<Secret>) -> Result<(), StoreError> {
        let mut cache = self.cache.lock().map_err(|_| lock_poisoned())?;
        if self.sealed.load(Ordering::Acquire) {
            return Err(StoreError::Sealed);
        }
        cache.insert(id.to_string(), secret);
        Ok(())
    }

    /// Seals the store: every cached secret dropped (and so wiped), and
    /// none read or cached again until [`Store::unseal`].
    pub fn seal(&self) {
        let dropped = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            self.sealed.store(true, Ordering::Release);
            std::mem::take(&mut *cache)
        };
        drop(dropped);
    }

    pub fn unseal(&self) {
        let _cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        self.sealed.store(false, Ordering::Release);
    }

    /// Every complete token of every owner: for the lifetime reaper.
    pub fn all_active(&self) -> Result<Vec<Entry>, StoreError> {
        Ok(self.read()?.tokens.iter().filter(|e| e.state == EntryState::Active).cloned().collect())
    }

    /// Notes one use of a token, in memory; [`Store::flush_usage`] writes it.
    pub fn record_use(&self, id: &str, now: i64) {
        if let Ok(mut usage) = self.usage.lock() {
            let u = usage.entry(id.to_string()).or_default();
            u.count += 1;
            u.last = u.last.max(now);
        }
    }

    /// Writes use counts recorded since the last write, if any.
    pub async fn flush_usage(&self) -> Result<(), StoreError> {
        let _w = self.writer.lock().await;
        let pending = std::mem::take(&mut *self.usage.lock().map_err(|_| lock_poisoned())?);
        if pending.is_empty() {
            return Ok(());
        }
        let changes: Vec<Change> = {
            let idx = self.read()?;
            pending
                .iter()
                .filter_map(|(id, u)| {
                    let mut e = idx.by_id(id)?.clone();
                    apply_usage(&mut e, *u);
                    Some(Change::Put(Box::new(e)))
                })
                .collect()
        };
        if let Err(err) = self.commit(changes).await {
            // Not written: keep the counts for the next try.
            let mut usage = self.usage.lock().map_err(|_| lock_poisoned())?;
            for (id, u) in pending {
                let cur = usage.entry(id).or_default();
                cur.count += u.count;
                cur.last = cur.last.max(u.last);
            }
            return Err(err);
        }
        Ok(())
    }

    fn forget(&self, id: &str) -> Result<(), StoreError> {
        // Dropping the last Arc wipes the secret (Secret zeroizes on drop).
        self.cache.lock().map_err(|_| lock_poisoned())?.remove(id);
        Ok(())
    }

    /// Folds the journal into the snapshot, so that the next start reads
    /// one file and replays nothing: called at a clean stop. A crash skips
    /// it, and the next start replays the journal instead.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        let _w = self.writer.lock().await;
        if self.journal.lock().map_err(|_| lock_poisoned())?.len == 0 {
            return Ok(());
        }
        let snapshot = self.read()?.clone();
        self.compact(snapshot).await
    }

    /// Drops every cached secret. In-flight users keep theirs until done.
    pub fn wipe_cache(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.clear();
        }
    }
}

/// The store to open: `auto` follows the store the index records (a
/// migration may have moved the secrets); an explicit choice that differs
/// from it is refused while the index has tokens, whose secrets would then
/// be missing. Returns notes for the log.
fn resolve_choice(
    dir: &Path,
    index: &Index,
    choice: StoreChoice,
) -> Result<(StoreChoice, Vec<String>), StoreError> {
    let Some(recorded) = index.store.as_deref() else { return Ok((choice, Vec::new())) };
    let Ok(recorded_choice) = recorded.parse::<StoreChoice>() else {
        return Ok((choice, Vec::new()));
    };
    if choice == StoreChoice::Auto {
        let mut notes = Vec::new();
        if recorded_choice == StoreChoice::Keyutils {
            notes.push(
                "the secrets are in the kernel keyring: tokens will not survive a reboot (`signet migrate --to file` moves them into an encrypted vault file)".to_string(),
            );
        }
        return Ok((recorded_choice, notes));
    }
    if choice != recorded_choice && !index.tokens.is_empty() {
        return Err(StoreError::Setup(format!(
            "the secrets of the tokens in {} are in the {recorded} store; start the agent with --store {recorded} (or auto), then `signet migrate --to {}` to move them",
            dir.display(),
            choice.name().unwrap_or("?"),
        )));
    }
    Ok((choice, Vec::new()))
}

/// One agent per data directory: two writers would each publish their own
/// index over the other's.
fn lock_data_dir(dir: &Path) -> Result<nix::fcntl::Flock<File>, StoreError> {
    let path = dir.join("agent.lock");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| StoreError::Setup(format!("cannot open {}: {e}", path.display())))?;
    // An agent that is stopping has given up its socket already but still
    // writes its index for a moment (and waits up to its grace period for
    // requests in flight): a restart right behind it waits for the lock
    // rather than failing. One that keeps running is reported.
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let mut f = f;
    loop {
        match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((back, nix::errno::Errno::EWOULDBLOCK)) if std::time::Instant::now() < deadline => {
                f = back;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(StoreError::Setup(format!(
                    "another signet-agent is using the data directory {}; stop it or pass --data-dir",
                    dir.display()
                )));
            }
            Err((_, e)) => {
                return Err(StoreError::Setup(format!("cannot lock {}: {e}", path.display())));
            }
        }
    }
}

/// How long a start waits for the data directory's lock: the default
/// shutdown grace period of an agent that is stopping, and a second more.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(6);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_message_names_the_limit_and_the_fix() {
        let f = Failure::from(StoreError::LimitReached(5));
        assert_eq!(f.code.exit_code(), 5);
        assert!(f.message.contains('5'));
        assert!(f.hint.unwrap().contains("max_tokens_per_owner"));
    }

    #[test]
    fn a_locked_keyring_says_how_to_unlock_it() {
        let f = Failure::from(StoreError::Keyring(KeyringError::Locked("locked".into())));
        assert_eq!(f.code.exit_code(), 6);
        assert!(f.hint.unwrap().contains("unlock"));
    }
}
