//! The vault: secrets in one encrypted file in the data directory, for
//! machines with no Secret Service and no wish to lose every token at the
//! next reboot (headless servers, CI runners).
//!
//! It is a keyring-core credential store like the Secret Service and kernel
//! keyring stores, so the rest of the store layer does not know which one
//! it talks to.
//!
//! The file (see docs/security.md for the full format):
//!
//! ```text
//! "SGNVAULT" | u32 version | u32 header length | header (JSON: Argon2id
//!     parameters, salt, a sealed check value) | record*
//! record = u32 body length | body | first 8 bytes of SHA-256(length | body)
//! body   = kind (1 set, 2 delete) | u16+service | u16+user | [24-byte nonce | ciphertext]
//! ```
//!
//! The key is Argon2id(passphrase, salt); each secret is sealed with
//! XChaCha20-Poly1305 under a fresh random nonce, with the entry's service
//! and user (the store id and the token's random id) as associated data, so
//! a sealed secret moved onto another token does not open. Token names never
//! enter the vault; the index holds them.
//!
//! Why a log: a change appends one record and syncs it (one `fdatasync`),
//! whatever the number of tokens; rewriting the whole file per change costs
//! time in proportion to the tokens held. The file is compacted (rewritten
//! with live records only, atomically: temporary file, fsync, rename, fsync
//! of the directory) when dead records outnumber live ones, and on a change
//! of passphrase. A kill at any instant leaves either a complete record or a
//! torn tail, which the checksum identifies and the next open discards: it
//! was never acknowledged, because the answer waits for the sync.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use keyring_core::api::{CredentialApi, CredentialStoreApi};
use keyring_core::{Credential, Entry, Error as KrError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use signet_proto::Secret;
use zeroize::Zeroizing;

/// The vault's file name in the data directory.
pub const VAULT_FILE: &str = "vault";
const MAGIC: &[u8; 8] = b"SGNVAULT";
const FORMAT_VERSION: u32 = 1;
const NONCE_LEN: usize = 24;
const CHECK_PLAINTEXT: &[u8] = b"signet vault key check";
const CHECK_AD: &[u8] = b"signet-vault/1 check";
const SECRET_AD: &[u8] = b"signet-vault/1 secret";
const KIND_SET: u8 = 1;
const KIND_DELETE: u8 = 2;
/// The largest record body accepted: a secret is at most 64 KiB on the
/// wire, plus ids and the AEAD overhead.
const MAX_BODY: u32 = 1 << 20;

/// Argon2id cost. The defaults take about half a second on a 2-core
/// machine of 2026 (measured: see README, "The vault"); slower machines
/// wait longer, which is the point.
pub const DEFAULT_M_KIB: u32 = 96 * 1024;
pub const DEFAULT_T: u32 = 3;
pub const DEFAULT_P: u32 = 1;

/// Test suites only: a cheap KDF for vaults created while this variable is
/// `1`, so that dozens of test agents do not each spend half a second and a
/// quarter gigabyte. Never set it for real use; the agent logs a warning
/// whenever it is honoured.
pub const WEAK_KDF_TEST_ONLY_ENV: &str = "SIGNET_TEST_ONLY_WEAK_VAULT_KDF";

/// Upper bounds on the parameters read from a header: a crafted file must
/// not make the agent allocate without limit.
const MAX_M_KIB: u32 = 4 * 1024 * 1024;
const MAX_T: u32 = 64;
const MAX_P: u32 = 16;

/// Why the vault cannot be opened or written. Never carries a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VaultError {
    #[error("wrong vault passphrase")]
    WrongPassphrase,
    #[error("the vault {path} is damaged: {why}")]
    Corrupt { path: PathBuf, why: String },
    #[error("cannot read or write the vault {path}: {err}")]
    Io { path: PathBuf, err: String },
    #[error("{0}")]
    Other(String),
}

