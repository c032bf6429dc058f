//! Who may use a token, and when: the agent's lock, its idle clock, the
//! lifetime a token was given, and the user's yes before a use of a token
//! added with `--confirm`.
//!
//! Every use of a token (sign, perform, and anything else that puts a
//! token's secret on a request) passes [`Access::admit_use`] first, after
//! the request's own checks (scope, method, export rule) and before the
//! secret is read. Management requests are gated once, in the dispatch.
//!
//! While locked, the agent holds no secret: the store's cache is wiped and
//! sealed (it reads nothing from the keyring until unlocked) and the HTTP
//! clients are dropped (see `Agent::lock`). What is kept instead of the
//! passphrase is its Argon2id hash with a random salt, and only while
//! locked: unlocking drops it. A wrong passphrase costs a growing delay
//! (1 s, 2 s, 4 s, ... up to [`MAX_UNLOCK_DELAY`]), paid by the connection
//! that tried, one attempt at a time; other clients are served meanwhile.
//!
//! A confirmation runs the askpass program (`SIGNET_ASKPASS`, else
//! `SSH_ASKPASS`, of the agent's environment) as OpenSSH does for
//! `ssh-add -c`: the question as its argument, `SSH_ASKPASS_PROMPT=confirm`
//! in its environment, exit status 0 for yes. It runs in the requesting
//! connection's task, so other clients never wait for it; no answer within
//! `confirm_timeout_secs` is a no, and the askpass (its whole process group)
//! is killed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use signet_proto::{ErrorCode, Failure, LockKind, Secret, TokenAccess};
use tokio::sync::Notify;
use zeroize::Zeroizing;

use crate::config::Config;
use crate::entry::Entry;

/// Who is asking: from SO_PEERCRED on the connection.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub uid: u32,
    pub pid: i32,
}

/// Where a use of a token goes: what the question shows. The query string
/// is never shown (it may carry secrets of its own).
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    pub method: &'a str,
    pub url: &'a url::Url,
}

impl Destination<'_> {
    /// `GET https://host:8443/path`: method, origin and path, no query.
    pub fn describe(&self) -> String {
        format!(
            "{} {}{}",
            self.method,
            self.url.origin().ascii_serialization(),
            printable(self.url.path(), 200)
        )
    }
}

/// The longest wait after a wrong passphrase.
pub const MAX_UNLOCK_DELAY: Duration = Duration::from_secs(32);
/// The shortest passphrase `signet lock` takes: a lock whose passphrase is
/// guessed at the first try protects nothing.
pub const MIN_PASSPHRASE: usize = 4;

/// The delay after the `n`th wrong passphrase in a row (n >= 1).
pub fn unlock_delay(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.saturating_sub(1).min(5)).min(MAX_UNLOCK_DELAY)
}

enum LockState {
    Unlocked,
    /// `hash`: the passphrase's Argon2id PHC string; `None` for a lock the
    /// agent took itself.
    Locked {
        hash: Option<Zeroizing<String>>,
    },
    /// Started on a vault without its passphrase: the vault's own
    /// passphrase, checked by opening it, unlocks the agent.
    Vault,
}

/// The agent's access state. One per agent.
pub struct Access {
    /// Mirrors `state` for the use path: one atomic load per use.
    locked: AtomicBool,
    state: Mutex<LockState>,
    /// Wrong passphrases in a row.
    failures: Mutex<u32>,
    /// One unlock attempt at a time: parallel guesses wait in line, each
    /// paying its delay, instead of multiplying the guessing rate.
    unlock_gate: tokio::sync::Mutex<()>,
    last_use: Mutex<Instant>,
    /// A yes remembered (`--confirm-for`): (program, token id) -> until.
    remembered: Mutex<HashMap<(PathBuf, String), Instant>>,
    askpass: Option<PathBuf>,
    confirm_timeout: Duration,
    /// Woken when a token's lifetime may have ended (a token was added with
    /// one, or a use found one past it), so the reaper looks again.
    pub reap: Notify,
    /// Woken when the agent is unlocked, so the idle clock starts over.
    pub unlocked: Notify,
}

