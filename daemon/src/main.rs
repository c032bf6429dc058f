//! `signet-agent`: start-up, detaching, and shutdown.
//!
//! The order matters. The socket is bound (and the "already running" check
//! made) in the original process, so errors reach the user's terminal. Then
//! the process forks, before any thread exists; the child opens the keyring
//! and tells the parent through a pipe whether it is ready, and only then
//! does the parent print the `eval` lines and exit, so that a script that
//! evals them can use the agent at once.
//!
//! Under systemd the socket comes from the service manager instead (socket
//! activation, see `systemd.rs`), and with `-D` the manager hears READY=1
//! once the store is open and STOPPING=1 at shutdown.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use signet_agent::agent::Agent;
use signet_agent::audit::{Audit, Settings as AuditSettings};
use signet_agent::config::{Config, ConfigError};
use signet_agent::restrict::Restriction;
use signet_agent::server::BindError;
use signet_agent::store::Store;
use signet_agent::store::StoreError;
use signet_agent::store::keyring::{self, StoreChoice};
use signet_agent::store::vault::{self, Vault};
use signet_agent::{harden, logind, paths, server, systemd, timers};
use signet_proto::Secret;

/// Every freed block is wiped first: see `harden::WipingAllocator`.
#[global_allocator]
static ALLOCATOR: harden::WipingAllocator = harden::WipingAllocator;

/// Keeps API tokens in the OS keyring and signs or performs requests with
/// them for local tools. Prints shell commands for `eval`, as ssh-agent does.
#[derive(Parser, Debug)]
#[command(name = "signet-agent", version)]
struct Args {
    /// Stay in the foreground and log to stderr (for systemd and tests).
    #[arg(short = 'D')]
    foreground: bool,
    /// Bind the socket at PATH instead of the default.
    #[arg(short = 'a', value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print Bourne shell commands (the default unless $SHELL is a csh).
    #[arg(short = 's', conflicts_with = "csh")]
    sh: bool,
    /// Print csh commands.
    #[arg(short = 'c')]
    csh: bool,
    /// Kill the agent named by SIGNET_AGENT_PID, else the one that answers
    /// on the socket (-a, SIGNET_AUTH_SOCK or the default).
    #[arg(short = 'k', conflicts_with_all = ["foreground", "store", "data_dir"])]
    kill: bool,
    /// Where secrets are kept: auto, secret-service, keyutils or file (an
    /// encrypted vault file in the data directory; its passphrase is typed
    /// at start or read from SIGNET_VAULT_PASSPHRASE_FILE). auto takes the
    /// Secret Service, else an existing vault, else the kernel keyring.
    #[arg(long, default_value = "auto", value_name = "STORE")]
    store: StoreChoice,
    /// Where the token index (metadata only) lives.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Config file (default: $XDG_CONFIG_HOME/signet/config.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The vault passphrase, once read; never from the command line.
    #[arg(skip)]
    passphrase: Option<Secret>,
    /// Also listen at PATH, serving only sign, request and list: the socket
    /// to forward (ssh -R) or hand to a CI job.
    #[arg(long, value_name = "PATH")]
    restricted_socket: Option<PathBuf>,
    /// Only this token through the restricted socket (repeatable; default:
    /// all of the owner's tokens).
    #[arg(long = "allow", value_name = "TOKEN", requires = "restricted_socket")]
    allow: Vec<String>,
    /// Print the signet-agent(1) man page (roff), for packagers and installers.
    #[arg(long, hide = true, exclusive = true)]
    man: bool,
}

/// `--man`: the page is rendered from these very flags, so it cannot drift.
fn print_man() -> ExitCode {
    use clap::CommandFactory;
    let mut buf = Vec::new();
    let written = clap_mangen::Man::new(Args::command())
        .render(&mut buf)
        .and_then(|()| std::io::stdout().lock().write_all(&buf))
        .and_then(|()| std::io::stdout().lock().flush());
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signet-agent: cannot write the man page: {e}");
            ExitCode::FAILURE
        }
    }
}

fn csh_style(args: &Args) -> bool {
    if args.csh {
        return true;
    }
    if args.sh {
        return false;
    }
    std::env::var("SHELL").is_ok_and(|s| s.ends_with("csh"))
}

