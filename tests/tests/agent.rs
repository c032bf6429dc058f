//! The agent's process and socket contract: discovery, modes, peers, bad
//! input, one agent per socket, detaching, signals, its config file and
//! what `signet status` reports of it.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use signet_proto::{ErrorCode, PROTOCOL_VERSION, Request, Response};
use signet_tests::upstream::SilentServer;
use signet_tests::{Backend, TestEnv, raw, run, skip};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn socket_is_0600_in_a_0700_directory() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    assert_eq!(mode(&env.socket()), 0o600);
    assert_eq!(mode(env.socket().parent().unwrap()), 0o700);
    assert_eq!(mode(&env.data_dir()), 0o700);
    assert_eq!(mode(&env.data_dir().join("index.json")), 0o600);
}

#[test]
fn no_agent_exits_3_with_how_to_start_one() {
    let Some(env) = TestEnv::new(Backend::SecretService) else { return };
    // SIGNET_AUTH_SOCK unset.
    let out = run(env.command("signet").arg("list"), b"");
    let err = out.fails(3);
    assert!(err.contains("SIGNET_AUTH_SOCK") && err.contains("signet-agent"), "{err}");
    // Set, but nothing there; every command.
    for args in [&["list"][..], &["status"], &["show", "x"], &["rm", "x"], &["rename", "a", "b"]] {
        let err = env.signet(args).fails(3).to_string();
        assert!(err.contains("eval \"$(signet-agent)\""), "{args:?}: {err}");
    }
    let out = env.try_add("x", "bearer", "https://h/", "t", &[]);
    out.fails(3);
    // A stale socket: bound, nobody listening.
    std::fs::create_dir_all(env.socket().parent().unwrap()).unwrap();
    drop(UnixListener::bind(env.socket()).unwrap());
    assert!(env.signet(&["list"]).fails(3).contains("refused"));
}

#[test]
fn a_protocol_version_mismatch_is_refused_clearly() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    let mut s = raw::connect(&env.socket());
    raw::send(&mut s, &Request::Hello { version: PROTOCOL_VERSION + 1, software: "future".into() });
    match raw::recv(&mut s) {
        Response::Failure(f) => {
            assert_eq!(f.code, ErrorCode::Protocol);
            assert!(f.message.contains("version"), "{}", f.message);
        }
        other => panic!("{other:?}"),
    }
    assert!(raw::closed(&mut s));

    // And the client side: an "agent" that speaks another version is no agent (exit 3).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fake.sock");
    let l = UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let _: Request = signet_proto::frame::read_frame(&mut c).unwrap();
        signet_proto::frame::write_frame(
            &mut c,
            &Response::Hello { version: PROTOCOL_VERSION + 1, software: "x".into() },
        )
        .unwrap();
    });
    let out = run(env.command("signet").args(["list"]).env("SIGNET_AUTH_SOCK", &path), b"");
    assert!(out.fails(3).contains("protocol version mismatch"), "{out:#?}");
    server.join().unwrap();
}

#[test]
fn garbage_and_oversized_frames_get_an_error_and_the_agent_stays_up() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    // An HTTP request is a 1.2 GB length prefix: refused, closed.
    let mut s = raw::connect(&env.socket());
    raw::send_bytes(&mut s, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    match raw::recv(&mut s) {
        Response::Failure(f) => {
            assert_eq!(f.code, ErrorCode::Protocol);
            assert!(f.message.contains("exceeds"), "{}", f.message);
        }
        other => panic!("{other:?}"),
    }
    assert!(raw::closed(&mut s));

    // Just over the limit after the handshake.
    let mut s = raw::hello(&env.socket());
    raw::send_bytes(&mut s, &((1u32 << 20) + 1).to_be_bytes());
    assert!(matches!(raw::recv(&mut s), Response::Failure(f) if f.code == ErrorCode::Protocol));
    assert!(raw::closed(&mut s));

    // A well-delimited body that does not decode: an error, and the
    // connection stays usable.
    let mut s = raw::hello(&env.socket());
    raw::send_bytes(&mut s, &[0, 0, 0, 3, 0xff, 0xfe, 0xfd]);
    assert!(matches!(raw::recv(&mut s), Response::Failure(f) if f.code == ErrorCode::Protocol));
    raw::send(&mut s, &Request::List);
    assert!(matches!(raw::recv(&mut s), Response::Tokens(_)));

    // A request before Hello.
    let mut s = raw::connect(&env.socket());
    raw::send(&mut s, &Request::List);
    assert!(matches!(raw::recv(&mut s), Response::Failure(f) if f.message.contains("Hello")));
    assert!(raw::closed(&mut s));

    // A truncated frame followed by a hang-up.
    let mut s = raw::hello(&env.socket());
    raw::send_bytes(&mut s, &[0, 0, 1, 0, 1, 2]);
    drop(s);

    // Many connections at once that never speak.
    let idle: Vec<_> = (0..50).map(|_| raw::connect(&env.socket())).collect();

    // Still serving.
    env.signet(&["list"]).ok();
    env.add("a", "bearer", "https://h/", "t", &[]);
    drop(idle);
    let mut env = env;
    assert!(env.agent.as_mut().unwrap().is_running());
}

