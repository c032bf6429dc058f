//! Held connections: a connection that asks for a second one-frame answer
//! moves to a thread of its own in the agent, and keeps every guarantee it
//! had on the runtime: framing errors, limits, access rules, the audit
//! trail, shutdown, and requests that stream.

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use signet_proto::frame::encode_frame;
use signet_proto::{ErrorCode, MAX_FRAME, PerformRequest, Request, Response, SignRequest};
use signet_tests::upstream::{BearerLikeServer, ExpectedAuth};
use signet_tests::{Backend, TestEnv, eventually, raw};

/// The agent's threads that serve one connection each, by id.
fn conn_tids(pid: i32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .filter_map(|t| {
            let t = t.ok()?;
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            (comm.trim() == "signet-conn").then(|| t.file_name().to_string_lossy().into_owned())
        })
        .collect()
}

fn connection_threads(pid: i32) -> usize {
    conn_tids(pid).len()
}

fn pid(env: &TestEnv) -> i32 {
    env.agent.as_ref().expect("agent").pid()
}

/// A connection past the handshake that has had two answers, and so has
/// moved to a thread: checked by the thread's name.
fn held(env: &TestEnv, sock: &std::path::Path) -> UnixStream {
    let before = conn_tids(pid(env));
    let mut s = raw::hello(sock);
    for _ in 0..2 {
        raw::send(&mut s, &Request::Status);
        assert!(matches!(raw::recv(&mut s), Response::Status(_)));
    }
    assert!(
        eventually(Duration::from_secs(5), || conn_tids(pid(env))
            .iter()
            .any(|t| !before.contains(t))),
        "the held connection got no thread of its own"
    );
    s
}

fn sign(name: &str) -> Request {
    Request::Sign(SignRequest {
        name: name.into(),
        method: "GET".into(),
        url: "v1/x".into(),
        form: Vec::new(),
    })
}

fn perform(url: &str) -> Request {
    Request::Perform(PerformRequest {
        name: "web".into(),
        method: "GET".into(),
        url: url.into(),
        headers: Vec::new(),
        has_body: false,
        body_len: None,
        timeout_secs: None,
        body_fd: false,
        response_fd: false,
    })
}

