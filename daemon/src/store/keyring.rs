//! Secrets in the OS keyring, behind one small trait.
//!
//! Three backends, all keyring-core credential stores: the Secret Service
//! (org.freedesktop.secrets on the session bus: gnome-keyring, KeePassXC, …),
//! the kernel keyring (keyutils), and the encrypted vault file of
//! [`super::vault`]. Each secret is one keyring entry whose
//! service is `signet:<store id>` (so two agents with different data
//! directories never touch each other's entries) and whose user is the
//! token's immutable id (so a rename never touches the secret).
//!
//! All keyring calls run on one dedicated thread that creates the store,
//! uses it and drops it. The Secret Service store drives its own async
//! runtime and panics when called from inside tokio's, and one thread also
//! serialises access to a service that is not built for concurrent writers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use keyring_core::{CredentialStore, Entry, Error as KrError};
use signet_proto::Secret;

use super::vault::{KdfParams, Vault, VaultError, VaultStore};

/// Which keyring to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreChoice {
    Auto,
    SecretService,
    Keyutils,
    /// The encrypted vault file in the data directory.
    File,
    /// In memory only, gone with the process: for fuzzing and in-process
    /// tests, never for users (the binary does not offer it).
    #[cfg(feature = "memory-store")]
    Memory,
}

impl StoreChoice {
    /// The store's name as `--store` takes it; `None` for `auto`.
    pub fn name(self) -> Option<&'static str> {
        match self {
            StoreChoice::Auto => None,
            StoreChoice::SecretService => Some("secret-service"),
            StoreChoice::Keyutils => Some("keyutils"),
            StoreChoice::File => Some("file"),
            #[cfg(feature = "memory-store")]
            StoreChoice::Memory => Some("memory"),
        }
    }
}

impl std::str::FromStr for StoreChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(StoreChoice::Auto),
            "secret-service" => Ok(StoreChoice::SecretService),
            "keyutils" => Ok(StoreChoice::Keyutils),
            "file" => Ok(StoreChoice::File),
            _ => {
                Err(format!("unknown store `{s}`; expected auto, secret-service, keyutils or file"))
            }
        }
    }
}

/// What went wrong in the keyring. Built from keyring-core's error without
/// ever formatting the variants that carry secret bytes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyringError {
    #[error("no such entry in the keyring")]
    NotFound,
    #[error("the keyring is locked or refused access ({0})")]
    Locked(String),
    #[error("keyring failure: {0}")]
    Failure(String),
    #[error("the keyring did not answer within {0} s")]
    Timeout(u64),
    /// No keyring of the chosen kind can be used; says what to do.
    #[error("{0}")]
    Unavailable(String),
    #[error("wrong vault passphrase")]
    WrongPassphrase,
    /// The vault exists or was asked for, but no passphrase was given.
    #[error(
        "the vault needs a passphrase: start the agent from a terminal to type it, or set SIGNET_VAULT_PASSPHRASE_FILE to a file only you can read"
    )]
    NoPassphrase,
    #[error("{0}")]
    Vault(String),
    /// The agent started on the vault without its passphrase.
    #[error("the vault is closed until `signet unlock` gives its passphrase")]
    VaultClosed,
}

impl From<VaultError> for KeyringError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::WrongPassphrase => KeyringError::WrongPassphrase,
            other => KeyringError::Vault(other.to_string()),
        }
    }
}

impl From<KrError> for KeyringError {
    fn from(e: KrError) -> Self {
        match e {
            KrError::NoEntry => KeyringError::NotFound,
            KrError::NoStorageAccess(p) => KeyringError::Locked(p.to_string()),
            KrError::PlatformFailure(p) => KeyringError::Failure(p.to_string()),
            // These two carry the secret's bytes: say what happened, not what was read.
            KrError::BadEncoding(_) => KeyringError::Failure("stored secret is not UTF-8".into()),
            KrError::BadDataFormat(_, _) => {
                KeyringError::Failure("stored secret is malformed".into())
            }
            KrError::Ambiguous(items) => {
                KeyringError::Failure(format!("{} keyring entries match one token", items.len()))
            }
            other => KeyringError::Failure(other.to_string()),
        }
    }
}