#[test]
fn another_uid_gets_one_error_frame_and_is_closed() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    if !nix::unistd::geteuid().is_root() {
        skip::skip("needs root to connect as another uid");
        return;
    }
    // A throwaway system user, created once per machine.
    let _ = std::process::Command::new("useradd")
        .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "signet-test-peer"])
        .stderr(std::process::Stdio::null())
        .status();
    let other = nix::unistd::User::from_name("signet-test-peer")
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
        .expect("the throwaway user signet-test-peer (useradd failed?)");
    let (resp, closed) = raw::connect_as_uid(&env.socket(), other).expect("connect as another uid");
    match resp {
        Response::Failure(f) => {
            assert_eq!(f.code, ErrorCode::Policy);
            assert!(
                f.message.contains("permission denied") && f.message.contains(&other.to_string()),
                "{}",
                f.message
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(closed);
    env.signet(&["list"]).ok();
    assert!(env.agent_log().contains("refused a connection from another user"));
}

#[test]
fn unsafe_socket_directories_are_refused() {
    let Some(env) = TestEnv::new(Backend::SecretService) else { return };
    let dir = env.socket().parent().unwrap().to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run(env.agent_command().arg("-D"), b"");
    assert_eq!(out.code(), 1, "{out:#?}");
    assert!(
        out.stderr.contains("755") && out.stderr.contains(&dir.display().to_string()),
        "{out:#?}"
    );
    assert!(!env.socket().exists());

    if nix::unistd::geteuid().is_root() {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(54_321)), None).unwrap();
        let out = run(env.agent_command().arg("-D"), b"");
        assert_eq!(out.code(), 1, "{out:#?}");
        assert!(out.stderr.contains("owned by uid 54321"), "{out:#?}");
    } else {
        skip::skip("foreign owner: needs root to chown");
    }
}

#[test]
fn one_agent_per_socket_and_stale_sockets_are_replaced() {
    let Some(mut env) = TestEnv::started(Backend::SecretService) else { return };
    // A second agent on the live socket (another data dir, so only the
    // socket is in the way).
    let other_data = env.root.path().join("other-data");
    let out = run(env.agent_command().arg("-D").arg("--data-dir").arg(&other_data), b"");
    assert_eq!(out.code(), 1, "{out:#?}");
    assert!(out.stderr.contains("an agent is already listening at"), "{out:#?}");
    env.signet(&["list"]).ok();

    // A second agent on the same data dir, another socket.
    let out =
        run(env.agent_command().arg("-D").arg("-a").arg(env.root.path().join("run/x/s.sock")), b"");
    assert_eq!(out.code(), 1, "{out:#?}");
    assert!(out.stderr.contains("data directory"), "{out:#?}");

    // After a SIGKILL the socket is stale: the next agent replaces it.
    env.kill_agent();
    assert!(env.socket().exists());
    env.start_agent();
    env.signet(&["list"]).ok();
}

#[test]
fn sigterm_and_sigint_remove_the_socket_and_exit_0() {
    let Some(mut env) = TestEnv::started(Backend::SecretService) else { return };
    env.add("a", "bearer", "https://h/", "t", &[]);
    assert_eq!(env.stop_agent().code(), Some(0));
    assert!(!env.socket().exists());
    env.start_agent();
    let pid = env.agent.as_ref().unwrap().pid();
    // A client in the middle of a connection does not keep the agent alive
    // past the grace period.
    let _held = raw::hello(&env.socket());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGINT)
        .unwrap();
    let mut a = env.agent.take().unwrap();
    let status = signet_tests::wait_timeout(&mut a.child, Duration::from_secs(15)).expect("exit");
    assert_eq!(status.code(), Some(0));
    assert!(!env.socket().exists());
}

#[test]
fn a_clean_stop_folds_the_index_journal_into_the_snapshot() {
    let Some(mut env) = TestEnv::started(Backend::SecretService) else { return };
    env.add("first", "bearer", "https://h/", "t1", &[]);
    env.add("second", "bearer", "https://h/", "t2", &["--exportable"]);
    let journal = env.data_dir().join("index.journal");
    let snapshot = env.data_dir().join("index.json");
    let len = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
    assert!(len(&journal) > 0, "each add is journalled");
    assert!(!std::fs::read_to_string(&snapshot).unwrap().contains("\"second\""));
    assert_eq!(env.stop_agent().code(), Some(0));
    // The next start reads one file and replays nothing.
    assert_eq!(len(&journal), 0, "the journal was not folded in at stop");
    let text = std::fs::read_to_string(&snapshot).unwrap();
    assert!(text.contains("\"first\"") && text.contains("\"second\""), "{text}");
    env.start_agent();
    assert_eq!(env.sign_line(&["second", "https://h/"]), "Authorization: Bearer t2");
}