/// Argon2id parameters, stored in the header so that a vault created with
/// one cost opens after the defaults change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl KdfParams {
    /// The parameters for a new vault: the defaults, or the weak test-only
    /// ones when [`WEAK_KDF_TEST_ONLY_ENV`] is `1`.
    pub fn for_new_vault() -> KdfParams {
        if std::env::var(WEAK_KDF_TEST_ONLY_ENV).is_ok_and(|v| v == "1") {
            tracing::warn!(
                "{WEAK_KDF_TEST_ONLY_ENV}=1: creating the vault with a weak KDF meant for test suites only"
            );
            KdfParams { m_kib: 64, t: 1, p: 1 }
        } else {
            KdfParams { m_kib: DEFAULT_M_KIB, t: DEFAULT_T, p: DEFAULT_P }
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    kdf: String,
    argon2_version: u32,
    m_kib: u32,
    t: u32,
    p: u32,
    /// base64
    salt: String,
    /// base64 of nonce | ciphertext of a fixed text: tells a wrong
    /// passphrase from a damaged record.
    check: String,
}

type Key = Zeroizing<[u8; 32]>;

fn derive(passphrase: &[u8], salt: &[u8], p: KdfParams) -> Result<Key, VaultError> {
    let params = Params::new(p.m_kib, p.t, p.p, Some(32))
        .map_err(|e| VaultError::Other(format!("bad KDF parameters: {e}")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase, salt, key.as_mut())
        .map_err(|e| VaultError::Other(format!("key derivation failed: {e}")))?;
    Ok(key)
}

fn random<const N: usize>() -> Result<[u8; N], VaultError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| VaultError::Other(format!("no randomness: {e}")))?;
    Ok(b)
}

fn seal(key: &Key, ad: &[u8], plain: &[u8]) -> Result<Vec<u8>, VaultError> {
    let nonce = random::<NONCE_LEN>()?;
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let ct = cipher
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad: ad })
        .map_err(|_| VaultError::Other("encryption failed".into()))?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

fn open_sealed(key: &Key, ad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_LEN {
        return None;
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    XChaCha20Poly1305::new(key.as_ref().into())
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: ad })
        .ok()
        .map(Zeroizing::new)
}

/// Associated data of one secret: length-prefixed, so no two (service,
/// user) pairs give the same bytes.
fn secret_ad(service: &str, user: &str) -> Vec<u8> {
    let mut ad = Vec::with_capacity(SECRET_AD.len() + 4 + service.len() + user.len());
    ad.extend_from_slice(SECRET_AD);
    put_str(&mut ad, service);
    put_str(&mut ad, user);
    ad
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn checksum(len: &[u8; 4], body: &[u8]) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(len);
    h.update(body);
    let d = h.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

fn frame(body: &[u8]) -> Vec<u8> {
    let len = (body.len() as u32).to_le_bytes();
    let mut out = Vec::with_capacity(4 + body.len() + 8);
    out.extend_from_slice(&len);
    out.extend_from_slice(body);
    out.extend_from_slice(&checksum(&len, body));
    out
}

fn set_body(service: &str, user: &str, sealed: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(5 + service.len() + user.len() + sealed.len());
    b.push(KIND_SET);
    put_str(&mut b, service);
    put_str(&mut b, user);
    b.extend_from_slice(sealed);
    b
}

fn delete_body(service: &str, user: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(5 + service.len() + user.len());
    b.push(KIND_DELETE);
    put_str(&mut b, service);
    put_str(&mut b, user);
    b
}

type Specifier = (String, String);

struct Inner {
    key: Key,
    header: Vec<u8>,
    /// Sealed secrets (nonce | ciphertext) by (service, user).
    entries: HashMap<Specifier, Vec<u8>>,
    /// Records in the file that a later record superseded.
    dead: usize,
    file: File,
}

/// An open vault: the key and the sealed entries, and the file they live in.
pub struct Vault {
    path: PathBuf,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("path", &self.path).finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> VaultError + '_ {
    move |e| VaultError::Io { path: path.to_path_buf(), err: e.to_string() }
}

fn header_bytes(key: &Key, salt: &[u8], p: KdfParams) -> Result<Vec<u8>, VaultError> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let header = Header {
        kdf: "argon2id".into(),
        argon2_version: 0x13,
        m_kib: p.m_kib,
        t: p.t,
        p: p.p,
        salt: b64.encode(salt),
        check: b64.encode(seal(key, CHECK_AD, CHECK_PLAINTEXT)?),
    };
    let json = serde_json::to_vec(&header).map_err(|e| VaultError::Other(e.to_string()))?;
    let mut out = Vec::with_capacity(16 + json.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    Ok(out)
}

/// Writes `bytes` as the new content of `path`, atomically and durably.
fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), VaultError> {
    crate::paths::replace_file(path, &[bytes]).map_err(io_err(path))
}

