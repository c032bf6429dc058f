//! The Secret Service the agent stores secrets in, private to one test.
//!
//! `SecretServiceSession` runs a private D-Bus session bus and a gnome-keyring-daemon
//! (secrets component only) on it, with a fresh HOME and XDG directories in a temp dir,
//! unlocked with a throwaway password. Nothing touches the user's own bus or keyring.
//! The test side reads and writes the keyring through `secret-tool`, the same tool a
//! person would use, so the suite checks what the agent really stored.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::process::{ToolOutput, run_bounded};

/// How long the Secret Service may take to answer on the new bus.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The throwaway password of the login keyring. Only this session's daemon ever sees it.
const KEYRING_PASSWORD: &[u8] = b"signet-test-keyring-password";
const SECRETS_NAME: &str = "org.freedesktop.secrets";
const SECRETS_PATH: &str = "/org/freedesktop/secrets";
const DEFAULT_ALIAS: &str = "/org/freedesktop/secrets/aliases/default";

/// One item as `secret-tool search --all --unlock` shows it.
///
/// `secret` is empty when the item could not be read (a locked collection).
#[derive(Clone, PartialEq, Eq)]
pub struct Item {
    pub label: String,
    pub secret: Vec<u8>,
    pub attributes: BTreeMap<String, String>,
}

// Test items hold secrets: show their length, never their bytes.
impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item")
            .field("label", &self.label)
            .field("secret_len", &self.secret.len())
            .field("attributes", &self.attributes)
            .finish()
    }
}

/// A private session bus with an unlocked gnome-keyring on it. Both processes (and
/// their process groups) are killed, and the temp dir removed, on drop.
pub struct SecretServiceSession {
    bus_address: String,
    home: PathBuf,
    xdg_data_home: PathBuf,
    xdg_config_home: PathBuf,
    xdg_cache_home: PathBuf,
    xdg_runtime_dir: PathBuf,
    startup: Duration,
    pids: Vec<u32>,
    root: PathBuf,
    stop: Option<mpsc::Sender<()>>,
    guardian: Option<JoinHandle<()>>,
    // Dropped last: the daemons are gone by then.
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for SecretServiceSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretServiceSession")
            .field("bus_address", &self.bus_address)
            .field("home", &self.home)
            .finish_non_exhaustive()
    }
}

struct Started {
    bus_address: String,
    pids: Vec<u32>,
}

impl SecretServiceSession {
    /// Starts `dbus-daemon` and `gnome-keyring-daemon` and waits (at most 10 s) until
    /// the default collection answers on the new bus. The error says what failed and
    /// includes the daemons' own output.
    pub fn start() -> Result<Self, String> {
        let began = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("signet-ss-")
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let root = dir.path().to_path_buf();
        let home = root.join("home");
        let xdg_data_home = root.join("data");
        let xdg_config_home = root.join("config");
        let xdg_cache_home = root.join("cache");
        let xdg_runtime_dir = root.join("run");
        for d in [&home, &xdg_data_home, &xdg_config_home, &xdg_cache_home, &xdg_runtime_dir] {
            create_private_dir(d)?;
        }
        let socket = root.join("bus");
        let config = root.join("bus.conf");
        fs::write(&config, bus_config(&socket))
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;

        let mut env = vec![
            ("HOME".to_string(), path_str(&home)),
            ("XDG_DATA_HOME".to_string(), path_str(&xdg_data_home)),
            ("XDG_CONFIG_HOME".to_string(), path_str(&xdg_config_home)),
            ("XDG_CACHE_HOME".to_string(), path_str(&xdg_cache_home)),
            ("XDG_RUNTIME_DIR".to_string(), path_str(&xdg_runtime_dir)),
        ];

        // The daemons are spawned by a thread that lives exactly as long as this
        // session, with PR_SET_PDEATHSIG: if the test binary dies without running Drop,
        // the kernel kills them. (Death signals follow the spawning thread, which is why
        // a test thread must not spawn them: it may end before the session does.)
        let (ready_tx, ready_rx) = mpsc::channel::<Result<Started, String>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let guardian_env = env.clone();
        let guardian_root = root.clone();
        let guardian = thread::Builder::new()
            .name("secret-service-guardian".into())
            .spawn(move || guardian(&guardian_root, &config, &guardian_env, ready_tx, stop_rx))
            .map_err(|e| format!("cannot spawn the guardian thread: {e}"))?;

        let started = match ready_rx.recv() {
            Ok(Ok(started)) => started,
            Ok(Err(e)) => {
                let _ = guardian.join();
                return Err(e);
            }
            Err(_) => {
                let _ = guardian.join();
                return Err("the Secret Service guardian thread died during start-up".into());
            }
        };
        env.push(("DBUS_SESSION_BUS_ADDRESS".to_string(), started.bus_address.clone()));
        Ok(SecretServiceSession {
            bus_address: started.bus_address,
            home,
            xdg_data_home,
            xdg_config_home,
            xdg_cache_home,
            xdg_runtime_dir,
            startup: began.elapsed(),
            pids: started.pids,
            root,
            stop: Some(stop_tx),
            guardian: Some(guardian),
            _dir: dir,
        })
    }

