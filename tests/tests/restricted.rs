//! The restricted socket (`--restricted-socket PATH --allow TOKEN`): it
//! serves sign and request for the allowed tokens and a list of them, and
//! refuses everything else with exit 5 and a message that says so; the
//! main socket beside it serves everything. Forwarding it with real
//! OpenSSH is tested in `forward.rs`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use signet_proto::{ErrorCode, Request, Response};
use signet_tests::process::run;
use signet_tests::upstream::{BearerLikeServer, ExpectedAuth};
use signet_tests::{Backend, Out, TestEnv};

const SECRET: &str = "restricted-secret-8c1d";

/// `signet ARGS` against the restricted socket.
fn through(env: &TestEnv, sock: &Path, args: &[&str], stdin: &[u8]) -> Out {
    let mut c = env.command("signet");
    c.env("SIGNET_AUTH_SOCK", sock).args(args);
    run(&mut c, stdin)
}

#[test]
fn only_sign_request_and_list_of_allowed_tokens_are_served() {
    let Some(mut env) = TestEnv::new(Backend::Keyutils) else { return };
    let sock = env.start_agent_with_restricted_socket(&["ok"]);
    let server = BearerLikeServer::start(ExpectedAuth::bearer(SECRET));
    env.add("ok", "bearer", &server.url(), SECRET, &["--exportable"]);
    env.add("other", "bearer", &server.url(), SECRET, &["--exportable"]);
    assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777, 0o600);

    // Use of the allowed token works.
    let line = through(&env, &sock, &["sign", "ok", "echo/x"], b"");
    assert_eq!(line.ok().trim(), format!("Authorization: Bearer {SECRET}"));
    let body = through(&env, &sock, &["request", "ok", "echo/y"], b"");
    assert!(body.ok().contains("/echo/y"), "{body:?}");
    // The list shows the allowed tokens only.
    let list = through(&env, &sock, &["list", "--json"], b"").json();
    let names: Vec<&str> =
        list.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ok"]);

    // Another token: refused before it is looked up, so a missing one
    // looks the same.
    for name in ["other", "missing"] {
        for args in [vec!["sign", name, "echo/x"], vec!["request", name, "echo/x"]] {
            let err = through(&env, &sock, &args, b"").fails(5).to_string();
            assert!(err.contains("restricted") && err.contains("not allowed"), "{err}");
            assert!(err.contains("--allow"), "no hint: {err}");
        }
    }

    // Every management request, and the reads that tell more than a list.
    let refused: Vec<(Vec<&str>, &[u8])> = vec![
        (vec!["add", "new", "--kind", "bearer", "--url", "http://127.0.0.1:9/"], b"x\n"),
        (vec!["rm", "ok"], b""),
        (vec!["rename", "ok", "renamed"], b""),
        (vec!["show", "ok"], b""),
        (vec!["status"], b""),
        (vec!["audit"], b""),
        (vec!["rotate", "ok"], b""),
        (vec!["maas", "whoami", "ok"], b""),
        (vec!["maas", "tokens", "ok"], b""),
        (vec!["maas", "login", "m", "http://127.0.0.1:9/MAAS/", "--no-verify"], b"a:b:c\n"),
        (vec!["vms", "tokens", "ok"], b""),
    ];
    for (args, stdin) in &refused {
        let out = through(&env, &sock, args, stdin);
        let err = out.fails(5);
        assert!(err.contains("this socket is restricted"), "{args:?}: {err}");
        assert!(err.contains("main socket"), "{args:?}: no hint: {err}");
    }
    // Nothing changed, and the main socket still serves everything.
    let names: Vec<String> = env
        .signet(&["list", "--json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["ok", "other"]);
    env.signet(&["sign", "other", "echo/z"]).ok();

    // The trail says which socket each came through, refusals included.
    let recs: Vec<serde_json::Value> = env
        .signet(&["audit", "--json"])
        .ok()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let restricted: Vec<_> = recs.iter().filter(|r| r["socket"] == "restricted").collect();
    assert_eq!(restricted.iter().filter(|r| r["outcome"] == "ok").count(), 2, "{restricted:#?}");
    assert!(
        restricted
            .iter()
            .any(|r| r["action"] == "rm" && r["outcome"] == "policy" && r["exit"] == 5)
    );
    assert!(
        restricted
            .iter()
            .any(|r| r["action"] == "sign" && r["token"] == "other" && r["outcome"] == "policy")
    );
    assert!(
        recs.iter().any(|r| r["socket"] == "main" && r["token"] == "other" && r["outcome"] == "ok")
    );

    // At shutdown, both sockets go.
    env.stop_agent();
    assert!(!sock.exists() && !env.socket().exists());
}

#[test]
fn the_restricted_socket_checks_the_peer_and_config_keys_work() {
    let Some(mut env) = TestEnv::new(Backend::Keyutils) else { return };
    let sock = env.runtime_dir().join("signet-r/restricted.sock");
    env.write_config(&format!(
        "restricted_socket = \"{}\"\nrestricted_allow = [\"ok\"]\n",
        sock.display()
    ));
    env.start_agent();
    env.add("ok", "bearer", "http://127.0.0.1:9/", SECRET, &[]);
    env.add("no", "bearer", "http://127.0.0.1:9/", SECRET, &[]);
    let list = through(&env, &sock, &["list", "--json"], b"").json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert!(through(&env, &sock, &["rm", "no"], b"").fails(5).contains("restricted"));

    // Another uid is refused by identity, as on the main socket.
    let other = nix::unistd::User::from_name("signet-test-peer").ok().flatten();
    let uid = other.map(|u| u.uid.as_raw()).unwrap_or(64_123);
    let (resp, closed) = signet_tests::raw::connect_as_uid(&sock, uid).expect("connect");
    let Response::Failure(f) = resp else { panic!("{resp:?}") };
    assert_eq!(f.code, ErrorCode::Policy);
    assert!(f.message.contains("permission denied"), "{}", f.message);
    assert!(closed);

    // A raw request the restricted socket never serves, by its wire form.
    let mut s = signet_tests::raw::hello(&sock);
    signet_tests::raw::send(&mut s, &Request::Audit(Default::default()));
    let Response::Failure(f) = signet_tests::raw::recv(&mut s) else { panic!() };
    assert_eq!(f.code, ErrorCode::Policy);
}