/// Every write goes to the end (O_APPEND): a record is never written over
/// another.
fn open_append(path: &Path) -> Result<File, VaultError> {
    OpenOptions::new().read(true).append(true).open(path).map_err(io_err(path))
}

impl Vault {
    /// The vault file of a data directory.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(VAULT_FILE)
    }

    /// Whether `dir` holds a vault.
    pub fn exists_in(dir: &Path) -> bool {
        Vault::path_in(dir).exists()
    }

    /// Creates an empty vault at `path` (which must not exist yet) sealed
    /// under `passphrase`.
    pub fn create(path: &Path, passphrase: &Secret, p: KdfParams) -> Result<Vault, VaultError> {
        if path.exists() {
            return Err(VaultError::Other(format!("{} already exists", path.display())));
        }
        let salt = random::<16>()?;
        let key = derive(passphrase.expose(), &salt, p)?;
        let header = header_bytes(&key, &salt, p)?;
        replace_file(path, &header)?;
        let file = open_append(path)?;
        Ok(Vault {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner { key, header, entries: HashMap::new(), dead: 0, file }),
        })
    }

    /// Opens the vault at `path` with `passphrase`. A wrong passphrase is
    /// [`VaultError::WrongPassphrase`] and changes nothing on disk.
    pub fn open(path: &Path, passphrase: &Secret) -> Result<Vault, VaultError> {
        let err = io_err(path);
        let mut file = open_append(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(&err)?;
        let parsed = parse(path, &bytes, passphrase)?;
        if parsed.valid_len < bytes.len() {
            // Drop the torn tail now, so the next append starts clean.
            file.set_len(parsed.valid_len as u64).and_then(|()| file.sync_all()).map_err(&err)?;
        }
        file.seek(SeekFrom::End(0)).map_err(&err)?;
        let vault = Vault {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                key: parsed.key,
                header: bytes[..parsed.header_end].to_vec(),
                entries: parsed.entries,
                dead: parsed.dead,
                file,
            }),
        };
        {
            let mut inner = vault.lock()?;
            if inner.dead > 64 && inner.dead > inner.entries.len() {
                vault.compact(&mut inner, None)?;
            }
        }
        Ok(vault)
    }

    /// Every (service, user, secret) of the vault at `path`, read without
    /// writing anything, even while an agent uses the vault: for tests and
    /// diagnostics.
    #[allow(clippy::type_complexity)]
    pub fn read_all(
        path: &Path,
        passphrase: &Secret,
    ) -> Result<Vec<(String, String, Zeroizing<Vec<u8>>)>, VaultError> {
        let bytes = fs::read(path).map_err(io_err(path))?;
        let parsed = parse(path, &bytes, passphrase)?;
        let mut out = Vec::with_capacity(parsed.entries.len());
        for ((service, user), sealed) in parsed.entries {
            let plain = open_sealed(&parsed.key, &secret_ad(&service, &user), &sealed).ok_or_else(
                || VaultError::Corrupt {
                    path: path.to_path_buf(),
                    why: "a sealed secret does not open under the vault key".into(),
                },
            )?;
            out.push((service, user, plain));
        }
        Ok(out)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, VaultError> {
        self.inner.lock().map_err(|_| VaultError::Other("the vault lock was poisoned".into()))
    }

    /// Appends one record and makes it durable before returning.
    fn append(&self, inner: &mut Inner, body: &[u8]) -> Result<(), VaultError> {
        let rec = frame(body);
        let err = io_err(&self.path);
        inner.file.write_all(&rec).map_err(&err)?;
        inner.file.sync_data().map_err(&err)?;
        Ok(())
    }

    /// Rewrites the file with live records only; with `new`, under a new
    /// key and header (a change of passphrase), re-sealing every secret.
    fn compact(&self, inner: &mut Inner, new: Option<(Key, Vec<u8>)>) -> Result<(), VaultError> {
        let (key, header) = match &new {
            Some((k, h)) => (k, h),
            None => (&inner.key, &inner.header),
        };
        let mut resealed = HashMap::with_capacity(inner.entries.len());
        let mut out = header.clone();
        for ((service, user), sealed) in &inner.entries {
            let ad = secret_ad(service, user);
            let sealed = if new.is_some() {
                let plain =
                    open_sealed(&inner.key, &ad, sealed).ok_or_else(|| VaultError::Corrupt {
                        path: self.path.clone(),
                        why: "a sealed secret does not open under the vault key".into(),
                    })?;
                seal(key, &ad, &plain)?
            } else {
                sealed.clone()
            };
            out.extend_from_slice(&frame(&set_body(service, user, &sealed)));
            resealed.insert((service.clone(), user.clone()), sealed);
        }
        replace_file(&self.path, &out)?;
        let mut file = open_append(&self.path)?;
        file.seek(SeekFrom::End(0)).map_err(io_err(&self.path))?;
        inner.file = file;
        inner.entries = resealed;
        inner.dead = 0;
        if let Some((k, h)) = new {
            inner.key = k;
            inner.header = h;
        }
        Ok(())
    }

    fn set(&self, service: &str, user: &str, secret: &[u8]) -> Result<(), VaultError> {
        let mut inner = self.lock()?;
        let sealed = seal(&inner.key, &secret_ad(service, user), secret)?;
        self.append(&mut inner, &set_body(service, user, &sealed))?;
        if inner.entries.insert((service.into(), user.into()), sealed).is_some() {
            inner.dead += 1;
        }
        self.maybe_compact(&mut inner);
        Ok(())
    }

    fn get(&self, service: &str, user: &str) -> Result<Option<Zeroizing<Vec<u8>>>, VaultError> {
        let inner = self.lock()?;
        let Some(sealed) = inner.entries.get(&(service.to_string(), user.to_string())) else {
            return Ok(None);
        };
        open_sealed(&inner.key, &secret_ad(service, user), sealed).map(Some).ok_or_else(|| {
            VaultError::Corrupt {
                path: self.path.clone(),
                why: "a sealed secret does not open under the vault key".into(),
            }
        })
    }

    fn delete(&self, service: &str, user: &str) -> Result<bool, VaultError> {
        let mut inner = self.lock()?;
        let spec = (service.to_string(), user.to_string());
        if !inner.entries.contains_key(&spec) {
            return Ok(false);
        }
        self.append(&mut inner, &delete_body(service, user))?;
        inner.entries.remove(&spec);
        inner.dead += 2;
        self.maybe_compact(&mut inner);
        Ok(true)
    }

    fn maybe_compact(&self, inner: &mut Inner) {
        // A deleted secret's ciphertext stays in the file until compaction:
        // compact early enough that the file does not grow without bound.
        if inner.dead > 256
            && inner.dead > inner.entries.len()
            && let Err(e) = self.compact(inner, None)
        {
            // The appended records are durable; compaction retries later.
            tracing::warn!(error = %e, "cannot compact the vault yet");
        }
    }

    fn users(&self, service: &str) -> Result<Vec<String>, VaultError> {
        let inner = self.lock()?;
        Ok(inner.entries.keys().filter(|(s, _)| s == service).map(|(_, u)| u.clone()).collect())
    }

    /// Re-seals every secret under `new`, after checking `old`, in one
    /// atomic replacement of the file: a crash leaves the vault under the
    /// old passphrase or under the new one.
    pub fn change_passphrase(&self, old: &Secret, new: &Secret) -> Result<(), VaultError> {
        let mut inner = self.lock()?;
        // Check `old` against the header as it is, with its own parameters.
        let (params, salt, _) = read_header(&inner.header).ok_or_else(|| VaultError::Corrupt {
            path: self.path.clone(),
            why: "bad header".into(),
        })?;
        let old_key = derive(old.expose(), &salt, params)?;
        if old_key.as_ref() != inner.key.as_ref() {
            return Err(VaultError::WrongPassphrase);
        }
        let p = KdfParams::for_new_vault();
        let salt = random::<16>()?;
        let key = derive(new.expose(), &salt, p)?;
        let header = header_bytes(&key, &salt, p)?;
        self.compact(&mut inner, Some((key, header)))
    }

    /// How many secrets the vault holds.
    pub fn len(&self) -> usize {
        self.lock().map(|i| i.entries.len()).unwrap_or(0)
    }

    /// Whether the vault holds no secret.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Parsed {
    key: Key,
    header_end: usize,
    entries: HashMap<Specifier, Vec<u8>>,
    dead: usize,
    /// Where the last whole record ends: beyond it, a torn tail.
    valid_len: usize,
}