/// Quotes a value for the shell only when it needs it, so ordinary paths
/// print exactly as ssh-agent prints its own.
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%,".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn eval_lines(sock: &str, pid: u32, csh: bool) -> String {
    let sock = shell_word(sock);
    if csh {
        format!(
            "setenv SIGNET_AUTH_SOCK {sock};\nsetenv SIGNET_AGENT_PID {pid};\necho Agent pid {pid};\n"
        )
    } else {
        format!(
            "SIGNET_AUTH_SOCK={sock}; export SIGNET_AUTH_SOCK;\nSIGNET_AGENT_PID={pid}; export SIGNET_AGENT_PID;\necho Agent pid {pid};\n"
        )
    }
}

/// Why the agent did not start, or `-k` did not stop one.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Activation(#[from] systemd::ActivationError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] signet_agent::audit::AuditError),
    #[error("cannot resolve the {what}: {err}")]
    Resolve { what: &'static str, err: std::io::Error },
    #[error("no data directory: set HOME or XDG_DATA_HOME, or pass --data-dir")]
    NoDataDir,
    #[error("the socket path is not valid UTF-8")]
    SocketNotUtf8,
    #[error("cannot {what}: {err}")]
    Os { what: &'static str, err: nix::Error },
    #[error("cannot {what}: {err}")]
    Io { what: &'static str, err: std::io::Error },
    #[error("the agent exited during start-up")]
    ExitedDuringStartup,
    /// The detached agent's own start-up error, as it sent it back.
    #[error("{1}")]
    Detached(u8, String),
    #[error("{0}")]
    Passphrase(String),
    #[error("SIGNET_AGENT_PID is not set, and {0}")]
    NoAgent(String),
    #[error("SIGNET_AGENT_PID is not a valid pid: {0}")]
    BadPid(String),
    #[error("cannot kill agent pid {pid}: {err}")]
    Kill { pid: i32, err: nix::Error },
    #[error("not killing pid {pid}: {why}; SIGNET_AGENT_PID may be stale")]
    NotOurAgent { pid: i32, why: String },
}

/// Checks that `pid` is a signet-agent of this user before it is sent a
/// signal: SIGNET_AGENT_PID may be stale, and the pid reused by anything.
/// The agent is not dumpable, so its `/proc/PID/exe` is closed to its own
/// user; its name and real uid are readable.
impl StartError {
    /// 6 when the store cannot be opened for want of the right vault
    /// passphrase (as the client says 6 for a store failure), else 1.
    fn exit_code(&self) -> u8 {
        use signet_agent::store::keyring::KeyringError as K;
        match self {
            StartError::Passphrase(_)
            | StartError::Store(StoreError::Keyring(
                K::WrongPassphrase | K::NoPassphrase | K::Vault(_),
            )) => 6,
            StartError::Detached(code, _) => *code,
            _ => 1,
        }
    }
}

/// The vault passphrase, when the chosen store may need one: from the file
/// named by SIGNET_VAULT_PASSPHRASE_FILE, else typed at the terminal (no
/// echo; twice when the vault is being created). `None` when neither is
/// available: opening the vault then fails with a hint.
fn vault_passphrase(
    choice: StoreChoice,
    data_dir: &std::path::Path,
) -> Result<Option<Secret>, StartError> {
    let exists = Vault::exists_in(data_dir);
    // A migration records the vault as the store of record: then `auto`
    // needs the passphrase even where a Secret Service answers. Read only
    // when it can matter: the index is read whole, and the store reads it
    // again.
    let recorded_file = || {
        signet_agent::store::index::load(data_dir)
            .ok()
            .flatten()
            .is_some_and(|i| i.store.as_deref() == Some("file"))
    };
    let needed = match choice {
        StoreChoice::File => true,
        StoreChoice::Auto => exists,
        _ => false,
    };
    if !needed {
        return Ok(None);
    }
    if let Some(file) = std::env::var_os("SIGNET_VAULT_PASSPHRASE_FILE").filter(|v| !v.is_empty()) {
        return vault::read_passphrase_file(std::path::Path::new(&file)).map(Some).map_err(|e| {
            StartError::Passphrase(format!("{e} (from SIGNET_VAULT_PASSPHRASE_FILE)"))
        });
    }
    // With a session bus, `auto` will likely use the Secret Service:
    // do not stop to ask for a passphrase it may never need.
    if choice == StoreChoice::Auto
        && std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|v| !v.is_empty())
        && !recorded_file()
    {
        return Ok(None);
    }
    if !nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
        return Ok(None);
    }
    let read = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map(|typed| Secret::from_str_value(&zeroize::Zeroizing::new(typed)))
            .map_err(|err| StartError::Io { what: "read the vault passphrase", err })
    };
    if exists {
        return read("signet vault passphrase: ").map(Some);
    }
    let first = read("new signet vault passphrase: ")?;
    if first.is_empty() {
        return Err(StartError::Passphrase("the vault passphrase must not be empty".into()));
    }
    let again = read("the same passphrase again: ")?;
    if first.expose() != again.expose() {
        return Err(StartError::Passphrase(
            "the two passphrases differ; nothing was created, start again".into(),
        ));
    }
    Ok(Some(first))
}