/// The askpass program of the agent's environment, if any.
fn askpass_from_env() -> Option<PathBuf> {
    ["SIGNET_ASKPASS", "SSH_ASKPASS"]
        .iter()
        .filter_map(std::env::var_os)
        .find(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl Access {
    pub fn new(config: &Config) -> Access {
        Access::with_askpass(config, askpass_from_env())
    }

    pub fn with_askpass(config: &Config, askpass: Option<PathBuf>) -> Access {
        Access {
            locked: AtomicBool::new(false),
            state: Mutex::new(LockState::Unlocked),
            failures: Mutex::new(0),
            unlock_gate: tokio::sync::Mutex::new(()),
            last_use: Mutex::new(Instant::now()),
            remembered: Mutex::new(HashMap::new()),
            askpass,
            confirm_timeout: config.confirm_timeout(),
            reap: Notify::new(),
            unlocked: Notify::new(),
        }
    }

    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Acquire)
    }

    /// How the agent is locked, if it is.
    pub fn lock_kind(&self) -> Option<LockKind> {
        match &*self.state.lock().unwrap_or_else(|p| p.into_inner()) {
            LockState::Unlocked => None,
            LockState::Locked { hash: Some(_) } => Some(LockKind::Passphrase),
            LockState::Locked { hash: None } => Some(LockKind::Auto),
            LockState::Vault => Some(LockKind::Vault),
        }
    }

    /// How long since the last use (or the last unlock, or the start).
    pub fn idle_for(&self) -> Duration {
        self.last_use.lock().map(|t| t.elapsed()).unwrap_or_default()
    }

    fn touch(&self) {
        if let Ok(mut t) = self.last_use.lock() {
            *t = Instant::now();
        }
    }

    /// Marks the agent locked with `hash` (`None`: a lock the agent took
    /// itself). Refused when it is already locked with a passphrase; a
    /// lock the agent took itself may be given one. The caller wipes the
    /// secrets (`Agent::lock`).
    pub fn set_locked(&self, hash: Option<Zeroizing<String>>) -> Result<(), Failure> {
        let mut st = self.state.lock().map_err(|_| internal())?;
        match (&*st, &hash) {
            (LockState::Locked { hash: Some(_) } | LockState::Vault, _) => {
                return Err(Failure::policy("the agent is already locked")
                    .with_hint("`signet unlock` unlocks it"));
            }
            // Already locked by the agent itself: nothing more to do.
            (LockState::Locked { hash: None }, None) => return Ok(()),
            _ => {}
        }
        *st = LockState::Locked { hash };
        self.locked.store(true, Ordering::Release);
        drop(st);
        if let Ok(mut r) = self.remembered.lock() {
            r.clear();
        }
        Ok(())
    }

    /// Marks the agent locked until the vault's passphrase opens the
    /// vault: the agent started on one without it.
    pub fn set_vault_locked(&self) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = LockState::Vault;
        self.locked.store(true, Ordering::Release);
    }

    /// Checks `passphrase` against the lock and, if it matches, marks the
    /// agent unlocked (the caller unseals the store). A lock on a vault is
    /// checked by `open_vault`, which opens it with the passphrase and says
    /// whether it was the right one. A wrong passphrase is answered after
    /// the delay its rank in a row earns.
    pub async fn unlock<F, Fut>(
        &self,
        passphrase: Option<Secret>,
        open_vault: F,
    ) -> Result<(), Failure>
    where
        F: FnOnce(Secret) -> Fut,
        Fut: std::future::Future<Output = Result<bool, Failure>>,
    {
        let _gate = self.unlock_gate.lock().await;
        enum Check {
            Nothing,
            Hash(Zeroizing<String>),
            Vault,
        }
        let check = match &*self.state.lock().map_err(|_| internal())? {
            LockState::Unlocked => {
                return Err(Failure::other("the agent is not locked")
                    .with_hint("nothing to do; `signet lock` locks it"));
            }
            LockState::Locked { hash: None } => Check::Nothing,
            LockState::Locked { hash: Some(h) } => Check::Hash(h.clone()),
            LockState::Vault => Check::Vault,
        };
        let vault = matches!(check, Check::Vault);
        let ok = match check {
            Check::Nothing => true,
            Check::Hash(hash) => {
                let Some(passphrase) = passphrase else {
                    return Err(Failure::usage("this lock needs its passphrase").with_hint(
                        "run `signet unlock` and type the passphrase given to `signet lock`",
                    ));
                };
                tokio::task::spawn_blocking(move || verify(&hash, &passphrase))
                    .await
                    .map_err(|_| internal())?
            }
            Check::Vault => {
                let Some(passphrase) = passphrase else {
                    return Err(Failure::usage("the vault needs its passphrase")
                        .with_hint("run `signet unlock` and type the vault's passphrase"));
                };
                open_vault(passphrase).await?
            }
        };
        if !ok {
            let n = {
                let mut f = self.failures.lock().map_err(|_| internal())?;
                *f = f.saturating_add(1);
                *f
            };
            let delay = unlock_delay(n);
            tracing::warn!(failures = n, "wrong unlock passphrase");
            tokio::time::sleep(delay).await;
            let wrong = format!(
                "wrong passphrase ({n} in a row; each further try waits longer, up to {} s)",
                MAX_UNLOCK_DELAY.as_secs()
            );
            return Err(if vault {
                Failure::new(ErrorCode::Store, format!("{wrong}: the vault stays closed"))
                    .with_hint("try `signet unlock` again with the vault's passphrase")
            } else {
                Failure::policy(wrong).with_hint(
                    "try `signet unlock` again with the passphrase given to `signet lock`",
                )
            });
        }
        *self.failures.lock().map_err(|_| internal())? = 0;
        *self.state.lock().map_err(|_| internal())? = LockState::Unlocked;
        self.locked.store(false, Ordering::Release);
        self.touch();
        self.unlocked.notify_waiters();
        Ok(())
    }

    /// The gate of every use of `entry` by `peer` towards `dest`: refused
    /// while locked or past the token's lifetime; for a token added with
    /// `--confirm`, allowed only on the user's yes (or one remembered).
    pub async fn admit_use(
        &self,
        peer: Peer,
        entry: &Entry,
        dest: &Destination<'_>,
        now: i64,
    ) -> Result<(), Failure> {
        if self.is_locked() {
            return Err(locked());
        }
        if let Some(t) = entry.removes_at
            && t <= now
        {
            self.reap.notify_one();
            return Err(Failure::new(
                ErrorCode::NoSuchToken,
                format!(
                    "token `{}` reached the end of its lifetime at {} and is being removed",
                    entry.name,
                    signet_proto::expiry::format_time(t)
                ),
            )
            .with_hint("add it again to use it (`--lifetime` sets how long the agent keeps it)"));
        }
        self.touch();
        if !entry.confirm {
            return Ok(());
        }
        let asker = Asker::of(peer.pid);
        if self.remembered_yes(&asker, entry) {
            return Ok(());
        }
        let question = question(entry, &asker, dest, self.confirm_timeout);
        // Boxed: the asking is rare and its future large, and a sign's
        // future holds this one.
        match Box::pin(self.ask(&question)).await {
            Answer::Yes => {}
            Answer::No => {
                return Err(Failure::policy(format!(
                    "the use of token `{}` was not confirmed",
                    entry.name
                ))
                .with_hint(
                    "answer yes in the confirmation dialog, or re-add the token without --confirm",
                ));
            }
            Answer::Timeout => {
                return Err(Failure::policy(format!(
                    "the use of token `{}` was not confirmed within {} s",
                    entry.name,
                    self.confirm_timeout.as_secs()
                ))
                .with_hint("answer the confirmation dialog sooner, or raise confirm_timeout_secs in the agent's config.toml"));
            }
            Answer::Unavailable(why) => {
                return Err(Failure::policy(format!(
                    "token `{}` needs a confirmation, and {why}",
                    entry.name
                ))
                .with_hint("start signet-agent with SIGNET_ASKPASS (or SSH_ASKPASS) naming an askpass program, e.g. ssh-askpass"));
            }
        }
        // Locked while the question was open: the yes came too late.
        if self.is_locked() {
            return Err(locked());
        }
        if let (Some(secs), Some(exe)) = (entry.confirm_for, &asker.exe)
            && let Ok(mut r) = self.remembered.lock()
        {
            let until = Instant::now() + Duration::from_secs(secs);
            r.retain(|_, t| *t > Instant::now());
            r.insert((exe.clone(), entry.id.clone()), until);
        }
        Ok(())
    }

    fn remembered_yes(&self, asker: &Asker, entry: &Entry) -> bool {
        let (Some(exe), Some(_)) = (&asker.exe, entry.confirm_for) else { return false };
        let Ok(r) = self.remembered.lock() else { return false };
        r.get(&(exe.clone(), entry.id.clone())).is_some_and(|t| *t > Instant::now())
    }

    /// Asks the user `question` through the askpass program.
    async fn ask(&self, question: &str) -> Answer {
        let Some(program) = &self.askpass else {
            return Answer::Unavailable("no askpass program is set".into());
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.arg(question)
            .env("SSH_ASKPASS_PROMPT", "confirm")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // Its own process group, so that a timeout kills a script and
            // whatever it started.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(askpass = %program.display(), error = %e, "cannot run the askpass program");
                return Answer::Unavailable(format!(
                    "the askpass program {} cannot be run ({e})",
                    program.display()
                ));
            }
        };
        let pgid = child.id();
        match tokio::time::timeout(self.confirm_timeout, child.wait()).await {
            Ok(Ok(status)) if status.success() => Answer::Yes,
            Ok(_) => Answer::No,
            Err(_) => {
                if let Some(pgid) = pgid.and_then(|p| i32::try_from(p).ok()) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pgid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = child.kill().await;
                Answer::Timeout
            }
        }
    }
}