fn parse(path: &Path, bytes: &[u8], passphrase: &Secret) -> Result<Parsed, VaultError> {
    let corrupt = |why: &str| VaultError::Corrupt { path: path.to_path_buf(), why: why.into() };
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err(corrupt("not a signet vault (bad magic)"));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    if version != FORMAT_VERSION {
        return Err(corrupt(&format!(
            "format version {version}; this agent reads version {FORMAT_VERSION}"
        )));
    }
    let hlen = u32::from_le_bytes(bytes[12..16].try_into().unwrap_or_default()) as usize;
    if hlen > 64 * 1024 || bytes.len() < 16 + hlen {
        return Err(corrupt("truncated header"));
    }
    let header_end = 16 + hlen;
    let (p, salt, check) =
        read_header(&bytes[..header_end]).ok_or_else(|| corrupt("bad header"))?;
    if p.m_kib > MAX_M_KIB || p.t > MAX_T || p.p > MAX_P {
        return Err(corrupt("key derivation parameters out of range"));
    }
    let key = derive(passphrase.expose(), &salt, p)?;
    match open_sealed(&key, CHECK_AD, &check) {
        Some(plain) if plain.as_slice() == CHECK_PLAINTEXT => {}
        _ => return Err(VaultError::WrongPassphrase),
    }

    let mut entries = HashMap::new();
    let mut dead = 0usize;
    let mut pos = header_end;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.len() < 4 {
            break; // torn tail
        }
        let len_bytes: [u8; 4] = rest[..4].try_into().unwrap_or_default();
        let len = u32::from_le_bytes(len_bytes);
        if len > MAX_BODY {
            return Err(corrupt("a record is larger than any the agent writes"));
        }
        let end = 4 + len as usize + 8;
        if rest.len() < end {
            break; // torn tail
        }
        let body = &rest[4..4 + len as usize];
        if checksum(&len_bytes, body) != rest[4 + len as usize..end] {
            if rest.len() == end {
                break; // the last record, torn in place
            }
            return Err(corrupt("a record's checksum does not match"));
        }
        let (kind, spec, sealed) = parse_body(body).ok_or_else(|| corrupt("bad record"))?;
        let replaced = match kind {
            KIND_SET => entries.insert(spec, sealed.to_vec()).is_some(),
            KIND_DELETE => {
                dead += 1; // the delete record itself
                entries.remove(&spec).is_some()
            }
            _ => return Err(corrupt("unknown record kind")),
        };
        if replaced {
            dead += 1;
        }
        pos += end;
    }
    Ok(Parsed { key, header_end, entries, dead, valid_len: pos })
}