fn check_our_agent(pid: i32) -> Result<(), StartError> {
    let not = |why: String| StartError::NotOurAgent { pid, why };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map_err(|_| not("there is no such process".into()))?;
    let name = comm.trim_end();
    if name != "signet-agent" {
        return Err(not(format!("it is `{}`, not signet-agent", name.escape_debug())));
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| not(format!("cannot read its status ({e})")))?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u32>().ok());
    let me = nix::unistd::getuid().as_raw();
    if uid != Some(me) {
        return Err(not(format!("it does not run as this user (uid {me})")));
    }
    Ok(())
}

/// `-k`: the agent named by SIGNET_AGENT_PID (as ssh-agent), else the one
/// serving the socket, which says its pid in `Status`. SO_PEERCRED cannot
/// name it: under socket activation it names whoever called listen(),
/// systemd. Either way the pid is checked to be a signet-agent of this user
/// before it gets SIGTERM, the one shutdown path the agent has.
/// Whether `pid` still runs: a zombie waiting for its parent has exited.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the name, which is in parentheses and may hold any byte.
        Ok(stat) => {
            stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        }
        Err(_) => false,
    }
}

fn kill_agent(socket: Option<&std::path::Path>, csh: bool) -> Result<(), StartError> {
    let (pid, wait) = match std::env::var("SIGNET_AGENT_PID") {
        Ok(raw) => {
            let pid = raw
                .trim()
                .parse()
                .ok()
                .filter(|p| *p > 1)
                .ok_or_else(|| StartError::BadPid(raw.escape_debug().to_string()))?;
            (pid, false)
        }
        Err(_) => {
            let path = signet_client::socket_path(socket);
            let status = signet_client::Client::connect(Some(&path))
                .and_then(|mut c| c.status())
                .map_err(|e| StartError::NoAgent(e.to_string()))?;
            let pid = i32::try_from(status.pid).ok().filter(|p| *p > 1).ok_or_else(|| {
                StartError::NoAgent(format!("the agent at {} gave no valid pid", path.display()))
            })?;
            (pid, true)
        }
    };
    check_our_agent(pid)?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM)
        .map_err(|err| StartError::Kill { pid, err })?;
    // A script that stops the agent and starts another must find the socket
    // free: wait (bounded) until the agent has exited. Its socket may stay
    // (a socket unit's is systemd's), so the process is what is watched.
    if wait {
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    if csh {
        print!(
            "unsetenv SIGNET_AUTH_SOCK;\nunsetenv SIGNET_AGENT_PID;\necho Agent pid {pid} killed;\n"
        );
    } else {
        print!("unset SIGNET_AUTH_SOCK;\nunset SIGNET_AGENT_PID;\necho Agent pid {pid} killed;\n");
    }
    Ok(())
}

fn init_logging(foreground: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIGNET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(foreground && nix::unistd::isatty(std::io::stderr()).unwrap_or(false))
        .with_target(false)
        .try_init();
}