#[test]
fn during_the_grace_period_a_new_client_finds_no_agent_at_once() {
    let Some(mut env) = TestEnv::started(Backend::SecretService) else { return };
    let silent = SilentServer::start();
    env.add("slow", "bearer", &format!("http://127.0.0.1:{}/", silent.port()), "tok", &[]);
    // A request in flight keeps the agent in its grace period (5 s).
    let mut in_flight = env.signet_command();
    in_flight.args(["request", "slow", "anything"]).stdout(Stdio::null()).stderr(Stdio::null());
    let mut in_flight = in_flight.spawn().expect("spawn");
    assert!(signet_tests::eventually(Duration::from_secs(10), || silent.accepted() == 1));
    let mut a = env.agent.take().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(a.pid()), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    assert!(signet_tests::eventually(Duration::from_secs(3), || !env.socket().exists()));
    let asked = Instant::now();
    let out = env.signet(&["status"]);
    assert_eq!(out.code(), 3, "{out:#?}");
    assert!(asked.elapsed() < Duration::from_secs(2), "waited {:?}", asked.elapsed());
    assert!(a.is_running(), "the agent should still be in its grace period");
    let status = signet_tests::wait_timeout(&mut a.child, Duration::from_secs(15)).expect("exit");
    assert_eq!(status.code(), Some(0));
    let _ = in_flight.kill();
    let _ = in_flight.wait();
}

#[test]
fn a_stop_right_after_start_still_removes_the_socket() {
    let Some(env) = TestEnv::new(Backend::SecretService) else { return };
    // `-k` as soon as the eval lines are out: the handler must already be
    // there, else SIGTERM's default action leaves a stale socket behind.
    for _ in 0..10 {
        let out = run(env.agent_command().arg("-s"), b"");
        assert_eq!(out.code(), 0, "{out:#?}");
        let pid = out
            .stdout
            .lines()
            .find_map(|l| {
                l.strip_prefix("SIGNET_AGENT_PID=")?.strip_suffix("; export SIGNET_AGENT_PID;")
            })
            .expect("pid line")
            .to_string();
        let out = run(env.command("signet-agent").arg("-k").env("SIGNET_AGENT_PID", &pid), b"");
        assert_eq!(out.code(), 0, "{out:#?}");
        assert!(
            signet_tests::eventually(Duration::from_secs(10), || !env.socket().exists()),
            "socket left behind by agent {pid}"
        );
    }
}