/// The KDF parameters, salt and check value of a header.
fn read_header(header: &[u8]) -> Option<(KdfParams, Vec<u8>, Vec<u8>)> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let h: Header = serde_json::from_slice(header.get(16..)?).ok()?;
    if h.kdf != "argon2id" || h.argon2_version != 0x13 {
        return None;
    }
    let salt = b64.decode(&h.salt).ok()?;
    let check = b64.decode(&h.check).ok()?;
    Some((KdfParams { m_kib: h.m_kib, t: h.t, p: h.p }, salt, check))
}

fn take_str(b: &[u8]) -> Option<(String, &[u8])> {
    let n = u16::from_le_bytes(b.get(..2)?.try_into().ok()?) as usize;
    let s = std::str::from_utf8(b.get(2..2 + n)?).ok()?.to_string();
    Some((s, &b[2 + n..]))
}

fn parse_body(body: &[u8]) -> Option<(u8, Specifier, &[u8])> {
    let (&kind, rest) = body.split_first()?;
    let (service, rest) = take_str(rest)?;
    let (user, rest) = take_str(rest)?;
    Some((kind, (service, user), rest))
}

fn platform(e: VaultError) -> KrError {
    match e {
        VaultError::WrongPassphrase => KrError::NoStorageAccess(Box::new(e)),
        other => KrError::PlatformFailure(Box::new(other)),
    }
}

/// The vault as a keyring-core credential store.
#[derive(Debug)]
pub struct VaultStore {
    vault: Arc<Vault>,
}

impl VaultStore {
    /// Wraps an open vault.
    pub fn new(vault: Arc<Vault>) -> Arc<VaultStore> {
        Arc::new(VaultStore { vault })
    }