fn main() -> ExitCode {
    // SAFETY: first thing in main, before any thread is started.
    let inherited = unsafe { systemd::inherited() };
    let args = Args::parse();
    if args.man {
        return print_man();
    }
    let csh = csh_style(&args);
    if args.kill {
        return match kill_agent(args.socket.as_deref(), csh) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("signet-agent: {e}");
                ExitCode::FAILURE
            }
        };
    }
    init_logging(args.foreground);
    match run(args, inherited, csh) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signet-agent: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Whoever waits for the agent to be ready. The readiness pipe (the
/// child's side) carries warnings for the user (`warning: ...` lines), then
/// `ok`, or else the error that stopped start-up; the parent shows them on
/// the terminal the user started from. A service manager hears `READY=1`
/// and, at shutdown, `STOPPING=1`.
struct Ready {
    pipe: Option<std::fs::File>,
    manager: Option<Arc<systemd::Notifier>>,
}

impl Ready {
    fn warn(&mut self, msg: &str) {
        if let Some(f) = self.pipe.as_mut() {
            let _ = writeln!(f, "warning: {msg}");
        }
    }

    fn say(&mut self, msg: &str) {
        if let Some(mut f) = self.pipe.take() {
            let _ = f.write_all(msg.as_bytes());
        }
    }
}

fn run(args: Args, inherited: systemd::Inherited, csh: bool) -> Result<(), StartError> {
    let config_path = args.config.clone().or_else(Config::default_path);
    let config = match &config_path {
        Some(p) => Config::load(p, args.config.is_some())?,
        None => Config::default(),
    };

    let data_dir = match args.data_dir.clone().or_else(paths::default_data_dir) {
        Some(d) => paths::absolute(&d)
            .map_err(|err| StartError::Resolve { what: "data directory", err })?,
        None => {
            return Err(StartError::NoDataDir);
        }
    };

    let mut args = args;
    args.passphrase = vault_passphrase(args.store, &data_dir)?;
    let restricted_path = match args.restricted_socket.clone().or(config.restricted_socket.clone())
    {
        Some(p) => Some(
            paths::absolute(&p)
                .map_err(|err| StartError::Resolve { what: "restricted socket path", err })?,
        ),
        None => None,
    };
    let bound = match inherited.listener {
        // The manager's socket wins over -a: it is where clients were told to go.
        Some(activated) => {
            let a = activated?;
            tracing::info!(socket = %a.path.display(), "serving the socket passed by socket activation");
            server::BoundSocket::adopted(a.listener, a.path)?
        }
        None => {
            let socket = args.socket.clone().unwrap_or_else(paths::default_socket_path);
            let socket = paths::absolute(&socket)
                .map_err(|err| StartError::Resolve { what: "socket path", err })?;
            server::bind(&socket)?
        }
    };
    let restricted = match &restricted_path {
        Some(p) => Some(server::bind(p).inspect_err(|_| bound.remove())?),
        None => None,
    };
    let sock_text = bound.path.to_str().ok_or(StartError::SocketNotUtf8)?.to_string();

    let mut ready = Ready { pipe: None, manager: inherited.notify.map(Arc::new) };
    if !args.foreground {
        let (rd, wr) =
            nix::unistd::pipe().map_err(|err| StartError::Os { what: "make a pipe", err })?;
        // SAFETY: no thread has been started yet (clap, config and bind are
        // single-threaded), so the child gets a consistent copy of the process.
        match unsafe { nix::unistd::fork() }.map_err(|err| StartError::Os { what: "fork", err })? {
            nix::unistd::ForkResult::Parent { child } => {
                drop(wr);
                let mut msg = String::new();
                let _ = std::io::Read::read_to_string(&mut std::fs::File::from(rd), &mut msg);
                // The child owns the socket now; the parent must not remove it.
                std::mem::forget(bound);
                std::mem::forget(restricted);
                let mut outcome = "";
                for line in msg.lines() {
                    match line.strip_prefix("warning: ") {
                        Some(w) => eprintln!("signet-agent: warning: {w}"),
                        None => outcome = line,
                    }
                }
                return if outcome == "ok" {
                    print!("{}", eval_lines(&sock_text, child.as_raw() as u32, csh));
                    Ok(())
                } else if outcome.is_empty() {
                    Err(StartError::ExitedDuringStartup)
                } else {
                    let (code, text) = match outcome.strip_prefix("fail ") {
                        Some(rest) => match rest.split_once(' ') {
                            Some((c, t)) => (c.parse().unwrap_or(1), t),
                            None => (1, rest),
                        },
                        None => (1, outcome),
                    };
                    Err(StartError::Detached(code, text.to_string()))
                };
            }
            nix::unistd::ForkResult::Child => {
                drop(rd);
                ready.pipe = Some(std::fs::File::from(wr));
                let _ = nix::unistd::setsid();
                let _ = std::env::set_current_dir("/");
                // Detached: the user's terminal is not ours to write on.
                // Start-up errors and warnings travel through the pipe.
                detach_stdio();
            }
        }
    }

    let result = serve(args, config, bound, restricted, data_dir, &sock_text, csh, &mut ready);
    if let Err(e) = &result {
        ready.say(&format!("fail {} {e}", e.exit_code()));
    }
    result
}

/// Locks the agent on each session event logind sends (where it answers).
fn watch_session(agent: Arc<Agent>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let watcher = tokio::spawn(async move {
            if let Err(e) = logind::watch(tx).await {
                tracing::info!(error = %e, "logind does not answer on the system bus; session locks and sleep will not lock the agent");
            }
        });
        while let Some(event) = rx.recv().await {
            match agent.lock(None).await {
                Ok(()) => tracing::info!(%event, "agent locked"),
                Err(f) => tracing::debug!(%event, error = %f, "not locked again"),
            }
        }
        watcher.abort();
    })
}