    /// The private bus, as `DBUS_SESSION_BUS_ADDRESS` wants it.
    pub fn bus_address(&self) -> &str {
        &self.bus_address
    }

    /// The variables a child process needs to use this Secret Service (and only it):
    /// DBUS_SESSION_BUS_ADDRESS, HOME, XDG_DATA_HOME, XDG_CONFIG_HOME, XDG_CACHE_HOME,
    /// XDG_RUNTIME_DIR.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("DBUS_SESSION_BUS_ADDRESS".to_string(), self.bus_address.clone()),
            ("HOME".to_string(), path_str(&self.home)),
            ("XDG_DATA_HOME".to_string(), path_str(&self.xdg_data_home)),
            ("XDG_CONFIG_HOME".to_string(), path_str(&self.xdg_config_home)),
            ("XDG_CACHE_HOME".to_string(), path_str(&self.xdg_cache_home)),
            ("XDG_RUNTIME_DIR".to_string(), path_str(&self.xdg_runtime_dir)),
        ]
    }

    /// The temp HOME the keyring runs with.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// How long `start()` took, from the first directory to the collection answering.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The pids of dbus-daemon and gnome-keyring-daemon (each leads its own process
    /// group; both are gone, and reaped, once the session is dropped).
    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    /// What gnome-keyring-daemon has written to stdout/stderr so far (for failure
    /// messages; e.g. "couldn't create system prompt" when a locked collection was
    /// asked to unlock).
    pub fn keyring_log(&self) -> String {
        fs::read_to_string(self.root.join("gnome-keyring.log")).unwrap_or_default()
    }

    /// `secret-tool lookup`: the secret of the first item matching every attribute.
    pub fn lookup(&self, attrs: &[(&str, &str)]) -> Option<Vec<u8>> {
        let mut cmd = self.command("secret-tool");
        cmd.arg("lookup");
        push_attrs(&mut cmd, attrs);
        let out = run_bounded(cmd, None, false).ok()?;
        out.status.success().then_some(out.stdout)
    }

    /// `secret-tool search --all --unlock`: every item matching every attribute.
    pub fn search(&self, attrs: &[(&str, &str)]) -> Vec<Item> {
        let mut cmd = self.command("secret-tool");
        cmd.args(["search", "--all", "--unlock"]);
        push_attrs(&mut cmd, attrs);
        match run_bounded(cmd, None, true) {
            Ok(out) => parse_search(&out.stdout),
            Err(_) => Vec::new(),
        }
    }

    /// `secret-tool store`: stores `secret` (bytes as given, no newline added) in the
    /// default collection. The error is secret-tool's own message.
    pub fn store(&self, label: &str, attrs: &[(&str, &str)], secret: &[u8]) -> Result<(), String> {
        let mut cmd = self.command("secret-tool");
        cmd.arg("store").arg(format!("--label={label}"));
        push_attrs(&mut cmd, attrs);
        let out = run_bounded(cmd, Some(secret), false)?;
        if out.status.success() { Ok(()) } else { Err(tool_error("secret-tool store", &out)) }
    }

    /// Locks the default collection (org.freedesktop.Secret.Service.Lock on the default
    /// alias). Afterwards gnome-keyring refuses to create items ("Cannot create an item
    /// in a locked collection") and to read secrets ("Cannot get secret of a locked
    /// object"); unlocking would need a prompt, which this headless session cannot show,
    /// so a locked session stays locked.
    pub fn lock(&self) -> Result<(), String> {
        let mut cmd = self.dbus_send(SECRETS_PATH, "org.freedesktop.Secret.Service.Lock");
        cmd.arg(format!("array:objpath:{DEFAULT_ALIAS}"));
        let out = run_bounded(cmd, None, false)?;
        if !out.status.success() {
            return Err(tool_error("dbus-send Lock", &out));
        }
        match self.is_locked()? {
            true => Ok(()),
            false => Err("Lock answered, but the default collection is still unlocked".into()),
        }
    }

    /// The `Locked` property of the default collection.
    pub fn is_locked(&self) -> Result<bool, String> {
        let mut cmd = self.dbus_send(DEFAULT_ALIAS, "org.freedesktop.DBus.Properties.Get");
        cmd.args(["string:org.freedesktop.Secret.Collection", "string:Locked"]);
        let out = run_bounded(cmd, None, false)?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(tool_error("dbus-send Get Locked", &out));
        }
        if text.contains("boolean true") {
            Ok(true)
        } else if text.contains("boolean false") {
            Ok(false)
        } else {
            Err(format!("unexpected answer to Get Locked: {text}"))
        }
    }

    /// A command with this session's environment only (plus PATH): nothing of the
    /// caller's own bus or display leaks in.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.envs(self.env());
        cmd
    }

    fn dbus_send(&self, object: &str, method: &str) -> Command {
        let mut cmd = self.command("dbus-send");
        cmd.arg(format!("--bus={}", self.bus_address))
            .arg("--print-reply")
            .arg(format!("--dest={SECRETS_NAME}"))
            .arg(object)
            .arg(method);
        cmd
    }
}

