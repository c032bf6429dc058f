//! The holes found when signet was attacked, each shut and kept shut: URLs
//! that other parsers read differently, upstreams that hang, methods that
//! echo secrets, hidden dot segments, framing headers, hostile input
//! limits, a locked keyring at start-up, root at a user's agent, and a
//! stale `SIGNET_AGENT_PID`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use signet_tests::{Backend, Out, TestEnv, copies_in_memory, eventually, run, wait_timeout};

/// Runs an agent command that must stop by itself (a refused start-up);
/// one that keeps running is killed and fails the test instead of hanging
/// the suite.
fn agent_refuses(env: &TestEnv, cmd: &mut Command) -> Out {
    let out_path = env.root.path().join("refused.out");
    let err_path = env.root.path().join("refused.err");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let Some(status) = wait_timeout(&mut child, Duration::from_secs(15)) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the agent started instead of refusing: {}",
            std::fs::read_to_string(&err_path).unwrap()
        );
    };
    Out {
        status,
        stdout: std::fs::read_to_string(&out_path).unwrap(),
        stderr: std::fs::read_to_string(&err_path).unwrap(),
    }
}

/// A loopback HTTP listener that records every request head it gets, and
/// either answers 200 at once or never answers (a hung upstream).
struct Listener {
    port: u16,
    #[allow(dead_code)]
    reply: Option<&'static str>,
    heads: Arc<Mutex<Vec<String>>>,
    open: Arc<AtomicUsize>,
}

impl Listener {
    fn start(answer: bool) -> Listener {
        Listener::start_with(answer, None)
    }

    /// A listener that answers every request with `reply` (a whole raw
    /// HTTP response).
    fn replying(reply: &'static str) -> Listener {
        Listener::start_with(true, Some(reply))
    }

    fn start_with(answer: bool, reply: Option<&'static str>) -> Listener {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::new(AtomicUsize::new(0));
        let (h, o) = (heads.clone(), open.clone());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let (h, o) = (h.clone(), o.clone());
                std::thread::spawn(move || serve(s, answer, reply, &h, &o));
            }
        });
        Listener { port, reply, heads, open }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// Connections accepted and not yet closed by the peer.
    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

fn serve(
    mut s: TcpStream,
    answer: bool,
    reply: Option<&str>,
    heads: &Mutex<Vec<String>>,
    open: &AtomicUsize,
) {
    open.fetch_add(1, Ordering::SeqCst);
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    if !head.is_empty() {
        heads.lock().unwrap().push(head);
    }
    if answer {
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
        let _ = s.write_all(reply.unwrap_or(ok).as_bytes());
    } else {
        // Hold the connection without a word until the client closes it.
        let _ = r.read_to_end(&mut Vec::new());
    }
    open.fetch_sub(1, Ordering::SeqCst);
}

