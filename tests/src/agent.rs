//! Supervising `signet-agent` for one test, and running `signet` against it.
//!
//! A [`TestEnv`] is a private world in a temporary directory: its own HOME,
//! XDG directories and, for the Secret Service, its own D-Bus session bus
//! with gnome-keyring unlocked by a throwaway password
//! ([`SecretServiceSession`]). It starts `signet-agent -D` in it and runs
//! `signet` against it with a clean environment, so nothing of the
//! developer's session leaks in or out.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::process::{Out, bin, run, wait_timeout};
use crate::secret_service::SecretServiceSession;
use crate::upstream::MaasServer;
use crate::{keyutils, skip};

/// Which keyring the agent of a [`TestEnv`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    SecretService,
    Keyutils,
    /// The encrypted vault file, its passphrase in [`TestEnv::passphrase_file`].
    File,
}

impl Backend {
    /// The agent's `--store` value.
    pub fn flag(self) -> &'static str {
        match self {
            Backend::SecretService => "secret-service",
            Backend::Keyutils => "keyutils",
            Backend::File => "file",
        }
    }
}

/// The passphrase a [`Backend::File`] world's vault is created with.
pub const VAULT_PASSPHRASE: &str = "correct horse battery staple";

/// A running `signet-agent -D`.
pub struct AgentProc {
    pub child: Child,
    pub log: PathBuf,
}

impl AgentProc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// A private world for one test; see the module doc.
pub struct TestEnv {
    pub root: tempfile::TempDir,
    pub backend: Backend,
    pub session: Option<SecretServiceSession>,
    pub agent: Option<AgentProc>,
    /// Extra arguments for the agent (e.g. `--config`).
    pub agent_args: Vec<String>,
    /// Extra environment for the agent only (e.g. `SIGNET_ASKPASS`).
    pub agent_env: Vec<(String, String)>,
    /// A `--store` value other than the backend's own (e.g. `auto`).
    pub store: Option<&'static str>,
    /// Test suites use a cheap vault KDF (see [`TestEnv::base_env`]); the
    /// benchmark turns this off to measure the real one.
    pub weak_vault_kdf: bool,
    starts: u32,
}

impl TestEnv {
    /// A world whose agent uses `backend`, or `None` after a SKIP line when
    /// the machine lacks it (a failure instead under SIGNET_REQUIRE_KEYRING).
    pub fn new(backend: Backend) -> Option<TestEnv> {
        let root = tempfile::Builder::new().prefix("signet-e2e.").tempdir().expect("tempdir");
        let session = match backend {
            Backend::SecretService => match SecretServiceSession::start() {
                Ok(s) => Some(s),
                Err(e) => {
                    skip::require_or_skip(&format!("Secret Service ({e})"), false);
                    return None;
                }
            },
            Backend::Keyutils => {
                if !skip::require_or_skip(
                    "kernel keyring (keyutils)",
                    keyutils::keyutils_available(),
                ) {
                    return None;
                }
                None
            }
            Backend::File => None,
        };
        let env = TestEnv {
            root,
            backend,
            session,
            agent: None,
            agent_args: Vec::new(),
            agent_env: Vec::new(),
            store: None,
            weak_vault_kdf: true,
            starts: 0,
        };
        for d in [env.home(), env.runtime_dir(), env.config_dir()] {
            std::fs::create_dir_all(&d).expect("mkdir");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        }
        if backend == Backend::File {
            env.set_vault_passphrase(VAULT_PASSPHRASE);
        }
        Some(env)
    }

    /// [`TestEnv::new`] with the agent started.
    pub fn started(backend: Backend) -> Option<TestEnv> {
        let mut e = TestEnv::new(backend)?;
        e.start_agent();
        Some(e)
    }