fn failure(r: Response) -> signet_proto::Failure {
    match r {
        Response::Failure(f) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn a_held_connection_on_its_thread_signs_and_answers_bad_frames_as_before() {
    let Some(mut env) = TestEnv::new(Backend::SecretService) else { return };
    env.start_agent();
    env.add("t", "bearer", "https://api.example/", "held-secret", &["--exportable"]);
    let sock = env.socket();
    let mut s = held(&env, &sock);

    for _ in 0..50 {
        raw::send(&mut s, &sign("t"));
        match raw::recv(&mut s) {
            Response::Signed(h) => assert_eq!(h[0].1.expose(), b"Bearer held-secret"),
            other => panic!("{other:?}"),
        }
    }
    // Scope is still checked there.
    raw::send(
        &mut s,
        &Request::Sign(SignRequest {
            name: "t".into(),
            method: "GET".into(),
            url: "https://elsewhere.example/v1/x".into(),
            form: Vec::new(),
        }),
    );
    assert_eq!(failure(raw::recv(&mut s)).code, ErrorCode::Policy);

    // A body that does not decode: an answer, and the connection goes on.
    raw::send_bytes(&mut s, &[0, 0, 0, 3, 0xff, 0xfe, 0xfd]);
    assert!(failure(raw::recv(&mut s)).message.contains("malformed request"));
    // Two requests in one write: two answers, in order.
    let two = [encode_frame(&Request::Status).unwrap(), encode_frame(&sign("t")).unwrap()].concat();
    raw::send_bytes(&mut s, &two);
    assert!(matches!(raw::recv(&mut s), Response::Status(_)));
    assert!(matches!(raw::recv(&mut s), Response::Signed(_)));
    // A frame larger than the read buffer.
    let long = Request::Show { name: "n".repeat(100_000) };
    raw::send(&mut s, &long);
    assert_eq!(failure(raw::recv(&mut s)).code, ErrorCode::Usage);
    raw::send(&mut s, &Request::Status);
    assert!(matches!(raw::recv(&mut s), Response::Status(_)));

    // An oversized prefix: an answer, then the connection closes and its
    // thread ends.
    raw::send_bytes(&mut s, &((MAX_FRAME + 1) as u32).to_be_bytes());
    assert!(failure(raw::recv(&mut s)).message.contains("malformed frame"));
    assert!(raw::closed(&mut s));
    assert!(eventually(Duration::from_secs(5), || connection_threads(pid(&env)) == 0));

    // A connection that makes one request and goes, as `signet sign`
    // does, never gets a thread.
    for _ in 0..5 {
        let mut one = raw::hello(&sock);
        raw::send(&mut one, &sign("t"));
        assert!(matches!(raw::recv(&mut one), Response::Signed(_)));
        assert_eq!(connection_threads(pid(&env)), 0);
    }
    assert_eq!(env.signet(&["list"]).code(), 0);
}

#[test]
fn a_request_that_streams_takes_a_held_connection_back_to_the_runtime() {
    let Some(mut env) = TestEnv::new(Backend::SecretService) else { return };
    env.start_agent();
    let server = BearerLikeServer::start(ExpectedAuth::bearer("web-token"));
    env.add("web", "bearer", &server.url(), "web-token", &[]);
    let sock = env.socket();
    let mut s = held(&env, &sock);

    raw::send(&mut s, &perform("echo/held"));
    assert!(matches!(raw::recv(&mut s), Response::Proceed));
    match raw::recv(&mut s) {
        Response::Head(h) => assert_eq!(h.status, 200),
        other => panic!("{other:?}"),
    }
    let mut body = Vec::new();
    loop {
        match raw::recv(&mut s) {
            Response::BodyChunk(c) => body.extend_from_slice(&c.0),
            Response::BodyEnd => break,
            other => panic!("{other:?}"),
        }
    }
    let echo: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(echo["method"], "GET", "{echo}");
    assert!(echo["target"].as_str().is_some_and(|t| t.ends_with("/echo/held")), "{echo}");
    // Back on the runtime, where it stays: one-frame requests are still
    // answered, and no thread is started for it again.
    assert!(eventually(Duration::from_secs(5), || connection_threads(pid(&env)) == 0));
    for _ in 0..3 {
        raw::send(&mut s, &Request::Status);
        assert!(matches!(raw::recv(&mut s), Response::Status(_)));
    }
    assert_eq!(connection_threads(pid(&env)), 0);

    // Bytes sent ahead of a streamed request's answer cannot be handed to
    // the runtime in step: refused, and nothing goes upstream.
    server.clear_requests();
    let mut s = held(&env, &sock);
    let ahead =
        [encode_frame(&perform("echo/ahead")).unwrap(), encode_frame(&Request::Status).unwrap()]
            .concat();
    raw::send_bytes(&mut s, &ahead);
    let f = failure(raw::recv(&mut s));
    assert!(f.message.contains("sent more before the answer"), "{}", f.message);
    assert!(raw::closed(&mut s));
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

#[test]
fn idle_and_stalled_held_connections_are_closed_by_the_limits() {
    let Some(mut env) = TestEnv::new(Backend::SecretService) else { return };
    env.write_config("idle_timeout_secs = 1\nframe_timeout_secs = 1\n");
    env.start_agent();
    let sock = env.socket();

    let mut idle = held(&env, &sock);
    let t = Instant::now();
    assert!(raw::closed(&mut idle), "an idle held connection stayed open");
    assert!(t.elapsed() < Duration::from_secs(4), "closed only after {:?}", t.elapsed());

    // A frame begun and never finished, and one fed a byte at a time:
    // each has the frame timeout as a whole.
    let mut stalled = held(&env, &sock);
    raw::send_bytes(&mut stalled, &[0, 0, 0, 100, 1, 2]);
    let t = Instant::now();
    assert!(raw::closed(&mut stalled), "a stalled frame kept the connection open");
    assert!(t.elapsed() < Duration::from_secs(4), "closed only after {:?}", t.elapsed());

    let mut drip = held(&env, &sock);
    let t = Instant::now();
    let mut cut = false;
    for b in [0u8, 0, 0, 50].into_iter().chain(std::iter::repeat_n(1, 50)) {
        if std::io::Write::write_all(&mut drip, &[b]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(cut || raw::closed(&mut drip), "a dripped frame was read to its end");
    assert!(t.elapsed() < Duration::from_secs(4), "closed only after {:?}", t.elapsed());
    assert!(eventually(Duration::from_secs(5), || connection_threads(pid(&env)) == 0));
}

#[test]
fn a_stopping_agent_wakes_its_held_connections_instead_of_waiting_out_the_grace() {
    let Some(mut env) = TestEnv::new(Backend::SecretService) else { return };
    // A grace far longer than the test allows: only a woken thread ends
    // in time.
    env.write_config("shutdown_grace_secs = 60\n");
    env.start_agent();
    let sock = env.socket();
    let mut a = held(&env, &sock);
    let mut b = held(&env, &sock);
    assert_eq!(connection_threads(pid(&env)), 2);

    let t = Instant::now();
    let status = env.stop_agent();
    assert!(status.success(), "{status:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "stopped only after {:?}", t.elapsed());
    assert!(raw::closed(&mut a) && raw::closed(&mut b));
}

#[test]
fn a_held_connection_on_the_restricted_socket_is_still_restricted_and_audited() {
    let Some(mut env) = TestEnv::new(Backend::SecretService) else { return };
    let restricted = env.start_agent_with_restricted_socket(&["t"]);
    env.add("t", "bearer", "https://api.example/", "allowed-secret", &["--exportable"]);
    env.add("u", "bearer", "https://api.example/", "other-secret", &["--exportable"]);

    let mut s = raw::hello(&restricted);
    let signs = 6;
    for _ in 0..signs {
        raw::send(&mut s, &sign("t"));
        assert!(matches!(raw::recv(&mut s), Response::Signed(_)));
    }
    assert_eq!(connection_threads(pid(&env)), 1, "the restricted connection has its thread");
    for refused in [sign("u"), Request::Remove { name: "t".into() }, Request::Status] {
        raw::send(&mut s, &refused);
        let f = failure(raw::recv(&mut s));
        assert!(f.message.contains("restricted"), "{}", f.message);
    }
    drop(s);

    // Each sign served on the thread is in the trail, with its peer.
    let out = env.signet(&["audit", "--json", "--token", "t"]);
    let lines: Vec<serde_json::Value> =
        out.ok().lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let served: Vec<_> = lines
        .iter()
        .filter(|r| r["action"] == "sign" && r["outcome"] == "ok" && r["socket"] == "restricted")
        .collect();
    assert_eq!(served.len(), signs, "{lines:?}");
    let me = i64::from(std::process::id());
    assert!(
        served
            .iter()
            .all(|r| r["pid"].as_i64() == Some(me) && r["origin"] == "https://api.example")
    );
}
