//! The agent as a service: found at the default socket without any
//! variable, stopped by `-k` through that socket, started by the real
//! `systemd-socket-activate` on the first connection, and telling a service
//! manager through `NOTIFY_SOCKET` when it is ready and when it stops.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use signet_tests::{Backend, TestEnv, eventually, exists, run, skip, wait_timeout};

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim_end().to_string()
}

#[test]
fn scripts_find_the_agent_at_the_default_socket_and_k_stops_it_there() {
    let Some(mut env) = TestEnv::started(Backend::SecretService) else { return };
    // Nothing names the socket: the client looks at the default path,
    // $XDG_RUNTIME_DIR/signet/agent.sock, where the agent bound it without -a.
    let root = env.command("signet");
    let plain = |args: &[&str], stdin: &[u8]| {
        let mut c = Command::new(root.get_program());
        c.env_clear().envs(root.get_envs().filter_map(|(k, v)| Some((k, v?))));
        c.current_dir(root.get_current_dir().unwrap());
        run(c.args(args), stdin)
    };
    plain(&["add", "a", "--kind", "bearer", "--url", "https://h.example/"], b"t0k\n").ok();
    let status = plain(&["status", "--json"], b"").json();
    assert_eq!(status["socket"], env.socket().display().to_string());
    let pid = env.agent.as_ref().unwrap().pid();
    assert_eq!(status["pid"], pid);

    // -k without SIGNET_AGENT_PID asks that socket who the agent is, and
    // returns once it has exited.
    let out = run(env.command("signet-agent").arg("-k").arg("-s"), b"");
    assert_eq!(out.code(), 0, "{out:#?}");
    assert_eq!(
        out.stdout,
        format!("unset SIGNET_AUTH_SOCK;\nunset SIGNET_AGENT_PID;\necho Agent pid {pid} killed;\n")
    );
    let mut a = env.agent.take().unwrap();
    let st = wait_timeout(&mut a.child, Duration::from_secs(15)).expect("agent exits after -k");
    assert_eq!(st.code(), Some(0));
    assert!(!exists(&env.socket()));

    // Nobody there now: both say so, and name the variable and the path.
    let err = plain(&["list"], b"").fails(3).to_string();
    assert!(err.contains("SIGNET_AUTH_SOCK") && err.contains("default socket"), "{err}");
    assert!(err.contains(&env.socket().display().to_string()), "{err}");
    let out = run(env.command("signet-agent").arg("-k"), b"");
    assert_eq!(out.code(), 1, "{out:#?}");
    assert!(out.stderr.contains("SIGNET_AGENT_PID is not set"), "{out:#?}");

    // Something at the default path that is not an agent of ours is not
    // trusted because of where it sits.
    let sock = env.socket();
    let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let server = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let _ = std::io::Write::write_all(&mut c, b"SSH-2.0-not-signet\r\n");
    });
    let err = plain(&["list"], b"").fails(3).to_string();
    assert!(err.contains("not a signet agent"), "{err}");
    server.join().unwrap();
}

#[test]
fn socket_activation_serves_a_first_request_made_before_the_agent_runs() {
    let Some(env) = TestEnv::new(Backend::SecretService) else { return };
    let activate = std::path::Path::new("/usr/bin/systemd-socket-activate");
    if !signet_tests::skip::require_or_skip(
        "systemd-socket-activate (Debian's systemd)",
        activate.exists(),
    ) {
        return;
    }
    let sock = env.socket();
    let dir = sock.parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();

    // The socket is systemd-socket-activate's; the agent is started, with
    // the socket as fd 3, only when the first client connects.
    let log = env.root.path().join("activated.log");
    let mut cmd = Command::new(activate);
    cmd.env_clear().envs(env.base_env()).arg("-l").arg(&sock);
    for (k, v) in env.base_env() {
        cmd.arg(format!("-E{k}={v}"));
    }
    let child = cmd
        .arg(signet_tests::bin("signet-agent"))
        .args(["-D", "--store", "secret-service"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("run systemd-socket-activate");
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = child.id();
    assert!(eventually(Duration::from_secs(10), || exists(&sock)), "no socket");
    std::thread::sleep(Duration::from_millis(200));
    assert_ne!(comm(pid), "signet-agent", "the agent started before any client came");
    let _reap = Reap(child);

    // The first request: it waits in the socket's queue while the agent
    // starts, and is served. No variable names the socket.
    let out = run(
        env.command("signet").args([
            "add",
            "first",
            "--kind",
            "bearer",
            "--url",
            "https://h.example/",
        ]),
        b"t0k\n",
    );
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(out.code(), 0, "{out:#?}\nlog:\n{}", log_text());
    assert_eq!(comm(pid), "signet-agent");
    assert!(log_text().contains("socket activation"), "{}", log_text());
    let status = run(env.command("signet").args(["status", "--json"]), b"").json();
    assert_eq!(status["pid"], pid);
    assert_eq!(status["socket"], sock.display().to_string());
    let list = run(env.command("signet").args(["list", "--json"]), b"").json();
    assert_eq!(list[0]["name"], "first");

    // Stopped through the socket; the socket is the manager's, so it stays.
    let out = run(env.command("signet-agent").arg("-k"), b"");
    assert_eq!(out.code(), 0, "{out:#?}");
    assert!(eventually(Duration::from_secs(15), || comm(pid).is_empty() || !alive(pid)));
    assert!(exists(&sock), "the agent removed a socket it did not create");
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, r)| !r.trim_start().starts_with('Z')))
}