impl Drop for SecretServiceSession {
    fn drop(&mut self) {
        // Dropping the sender wakes the guardian, which kills and reaps both daemons.
        self.stop.take();
        if let Some(guardian) = self.guardian.take() {
            let _ = guardian.join();
        }
    }
}

/// Spawns the daemons, reports readiness, then waits for the stop signal and kills them.
fn guardian(
    root: &Path,
    config: &Path,
    env: &[(String, String)],
    ready: mpsc::Sender<Result<Started, String>>,
    stop: mpsc::Receiver<()>,
) {
    let mut children: Vec<Child> = Vec::new();
    let result = start_daemons(root, config, env, &mut children);
    let ok = result.is_ok();
    let _ = ready.send(result);
    if ok {
        // Returns on the stop signal or when the session's sender is dropped.
        let _ = stop.recv();
    }
    for child in children.iter_mut().rev() {
        kill_group(child);
    }
}

fn start_daemons(
    root: &Path,
    config: &Path,
    env: &[(String, String)],
    children: &mut Vec<Child>,
) -> Result<Started, String> {
    let deadline = Instant::now() + START_TIMEOUT;
    let dbus_log = root.join("dbus-daemon.log");
    let mut dbus = daemon_command("dbus-daemon", env);
    dbus.arg("--nofork")
        .arg(format!("--config-file={}", config.display()))
        .arg("--print-address=1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file(&dbus_log)?);
    let mut child = dbus
        .spawn()
        .map_err(|e| format!("cannot run dbus-daemon: {e} (Debian package: dbus-daemon)"))?;
    let stdout = child.stdout.take();
    children.push(child);

    // dbus-daemon prints its address once it listens; EOF means it died.
    let mut address = String::new();
    if let Some(mut out) = stdout {
        let mut byte = [0u8; 1];
        while let Ok(1) = out.read(&mut byte) {
            if byte[0] == b'\n' {
                break;
            }
            address.push(char::from(byte[0]));
        }
    }
    let address = address.trim().to_string();
    if address.is_empty() {
        return Err(format!("dbus-daemon printed no address; its log: {}", read_log(&dbus_log)));
    }

    let keyring_log = root.join("gnome-keyring.log");
    let mut gk = daemon_command("gnome-keyring-daemon", env);
    gk.args(["--foreground", "--unlock", "--components=secrets"])
        .env("DBUS_SESSION_BUS_ADDRESS", &address)
        .stdin(Stdio::piped())
        .stdout(log_file(&keyring_log)?)
        .stderr(log_file(&keyring_log)?);
    let mut child = gk.spawn().map_err(|e| {
        format!("cannot run gnome-keyring-daemon: {e} (Debian package: gnome-keyring)")
    })?;
    // The daemon reads the password up to EOF, then creates and unlocks `login`.
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(KEYRING_PASSWORD)
            .map_err(|e| format!("cannot give gnome-keyring-daemon its password: {e}"))?;
    }
    children.push(child);

    // Ready once the default alias resolves to a real collection on our bus.
    loop {
        let mut cmd = daemon_command("dbus-send", env);
        cmd.arg(format!("--bus={address}"))
            .arg("--print-reply")
            .arg(format!("--dest={SECRETS_NAME}"))
            .arg(SECRETS_PATH)
            .arg("org.freedesktop.Secret.Service.ReadAlias")
            .arg("string:default");
        if let Ok(out) = run_bounded(cmd, None, false)
            && out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("/org/freedesktop/secrets/collection/")
        {
            let pids = children.iter().map(Child::id).collect();
            return Ok(Started { bus_address: address, pids });
        }
        if let Some(gk) = children.last_mut()
            && let Ok(Some(status)) = gk.try_wait()
        {
            return Err(format!(
                "gnome-keyring-daemon exited ({status}) before answering; its log: {}",
                read_log(&keyring_log)
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{SECRETS_NAME} did not answer on the private bus within {}s; \
                 gnome-keyring log: {}",
                START_TIMEOUT.as_secs(),
                read_log(&keyring_log)
            ));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A daemon gets its own process group (so Drop can kill everything it started) and a
/// death signal tied to the guardian thread.
fn daemon_command(program: &str, env: &[(String, String)]) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(program);
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.process_group(0);
    // SAFETY: the closure only calls prctl(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
    cmd
}

fn kill_group(child: &mut Child) {
    let Ok(raw) = i32::try_from(child.id()) else { return };
    if let Ok(Some(_)) = child.try_wait() {
        // The leader is gone; members of its group may not be.
        let _ = killpg(Pid::from_raw(raw), Signal::SIGKILL);
        return;
    }
    let _ = killpg(Pid::from_raw(raw), Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            let _ = killpg(Pid::from_raw(raw), Signal::SIGKILL);
            return;
        }
        thread::sleep(Duration::from_millis(5));
    }
    let _ = killpg(Pid::from_raw(raw), Signal::SIGKILL);
    let _ = child.wait();
}

/// A private bus that anyone on it may own a name on; nothing is activated.
pub(crate) fn bus_config(socket: &Path) -> String {
    // No <servicedir>: nothing is ever activated on this bus, so a prompt that
    // gnome-keyring asks for fails at once instead of starting a prompter.
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
        socket.display()
    )
}

