//! `signet request`, where the agent performs the request: curl's flags
//! (-i, -o, -X, -H, -d), bodies streamed both ways in constant memory, and
//! how an upstream that is down, silent or cuts its answer short is
//! reported (exit 7) while the agent goes on serving other clients.

use std::io::Write;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use signet_tests::upstream::{
    BearerLikeServer, ExpectedAuth, SilentServer, TruncatingServer, closed_port, pattern_sha256,
    sha256_file,
};
use signet_tests::{Backend, Out, TestEnv, eventually};

/// An agent holding one bearer token `s` for a server that wants `token`;
/// `None` where the suite cannot run an agent (as `TestEnv::started`).
fn bearer_token_s(token: &str) -> Option<(TestEnv, BearerLikeServer)> {
    let env = TestEnv::started(Backend::SecretService)?;
    let server = BearerLikeServer::start(ExpectedAuth::bearer(token));
    env.add("s", "bearer", &server.url(), token, &[]);
    Some((env, server))
}

/// VmRSS of a process in KiB.
fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples a process's VmRSS every 50 ms until finished; returns the peak (KiB).
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl RssSampler {
    fn start(pid: i32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            loop {
                peak = peak.max(rss_kib(pid).unwrap_or(0));
                if flag.load(Ordering::Relaxed) {
                    return peak;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        RssSampler { stop, thread }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("sampler")
    }
}

/// Runs `signet ARGS` while sampling the VmRSS of the agent (`agent_pid`) and
/// of the client; returns the outcome, both peaks (KiB) and the wall time.
fn run_sampled(env: &TestEnv, agent_pid: i32, args: &[&str]) -> (Out, u64, u64, Duration) {
    let mut cmd = env.signet_command();
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let agent = RssSampler::start(agent_pid);
    let t = Instant::now();
    let child = cmd.spawn().expect("spawn signet");
    let client = RssSampler::start(child.id() as i32);
    let output = child.wait_with_output().expect("wait");
    let took = t.elapsed();
    let out = Out {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    (out, agent.finish(), client.finish(), took)
}

// ---------------------------------------------------------------------------
// curl-like flags
// ---------------------------------------------------------------------------

#[test]
fn include_output_method_and_header_flags_behave_like_curl() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    let server = BearerLikeServer::start(ExpectedAuth::bearer("flags"));
    env.add("b", "bearer", &server.url(), "flags", &[]);

    // -i: status line, headers, blank line, body.
    let out = env.signet(&["request", "-i", "b", "echo/i"]);
    let text = out.ok();
    let (head, body) = text.split_once("\r\n\r\n").expect("a blank line after the headers");
    let mut lines = head.split("\r\n");
    assert_eq!(lines.next(), Some("HTTP/1.1 200 OK"), "{text}");
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap_or_else(|| panic!("header line {l:?}"));
            (k.to_ascii_lowercase(), v.to_string())
        })
        .collect();
    assert!(headers.contains(&("content-type".into(), "application/json".into())), "{headers:?}");
    let cl: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse().expect("content-length"))
        .expect("content-length");
    assert_eq!(body.len(), cl);
    let echo: serde_json::Value = serde_json::from_str(body).expect("json body");
    assert_eq!(echo["target"], "/echo/i");

    // -o FILE: the body in the file, nothing on stdout.
    let file = env.root.path().join("out.json");
    let out = env.signet(&["request", "b", "echo/o", "-o", file.to_str().unwrap()]);
    assert_eq!(out.ok(), "");
    let echo: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).expect("file")).expect("json");
    assert_eq!(echo["target"], "/echo/o");

    // -X.
    for m in ["PUT", "DELETE", "PATCH", "GET"] {
        let echo = env.request_json(&["-X", m, "b", "echo/x"]);
        assert_eq!(echo["method"], m);
        assert_eq!(server.requests().pop().expect("recorded").method, m);
    }
    // HEAD: headers only, no body to wait for.
    let t = Instant::now();
    let out = env.signet(&["request", "-X", "HEAD", "-i", "b", "echo/head"]);
    assert!(out.ok().starts_with("HTTP/1.1 200 OK\r\n"), "{out:#?}");
    assert!(out.stdout.ends_with("\r\n\r\n"), "a HEAD answer has no body: {out:#?}");
    assert!(t.elapsed() < Duration::from_secs(5), "HEAD took {:?}", t.elapsed());
    assert_eq!(server.requests().pop().expect("recorded").method, "HEAD");
    let echo = env.request_json(&["-X", "put", "b", "echo/x", "-d", "k=v"]);
    assert_eq!((echo["method"].as_str(), echo["body_len"].as_u64()), (Some("PUT"), Some(3)));
    // A body without -X is a POST.
    assert_eq!(env.request_json(&["b", "echo/x", "-d", "k=v"])["method"], "POST");

    // -H arrives; several of them too; a Content-Type given wins over the default.
    let echo = env.request_json(&[
        "-H",
        "Accept: x",
        "-H",
        "X-Extra:  two words ",
        "-H",
        "Content-Type: text/plain",
        "b",
        "echo/h",
        "-d",
        "hi",
    ]);
    assert_eq!(echo["headers"]["accept"], "x", "{echo}");
    assert_eq!(echo["headers"]["x-extra"], "two words", "{echo}");
    assert_eq!(echo["content_type"], "text/plain", "{echo}");

    // The agent owns authentication: -H Authorization is a usage error, and
    // nothing is sent.
    let before = server.requests().len();
    for h in [
        "Authorization: x",
        "authorization: Bearer flags",
        "Host: evil.example",
        "Proxy-Authorization: x",
    ] {
        let out = env.signet(&["request", "-H", h, "b", "echo/auth"]);
        out.fails(2);
        assert!(out.stdout.is_empty());
    }
    env.signet(&["request", "-H", "no colon", "b", "echo"]).fails(2);
    assert_eq!(server.requests().len(), before, "{:?}", server.requests());
}