/// The operations the agent needs from a keyring.
pub trait SecretBackend {
    fn set(&self, id: &str, secret: &Secret) -> Result<(), KeyringError>;
    fn get(&self, id: &str) -> Result<Secret, KeyringError>;
    /// Deleting an entry that is not there succeeds: recovery deletes
    /// entries that may or may not have been written before a crash.
    fn delete(&self, id: &str) -> Result<(), KeyringError>;
    /// The ids of every entry of this store, where the keyring can search
    /// (the Secret Service can, the kernel keyring store cannot).
    fn list_ids(&self) -> Result<Option<Vec<String>>, KeyringError>;
    /// Re-seals every secret under a new passphrase: the vault only.
    fn change_passphrase(&self, old: &Secret, new: &Secret) -> Result<(), KeyringError>;
}

struct CoreBackend {
    store: Arc<CredentialStore>,
    service: String,
    searchable: bool,
    labelled: bool,
    vault: Option<Arc<Vault>>,
}

impl CoreBackend {
    fn entry(&self, id: &str) -> Result<Entry, KeyringError> {
        let label = format!("signet token {id}");
        let mut mods = HashMap::new();
        if self.labelled {
            mods.insert("label", label.as_str());
        }
        Ok(self.store.build(&self.service, id, Some(&mods))?)
    }
}

impl SecretBackend for CoreBackend {
    fn set(&self, id: &str, secret: &Secret) -> Result<(), KeyringError> {
        Ok(self.entry(id)?.set_secret(secret.expose())?)
    }

    fn get(&self, id: &str) -> Result<Secret, KeyringError> {
        Ok(Secret::new(self.entry(id)?.get_secret()?))
    }