/// Each connection costs a descriptor, and the usual soft limit (1024) is
/// below what max_connections may ask: raise it to the hard limit, as
/// servers do, and say so when even that is short.
fn raise_fd_limit(max_connections: u32) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err() {
        tracing::debug!(soft, hard, "cannot raise the open-file limit");
    }
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((soft, hard));
    // The store, the keyring, the log and the runtime need a few of their own.
    if u64::from(max_connections) + 64 > soft {
        tracing::warn!(
            max_connections,
            open_file_limit = soft,
            "max_connections is close to the open-file limit: raise the limit (ulimit -n) or lower max_connections"
        );
    }
}

fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
}

#[allow(clippy::too_many_arguments)]
fn serve(
    mut args: Args,
    config: Config,
    bound: server::BoundSocket,
    restricted: Option<server::BoundSocket>,
    data_dir: PathBuf,
    sock_text: &str,
    csh: bool,
    ready: &mut Ready,
) -> Result<(), StartError> {
    for problem in harden::harden() {
        tracing::warn!("{problem}");
    }
    raise_fd_limit(config.max_connections);
    // Whatever the store, `signet migrate --to keyutils` may need one later.
    if let Err(e) = keyring::join_session_keyring() {
        tracing::debug!(error = %e, "cannot join a session keyring");
    }
    let started = Instant::now();
    let remove_sockets = || {
        bound.remove();
        if let Some(r) = &restricted {
            r.remove();
        }
    };
    let passphrase = args.passphrase.take();
    let (store, warning, recovery) =
        Store::open_with_passphrase(&data_dir, args.store, config.keyring_timeout(), passphrase)
            .inspect_err(|_| remove_sockets())?;
    let audit = if config.audit {
        Audit::open(AuditSettings {
            dir: data_dir.clone(),
            max_bytes: config.audit_max_bytes,
            keep: config.audit_keep,
        })
        .inspect_err(|_| remove_sockets())?
    } else {
        Audit::disabled()
    };
    let allow =
        if args.allow.is_empty() { config.restricted_allow.clone() } else { args.allow.clone() };
    let rule = Arc::new(Restriction { allow: (!allow.is_empty()).then_some(allow) });
    if let Some(w) = warning {
        tracing::warn!("{w}");
        ready.warn(&w);
    }
    if recovery != Default::default() {
        tracing::info!(?recovery, "finished changes interrupted by a crash");
    }
    tracing::info!(
        store = store.keyring_name(),
        socket = %bound.path.display(),
        restricted_socket = ?restricted.as_ref().map(|r| r.path.display().to_string()),
        data_dir = %data_dir.display(),
        audit = config.audit,
        "signet-agent ready"
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("signet-agent")
        .build()
        .map_err(|err| StartError::Io { what: "start the runtime", err })?;
    let socket_path = bound.path.clone();
    let (std_listener, socket_file) = bound.split();
    let restricted_parts = restricted.map(server::BoundSocket::split);
    let result = runtime.block_on(async {
        let listen = |err| StartError::Io { what: "listen on the socket", err };
        std_listener.set_nonblocking(true).map_err(listen)?;
        let listener = tokio::net::UnixListener::from_std(std_listener).map_err(listen)?;
        let agent = Arc::new(Agent {
            http: signet_agent::http::Http::new(config.upstream_idle_timeout()),
            access: signet_agent::access::Access::new(&config),
            store,
            config,
            started,
            socket: socket_path,
            proxies: signet_agent::proxies::Proxies::default(),
            audit,
        });
        if agent.store.awaits_vault() {
            agent.access.set_vault_locked();
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let restricted_task = match restricted_parts {
            Some((l, file)) => {
                l.set_nonblocking(true).map_err(listen)?;
                let l = tokio::net::UnixListener::from_std(l).map_err(listen)?;
                let (agent, stop) = (agent.clone(), stop_rx.clone());
                Some(tokio::spawn(async move {
                    server::serve(l, &file, agent, Some(rule), stop).await;
                }))
            }
            None => None,
        };
        let reaper = tokio::spawn(timers::reaper(agent.clone(), stop_rx.clone()));
        let idle = agent
            .config
            .idle_lock()
            .map(|limit| tokio::spawn(timers::idle_lock(agent.clone(), limit, stop_rx.clone())));
        let session = agent.config.lock_on_session_events.then(|| watch_session(agent.clone()));

        // SIGTERM is the one shutdown path: its handler is in place before
        // anyone is told the agent is ready, so a stop that follows at once
        // still removes the socket instead of killing the process outright.
        use tokio::signal::unix::{SignalKind, signal};
        let handlers = |err| StartError::Io { what: "install the signal handlers", err };
        let mut term = signal(SignalKind::terminate()).map_err(handlers)?;
        let mut int = signal(SignalKind::interrupt()).map_err(handlers)?;

        if args.foreground {
            print!("{}", eval_lines(sock_text, std::process::id(), csh));
            let _ = std::io::stdout().flush();
        } else {
            ready.say("ok");
        }
        // The store is open and the socket listens: connections queue until
        // the runtime accepts them, so a manager may route clients here now.
        if let Some(n) = &ready.manager {
            n.send("READY=1");
        }

        let stopping = ready.manager.clone();
        let signals = tokio::spawn(async move {
            let which = tokio::select! { _ = term.recv() => "SIGTERM", _ = int.recv() => "SIGINT" };
            tracing::info!(signal = which, "shutting down");
            if let Some(n) = &stopping {
                n.send("STOPPING=1");
            }
            let _ = stop_tx.send(true);
        });

        let flusher = {
            let agent = agent.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                    if let Err(e) = agent.store.flush_usage().await {
                        tracing::warn!(error = %e, "cannot record token use");
                    }
                }
            })
        };

        // The accept loop runs on a worker rather than on this thread: a
        // connection it accepts then starts on the same worker, at once,
        // instead of waking another thread for it.
        let accepting = {
            let (file, agent) = (socket_file.clone(), agent.clone());
            tokio::spawn(async move { server::serve(listener, &file, agent, None, stop_rx).await })
        };
        if let Err(e) = accepting.await {
            tracing::error!(error = %e, "the accept loop failed; shutting down");
        }
        // No proxy outlives the agent, nor its socket or certificate file.
        agent.proxies.stop_all();
        signals.abort();
        reaper.abort();
        if let Some(t) = idle {
            t.abort();
        }
        if let Some(t) = session {
            t.abort();
        }
        if let Some(t) = restricted_task {
            let _ = t.await;
        }
        let _ = flusher.await;
        // What is queued reaches the trail, within a bound.
        let trail = agent.audit.clone();
        let _ = tokio::task::spawn_blocking(move || trail.sync(std::time::Duration::from_secs(2)))
            .await;
        if let Err(e) = agent.store.flush_usage().await {
            tracing::warn!(error = %e, "cannot record token use");
        }
        if let Err(e) = agent.store.checkpoint().await {
            tracing::warn!(error = %e, "cannot fold the index journal into its snapshot");
        }
        agent.store.wipe_cache();
        Ok::<(), StartError>(())
    });
    // Also when start-up failed inside the runtime: the file is removed
    // only while it is still the socket this agent bound.
    socket_file.remove();
    // Worker threads may still hold a connection task that outlived the
    // grace period; do not wait for them.
    runtime.shutdown_background();
    result
}