// ---------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------

const BIG: u64 = 100 * 1024 * 1024;
const RSS_LIMIT_KIB: u64 = 64 * 1024;

#[test]
fn a_100_mib_download_and_upload_stream_through_the_agent_in_constant_memory() {
    let Some((env, server)) = bearer_token_s("stream-token") else { return };
    let status = env.signet(&["status", "--json"]).json();
    let pid = env.agent.as_ref().expect("agent").pid();
    assert_eq!(status["pid"], pid);
    // Warm up: the agent's HTTP client for this token exists.
    env.request_json(&["s", "echo"]);
    let baseline = rss_kib(pid).expect("VmRSS");

    // Download.
    let file = env.root.path().join("big.bin");
    let path = file.to_str().expect("utf-8 path");
    let big = format!("big/{BIG}");
    let (out, down_peak, down_client, down_time) =
        run_sampled(&env, pid, &["request", "-f", "s", &big, "-o", path]);
    assert!(out.ok().is_empty(), "-o wrote {} bytes to stdout", out.stdout.len());
    assert_eq!(std::fs::metadata(&file).expect("output file").len(), BIG);
    assert_eq!(sha256_file(&file), pattern_sha256(BIG));

    // Upload the same bytes from the file.
    let data = format!("@{path}");
    let (out, up_peak, up_client, up_time) = run_sampled(
        &env,
        pid,
        &[
            "request",
            "-f",
            "s",
            "echo/upload",
            "--data-binary",
            &data,
            "-H",
            "Content-Type: application/octet-stream",
        ],
    );
    let echo: serde_json::Value = serde_json::from_str(out.ok()).expect("json");
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body_len"], BIG);
    assert_eq!(echo["body_sha256"], pattern_sha256(BIG));
    let last = server.requests().pop().expect("recorded");
    assert_eq!(last.body_len, BIG);
    assert_eq!(last.header("content-length"), Some(BIG.to_string().as_str()));

    eprintln!(
        "agent VmRSS: baseline {baseline} KiB; peak {down_peak} KiB during the 100 MiB download \
         ({down_time:.2?}), {up_peak} KiB during the 100 MiB upload ({up_time:.2?}); \
         client peak {down_client} KiB (download), {up_client} KiB (upload)"
    );
    assert!(down_peak < RSS_LIMIT_KIB, "agent RSS {down_peak} KiB during the download");
    assert!(up_peak < RSS_LIMIT_KIB, "agent RSS {up_peak} KiB during the upload");
    assert!(down_client < RSS_LIMIT_KIB, "client RSS {down_client} KiB during the download");
    assert!(up_client < RSS_LIMIT_KIB, "client RSS {up_client} KiB during the upload");
    // The agent still serves, and is not left holding the body.
    env.request_json(&["s", "echo"]);
}

