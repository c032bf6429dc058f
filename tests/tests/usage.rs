//! The exit codes a script branches on when `signet` cannot do what it was
//! asked: arguments it refuses (2), token names that do not exist (4) or
//! already do (1).
//!
//! Exit codes that belong to a subject are tested with it: no agent (3) in
//! agent.rs, policy refusals (5) in sign.rs, scope.rs and tokens.rs, upstream
//! failures (7) in request.rs and tls.rs.

use signet_tests::upstream::{BearerLikeServer, ExpectedAuth};
use signet_tests::{Backend, TestEnv};

#[test]
fn usage_errors_exit_2() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    let cases: &[&[&str]] = &[
        &["add", "-bad", "--kind", "bearer", "--url", "https://h/"],
        &["add", "a b", "--kind", "bearer", "--url", "https://h/"],
        &["add", "ok", "--kind", "ssh", "--url", "https://h/"],
        &["add", "ok", "--kind", "bearer", "--url", "ftp://h/"],
        &["add", "ok", "--kind", "bearer", "--url", "https://user:pw@h/"],
        &["add", "ok", "--kind", "bearer", "--url", "https://h/", "--expires", "10x"],
        &["add", "ok", "--kind", "bearer", "--url", "https://h/", "--expires", "0D"],
        &[
            "add",
            "ok",
            "--kind",
            "bearer",
            "--url",
            "https://h/",
            "--expires",
            "2001-01-01T00:00:00Z",
        ],
        &["add", "ok", "--kind", "basic", "--url", "https://h/"],
        &["add", "ok", "--kind", "header", "--url", "https://h/", "--header-name", "Bad Name"],
        &["add", "ok", "--kind", "bearer", "--url", "https://h/", "--username", "u"],
        &[
            "add",
            "ok",
            "--kind",
            "bearer",
            "--url",
            "https://h/",
            "--insecure",
            "--cacert",
            "/etc/hostname",
        ],
        &[
            "add",
            "ok",
            "--kind",
            "bearer",
            "--url",
            "https://h/",
            "--cacert",
            "/nonexistent/ca.pem",
        ],
        &["show", "bad/name"],
        &["rename", "a", "-b"],
        &["nosuchcommand"],
    ];
    for args in cases {
        let out = env.signet_in(args, b"tok\n");
        assert_eq!(out.code(), 2, "{args:?}: {out:#?}");
    }
    assert_eq!(env.signet(&["list", "--json"]).json(), serde_json::json!([]));
}

#[test]
fn missing_tokens_exit_4_and_duplicates_are_refused() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    assert!(env.signet(&["show", "nope"]).fails(4).contains("nope"));
    env.signet(&["rm", "nope"]).fails(4);
    env.signet(&["rename", "nope", "other"]).fails(4);
    env.add("a", "bearer", "https://h/", "t1", &[]);
    env.add("b", "bearer", "https://h/", "t2", &[]);
    let err = env.try_add("a", "bearer", "https://h/", "t3", &[]).fails(1).to_string();
    assert!(err.contains("already exists"), "{err}");
    assert!(env.signet(&["rename", "a", "b"]).fails(1).contains("already exists"));
    // rm carries on past a missing name and reports it.
    let out = env.signet(&["rm", "nope", "a"]);
    assert!(out.fails(4).contains("nope"));
    assert!(out.stderr.contains("removed: a"), "{out:#?}");
    let names: Vec<String> = env
        .signet(&["list", "--json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["b"]);
}

#[test]
fn an_unknown_token_exits_4_for_sign_and_request() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    let server = BearerLikeServer::start(ExpectedAuth::bearer("x"));
    env.add("known", "bearer", &server.url(), "x", &[]);
    for args in [
        &["sign", "nosuch", "http://127.0.0.1/"][..],
        &["sign", "nosuch", "POST", "echo"],
        &["request", "nosuch", "echo"],
        &["request", "nosuch", "echo", "-d", "a=1"],
        &["request", "nosuch", &format!("{}echo", server.url())],
    ] {
        let err = env.signet(args).fails(4).to_string();
        assert!(err.contains("nosuch"), "{args:?}: {err}");
    }
    assert!(server.requests().is_empty());
}