    fn delete(&self, id: &str) -> Result<(), KeyringError> {
        match self.entry(id)?.delete_credential() {
            Ok(()) | Err(KrError::NoEntry) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn list_ids(&self) -> Result<Option<Vec<String>>, KeyringError> {
        if !self.searchable {
            return Ok(None);
        }
        let spec = HashMap::from([("service", self.service.as_str())]);
        let found = self.store.search(&spec)?;
        Ok(Some(
            found
                .iter()
                .filter_map(Entry::get_specifiers)
                .filter(|(svc, _)| *svc == self.service)
                .map(|(_, user)| user)
                .collect(),
        ))
    }

    fn change_passphrase(&self, old: &Secret, new: &Secret) -> Result<(), KeyringError> {
        match &self.vault {
            Some(v) => Ok(v.change_passphrase(old, new)?),
            None => Err(KeyringError::Unavailable(
                "this agent keeps its tokens in a keyring, not in a vault file: there is no vault passphrase to change".into(),
            )),
        }
    }
}

/// An existing vault being opened on its own thread.
pub type OpeningVault = std::thread::JoinHandle<Result<Vault, VaultError>>;

/// What opening the vault needs, when the choice may land on it.
pub struct VaultAccess {
    /// The data directory the vault file lives in.
    pub dir: PathBuf,
    /// Given once per agent life; `None` when none was given.
    pub passphrase: Option<Secret>,
    /// The vault, already being opened with `passphrase` (see
    /// [`VaultAccess::open_early`]); used instead of opening it again.
    pub opening: Option<OpeningVault>,
}

impl VaultAccess {
    pub fn new(dir: PathBuf, passphrase: Option<Secret>) -> VaultAccess {
        VaultAccess { dir, passphrase, opening: None }
    }

    /// Starts deriving the vault's key now, on a thread of its own, when
    /// there is a vault and a passphrase: the key derivation is the slow
    /// part of a start, and it needs nothing the index says. If the store
    /// chosen turns out not to be the vault, the result is dropped.
    pub fn open_early(mut self) -> VaultAccess {
        let path = Vault::path_in(&self.dir);
        if let (Some(pass), true) = (&self.passphrase, path.exists()) {
            let pass = pass.clone();
            self.opening = std::thread::Builder::new()
                .name("vault-kdf".into())
                .spawn(move || Vault::open(&path, &pass))
                .ok();
        }
        self
    }
}

/// Opens the vault in `access.dir`, creating it when there is none.
fn open_vault(service: String, access: VaultAccess) -> Result<CoreBackend, KeyringError> {
    let pass = access.passphrase.as_ref().ok_or(KeyringError::NoPassphrase)?;
    let path = Vault::path_in(&access.dir);
    let vault = match access.opening {
        Some(opening) => {
            opening.join().map_err(|_| KeyringError::Vault("opening the vault failed".into()))??
        }
        None if path.exists() => Vault::open(&path, pass)?,
        None => Vault::create(&path, pass, KdfParams::for_new_vault())?,
    };
    let vault = Arc::new(vault);
    let store: Arc<CredentialStore> = VaultStore::new(vault.clone());
    Ok(CoreBackend { store, service, searchable: true, labelled: false, vault: Some(vault) })
}

/// The keyring-core service name of a store.
pub fn service_name(store_id: &str) -> String {
    format!("signet:{store_id}")
}

fn open_secret_service(service: String) -> Result<CoreBackend, KeyringError> {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none_or(|v| v.is_empty()) {
        return Err(KeyringError::Unavailable(
            "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)".into(),
        ));
    }
    let store = zbus_secret_service_keyring_store::Store::new().map_err(|e| {
        KeyringError::Unavailable(format!(
            "the Secret Service did not answer: {}",
            KeyringError::from(e)
        ))
    })?;
    let backend = CoreBackend { store, service, searchable: true, labelled: true, vault: None };
    // A Secret Service that answers can still be locked (a session whose
    // login keyring was never unlocked): find out now, not at the first add.
    probe(&backend).map_err(|e| {
        KeyringError::Unavailable(format!(
            "the Secret Service refused a test write ({e}); unlock your keyring (log in to the desktop session, or `gnome-keyring-daemon --unlock`) or pass --store keyutils"
        ))
    })?;
    Ok(backend)
}

/// A write, a read and a delete of a throwaway entry: proof that the
/// backend works before the agent serves anything.
fn probe(backend: &CoreBackend) -> Result<(), KeyringError> {
    let id = format!("probe-{}", std::process::id());
    let value = Secret::from_str_value("probe");
    backend.set(&id, &value)?;
    let read = backend.get(&id);
    let deleted = backend.delete(&id);
    if read?.expose() != value.expose() {
        return Err(KeyringError::Failure("the test entry read back differently".into()));
    }
    deleted
}

fn open_keyutils(service: String) -> Result<CoreBackend, KeyringError> {
    let store = linux_keyutils_keyring_store::Store::new().map_err(|e| {
        KeyringError::Unavailable(format!(
            "the kernel keyring is not usable: {}",
            KeyringError::from(e)
        ))
    })?;
    let backend = CoreBackend { store, service, searchable: false, labelled: false, vault: None };
    // A store that builds can still refuse every write (no session keyring
    // possessed, seccomp): prove it works before serving anything.
    probe(&backend).map_err(|e| {
        KeyringError::Unavailable(format!("the kernel keyring refused a test write: {e}"))
    })?;
    Ok(backend)
}

type Job = Box<dyn FnOnce(&dyn SecretBackend) + Send>;

/// A handle to the keyring thread. Cloning it is cheap; the thread ends
/// when the last handle is dropped.
#[derive(Clone)]
pub struct Keyring {
    /// `None`: the vault, not opened yet (see [`Keyring::closed_vault`]).
    tx: Option<mpsc::Sender<Job>>,
    name: &'static str,
    timeout: Duration,
}

impl Keyring {
    /// Starts the keyring thread with the chosen backend. `Auto` takes the
    /// Secret Service when one answers, else the kernel keyring; the returned
    /// warning, if any, is for the log.
    pub fn open(
        choice: StoreChoice,
        store_id: &str,
        timeout: Duration,
        vault: VaultAccess,
    ) -> Result<(Keyring, Option<String>), KeyringError> {
        let service = service_name(store_id);
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("keyring".into())
            .spawn(move || {
                let opened = match choice {
                    StoreChoice::SecretService => {
                        open_secret_service(service).map(|b| (b, "secret-service", None))
                    }
                    StoreChoice::Keyutils => open_keyutils(service).map(|b| (b, "keyutils", None)),
                    StoreChoice::File => open_vault(service, vault).map(|b| (b, "file", None)),
                    #[cfg(feature = "memory-store")]
                    StoreChoice::Memory => keyring_core::mock::Store::new()
                        .map_err(KeyringError::from)
                        .map(|store| {
                            let b = CoreBackend { store, service, searchable: false, labelled: false, vault: None };
                            (b, "memory", None)
                        }),
                    StoreChoice::Auto => match open_secret_service(service.clone()) {
                        Ok(b) => Ok((b, "secret-service", None)),
                        Err(_) if Vault::exists_in(&vault.dir) => {
                            open_vault(service, vault).map(|b| (b, "file", None))
                        }
                        Err(ss_err) => match open_keyutils(service) {
                            Ok(b) => Ok((
                                b,
                                "keyutils",
                                Some(format!(
                                    "no Secret Service ({ss_err}); using the kernel keyring: tokens will not survive a reboot (`--store file` keeps them in an encrypted vault file instead)"
                                )),
                            )),
                            Err(ku_err) => Err(KeyringError::Unavailable(format!(
                                "no usable keyring: {ss_err}; and {ku_err}. Install and unlock a Secret Service (e.g. gnome-keyring) in your session, or run where the kernel keyring is allowed (keyutils), or pass --store"
                            ))),
                        },
                    },
                };
                let backend = match opened {
                    Ok((b, name, warning)) => {
                        let _ = ready_tx.send(Ok((name, warning)));
                        b
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = rx.recv() {
                    job(&backend);
                }
            })
            .map_err(|e| KeyringError::Unavailable(format!("cannot start the keyring thread: {e}")))?;
        // Opening the vault runs a deliberately slow key derivation.
        let floor = if matches!(choice, StoreChoice::File | StoreChoice::Auto) { 60 } else { 1 };
        let wait = timeout.max(Duration::from_secs(floor));
        match ready_rx.recv_timeout(wait) {
            Ok(Ok((name, warning))) => Ok((Keyring { tx: Some(tx), name, timeout }, warning)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(KeyringError::Timeout(wait.as_secs())),
        }
    }

    /// The vault, before its passphrase is given: every call fails with
    /// [`KeyringError::VaultClosed`] until it is replaced by the open one.
    pub fn closed_vault(timeout: Duration) -> Keyring {
        Keyring { tx: None, name: "file", timeout }
    }

    /// Whether this is [`Keyring::closed_vault`].
    pub fn is_closed(&self) -> bool {
        self.tx.is_none()
    }

    fn sender(&self) -> Result<&mpsc::Sender<Job>, KeyringError> {
        self.tx.as_ref().ok_or(KeyringError::VaultClosed)
    }

    /// `secret-service`, `keyutils` or `file`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Runs `f` on the keyring thread and waits for it, at most the keyring
    /// timeout. Blocking: call from a blocking context.
    pub fn call<R, F>(&self, f: F) -> Result<R, KeyringError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn SecretBackend) -> Result<R, KeyringError> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.sender()?
            .send(Box::new(move |b| {
                let _ = tx.send(f(b));
            }))
            .map_err(|_| KeyringError::Failure("the keyring thread has stopped".into()))?;
        rx.recv_timeout(self.timeout).map_err(|_| KeyringError::Timeout(self.timeout.as_secs()))?
    }

    /// [`Keyring::call`] from async code, without blocking a runtime thread.
    pub async fn call_async<R, F>(&self, f: F) -> Result<R, KeyringError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn SecretBackend) -> Result<R, KeyringError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.sender()?
            .send(Box::new(move |b| {
                let _ = tx.send(f(b));
            }))
            .map_err(|_| KeyringError::Failure("the keyring thread has stopped".into()))?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(KeyringError::Failure("the keyring thread has stopped".into())),
            Err(_) => Err(KeyringError::Timeout(self.timeout.as_secs())),
        }
    }
}

/// Joins a fresh session keyring. The kernel keyring store can write only
/// to a session keyring the process possesses; a service started outside a
/// login session (systemd, cron, root's shell) has none and gets EACCES on
/// every write. Threads inherit it, so call this before any are started.
pub fn join_session_keyring() -> std::io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: keyctl(JOIN_SESSION_KEYRING, NULL) takes no pointers we own;
    // NULL asks the kernel for a new anonymous session keyring.
    let r = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}
