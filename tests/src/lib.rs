//! signet's end-to-end harness: the real binaries, a real keyring.
//!
//! A [`TestEnv`] is a private world in a temporary directory: its own HOME,
//! XDG directories and, for the Secret Service, its own D-Bus session bus
//! with gnome-keyring unlocked by a throwaway password ([`keyring`]). It
//! starts `signet-agent -D` in it and runs `signet` against it with a clean
//! environment, so nothing of the developer's session leaks in or out.
//!
//! The binaries are the ones `cargo build --workspace` put next to the test
//! executable (or in `$SIGNET_BIN_DIR`).

pub mod keyring;
pub mod raw;
pub mod upstream;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use keyring::SecretServiceSession;

/// Where the binaries under test are.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SIGNET_BIN_DIR") {
        return PathBuf::from(d);
    }
    // target/<profile>/deps/<test-exe> -> target/<profile>/
    let exe = std::env::current_exe().expect("current_exe");
    let mut d = exe.parent().expect("exe dir").to_path_buf();
    if d.ends_with("deps") {
        d.pop();
    }
    d
}

/// The path of binary `name`, which must have been built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the binaries first (cargo build --workspace), or set SIGNET_BIN_DIR",
        p.display()
    );
    p
}

/// Which keyring the agent of a [`TestEnv`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    SecretService,
    Keyutils,
}

impl Backend {
    fn flag(self) -> &'static str {
        match self {
            Backend::SecretService => "secret-service",
            Backend::Keyutils => "keyutils",
        }
    }
}

/// The outcome of one `signet` run.
#[derive(Debug)]
pub struct Out {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// The exit code; a death by signal is a test failure.
    pub fn code(&self) -> i32 {
        match self.status.code() {
            Some(c) => c,
            None => panic!("killed by signal {:?}: {self:?}", self.status.signal()),
        }
    }

    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code(), 0, "expected success: {self:#?}");
        &self.stdout
    }

    /// Asserts exit `code` and returns stderr.
    #[track_caller]
    pub fn fails(&self, code: i32) -> &str {
        assert_eq!(self.code(), code, "expected exit {code}: {self:#?}");
        assert!(
            self.stderr.starts_with("signet: "),
            "stderr must start with `signet: `: {self:#?}"
        );
        &self.stderr
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }
}

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
                    keyring::require_or_skip(&format!("Secret Service ({e})"), false);
                    return None;
                }
            },
            Backend::Keyutils => {
                if !keyring::require_or_skip(
                    "kernel keyring (keyutils)",
                    keyring::keyutils_available(),
                ) {
                    return None;
                }
                None
            }
        };
        let env =
            TestEnv { root, backend, session, agent: None, agent_args: Vec::new(), starts: 0 };
        for d in [env.home(), env.runtime_dir(), env.config_dir()] {
            std::fs::create_dir_all(&d).expect("mkdir");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        }
        Some(env)
    }

    /// [`TestEnv::new`] with the agent started.
    pub fn started(backend: Backend) -> Option<TestEnv> {
        let mut e = TestEnv::new(backend)?;
        e.start_agent();
        Some(e)
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
        ];
        if let Some(s) = &self.session {
            v.extend(s.env().into_iter().filter(|(k, _)| k == "DBUS_SESSION_BUS_ADDRESS"));
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
        c.arg("--store").arg(self.backend.flag()).args(&self.agent_args);
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

    /// Runs `signet ARGS` with empty stdin.
    pub fn signet(&self, args: &[&str]) -> Out {
        self.signet_in(args, b"")
    }

    /// Runs `signet ARGS` with `stdin` as standard input.
    pub fn signet_in(&self, args: &[&str], stdin: &[u8]) -> Out {
        let mut c = self.command("signet");
        c.env("SIGNET_AUTH_SOCK", self.socket());
        run(c.args(args), stdin)
    }

    /// Adds a token, asserting success.
    #[track_caller]
    pub fn add(&self, name: &str, kind: &str, url: &str, secret: &str, extra: &[&str]) {
        let mut args = vec!["add", name, "--kind", kind, "--url", url];
        args.extend_from_slice(extra);
        let out = self.signet_in(&args, format!("{secret}\n").as_bytes());
        out.ok();
    }

    /// The index file, parsed.
    pub fn index(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.data_dir().join("index.json")).expect("index.json");
        serde_json::from_str(&text).expect("index.json is JSON")
    }

    /// The keyring service under which this agent keeps its secrets.
    pub fn keyring_service(&self) -> String {
        format!("signet:{}", self.index()["store_id"].as_str().expect("store_id"))
    }

    /// Every Secret Service item of this agent: (token id, secret).
    pub fn keyring_items(&self) -> Vec<(String, Vec<u8>)> {
        let s = self.session.as_ref().expect("Secret Service world");
        let service = self.keyring_service();
        s.search(&[("service", service.as_str())])
            .into_iter()
            .map(|i| (i.attributes.get("username").cloned().unwrap_or_default(), i.secret))
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

/// Runs `cmd` with `stdin`, collecting both outputs.
pub fn run(cmd: &mut Command, stdin: &[u8]) -> Out {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let mut stdout = String::new();
    let mut stderr = String::new();
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let _ = so.read_to_string(&mut stdout);
    stderr.push_str(&err_reader.join().unwrap_or_default());
    let _ = writer.join();
    let status = child.wait().expect("wait");
    Out { status, stdout, stderr }
}

/// Waits for `child` at most `limit`.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `f` until it is true, at most `limit`.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// True when `path` exists.
pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}