/// Where Python's urllib would send a request for `url`: (host, port).
fn urllib_target(url: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, urllib.parse as p\ns = p.urlsplit(sys.argv[1])\nprint(s.hostname, s.port)",
            url,
        ])
        .output()
        .expect("python3");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn urls_that_curl_or_urllib_send_elsewhere_are_refused() {
    let Some(env) = TestEnv::started(Backend::Keyutils) else { return };
    let good = Listener::start(true);
    let evil = Listener::start(true);
    let (g, e) = (good.port, evil.port);
    env.add("t", "bearer", &format!("{}/", good.origin()), "TopSecretValue", &["--exportable"]);

    let hostile = [
        format!("http://127.0.0.1:{g}\\@127.0.0.1:{e}/"),
        format!("http://127.0.0.1:{g}\\\\@127.0.0.1:{e}/x"),
        format!("http://127.0.0.1:{g}/\\@127.0.0.1:{e}/"),
        format!("http://127.0.0.1:{g} @127.0.0.1:{e}/"),
        format!("http://127.0.0.1:{g}\t@127.0.0.1:{e}/"),
        format!("http://127.0.0.1:{g}/a\nb"),
        format!("http://127.0.0.1:{g}/caf\u{e9}"),
    ];
    let mut elsewhere = 0;
    for url in &hostile {
        // The second parsers: urllib, and curl for real (which listener it reaches).
        let py = urllib_target(url);
        let before = evil.heads().len();
        let _ = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "--max-time", "3", url])
            .stderr(Stdio::null())
            .status();
        let curl_went_to_evil = evil.heads().len() > before;
        if curl_went_to_evil || py.ends_with(&e.to_string()) {
            elsewhere += 1;
        }
        let out = env.signet(&["sign", "t", "GET", url]);
        assert_eq!(out.code(), 2, "{url:?} must be refused before parsing: {out:#?}");
        assert!(out.stderr.contains("invalid URL"), "{out:#?}");
        assert!(!out.stdout.contains("TopSecretValue"), "{out:#?}");
        let out = env.signet(&["request", "t", url]);
        assert_eq!(out.code(), 2, "{url:?}: {out:#?}");
    }
    // The corpus is a real attack: the other parsers send some of it to `evil`.
    assert!(elsewhere >= 2, "curl and urllib read none of the corpus as evil: {elsewhere}");
    assert!(
        evil.heads().iter().all(|h| !h.contains("TopSecretValue")),
        "the secret reached the other origin: {:?}",
        evil.heads()
    );
    // A plain URL still works, through signet sign and curl alike.
    let ok = format!("{}/fine", good.origin());
    let header = env.signet(&["sign", "t", "GET", &ok]).ok().trim().to_string();
    assert!(header.contains("TopSecretValue"), "{header}");
    // A base URL with a backslash is refused at add.
    let out = env.signet_in(
        &[
            "add",
            "b",
            "--kind",
            "bearer",
            "--url",
            &format!("http://127.0.0.1:{g}\\@127.0.0.1:{e}/"),
        ],
        b"x\n",
    );
    assert_eq!(out.code(), 2, "{out:#?}");
}

#[test]
fn hidden_dot_segments_are_out_of_scope() {
    let Some(env) = TestEnv::started(Backend::Keyutils) else { return };
    let good = Listener::start(true);
    env.add("t", "bearer", &format!("{}/api/", good.origin()), "s", &["--exportable"]);
    for path in ["api/..;/admin", "api/a/..;x=1/..;/b", "api/%252e%252e/admin", "api/.%252e/x"] {
        let url = format!("{}/{path}", good.origin());
        let out = env.signet(&["sign", "t", "GET", &url]);
        assert_eq!(out.code(), 5, "{path}: {out:#?}");
        assert!(out.stderr.contains("refused"), "{out:#?}");
    }
    env.signet(&["sign", "t", "GET", &format!("{}/api/x;v=1/y", good.origin())]).ok();
}

#[test]
fn trace_track_and_connect_are_refused_before_anything_is_sent() {
    let Some(env) = TestEnv::started(Backend::Keyutils) else { return };
    let up = Listener::start(true);
    env.add("m", "maas", &format!("{}/MAAS/", up.origin()), "ck:tk:VerySecretTS", &[]);
    for m in ["TRACE", "track", "CONNECT"] {
        let out = env.signet(&["request", "m", "-X", m, "api/2.0/"]);
        assert_eq!(out.code(), 2, "{m}: {out:#?}");
        assert!(out.stderr.contains("refused"), "{out:#?}");
    }
    assert!(up.heads().is_empty(), "{:?}", up.heads());
    env.signet(&["request", "m", "api/2.0/"]).ok();
    assert_eq!(up.heads().len(), 1);
}