    /// A started Secret Service world and a MAAS test server, the start of
    /// most tests that talk to an API.
    pub fn started_with_maas() -> Option<(TestEnv, MaasServer)> {
        let env = TestEnv::started(Backend::SecretService)?;
        Some((env, MaasServer::start()))
    }

    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }
    pub fn runtime_dir(&self) -> PathBuf {
        self.root.path().join("run")
    }
    pub fn config_dir(&self) -> PathBuf {
        self.root.path().join("config")
    }
    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data/signet")
    }
    pub fn socket(&self) -> PathBuf {
        self.runtime_dir().join("signet/agent.sock")
    }
    /// The file SIGNET_VAULT_PASSPHRASE_FILE names in a [`Backend::File`] world.
    pub fn passphrase_file(&self) -> PathBuf {
        self.root.path().join("vault-passphrase")
    }
    /// The vault file of this world's data directory.
    pub fn vault_file(&self) -> PathBuf {
        self.data_dir().join("vault")
    }

    /// Writes `pass` into the passphrase file, readable by its owner only.
    pub fn set_vault_passphrase(&self, pass: &str) {
        use std::os::unix::fs::PermissionsExt;
        let p = self.passphrase_file();
        std::fs::write(&p, format!("{pass}\n")).expect("write passphrase file");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    /// The environment every process of this world gets, and nothing else.
    pub fn base_env(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("PATH".to_string(), std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())),
            ("HOME".into(), self.home().display().to_string()),
            ("XDG_RUNTIME_DIR".into(), self.runtime_dir().display().to_string()),
            ("XDG_DATA_HOME".into(), self.root.path().join("data").display().to_string()),
            ("XDG_CONFIG_HOME".into(), self.config_dir().display().to_string()),
            // Debug logs help a failing test; a benchmark sets its own level.
            ("SIGNET_LOG".into(), std::env::var("SIGNET_LOG").unwrap_or_else(|_| "debug".into())),
            // No system bus: a machine's own logind must not lock a test's
            // agent. The logind test points this at its own bus.
            (
                "DBUS_SYSTEM_BUS_ADDRESS".into(),
                format!("unix:path={}", self.root.path().join("no-system-bus").display()),
            ),
        ];
        if let Some(s) = &self.session {
            v.extend(s.env().into_iter().filter(|(k, _)| k == "DBUS_SESSION_BUS_ADDRESS"));
        }
        if self.backend == Backend::File || self.passphrase_file().exists() {
            v.push((
                "SIGNET_VAULT_PASSPHRASE_FILE".into(),
                self.passphrase_file().display().to_string(),
            ));
        }
        // Test suites only: a cheap key derivation for the vaults the tests
        // create, so that each agent start does not spend half a second and
        // 96 MiB on Argon2id. The real cost is measured in signet-bench.
        if self.weak_vault_kdf {
            v.push(("SIGNET_TEST_ONLY_WEAK_VAULT_KDF".into(), "1".into()));
        }
        v
    }

    /// A command for binary `name` with this world's environment.
    pub fn command(&self, name: &str) -> Command {
        let mut c = Command::new(bin(name));
        c.env_clear().envs(self.base_env()).current_dir(self.root.path());
        c
    }

    /// The agent command line this world uses, without `-D`.
    pub fn agent_command(&self) -> Command {
        let mut c = self.command("signet-agent");
        c.arg("--store").arg(self.store.unwrap_or(self.backend.flag())).args(&self.agent_args);
        c.envs(self.agent_env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Starts `signet-agent -D` and waits until it accepts connections.
    pub fn start_agent(&mut self) {
        assert!(self.agent.is_none(), "agent already running");
        self.starts += 1;
        let log = self.root.path().join(format!("agent.{}.log", self.starts));
        let mut child = self
            .agent_command()
            .arg("-D")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn signet-agent");
        // -D prints the eval lines once it is ready, as the detached agent does.
        let mut first = String::new();
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let _ = out.read_line(&mut first);
        if !first.starts_with("SIGNET_AUTH_SOCK=") {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "signet-agent did not start: stdout {first:?}, log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        // Keep draining stdout so the agent never blocks on it.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut out, &mut std::io::sink());
        });
        self.agent = Some(AgentProc { child, log });
    }

    /// Adds exportable bearer tokens `t0` .. `t{n-1}` for `url`, token `ti`
    /// with the secret `secret-i`, over one connection.
    pub fn add_numbered(&self, n: usize, url: &str) {
        use signet_client::{Client, NewToken, Secret, TokenKind};
        let mut c = Client::connect(Some(&self.socket())).expect("connect");
        for i in 0..n {
            let secret = Secret::from_str_value(&format!("secret-{i}"));
            let mut t = NewToken::new(format!("t{i}"), TokenKind::Bearer, url, secret);
            t.exportable = true;
            c.add(t).expect("add");
        }
    }

    /// Starts the agent with a restricted socket beside the main one,
    /// serving only the tokens in `allow`; returns the restricted socket.
    pub fn start_agent_with_restricted_socket(&mut self, allow: &[&str]) -> PathBuf {
        let sock = self.runtime_dir().join("signet-r/restricted.sock");
        self.agent_args = vec!["--restricted-socket".into(), sock.display().to_string()];
        for name in allow {
            self.agent_args.extend(["--allow".to_string(), name.to_string()]);
        }
        self.start_agent();
        sock
    }

    /// SIGTERM, and waits; returns the exit status.
    pub fn stop_agent(&mut self) -> ExitStatus {
        let mut a = self.agent.take().expect("no agent");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(a.pid()),
            nix::sys::signal::Signal::SIGTERM,
        );
        wait_timeout(&mut a.child, Duration::from_secs(15)).expect("agent did not stop on SIGTERM")
    }

    /// SIGKILL, and waits.
    pub fn kill_agent(&mut self) {
        let mut a = self.agent.take().expect("no agent");
        let _ = a.child.kill();
        let _ = a.child.wait();
    }

    pub fn restart_agent(&mut self) {
        self.stop_agent();
        self.start_agent();
    }

    /// The agent's log so far.
    pub fn agent_log(&self) -> String {
        self.agent
            .as_ref()
            .map(|a| std::fs::read_to_string(&a.log).unwrap_or_default())
            .unwrap_or_default()
    }

    /// A command for `signet` pointed at this world's agent, for a test that
    /// needs the process itself (to feed it from a pipe, sample it, or kill it).
    pub fn signet_command(&self) -> Command {
        let mut c = self.command("signet");
        c.env("SIGNET_AUTH_SOCK", self.socket());
        c
    }

    /// Runs `signet ARGS` with empty stdin.
    pub fn signet(&self, args: &[&str]) -> Out {
        self.signet_in(args, b"")
    }

    /// Runs `signet ARGS` with `stdin` as standard input.
    pub fn signet_in(&self, args: &[&str], stdin: &[u8]) -> Out {
        run(self.signet_command().args(args), stdin)
    }

    /// `signet add NAME --kind KIND --url URL EXTRA…` with the secret on
    /// stdin, as a person types it; the outcome, whatever it is.
    pub fn try_add(&self, name: &str, kind: &str, url: &str, secret: &str, extra: &[&str]) -> Out {
        let mut args = vec!["add", name, "--kind", kind, "--url", url];
        args.extend_from_slice(extra);
        self.signet_in(&args, format!("{secret}\n").as_bytes())
    }

    /// Adds a token, asserting success.
    #[track_caller]
    pub fn add(&self, name: &str, kind: &str, url: &str, secret: &str, extra: &[&str]) {
        self.try_add(name, kind, url, secret, extra).ok();
    }

    /// `signet sign ARGS`, asserting success: the printed header lines.
    #[track_caller]
    pub fn sign_lines(&self, args: &[&str]) -> Vec<String> {
        let mut full = vec!["sign"];
        full.extend_from_slice(args);
        let out = self.signet(&full);
        let lines: Vec<String> = out.ok().lines().map(str::to_string).collect();
        assert!(!lines.is_empty(), "sign printed nothing: {out:#?}");
        lines
    }

    /// The one header line `signet sign ARGS` prints.
    #[track_caller]
    pub fn sign_line(&self, args: &[&str]) -> String {
        let lines = self.sign_lines(args);
        assert_eq!(lines.len(), 1, "{lines:?}");
        lines.into_iter().next().unwrap_or_default()
    }

    /// `signet request ARGS` with its output parsed as JSON (the test servers'
    /// echo endpoints answer JSON).
    #[track_caller]
    pub fn request_json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["request"];
        full.extend_from_slice(args);
        self.signet(&full).json()
    }

    /// The index (snapshot and journal), as JSON.
    pub fn index(&self) -> serde_json::Value {
        // The snapshot with the journal replayed, read as the agent reads it
        // but without writing (an agent may be running).
        let index = signet_agent::store::index::load(&self.data_dir())
            .expect("the index loads")
            .expect("an index exists");
        serde_json::to_value(&index).expect("the index is JSON")
    }

    /// The keyring service under which this agent keeps its secrets.
    pub fn keyring_service(&self) -> String {
        format!("signet:{}", self.index()["store_id"].as_str().expect("store_id"))
    }

    /// Every Secret Service item, or vault entry, of this agent: (token id, secret).
    pub fn keyring_items(&self) -> Vec<(String, Vec<u8>)> {
        // The store of record: the backend's, or where a migration moved them.
        let recorded = self.index()["store"].as_str().map(str::to_string);
        if recorded.as_deref() == Some("file")
            || (recorded.is_none() && self.backend == Backend::File)
        {
            return self.vault_items(&self.vault_passphrase());
        }
        let s = self.session.as_ref().expect("Secret Service world");
        let service = self.keyring_service();
        s.search(&[("service", service.as_str())])
            .into_iter()
            .map(|i| (i.attributes.get("username").cloned().unwrap_or_default(), i.secret))
            .collect()
    }

    /// The passphrase in the passphrase file, without its newline.
    pub fn vault_passphrase(&self) -> String {
        let text = std::fs::read_to_string(self.passphrase_file()).expect("passphrase file");
        text.trim_end_matches('\n').to_string()
    }

    /// Every entry of this agent's vault, opened with `pass`, read as the
    /// agent would but without writing: (token id, secret).
    pub fn vault_items(&self, pass: &str) -> Vec<(String, Vec<u8>)> {
        let service = self.keyring_service();
        let pass = signet_proto::Secret::from_str_value(pass);
        signet_agent::store::vault::Vault::read_all(&self.vault_file(), &pass)
            .expect("the vault opens")
            .into_iter()
            .filter(|(s, _, _)| *s == service)
            .map(|(_, id, secret)| (id, secret.to_vec()))
            .collect()
    }

    /// Every file under the data directory, with its bytes.
    pub fn data_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![self.data_dir()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(b) = std::fs::read(&p) {
                    out.push((p, b));
                }
            }
        }
        out
    }

    /// Writes the agent's config file.
    pub fn write_config(&self, toml: &str) {
        let d = self.config_dir().join("signet");
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("config.toml"), toml).expect("write config");
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some(mut a) = self.agent.take() {
            let _ = a.child.kill();
            let _ = a.child.wait();
            if std::thread::panicking() {
                eprintln!(
                    "--- agent log ---\n{}",
                    std::fs::read_to_string(&a.log).unwrap_or_default()
                );
            }
        }
    }
}