#[test]
fn data_binary_from_stdin_streams_without_a_known_length() {
    let Some((env, server)) = bearer_token_s("stdin-token") else { return };
    let n: u64 = 8 * 1024 * 1024 + 17;
    let data = signet_tests::upstream::pattern_bytes(0, n as usize);
    let out = env.signet_in(&["request", "s", "echo/stdin", "--data-binary", "@-"], &data);
    let echo: serde_json::Value = serde_json::from_str(out.ok()).expect("json");
    assert_eq!(echo["body_len"], n);
    assert_eq!(echo["body_sha256"], pattern_sha256(n));
    assert_eq!(echo["method"], "POST");
    assert_eq!(server.requests().pop().expect("recorded").body_len, n);

    // Through a pipe from another process too (a real `producer | signet …`).
    let mut cmd = env.signet_command();
    cmd.args(["request", "s", "echo/pipe", "--data-binary", "@-", "-X", "PUT"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn signet");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        for i in 0..4u64 {
            let chunk = signet_tests::upstream::pattern_bytes(i * (1 << 20), 1 << 20);
            stdin.write_all(&chunk).expect("write");
        }
    });
    let output = child.wait_with_output().expect("wait");
    writer.join().expect("writer");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let echo: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["body_len"], 4u64 << 20);
    assert_eq!(echo["body_sha256"], pattern_sha256(4 << 20));

    // An empty stdin is an empty body, not a hang.
    let echo: serde_json::Value = serde_json::from_str(
        env.signet_in(&["request", "s", "echo/empty", "--data-binary", "@-"], b"").ok(),
    )
    .expect("json");
    assert_eq!(echo["body_len"], 0);
}

// ---------------------------------------------------------------------------
// Upstream failures
// ---------------------------------------------------------------------------

#[test]
fn a_dead_upstream_exits_7_naming_the_origin_and_the_agent_keeps_serving() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    let port = closed_port();
    let origin = format!("http://127.0.0.1:{port}");
    env.add("dead", "bearer", &format!("{origin}/api/"), "tok", &["--exportable"]);
    let t = Instant::now();
    let out = env.signet(&["request", "dead", "things/"]);
    let err = out.fails(7);
    assert!(err.contains(&origin), "{err}");
    assert!(err.contains("connect"), "{err}");
    assert!(!err.contains("Bearer"), "{err}");
    assert!(out.stdout.is_empty());
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // With a body too (the client has sent it, or some of it, by then).
    env.signet(&["request", "dead", "things/", "-d", "a=1"]).fails(7);

    // The agent is fine: list, status, sign (which needs no upstream).
    let list = env.signet(&["list", "--json"]).json();
    assert_eq!(list[0]["name"], "dead");
    env.signet(&["status"]).ok();
    assert_eq!(env.sign_line(&["dead", "things/"]), "Authorization: Bearer tok");
    // A failed call is not a use.
    assert_eq!(env.signet(&["show", "dead", "--json"]).json()["use_count"], 1);
}