#[test]
fn detached_agent_prints_eval_lines_and_k_kills_it() {
    let Some(env) = TestEnv::new(Backend::SecretService) else { return };
    let out = run(env.agent_command().arg("-s"), b"");
    assert_eq!(out.code(), 0, "{out:#?}");
    let sock = env.socket().display().to_string();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out:#?}");
    assert_eq!(lines[0], format!("SIGNET_AUTH_SOCK={sock}; export SIGNET_AUTH_SOCK;"));
    let pid: i32 = lines[1]
        .strip_prefix("SIGNET_AGENT_PID=")
        .and_then(|r| r.strip_suffix("; export SIGNET_AGENT_PID;"))
        .expect("pid line")
        .parse()
        .unwrap();
    assert_eq!(lines[2], format!("echo Agent pid {pid};"));
    // Usable at once, with nothing more than the eval'd variables.
    env.signet(&["list"]).ok();
    assert_eq!(env.signet(&["status", "--json"]).json()["pid"], pid);

    let out = run(
        env.command("signet-agent").arg("-k").arg("-s").env("SIGNET_AGENT_PID", pid.to_string()),
        b"",
    );
    assert_eq!(out.code(), 0, "{out:#?}");
    assert_eq!(
        out.stdout,
        format!("unset SIGNET_AUTH_SOCK;\nunset SIGNET_AGENT_PID;\necho Agent pid {pid} killed;\n")
    );
    assert!(signet_tests::eventually(Duration::from_secs(10), || !env.socket().exists()));

    // csh syntax.
    let out = run(env.agent_command().arg("-c"), b"");
    assert_eq!(out.code(), 0, "{out:#?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], format!("setenv SIGNET_AUTH_SOCK {sock};"));
    let pid: i32 = lines[1]
        .strip_prefix("setenv SIGNET_AGENT_PID ")
        .unwrap()
        .trim_end_matches(';')
        .parse()
        .unwrap();
    let out = run(
        env.command("signet-agent").arg("-k").arg("-c").env("SIGNET_AGENT_PID", pid.to_string()),
        b"",
    );
    assert!(out.stdout.starts_with("unsetenv SIGNET_AUTH_SOCK;"), "{out:#?}");
    assert!(signet_tests::eventually(Duration::from_secs(10), || !env.socket().exists()));

    // -k without a pid, and no agent on the socket.
    let out = run(env.command("signet-agent").arg("-k"), b"");
    assert_eq!(out.code(), 1);
    assert!(out.stderr.contains("SIGNET_AGENT_PID"), "{out:#?}");
}

#[test]
fn auto_store_falls_back_to_the_kernel_keyring_with_a_warning() {
    let Some(env) = TestEnv::new(Backend::Keyutils) else { return };
    let mut cmd = env.command("signet-agent");
    cmd.arg("--store").arg("auto").env_remove("DBUS_SESSION_BUS_ADDRESS");
    let out = run(&mut cmd, b"");
    assert_eq!(out.code(), 0, "{out:#?}");
    assert!(out.stderr.contains("warning") && out.stderr.contains("reboot"), "{out:#?}");
    let s = env.signet(&["status", "--json"]).json();
    assert_eq!(s["store"], "keyutils");
    let pid = s["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    assert!(signet_tests::eventually(Duration::from_secs(10), || !env.socket().exists()));
}

#[test]
fn an_explicit_secret_service_that_is_absent_is_a_clear_error() {
    let Some(env) = TestEnv::new(Backend::Keyutils) else { return };
    let mut cmd = env.command("signet-agent");
    cmd.args(["-D", "--store", "secret-service"]).env_remove("DBUS_SESSION_BUS_ADDRESS");
    let out = run(&mut cmd, b"");
    assert_eq!(out.code(), 1, "{out:#?}");
    assert!(out.stderr.contains("D-Bus"), "{out:#?}");
    assert!(!env.socket().exists(), "socket left behind after a failed start");
}

#[test]
fn idle_slow_and_surplus_connections_are_closed_by_the_limits() {
    let Some(mut env) = TestEnv::new(Backend::SecretService) else { return };
    env.write_config("idle_timeout_secs = 1\nframe_timeout_secs = 1\nmax_connections = 2\n");
    env.start_agent();

    // Idle after the handshake: closed after the idle timeout.
    let mut idle = raw::hello(&env.socket());
    let t = std::time::Instant::now();
    assert!(raw::closed(&mut idle), "an idle connection stayed open");
    assert!(t.elapsed() < Duration::from_secs(5), "closed only after {:?}", t.elapsed());

    // A length prefix whose body never comes: closed after the frame timeout.
    let mut slow = raw::hello(&env.socket());
    raw::send_bytes(&mut slow, &[0, 0, 0, 100, 1, 2]);
    let t = std::time::Instant::now();
    assert!(raw::closed(&mut slow), "a stalled frame kept the connection open");
    assert!(t.elapsed() < Duration::from_secs(5));

    // Two connections held: a third gets one error frame naming the limit.
    let _a = raw::hello(&env.socket());
    let _b = raw::hello(&env.socket());
    let mut c = raw::connect(&env.socket());
    match raw::recv(&mut c) {
        Response::Failure(f) => assert!(f.message.contains("maximum of 2"), "{}", f.message),
        other => panic!("{other:?}"),
    }
    drop((_a, _b));
    // Served again once they are gone.
    assert!(signet_tests::eventually(Duration::from_secs(5), || env.signet(&["list"]).code() == 0));
}

#[test]
fn a_bad_config_file_stops_the_agent_with_its_name() {
    let Some(env) = TestEnv::new(Backend::SecretService) else { return };
    env.write_config("max_tokens_per_ower = 2\n");
    let out = run(env.agent_command().arg("-D"), b"");
    assert_eq!(out.code(), 1, "{out:#?}");
    assert!(
        out.stderr.contains("config.toml") && out.stderr.contains("max_tokens_per_ower"),
        "{out:#?}"
    );
}

#[test]
fn status_reports_the_agent() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    env.add("a", "bearer", "https://h/", "t", &[]);
    let s = env.signet(&["status", "--json"]).json();
    assert_eq!(s["pid"], env.agent.as_ref().unwrap().pid());
    assert_eq!(s["store"], "secret-service");
    assert_eq!(s["tokens"], 1);
    assert_eq!(s["socket"], env.socket().display().to_string());
    assert!(s["version"].is_string() && s["uptime_secs"].is_u64());
    let text = env.signet(&["status"]).ok().to_string();
    assert!(text.contains("secret-service"), "{text}");
}