#[test]
fn a_client_that_leaves_frees_its_slot_and_abandons_the_upstream_call() {
    let Some(mut env) = TestEnv::new(Backend::Keyutils) else { return };
    env.write_config("max_connections = 2\n");
    env.start_agent();
    let hung = Listener::start(false);
    env.add("t", "bearer", &format!("{}/", hung.origin()), "s", &[]);
    let mut clients: Vec<_> = (0..2)
        .map(|_| {
            let mut c = env.command("signet");
            c.env("SIGNET_AUTH_SOCK", env.socket())
                .args(["request", "t", "/slow"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    assert!(eventually(Duration::from_secs(10), || hung.open() == 2), "{}", hung.open());
    // Every slot is taken now: a third client is told so.
    assert_eq!(env.signet(&["list"]).code(), 1);
    for c in &mut clients {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    // The agent notices both clients leaving and drops their upstream calls.
    assert!(
        eventually(Duration::from_secs(5), || hung.open() == 0),
        "upstream calls still open: {}\n{}",
        hung.open(),
        env.agent_log()
    );
    env.signet(&["list"]).ok();
    assert!(env.agent_log().contains("the client left"), "{}", env.agent_log());
}

#[test]
fn a_silent_upstream_is_given_up_after_the_idle_timeout() {
    let Some(mut env) = TestEnv::new(Backend::Keyutils) else { return };
    env.write_config("upstream_idle_timeout_secs = 1\n");
    env.start_agent();
    let hung = Listener::start(false);
    env.add("t", "bearer", &format!("{}/", hung.origin()), "s", &[]);
    let t = Instant::now();
    let out = env.signet(&["request", "t", "/slow"]);
    assert_eq!(out.code(), 7, "{out:#?}");
    assert!(out.stderr.contains("timed out"), "{out:#?}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

#[test]
fn header_tokens_cannot_name_framing_headers() {
    let Some(env) = TestEnv::started(Backend::Keyutils) else { return };
    for h in ["Host", "Content-Length", "transfer-encoding", "Connection", "Upgrade"] {
        let out = env.signet_in(
            &["add", "h", "--kind", "header", "--header-name", h, "--url", "https://h/"],
            b"v\n",
        );
        assert_eq!(out.code(), 2, "{h}: {out:#?}");
        assert!(out.stderr.contains("frames the HTTP message"), "{out:#?}");
    }
    env.add("h", "header", "https://h/", "Token abc", &["--header-name", "Authorization"]);
}

#[test]
fn input_limits_are_enforced_with_clear_errors() {
    let Some(env) = TestEnv::started(Backend::Keyutils) else { return };
    let add = |extra: &[&str]| {
        let mut args = vec!["add", "x", "--kind", "bearer", "--url", "https://h/"];
        args.extend_from_slice(extra);
        env.signet_in(&args, b"t\n")
    };
    let out = add(&["--expires", "99999999Y"]);
    assert_eq!(out.code(), 2, "{out:#?}");
    assert!(out.stderr.contains("9999-12-31"), "{out:#?}");
    let out = add(&["--expires", "0s"]);
    assert_eq!(out.code(), 2, "{out:#?}");
    assert!(out.stderr.contains("at least 1"), "{out:#?}");
    add(&["--expires", "2D"]).ok();
    env.signet(&["rm", "x"]).ok();

    let fake = env.root.path().join("fake.pem");
    std::fs::write(&fake, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        .unwrap();
    let out = add(&["--cacert", fake.to_str().unwrap()]);
    assert_eq!(out.code(), 2, "{out:#?}");
    assert!(out.stderr.contains("--cacert"), "{out:#?}");

    for spoof in ["prod\u{202e}dorp", "a\u{2066}b", "a\u{1b}[31mred"] {
        let out = add(&["--comment", spoof]);
        assert_eq!(out.code(), 2, "{spoof:?}: {out:#?}");
        assert!(out.stderr.contains("comment"), "{out:#?}");
    }
    assert!(env.signet(&["list", "--json"]).json().as_array().unwrap().is_empty());
}

#[test]
fn a_zero_timeout_in_the_config_stops_the_agent_with_the_reason() {
    let Some(env) = TestEnv::new(Backend::Keyutils) else { return };
    env.write_config("keyring_timeout_secs = 0\n");
    let out = agent_refuses(&env, env.agent_command().arg("-D"));
    assert_eq!(out.code(), 1, "{out:#?}");
    assert!(out.stderr.contains("keyring_timeout_secs must be at least 1"), "{out:#?}");
}

#[test]
fn a_locked_secret_service_is_found_at_start_up() {
    let Some(env) = TestEnv::new(Backend::SecretService) else { return };
    let session = env.session.as_ref().unwrap();
    session.lock().unwrap();
    // Asked for the Secret Service: refuse to start, saying what to do.
    let out = agent_refuses(&env, env.agent_command().arg("-D"));
    assert_eq!(out.code(), 1, "{out:#?}");
    assert!(out.stderr.contains("test write") && out.stderr.contains("unlock"), "{out:#?}");
    assert!(!env.socket().exists());
    // Asked for whatever works: fall back to the kernel keyring, saying so.
    let log = env.root.path().join("auto.log");
    let mut child = env
        .command("signet-agent")
        .args(["-D", "--store", "auto"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.starts_with("SIGNET_AUTH_SOCK="), "{first:?}");
    let status = env.signet(&["status", "--json"]).json();
    assert_eq!(status["store"], "keyutils", "{status}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    child.wait().unwrap();
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(err.contains("no Secret Service") && err.contains("kernel keyring"), "{err}");
}

#[test]
fn an_open_socket_directory_is_explained_not_removed() {
    let Some(env) = TestEnv::new(Backend::Keyutils) else { return };
    let open = env.root.path().join("open-home");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = open.join("agent.sock");
    let out = agent_refuses(&env, env.agent_command().arg("-D").arg("-a").arg(&sock));
    assert_eq!(out.code(), 1, "{out:#?}");
    assert!(out.stderr.contains("755") && out.stderr.contains("private subdirectory"), "{out:#?}");
    assert!(!out.stderr.contains("remove"), "{out:#?}");
    assert!(open.exists());
    // The advice works: a path in a subdirectory it creates.
    let mut child = env
        .agent_command()
        .arg("-D")
        .arg("-a")
        .arg(open.join("signet/agent.sock"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.starts_with("SIGNET_AUTH_SOCK="), "{first:?}");
    let mode = std::fs::metadata(open.join("signet")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn kill_refuses_a_pid_that_is_not_a_signet_agent() {
    let Some(env) = TestEnv::started(Backend::Keyutils) else { return };
    let mut victim = Command::new("sleep").arg("60").spawn().unwrap();
    let out = run(
        env.command("signet-agent").arg("-k").env("SIGNET_AGENT_PID", victim.id().to_string()),
        b"",
    );
    assert_eq!(out.code(), 1, "{out:#?}");
    assert!(out.stderr.contains("not killing") && out.stderr.contains("sleep"), "{out:#?}");
    assert!(victim.try_wait().unwrap().is_none(), "sleep was killed");
    victim.kill().unwrap();
    victim.wait().unwrap();
    // The real agent is still killed by -k.
    let pid = env.agent.as_ref().unwrap().pid();
    let out =
        run(env.command("signet-agent").arg("-k").env("SIGNET_AGENT_PID", pid.to_string()), b"");
    out.ok();
}

/// The throwaway system user the suite connects or runs as, created once
/// per machine; `None` (after a SKIP line) when not root.
fn throwaway_user(test: &str) -> Option<nix::unistd::User> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: {test}: needs root to run as another user");
        return None;
    }
    let _ = Command::new("useradd")
        .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "signet-test-peer"])
        .stderr(Stdio::null())
        .status();
    Some(
        nix::unistd::User::from_name("signet-test-peer")
            .ok()
            .flatten()
            .expect("the throwaway user signet-test-peer (useradd failed?)"),
    )
}

#[test]
fn root_is_refused_by_another_users_agent() {
    let Some(env) = TestEnv::new(Backend::Keyutils) else { return };
    let Some(user) = throwaway_user("root_is_refused_by_another_users_agent") else { return };
    // The user's own world: a private directory it owns.
    let world = env.root.path().join("peer");
    std::fs::create_dir(&world).unwrap();
    std::fs::set_permissions(env.root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    nix::unistd::chown(&world, Some(user.uid), Some(user.gid)).unwrap();
    std::fs::set_permissions(&world, std::fs::Permissions::from_mode(0o700)).unwrap();
    let sock = world.join("run/agent.sock");
    let mut agent = Command::new("setpriv")
        .arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .arg("--clear-groups")
        .arg(signet_tests::bin("signet-agent"))
        .args(["-D", "--store", "keyutils", "-a"])
        .arg(&sock)
        .arg("--data-dir")
        .arg(world.join("data"))
        .env_clear()
        .env("HOME", &world)
        .env("PATH", "/usr/bin:/bin")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(agent.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.starts_with("SIGNET_AUTH_SOCK="), "the user's agent did not start: {first:?}");

    // Root reaches the socket through the 0700 directory. Its client
    // refuses to talk to another user's agent at all; below the client,
    // the agent refuses root by itself.
    let mut c = env.command("signet");
    c.env("SIGNET_AUTH_SOCK", &sock);
    let out = run(c.args(["list"]), b"");
    let mut raw_conn = signet_tests::raw::connect(&sock);
    // The agent refuses at accept, before it reads anything: the Hello may
    // meet a closed socket (EPIPE), and the refusal is there to read anyway.
    let _ = signet_proto::frame::write_frame(
        &mut raw_conn,
        &signet_proto::Request::Hello {
            version: signet_proto::PROTOCOL_VERSION,
            software: "raw".into(),
        },
    );
    let answer = signet_tests::raw::recv(&mut raw_conn);
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(out.code(), 3, "{out:#?}");
    assert!(out.stderr.contains(&format!("served by uid {}", user.uid)), "{out:#?}");
    match answer {
        signet_proto::Response::Failure(f) => {
            assert_eq!(f.code.exit_code(), 5);
            assert!(f.message.contains("permission denied"), "{f:?}");
            assert!(f.hint.unwrap_or_default().contains("root cannot use another user's agent"));
        }
        other => panic!("root was served: {other:?}"),
    }
}

#[test]
fn no_copy_of_a_used_secret_is_left_in_agent_memory_after_rm() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "SKIP: no_copy_of_a_used_secret_is_left_in_agent_memory_after_rm: needs root to read the agent's memory"
        );
        return;
    }
    let up = Listener::start(true);
    let pid = env.agent.as_ref().unwrap().pid();
    // Each secret is made at run time, so this test's own image holds no
    // copy the agent could have inherited.
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).unwrap();
    let tag: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    let maas_secret = format!("MaasScan{tag}");
    let bearer_secret = format!("BearerScan{tag}");
    env.add("m", "maas", &format!("{}/MAAS/", up.origin()), &format!("ck:tk:{maas_secret}"), &[]);
    env.add("b", "bearer", &format!("{}/", up.origin()), &bearer_secret, &["--exportable"]);
    for _ in 0..3 {
        env.signet(&["request", "m", "api/2.0/users/?op=whoami"]).ok();
        env.signet(&["request", "b", "/x"]).ok();
        env.signet(&["sign", "b", "GET", "/x"]).ok();
    }
    assert!(up.heads().iter().any(|h| h.contains(&maas_secret)), "the request carried no secret");
    // The scan sees the secrets while the tokens are in use (the cache).
    assert!(copies_in_memory(pid, maas_secret.as_bytes()) >= 1, "the scan finds nothing at all");
    assert!(copies_in_memory(pid, bearer_secret.as_bytes()) >= 1);

    env.signet(&["rm", "m", "b"]).ok();
    let clean = eventually(Duration::from_secs(5), || {
        copies_in_memory(pid, maas_secret.as_bytes()) == 0
            && copies_in_memory(pid, bearer_secret.as_bytes()) == 0
    });
    assert!(
        clean,
        "copies left after rm: maas {}, bearer {}",
        copies_in_memory(pid, maas_secret.as_bytes()),
        copies_in_memory(pid, bearer_secret.as_bytes())
    );
}

#[test]
fn the_client_sends_nothing_to_a_socket_served_by_another_user() {
    let Some(env) = TestEnv::new(Backend::Keyutils) else { return };
    let Some(user) = throwaway_user("the_client_sends_nothing_to_a_socket_served_by_another_user")
    else {
        return;
    };
    std::fs::set_permissions(env.root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = env.root.path().join("theirs");
    std::fs::create_dir(&dir).unwrap();
    nix::unistd::chown(&dir, Some(user.uid), Some(user.gid)).unwrap();
    let sock = dir.join("fake.sock");
    let got = dir.join("got");
    // A listener of another user that records whatever it is sent.
    let script = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\ns.listen(1)\nprint('ready',flush=True)\nc,_=s.accept()\nc.settimeout(3)\ndata=b''\ntry:\n  while True:\n    b=c.recv(4096)\n    if not b: break\n    data+=b\nexcept Exception: pass\nopen(sys.argv[2],'wb').write(data)\n";
    let mut listener = Command::new("setpriv")
        .arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .arg("--clear-groups")
        // The system's Python: a per-user install under root's home is out
        // of the other user's reach.
        .args(["/usr/bin/python3", "-c", script])
        .arg(&sock)
        .arg(&got)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(listener.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let mut c = env.command("signet");
    c.env("SIGNET_AUTH_SOCK", &sock);
    let out = run(c.args(["add", "x", "--kind", "bearer", "--url", "https://h/"]), b"TopSecret\n");
    let _ = wait_timeout(&mut listener, Duration::from_secs(10));
    assert_eq!(out.code(), 3, "{out:#?}");
    assert!(out.stderr.contains(&format!("served by uid {}", user.uid)), "{out:#?}");
    let received = std::fs::read(&got).unwrap_or_default();
    assert!(received.is_empty(), "the client sent {} bytes", received.len());
}

#[test]
fn a_socket_that_is_not_signets_exits_3() {
    let Some(env) = TestEnv::new(Backend::Keyutils) else { return };
    let sock = env.root.path().join("ssh-agent.sock");
    let out = Command::new("ssh-agent").arg("-a").arg(&sock).output().expect("ssh-agent");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let pid: i32 = text
        .split("SSH_AGENT_PID=")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no ssh-agent pid in {text:?}"));
    let mut c = env.command("signet");
    c.env("SIGNET_AUTH_SOCK", &sock);
    let out = run(c.args(["list"]), b"");
    let _ =
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    assert_eq!(out.code(), 3, "{out:#?}");
    assert!(out.stderr.contains("is not a signet agent"), "{out:#?}");
    // No Debug formatting reaches the user.
    assert!(!out.stderr.contains('{') && !out.stderr.contains("Unexpected"), "{out:#?}");
}

#[test]
fn an_unfollowed_redirect_says_why_and_f_o_leaves_no_file_on_an_error() {
    let Some(env) = TestEnv::started(Backend::Keyutils) else { return };
    let redirect = Listener::replying(
        "HTTP/1.1 302 Found\r\nLocation: http://elsewhere.example/x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    env.add("r", "bearer", &format!("{}/", redirect.origin()), "s", &[]);
    let out = env.signet(&["request", "r", "/a"]);
    out.ok();
    assert!(
        out.stderr.contains("not following the redirect (302) to http://elsewhere.example/x")
            && out.stderr.contains("refused"),
        "{out:#?}"
    );

    let missing = Listener::replying(
        "HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope",
    );
    env.add("n", "bearer", &format!("{}/", missing.origin()), "s", &[]);
    let file = env.root.path().join("out.txt");
    let out = env.signet(&["request", "n", "-f", "-o", file.to_str().unwrap(), "/a"]);
    assert_eq!(out.code(), 22, "{out:#?}");
    assert!(!file.exists(), "-f -o left a file behind");
    env.signet(&["request", "n", "-o", file.to_str().unwrap(), "/a"]).ok();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "nope");
}

#[test]
fn devices_and_huge_files_are_not_read_without_end() {
    let Some(env) = TestEnv::started(Backend::Keyutils) else { return };
    env.add("t", "bearer", "https://h/", "s", &[]);
    let t = Instant::now();
    let out = env.signet_in(
        &["add", "x", "--kind", "bearer", "--url", "https://h/", "--cacert", "/dev/zero"],
        b"t\n",
    );
    assert_eq!(out.code(), 2, "{out:#?}");
    assert!(out.stderr.contains("larger than"), "{out:#?}");
    let out = env.signet(&["request", "t", "-d", "@/dev/zero", "/x"]);
    assert_eq!(out.code(), 2, "{out:#?}");
    assert!(out.stderr.contains("larger than") && out.stderr.contains("--data-binary"), "{out:#?}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
}

#[test]
fn the_expiry_hint_offers_rotate_only_where_it_works() {
    let Some(env) = TestEnv::started(Backend::Keyutils) else { return };
    env.add("b", "bearer", "https://h/", "s", &["--expires", "1s", "--exportable"]);
    std::thread::sleep(Duration::from_millis(2100));
    let out = env.signet(&["sign", "b", "GET", "/x"]);
    assert_eq!(out.code(), 5, "{out:#?}");
    assert!(out.stderr.contains("expired at"), "{out:#?}");
    assert!(!out.stderr.contains("rotate"), "{out:#?}");
}