enum Answer {
    Yes,
    No,
    Timeout,
    Unavailable(String),
}

/// The failure every use and management request gets while locked.
pub fn locked() -> Failure {
    Failure::policy("the agent is locked").with_hint("`signet unlock` unlocks it")
}

fn internal() -> Failure {
    Failure::other("internal error: the access state is unusable")
}

/// The program behind a connection, as far as /proc tells: the agent's own
/// user may read the executable link and command line of its own
/// processes.
struct Asker {
    pid: i32,
    exe: Option<PathBuf>,
    cmdline: String,
}

impl Asker {
    fn of(pid: i32) -> Asker {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|raw| {
                let words: Vec<String> = raw
                    .split(|b| *b == 0)
                    .filter(|w| !w.is_empty())
                    .map(|w| without_query(&String::from_utf8_lossy(w)))
                    .collect();
                printable(&words.join(" "), 300)
            })
            .unwrap_or_default();
        Asker { pid, exe, cmdline }
    }
}

/// A command-line word with any query string cut off (`?…`): the dialog
/// shows where a request goes, never what a query may carry.
fn without_query(word: &str) -> String {
    match word.split_once('?') {
        Some((before, _)) => format!("{before}?…"),
        None => word.to_string(),
    }
}

/// `s` with control characters escaped and at most `max` characters: what
/// another program chose to call itself must not steer the dialog.
fn printable(s: &str, max: usize) -> String {
    let mut out: String =
        s.chars().take(max).flat_map(|c| c.escape_debug().collect::<Vec<_>>()).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

fn question(entry: &Entry, asker: &Asker, dest: &Destination<'_>, timeout: Duration) -> String {
    let exe = asker
        .exe
        .as_ref()
        .map(|p| printable(&p.display().to_string(), 200))
        .unwrap_or_else(|| "(unknown program)".into());
    let cmd =
        if asker.cmdline.is_empty() { "(unknown)".to_string() } else { asker.cmdline.clone() };
    format!(
        "Allow a use of the token `{}`?\n\nProgram: {exe} (pid {})\nCommand: {cmd}\nRequest: {}\n\nNo answer within {} s means no.",
        entry.name,
        asker.pid,
        dest.describe(),
        timeout.as_secs()
    )
}

/// The Argon2id hash (PHC string, random salt) of a lock passphrase.
/// Slow on purpose: call from a blocking context.
pub fn hash_passphrase(passphrase: &Secret) -> Result<Zeroizing<String>, Failure> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| Failure::other(format!("no randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|_| internal())?;
    let hash = argon2::Argon2::default()
        .hash_password(passphrase.expose(), &salt)
        .map_err(|_| Failure::other("cannot hash the passphrase"))?;
    Ok(Zeroizing::new(hash.to_string()))
}

fn verify(hash: &str, passphrase: &Secret) -> bool {
    PasswordHash::new(hash)
        .is_ok_and(|h| argon2::Argon2::default().verify_password(passphrase.expose(), &h).is_ok())
}

/// Sets the access fields of a new `entry` from what the client asked and
/// the agent's default lifetime.
pub fn apply_settings(
    entry: &mut Entry,
    access: &TokenAccess,
    config: &Config,
    created: i64,
) -> Result<(), Failure> {
    let lifetime = access.lifetime_secs.or(config.lifetime_secs);
    if lifetime == Some(0) || access.confirm_for_secs == Some(0) {
        return Err(Failure::usage("a lifetime or --confirm-for must be at least 1 second"));
    }
    entry.removes_at =
        lifetime.map(|s| created.saturating_add(i64::try_from(s).unwrap_or(i64::MAX)));
    entry.confirm = access.confirm || access.confirm_for_secs.is_some();
    entry.confirm_for = access.confirm_for_secs;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use signet_proto::TokenKind;

    fn entry() -> Entry {
        Entry::draft("t", TokenKind::Bearer, "https://h/".into(), 7, 100, Default::default())
    }

    #[test]
    fn the_delay_grows_and_stops_growing() {
        let d: Vec<u64> = (1..=8).map(|n| unlock_delay(n).as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 8, 16, 32, 32, 32]);
    }

    #[test]
    fn a_passphrase_hash_is_salted_and_verifies_only_its_passphrase() {
        let p = Secret::from_str_value("correct horse");
        let a = hash_passphrase(&p).unwrap();
        let b = hash_passphrase(&p).unwrap();
        assert_ne!(*a, *b, "no salt");
        assert!(a.starts_with("$argon2id$"), "{}", *a);
        assert!(!a.contains("correct horse"));
        assert!(verify(&a, &p));
        assert!(!verify(&a, &Secret::from_str_value("correct hors")));
    }

    async fn no_vault(_: Secret) -> Result<bool, Failure> {
        panic!("this lock is not the vault's")
    }

    #[tokio::test]
    async fn a_vault_lock_is_opened_only_by_what_opens_the_vault() {
        let access = Access::with_askpass(&Config::default(), None);
        access.set_vault_locked();
        assert_eq!(access.lock_kind(), Some(LockKind::Vault));
        assert!(access.set_locked(None).is_err(), "an idle lock must not replace the vault's");
        assert_eq!(access.lock_kind(), Some(LockKind::Vault));
        let f = access.unlock(None, no_vault).await.unwrap_err();
        assert_eq!(f.code, ErrorCode::Usage);
        let tried = std::sync::Mutex::new(Vec::new());
        let open = |p: Secret| {
            let right = p.expose() == b"vault pass";
            tried.lock().unwrap().push(right);
            async move { Ok(right) }
        };
        let f = access.unlock(Some(Secret::from_str_value("guess")), open).await.unwrap_err();
        assert_eq!(f.code, ErrorCode::Store, "{f:?}");
        assert!(f.message.contains("the vault stays closed"), "{f:?}");
        assert!(access.is_locked());
        access.unlock(Some(Secret::from_str_value("vault pass")), open).await.unwrap();
        assert!(!access.is_locked());
        assert_eq!(*tried.lock().unwrap(), [false, true]);
    }

    #[tokio::test]
    async fn locked_refuses_every_use_and_unlock_needs_the_passphrase() {
        let access = Access::with_askpass(&Config::default(), None);
        let url = url::Url::parse("https://h/a?secret=1").unwrap();
        let dest = Destination { method: "GET", url: &url };
        let peer = Peer { uid: 1, pid: std::process::id() as i32 };
        assert!(access.admit_use(peer, &entry(), &dest, 0).await.is_ok());
        let p = Secret::from_str_value("pass phrase");
        access.set_locked(Some(hash_passphrase(&p).unwrap())).unwrap();
        let f = access.admit_use(peer, &entry(), &dest, 0).await.unwrap_err();
        assert_eq!((f.code, f.message.as_str()), (ErrorCode::Policy, "the agent is locked"));
        assert!(access.set_locked(None).is_err(), "a second lock must be refused");
        assert!(access.unlock(None, no_vault).await.is_err());
        access.unlock(Some(p), no_vault).await.unwrap();
        assert!(!access.is_locked());
        assert!(access.unlock(None, no_vault).await.is_err(), "not locked any more");
    }

    #[tokio::test]
    async fn a_lifetime_that_ended_refuses_and_a_confirm_without_askpass_is_a_no() {
        let access = Access::with_askpass(&Config::default(), None);
        let url = url::Url::parse("https://h/a?q=SECRETQ").unwrap();
        let dest = Destination { method: "POST", url: &url };
        assert_eq!(dest.describe(), "POST https://h/a");
        let peer = Peer { uid: 1, pid: std::process::id() as i32 };
        let mut e = entry();
        e.removes_at = Some(50);
        let f = access.admit_use(peer, &e, &dest, 50).await.unwrap_err();
        assert_eq!(f.code, ErrorCode::NoSuchToken);
        e.removes_at = None;
        e.confirm = true;
        let f = access.admit_use(peer, &e, &dest, 50).await.unwrap_err();
        assert_eq!(f.code, ErrorCode::Policy);
        assert!(f.hint.unwrap().contains("SIGNET_ASKPASS"));
    }

    #[test]
    fn the_question_names_program_and_destination_but_no_query() {
        let url = url::Url::parse("https://h:8443/api/v1/x?token=SECRETQ").unwrap();
        let dest = Destination { method: "GET", url: &url };
        let asker = Asker::of(std::process::id() as i32);
        let q = question(&entry(), &asker, &dest, Duration::from_secs(9));
        assert!(q.contains("GET https://h:8443/api/v1/x"), "{q}");
        assert!(!q.contains("SECRETQ"), "{q}");
        assert!(q.contains(&format!("(pid {})", std::process::id())), "{q}");
        assert!(q.contains("9 s"), "{q}");
        assert_eq!(printable("a\u{1b}[2Jb", 10), "a\\u{1b}[2Jb");
        assert_eq!(without_query("https://h/p?token=x"), "https://h/p?…");
    }
}