/// Runs `signet-agent -D` with `NOTIFY_SOCKET=notify_name` and checks the
/// datagrams read on `rx`: READY=1 once it serves, STOPPING=1 on SIGTERM.
fn ready_then_stopping(env: &TestEnv, rx: &UnixDatagram, notify_name: &str) {
    rx.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut child = env
        .agent_command()
        .arg("-D")
        .env("NOTIFY_SOCKET", notify_name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = rx.recv(&mut buf).expect("READY=1 within a minute");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means ready: a request is served at once.
    run(env.signet_command().arg("list"), b"").ok();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.starts_with("SIGNET_AUTH_SOCK="), "{first}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let n = rx.recv(&mut buf).expect("STOPPING=1 on SIGTERM");
    assert_eq!(&buf[..n], b"STOPPING=1");
    let st = wait_timeout(&mut child, Duration::from_secs(15)).expect("exit");
    assert_eq!(st.code(), Some(0));
}

#[test]
fn notify_socket_hears_ready_then_stopping() {
    let Some(env) = TestEnv::new(Backend::SecretService) else { return };
    let path = env.root.path().join("notify");
    let rx = UnixDatagram::bind(&path).unwrap();
    ready_then_stopping(&env, &rx, path.to_str().unwrap());

    // systemd's user manager names an abstract socket: `@` then the name.
    use std::os::linux::net::SocketAddrExt;
    let name = format!("signet-test-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    match UnixDatagram::bind_addr(&addr) {
        Ok(rx) => ready_then_stopping(&env, &rx, &format!("@{name}")),
        Err(e) => skip::skip(&format!("cannot bind an abstract socket here ({e})")),
    }
}

#[test]
fn a_passed_descriptor_is_served_only_when_ours_and_a_listening_socket() {
    let Some(env) = TestEnv::new(Backend::SecretService) else { return };
    // LISTEN_PID names the agent itself (the shell's pid, kept by exec),
    // and fd 3 is /dev/null: no socket to serve, and a clear error.
    let out = run(
        Command::new("sh")
            .env_clear()
            .envs(env.base_env())
            .arg("-c")
            .arg(r#"LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" -D --store secret-service 3</dev/null"#)
            .arg(signet_tests::bin("signet-agent")),
        b"",
    );
    assert_eq!(out.code(), 1, "{out:#?}");
    assert!(out.stderr.contains("passed by socket activation (fd 3) is not a socket"), "{out:#?}");
    assert!(!exists(&env.socket()), "it bound a socket of its own instead");

    // Variables inherited from an activated parent (LISTEN_PID is not the
    // agent's) are not the agent's: it binds its own socket and ignores fd 3.
    let mut child = Command::new("sh")
        .env_clear()
        .envs(env.base_env())
        .arg("-c")
        .arg(r#"LISTEN_PID=1 LISTEN_FDS=1 exec "$0" -D --store secret-service 3</dev/null"#)
        .arg(signet_tests::bin("signet-agent"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert_eq!(
        first,
        format!("SIGNET_AUTH_SOCK={}; export SIGNET_AUTH_SOCK;\n", env.socket().display())
    );
    run(env.command("signet").arg("list"), b"").ok();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(wait_timeout(&mut child, Duration::from_secs(15)).and_then(|s| s.code()), Some(0));
    assert!(!exists(&env.socket()), "its own socket is removed at exit");
}

#[test]
fn the_user_units_parse_and_listen_at_the_default_socket() {
    let contrib = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/systemd");
    let socket = std::fs::read_to_string(contrib.join("signet-agent.socket")).unwrap();
    let service = std::fs::read_to_string(contrib.join("signet-agent.service")).unwrap();
    let lines = |text: &str| text.lines().map(str::trim).map(str::to_string).collect::<Vec<_>>();
    let (sock_lines, svc_lines) = (lines(&socket), lines(&service));
    // %t is $XDG_RUNTIME_DIR: the path clients look at without a variable.
    for want in ["ListenStream=%t/signet/agent.sock", "DirectoryMode=0700", "SocketMode=0600"] {
        assert!(sock_lines.iter().any(|l| l == want), "socket unit lacks {want}");
    }
    for want in ["Type=notify", "ExecStart=signet-agent -D", "NoNewPrivileges=yes"] {
        assert!(svc_lines.iter().any(|l| l == want), "service unit lacks {want}");
    }

    // systemd's own parser: every directive known, every value valid. The
    // binary is named by its path here, as after `cargo install`.
    let analyze = std::path::Path::new("/usr/bin/systemd-analyze");
    if !signet_tests::skip::require_or_skip("systemd-analyze (Debian's systemd)", analyze.exists())
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = dir.path().join("run");
    std::fs::create_dir(&rt).unwrap();
    std::fs::set_permissions(&rt, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let agent = signet_tests::bin("signet-agent");
    let service = service
        .replace("ExecStart=signet-agent -D", &format!("ExecStart={} -D", agent.display()))
        // No man page is installed here for systemd to look up.
        .replace("Documentation=man:signet-agent(1)", "");
    let socket = socket.replace("Documentation=man:signet-agent(1)", "");
    std::fs::write(dir.path().join("signet-agent.service"), service).unwrap();
    std::fs::write(dir.path().join("signet-agent.socket"), socket).unwrap();
    let out = run(
        Command::new(analyze).env("XDG_RUNTIME_DIR", &rt).current_dir(dir.path()).args([
            "verify",
            "--user",
            "signet-agent.socket",
            "signet-agent.service",
        ]),
        b"",
    );
    assert!(out.status.success(), "{out:#?}");
    assert_eq!(out.stderr.trim(), "", "systemd-analyze complains: {out:#?}");
}