fn create_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn log_file(path: &Path) -> Result<fs::File, String> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

fn read_log(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let text = text.trim();
    if text.is_empty() { "(empty)".to_string() } else { text.to_string() }
}

fn push_attrs(cmd: &mut Command, attrs: &[(&str, &str)]) {
    for (k, v) in attrs {
        cmd.arg(k).arg(v);
    }
}

fn tool_error(what: &str, out: &ToolOutput) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    format!("{what} failed ({}): {}", out.status, stderr.trim())
}

/// Parses `secret-tool search --all` output (stdout and stderr merged). Per item:
/// `[path]`, `label = …`, `secret = …` (raw bytes, then a newline; absent when the
/// item is locked), `created = …`, `modified = …`, `schema = …`, `attribute.K = V`.
/// A secret may contain newlines: it runs up to the `created = ` line.
fn parse_search(out: &[u8]) -> Vec<Item> {
    let mut items = Vec::new();
    let mut current: Option<Item> = None;
    let mut in_secret = false;
    for line in out.split(|b| *b == b'\n') {
        if in_secret {
            if line.starts_with(b"created = ") {
                in_secret = false;
            } else {
                if let Some(item) = current.as_mut() {
                    item.secret.push(b'\n');
                    item.secret.extend_from_slice(line);
                }
                continue;
            }
        }
        if line.starts_with(b"[") && line.ends_with(b"]") {
            if let Some(item) = current.take() {
                items.push(item);
            }
            current = Some(Item {
                label: String::new(),
                secret: Vec::new(),
                attributes: BTreeMap::new(),
            });
            continue;
        }
        let Some(item) = current.as_mut() else { continue };
        if let Some(rest) = line.strip_prefix(b"label = ") {
            item.label = String::from_utf8_lossy(rest).into_owned();
        } else if let Some(rest) = line.strip_prefix(b"secret = ") {
            item.secret = rest.to_vec();
            in_secret = true;
        } else if let Some(rest) = line.strip_prefix(b"attribute.") {
            let text = String::from_utf8_lossy(rest);
            if let Some((k, v)) = text.split_once(" = ") {
                item.attributes.insert(k.to_string(), v.to_string());
            }
        }
    }
    if let Some(item) = current.take() {
        items.push(item);
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_search_output_with_binary_and_multiline_secrets() {
        let out = b"[/2]\nlabel = bin\nsecret = a\0b\xff\n\ncreated = 2026-11-23 00:51:09\n\
                    modified = 2026-11-23 00:51:09\nschema = org.freedesktop.Secret.Generic\n\
                    attribute.id = bin\nattribute.app = signet\n[/1]\nlabel = my label\n\
                    secret = s3cret\ncreated = x\nmodified = x\nschema = x\nattribute.id = x1\n\
                    [/3]\nlabel = locked\nsecret-tool: Cannot get secret of a locked object\n\
                    created = x\nattribute.id = x3\n";
        let items = parse_search(out);
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].label, "bin");
        assert_eq!(items[0].secret, b"a\0b\xff\n");
        assert_eq!(items[0].attributes.get("app").map(String::as_str), Some("signet"));
        assert_eq!(items[1].label, "my label");
        assert_eq!(items[1].secret, b"s3cret");
        assert!(items[2].secret.is_empty());
        assert_eq!(items[2].attributes.get("id").map(String::as_str), Some("x3"));
    }
}