#[test]
fn timeout_against_a_server_that_never_answers_exits_7() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    let silent = SilentServer::start();
    let origin = format!("http://127.0.0.1:{}", silent.port());
    env.add("slow", "bearer", &format!("{origin}/"), "tok", &[]);
    let t = Instant::now();
    let out = env.signet(&["request", "--timeout", "1", "slow", "anything"]);
    let took = t.elapsed();
    let err = out.fails(7);
    assert!(err.contains("timed out"), "{err}");
    assert!(err.contains(&origin), "{err}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "took {took:?}");
    // With a streamed body as well.
    let t = Instant::now();
    let out =
        env.signet_in(&["request", "--timeout", "1", "slow", "up", "--data-binary", "@-"], b"x");
    assert!(out.fails(7).contains("timed out"), "{out:#?}");
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    env.signet(&["list"]).ok();

    // Without --timeout a request waits; meanwhile the agent serves others.
    let server = BearerLikeServer::start(ExpectedAuth::bearer("ok"));
    env.add("fine", "bearer", &server.url(), "ok", &[]);
    // Counted before the spawn, or the hung request may be in it already; and
    // only once both timed-out requests are in it, or a late accept of theirs
    // could pass for the hung request.
    assert!(
        eventually(Duration::from_secs(10), || silent.accepted() >= 2),
        "the timed-out requests never reached the silent server"
    );
    let accepted_before = silent.accepted();
    let mut hung = env.signet_command();
    hung.args(["request", "slow", "hang"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut hung = hung.spawn().expect("spawn signet");
    assert!(
        eventually(Duration::from_secs(10), || silent.accepted() > accepted_before),
        "the hung request never reached the silent server"
    );
    for _ in 0..3 {
        env.request_json(&["fine", "echo"]);
        env.signet(&["list"]).ok();
    }
    assert!(hung.try_wait().expect("try_wait").is_none(), "the hung request returned");
    let _ = hung.kill();
    let _ = hung.wait();
    assert!(silent.stop() >= 2, "the requests never reached the silent server");
}

#[test]
fn a_response_body_cut_short_is_an_upstream_failure_not_success() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    let server = TruncatingServer::start(
        "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n".into(),
        1000,
    );
    env.add("cut", "bearer", &format!("http://127.0.0.1:{}/", server.port()), "tok", &[]);
    let out = env.signet(&["request", "cut", "file"]);
    let err = out.fails(7);
    assert!(err.contains("after 1000 bytes"), "{err}");
    let file = env.root.path().join("cut.bin");
    let out = env.signet(&["request", "cut", "file", "-o", file.to_str().unwrap()]);
    out.fails(7);
    env.signet(&["list"]).ok();
    assert_eq!(server.stop(), 2);
}

/// What a `signet request` whose output or body is a file looks like from
/// outside: the same bytes, in the same place, as through the socket.
#[test]
fn a_file_output_gets_the_body_at_its_offset_and_a_file_stdin_is_sent_from_its_offset() {
    use std::io::{Seek, SeekFrom};

    let Some((env, server)) = bearer_token_s("file-token") else { return };
    let n = 300_000usize;

    // Stdout appends to a file that already has a line: the head that -i
    // prints comes first, then the body, then nothing else.
    let path = env.root.path().join("appended.out");
    std::fs::write(&path, b"before\n").expect("write");
    let file = std::fs::OpenOptions::new().append(true).open(&path).expect("open");
    let big = format!("big/{n}");
    let status =
        env.signet_command().args(["request", "-i", "s", &big]).stdout(file).status().expect("run");
    assert!(status.success());
    let got = std::fs::read(&path).expect("read");
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").expect("end of head") + 4;
    assert!(got.starts_with(b"before\nHTTP/1.1 200 OK\r\n"), "{:?}", &got[..40]);
    assert_eq!(got.len() - head_end, n);
    assert!(got[head_end..] == signet_tests::upstream::pattern_bytes(0, n));

    // A pipe is written by the client, with the same bytes.
    let out = env.signet_command().args(["request", "s", &big]).output().expect("run");
    assert!(out.status.success());
    assert!(out.stdout == signet_tests::upstream::pattern_bytes(0, n));

    // Stdin redirected from a file already read past its start: the rest
    // of the file is the body, with its length.
    let body = env.root.path().join("body.bin");
    std::fs::write(&body, signet_tests::upstream::pattern_bytes(0, n)).expect("write");
    let mut stdin = std::fs::File::open(&body).expect("open");
    let skip = 4 * 251;
    stdin.seek(SeekFrom::Start(skip as u64)).expect("seek");
    let out = env
        .signet_command()
        .args(["request", "s", "echo/rest", "--data-binary", "@-"])
        .stdin(stdin)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let echo: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(echo["body_len"], n - skip);
    assert_eq!(echo["body_sha256"], pattern_sha256((n - skip) as u64));
    let last = server.requests().pop().expect("recorded");
    assert_eq!(last.header("content-length"), Some((n - skip).to_string().as_str()));

    // A regular file that refuses every write (procfs's clear_refs parses
    // a number and answers anything else with EINVAL), as a full disk
    // would: the error is the agent's to report, and it goes on serving.
    let refusing =
        std::fs::OpenOptions::new().write(true).open("/proc/self/clear_refs").expect("open");
    let out = env
        .signet_command()
        .args(["request", "s", &big])
        .stdout(refusing)
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write the response body: Invalid argument"), "{stderr}");
    env.request_json(&["s", "echo"]);
}

/// The protocol underneath: a passed file gets the response body from the
/// agent itself, with no chunk frame on the socket; a request body is read
/// from a passed file; anything but a file is sent through the socket, or
/// refused before the request goes upstream, and the connection serves on.
#[test]
fn the_agent_writes_into_and_reads_from_passed_files_and_refuses_other_descriptors() {
    use std::os::fd::AsFd;

    use signet_proto::{ErrorCode, PerformRequest, Request, Response};
    use signet_tests::raw;

    let Some((env, server)) = bearer_token_s("raw-token") else { return };
    let n = 300_000usize;
    let perform = |url: &str, body_len: Option<u64>, body_fd: bool, response_fd: bool| {
        Request::Perform(PerformRequest {
            name: "s".into(),
            method: if body_len.is_some() { "POST" } else { "GET" }.into(),
            url: url.into(),
            headers: Vec::new(),
            has_body: body_len.is_some(),
            body_len,
            timeout_secs: None,
            body_fd,
            response_fd,
        })
    };
    let mut s = raw::hello(&env.socket());
    let expect = |s: &mut std::os::unix::net::UnixStream, what: &str| -> Response {
        let r = raw::recv(s);
        let name = format!("{r:?}");
        assert!(name.starts_with(what), "expected {what}, got {}", &name[..name.len().min(200)]);
        r
    };
    // Reads chunk frames to the end of the body; their bytes.
    let chunks = |s: &mut std::os::unix::net::UnixStream| {
        let mut body = Vec::new();
        loop {
            match raw::recv(s) {
                Response::BodyChunk(c) => body.extend_from_slice(&c.0),
                Response::BodyEnd => return body,
                other => panic!("expected a chunk, got {other:?}"),
            }
        }
    };

    // Into a file: Head, then BodyEnd straight away.
    let big = format!("big/{n}");
    let out = tempfile::tempfile().expect("tempfile");
    raw::send(&mut s, &perform(&big, None, false, true));
    expect(&mut s, "Proceed");
    expect(&mut s, "Head");
    raw::send_fd(&s, Some(out.as_fd()));
    expect(&mut s, "BodyEnd");
    let mut written = Vec::new();
    std::io::Seek::rewind(&mut &out).expect("rewind");
    std::io::Read::read_to_end(&mut &out, &mut written).expect("read");
    assert!(written == signet_tests::upstream::pattern_bytes(0, n));

    // A pipe, or no descriptor: the body comes in chunk frames.
    let (_r, w) = nix::unistd::pipe().expect("pipe");
    for fd in [Some(w.as_fd()), None] {
        raw::send(&mut s, &perform(&big, None, false, true));
        expect(&mut s, "Proceed");
        expect(&mut s, "Head");
        raw::send_fd(&s, fd);
        assert!(chunks(&mut s) == signet_tests::upstream::pattern_bytes(0, n));
    }

    // A request body read from a file by the agent.
    let body = tempfile::tempfile().expect("tempfile");
    std::io::Write::write_all(&mut &body, &signet_tests::upstream::pattern_bytes(0, n))
        .expect("write");
    std::io::Seek::rewind(&mut &body).expect("rewind");
    raw::send(&mut s, &perform("echo/fd", Some(n as u64), true, false));
    expect(&mut s, "Proceed");
    raw::send_fd(&s, Some(body.as_fd()));
    expect(&mut s, "Head");
    let echo: serde_json::Value = serde_json::from_slice(&chunks(&mut s)).expect("json");
    assert_eq!(echo["body_len"], n);
    assert_eq!(echo["body_sha256"], pattern_sha256(n as u64));

    // A pipe, a write-only file or nothing for a body is refused, and
    // nothing goes upstream.
    server.clear_requests();
    let (r, _w) = nix::unistd::pipe().expect("pipe");
    let write_only = std::fs::File::create(env.root.path().join("wo")).expect("file");
    for (fd, why) in [
        (Some(r.as_fd()), "it is not a regular file"),
        (Some(write_only.as_fd()), "it is not open for reading"),
        (None, "no descriptor came"),
    ] {
        raw::send(&mut s, &perform("echo/refused", Some(1), true, false));
        expect(&mut s, "Proceed");
        raw::send_fd(&s, fd);
        match raw::recv(&mut s) {
            Response::Failure(f) => {
                assert_eq!(f.code, ErrorCode::Usage);
                assert!(f.message.contains(why), "{}", f.message);
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    // The connection is still in step.
    raw::send(&mut s, &Request::Status);
    expect(&mut s, "Status");
}

/// A client killed while the agent writes into its file, or reads from
/// it: the agent stops touching the file, its transfer threads end, and it
/// goes on serving.
#[test]
fn a_client_killed_mid_transfer_leaves_its_file_alone_and_no_thread_behind() {
    let Some((env, server)) = bearer_token_s("kill-token") else { return };
    env.request_json(&["s", "echo"]);
    let pid = env.agent.as_ref().expect("agent").pid();
    let threads = || std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
    let before = threads();
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());

    // A download into a file, killed once the file has begun to fill.
    let out = env.root.path().join("partial.bin");
    let out_arg = out.to_str().expect("utf-8 path").to_string();
    let big = format!("big/{}", 8u64 << 30);
    let mut child = env
        .signet_command()
        .args(["request", "s", &big, "-o", &out_arg])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    assert!(eventually(Duration::from_secs(10), || size(&out) > 1 << 20), "the file never grew");
    assert!(threads() > before, "no thread writes the file");
    child.kill().expect("kill");
    child.wait().expect("wait");
    // The agent notices the client's socket close and stops: the file
    // stops growing long before 8 GiB.
    let mut last = size(&out);
    assert!(
        eventually(Duration::from_secs(10), || {
            std::thread::sleep(Duration::from_millis(200));
            let now = size(&out);
            let still = now == last;
            last = now;
            still
        }),
        "the agent kept writing into a dead client's file"
    );
    assert!(last < 8 << 30, "{last} bytes written");

    // An upload read from a file, killed mid-way.
    let body = env.root.path().join("body.bin");
    let f = std::fs::File::create(&body).expect("create");
    f.set_len(4 << 30).expect("sparse 4 GiB");
    let body_arg = format!("@{}", body.display());
    let recorded = server.requests().len();
    let mut child = env
        .signet_command()
        .args(["request", "s", "echo/killed", "--data-binary", &body_arg])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    assert!(
        eventually(Duration::from_secs(10), || {
            server.requests().len() == recorded && threads() > before
        }),
        "no thread reads the file"
    );
    std::thread::sleep(Duration::from_millis(100));
    child.kill().expect("kill");
    child.wait().expect("wait");

    assert!(
        eventually(Duration::from_secs(10), || threads() <= before),
        "{} threads in the agent, {before} before the transfers",
        threads()
    );
    env.request_json(&["s", "echo"]);
}