    /// The vault behind the store.
    pub fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }
}

impl CredentialStoreApi for VaultStore {
    fn vendor(&self) -> String {
        "signet encrypted vault file".into()
    }

    fn id(&self) -> String {
        format!("signet-vault-v{FORMAT_VERSION}:{}", self.vault.path.display())
    }

    fn build(
        &self,
        service: &str,
        user: &str,
        _modifiers: Option<&HashMap<&str, &str>>,
    ) -> keyring_core::Result<Entry> {
        if service.len() > u16::MAX as usize || user.len() > u16::MAX as usize {
            return Err(KrError::Invalid("service or user".into(), "too long".into()));
        }
        let cred: Arc<Credential> = Arc::new(VaultCredential {
            vault: self.vault.clone(),
            service: service.into(),
            user: user.into(),
        });
        Ok(Entry::new_with_credential(cred))
    }

    fn search(&self, spec: &HashMap<&str, &str>) -> keyring_core::Result<Vec<Entry>> {
        let Some(service) = spec.get("service") else {
            return Err(KrError::Invalid("spec".into(), "the vault searches by service".into()));
        };
        let users = self.vault.users(service).map_err(platform)?;
        users.iter().map(|u| self.build(service, u, None)).collect()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// One entry of the vault.
#[derive(Debug)]
struct VaultCredential {
    vault: Arc<Vault>,
    service: String,
    user: String,
}

impl CredentialApi for VaultCredential {
    fn set_secret(&self, secret: &[u8]) -> keyring_core::Result<()> {
        self.vault.set(&self.service, &self.user, secret).map_err(platform)
    }

    fn get_secret(&self) -> keyring_core::Result<Vec<u8>> {
        match self.vault.get(&self.service, &self.user).map_err(platform)? {
            // keyring-core hands back a plain Vec; the caller wraps it in a
            // Secret at once (see CoreBackend::get).
            Some(s) => Ok(s.to_vec()),
            None => Err(KrError::NoEntry),
        }
    }

    fn delete_credential(&self) -> keyring_core::Result<()> {
        if self.vault.delete(&self.service, &self.user).map_err(platform)? {
            Ok(())
        } else {
            Err(KrError::NoEntry)
        }
    }

    fn get_credential(&self) -> keyring_core::Result<Option<Arc<Credential>>> {
        if self.vault.get(&self.service, &self.user).map_err(platform)?.is_some() {
            Ok(None)
        } else {
            Err(KrError::NoEntry)
        }
    }

    fn get_specifiers(&self) -> Option<(String, String)> {
        Some((self.service.clone(), self.user.clone()))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Reads a passphrase file, refusing one that others may read (as ssh
/// refuses a private key file others can read). One trailing newline is
/// not part of the passphrase.
pub fn read_passphrase_file(path: &Path) -> Result<Secret, String> {
    let meta = fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "the passphrase file {} can be read by others (mode {:o}); `chmod 600` it",
            path.display(),
            mode & 0o777
        ));
    }
    let mut bytes = Zeroizing::new(Vec::new());
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut end = bytes.len();
    if bytes[..end].ends_with(b"\n") {
        end -= 1;
        if bytes[..end].ends_with(b"\r") {
            end -= 1;
        }
    }
    if end == 0 {
        return Err(format!("the passphrase file {} is empty", path.display()));
    }
    Ok(Secret::new(bytes[..end].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEAK: KdfParams = KdfParams { m_kib: 64, t: 1, p: 1 };

    fn pass(s: &str) -> Secret {
        Secret::from_str_value(s)
    }

    #[test]
    fn round_trip_reopen_and_wrong_passphrase() {
        let d = tempfile::tempdir().unwrap();
        let path = Vault::path_in(d.path());
        let v = Vault::create(&path, &pass("pw"), WEAK).unwrap();
        v.set("signet:s", "id1", b"hunter2-secret").unwrap();
        v.set("signet:s", "id2", b"other").unwrap();
        assert!(v.delete("signet:s", "id2").unwrap());
        assert!(!v.delete("signet:s", "id2").unwrap());
        drop(v);
        let bytes = fs::read(&path).unwrap();
        assert!(!bytes.windows(7).any(|w| w == b"hunter2"));
        let r = Vault::open(&path, &pass("nope"));
        assert!(matches!(r, Err(VaultError::WrongPassphrase)), "{:?}", r.err());
        assert_eq!(fs::read(&path).unwrap(), bytes, "a wrong passphrase changes nothing");
        let v = Vault::open(&path, &pass("pw")).unwrap();
        assert_eq!(v.get("signet:s", "id1").unwrap().unwrap().as_slice(), b"hunter2-secret");
        assert!(v.get("signet:s", "id2").unwrap().is_none());
        assert_eq!(v.users("signet:s").unwrap(), vec!["id1".to_string()]);
    }

    #[test]
    fn a_torn_tail_is_dropped_and_a_damaged_middle_refused() {
        let d = tempfile::tempdir().unwrap();
        let path = Vault::path_in(d.path());
        let v = Vault::create(&path, &pass("pw"), WEAK).unwrap();
        v.set("s", "a", b"one").unwrap();
        let good = fs::read(&path).unwrap().len();
        v.set("s", "b", b"two").unwrap();
        drop(v);
        let full = fs::read(&path).unwrap();
        // Every cut inside the last record leaves the state before it.
        for cut in good..full.len() {
            fs::write(&path, &full[..cut]).unwrap();
            let v = Vault::open(&path, &pass("pw")).unwrap();
            assert!(v.get("s", "a").unwrap().is_some());
            assert!(v.get("s", "b").unwrap().is_none(), "cut at {cut}");
            drop(v);
            assert_eq!(fs::read(&path).unwrap().len(), good);
        }
        let mut bad = full.clone();
        bad[good - 3] ^= 1;
        fs::write(&path, &bad).unwrap();
        assert!(matches!(Vault::open(&path, &pass("pw")), Err(VaultError::Corrupt { .. })));
    }

    #[test]
    fn a_sealed_secret_does_not_open_under_another_id() {
        let d = tempfile::tempdir().unwrap();
        let path = Vault::path_in(d.path());
        let v = Vault::create(&path, &pass("pw"), WEAK).unwrap();
        v.set("s", "a", b"one").unwrap();
        let mut inner = v.lock().unwrap();
        let sealed = inner.entries.get(&("s".into(), "a".into())).unwrap().clone();
        inner.entries.insert(("s".into(), "b".into()), sealed);
        drop(inner);
        assert!(matches!(v.get("s", "b"), Err(VaultError::Corrupt { .. })));
    }

    #[test]
    fn change_passphrase_reseals_and_compacts() {
        let d = tempfile::tempdir().unwrap();
        let path = Vault::path_in(d.path());
        let v = Vault::create(&path, &pass("old"), WEAK).unwrap();
        for i in 0..10 {
            v.set("s", &format!("id{i}"), format!("secret{i}").as_bytes()).unwrap();
        }
        v.delete("s", "id3").unwrap();
        assert!(matches!(
            v.change_passphrase(&pass("wrong"), &pass("new")),
            Err(VaultError::WrongPassphrase)
        ));
        v.change_passphrase(&pass("old"), &pass("new")).unwrap();
        v.set("s", "id10", b"after").unwrap();
        drop(v);
        assert!(matches!(Vault::open(&path, &pass("old")), Err(VaultError::WrongPassphrase)));
        let v = Vault::open(&path, &pass("new")).unwrap();
        assert_eq!(v.len(), 10);
        assert_eq!(v.get("s", "id7").unwrap().unwrap().as_slice(), b"secret7");
        assert_eq!(v.get("s", "id10").unwrap().unwrap().as_slice(), b"after");
    }

    #[test]
    fn many_deletes_compact_the_file() {
        let d = tempfile::tempdir().unwrap();
        let path = Vault::path_in(d.path());
        let v = Vault::create(&path, &pass("pw"), WEAK).unwrap();
        for i in 0..400 {
            v.set("s", &format!("id{i}"), b"x").unwrap();
            v.delete("s", &format!("id{i}")).unwrap();
        }
        v.set("s", "keep", b"kept").unwrap();
        assert!(fs::metadata(&path).unwrap().len() < 400 * 40);
        drop(v);
        let v = Vault::open(&path, &pass("pw")).unwrap();
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn passphrase_files_others_can_read_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pw");
        fs::write(&p, "secret words\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(read_passphrase_file(&p).unwrap_err().contains("chmod 600"));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_passphrase_file(&p).unwrap().expose(), b"secret words");
    }
}
