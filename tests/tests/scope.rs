//! Where a token may be used. A token is bound to the scheme, host, port and
//! path prefix of its URL: a relative URL joins that base, and anything
//! outside it is refused by `sign` and `request` alike, before a byte is
//! sent. A redirect is followed only while it stays inside the scope, and
//! each hop is signed afresh.

use signet_tests::headers::{curl, recorded_nonce};
use signet_tests::upstream::oauth::percent_encode;
use signet_tests::upstream::{BearerLikeServer, ExpectedAuth, MaasServer, Recorded};
use signet_tests::{Out, TestEnv};

/// Asserts `out` is a policy refusal (exit 5) naming `rule`.
#[track_caller]
fn refused(out: &Out, rule: &str) {
    let err = out.fails(5);
    assert!(
        err.contains("refused") && err.contains(rule),
        "expected a refusal naming {rule:?}: {out:#?}"
    );
    assert!(out.stdout.is_empty(), "{out:#?}");
}

/// A port other than `p` on 127.0.0.1 (for "other port" refusals; nothing
/// needs to listen there).
fn other_port(p: u16) -> u16 {
    if p == u16::MAX { p - 1 } else { p + 1 }
}

// ---------------------------------------------------------------------------
// URLs and scope
// ---------------------------------------------------------------------------

#[test]
fn relative_urls_join_the_base_and_absolute_urls_in_scope_are_accepted() {
    let Some((env, maas)) = TestEnv::started_with_maas() else { return };
    let tok = maas.add_token("cli");
    let api = maas.api_url();
    env.add("mh", "maas", &api, &tok.api_key(), &["--signature", "hmac-sha1"]);
    let origin = maas.origin();
    let port = maas.addr().port();
    let cases = [
        ("users/?op=whoami".to_string(), "/MAAS/api/2.0/users/?op=whoami"),
        (format!("{api}users/?op=whoami"), "/MAAS/api/2.0/users/?op=whoami"),
        ("echo/a".into(), "/MAAS/api/2.0/echo/a"),
        ("./echo/b?x=1".into(), "/MAAS/api/2.0/echo/b?x=1"),
        ("echo/c/../d".into(), "/MAAS/api/2.0/echo/d"),
        ("/MAAS/api/2.0/echo/e".into(), "/MAAS/api/2.0/echo/e"),
        (format!("{origin}/MAAS/api/2.0/echo/f"), "/MAAS/api/2.0/echo/f"),
        (format!("HTTP://127.0.0.1:{port}/MAAS/api/2.0/echo/g"), "/MAAS/api/2.0/echo/g"),
    ];
    for (i, (url, target)) in cases.iter().enumerate() {
        env.signet(&["request", "mh", url]).ok();
        let reqs = maas.requests();
        assert_eq!(reqs.len(), i + 1, "{url}: {reqs:?}");
        assert_eq!(reqs[i].target, *target, "{url}");
        assert!(reqs[i].is_ok(), "{url}: {:?}", reqs[i]);
    }

    // sign joins the same way: the header for a relative URL is valid for the
    // absolute one (HMAC covers the URL).
    let line = env.sign_line(&["mh", "echo/h?x=1"]);
    let (status, body) = curl(&[&line], &format!("{api}echo/h?x=1"), &[]);
    assert_eq!(status, 200, "{body}");
    let line = env.sign_line(&["mh", &format!("{api}echo/i")]);
    let (status, body) = curl(&[&line], &format!("{api}echo/i"), &[]);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn out_of_scope_urls_are_refused_by_sign_and_request_and_nothing_is_sent() {
    let Some((env, maas)) = TestEnv::started_with_maas() else { return };
    let tok = maas.add_token("cli");
    // Exportable, so that sign would succeed but for the scope.
    env.add("m", "maas", &maas.url(), &tok.api_key(), &["--exportable"]);
    let p = maas.addr().port();
    let q = other_port(p);
    let w = "api/2.0/users/?op=whoami";
    let cases: Vec<(String, String)> = vec![
        // Another host, even one that reaches the same server.
        (format!("http://localhost:{p}/MAAS/{w}"), "host localhost".into()),
        (format!("http://127.0.0.2:{p}/MAAS/{w}"), "host 127.0.0.2".into()),
        (format!("//localhost:{p}/MAAS/{w}"), "host localhost".into()),
        (format!("http://evil.example/MAAS/{w}"), "host evil.example".into()),
        // Another port.
        (format!("http://127.0.0.1:{q}/MAAS/{w}"), format!("port {q}")),
        (format!("http://127.0.0.1/MAAS/{w}"), "port 80".into()),
        // Another scheme (the upgrade too: same scheme means same scheme).
        (format!("https://127.0.0.1:{p}/MAAS/{w}"), "scheme https".into()),
        // Path escapes, plain and encoded.
        ("../admin/".into(), "path /admin/".into()),
        ("api/../../admin/".into(), "path /admin/".into()),
        ("%2e%2e/admin/".into(), "path /admin/".into()),
        ("%2E%2E/%2e%2e/etc/passwd".into(), "path /etc/passwd".into()),
        ("..%2fadmin/".into(), "path /MAAS/..%2fadmin/".into()),
        ("api/..%2F..%2Fadmin".into(), "path /MAAS/api/..%2F..%2Fadmin".into()),
        ("/etc/passwd".into(), "path /etc/passwd".into()),
        (format!("http://127.0.0.1:{p}/MAAS/%2e%2e/admin/"), "path /admin/".into()),
        // A sibling that shares the prefix.
        (format!("http://127.0.0.1:{p}/MAASX/{w}"), "path /MAASX/".into()),
        ("/MAASX/".into(), "path /MAASX/".into()),
        // User info: a host lookalike and a plain one.
        (format!("http://127.0.0.1:{p}@evil.example/MAAS/{w}"), "user info".into()),
        (format!("http://user:pw@127.0.0.1:{p}/MAAS/{w}"), "user info".into()),
    ];
    for (url, rule) in &cases {
        refused(&env.signet(&["sign", "m", url]), rule);
        refused(&env.signet(&["request", "m", url]), rule);
        refused(&env.signet(&["request", "m", "-d", "a=1", url]), rule);
    }
    assert!(
        maas.requests().is_empty(),
        "an out-of-scope request got through: {:?}",
        maas.requests()
    );

    // Downgrade: a token for https is not used over http.
    let tls = MaasServer::start_tls();
    let tt = tls.add_token("tls");
    env.add("t", "maas", &tls.url(), &tt.api_key(), &["--exportable", "--insecure"]);
    let tp = tls.addr().port();
    let down = format!("http://127.0.0.1:{tp}/MAAS/{w}");
    refused(&env.signet(&["sign", "t", &down]), "scheme http");
    refused(&env.signet(&["request", "t", &down]), "scheme http");
    assert!(tls.requests().is_empty() && tls.handshake_failures() == 0);

    // The control: in scope, both work and the server sees the request.
    env.sign_line(&["m", w]);
    env.signet(&["request", "m", w]).ok();
    env.signet(&["request", "t", w]).ok();
    assert_eq!(maas.requests().len(), 1);
    assert_eq!(tls.requests().len(), 1);
}

// ---------------------------------------------------------------------------
// Redirects
// ---------------------------------------------------------------------------

#[test]
fn redirects_are_followed_in_scope_with_a_fresh_signature_and_never_out_of_it() {
    let Some((env, maas)) = TestEnv::started_with_maas() else { return };
    let tok = maas.add_token("cli");
    env.add("mh", "maas", &maas.api_url(), &tok.api_key(), &["--signature", "hmac-sha1"]);
    env.add("mp", "maas", &maas.api_url(), &tok.api_key(), &[]);
    let redirect = |to: &str| format!("redirect?to={}", percent_encode(to.as_bytes()));

    // In scope: followed, each hop signed afresh.
    for name in ["mh", "mp"] {
        maas.clear_requests();
        let out = env.signet(&["request", "-i", name, &redirect("/MAAS/api/2.0/users/?op=whoami")]);
        let text = out.ok();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{name}: {text}");
        assert!(text.contains("\"username\""), "{text}");
        let reqs = maas.requests();
        assert_eq!(reqs.len(), 2, "{name}: {reqs:?}");
        assert_eq!((reqs[0].status, reqs[1].status), (302, 200), "{reqs:?}");
        assert!(reqs.iter().all(Recorded::is_ok), "{reqs:?}");
        assert_eq!(reqs[1].target, "/MAAS/api/2.0/users/?op=whoami");
        let (n0, n1) = (recorded_nonce(&reqs[0]), recorded_nonce(&reqs[1]));
        assert_ne!(n0, n1, "{name}: a hop reused the nonce");
    }
    // A chain of two in-scope hops, relative Location included.
    maas.clear_requests();
    let inner = redirect("echo/chained");
    let out = env.signet(&["request", "mh", &redirect(&format!("/MAAS/api/2.0/{inner}"))]);
    let echo: serde_json::Value = serde_json::from_str(out.ok()).expect("json");
    assert_eq!(echo["target"], "/MAAS/api/2.0/echo/chained");
    assert_eq!(maas.requests().len(), 3, "{:?}", maas.requests());
    assert!(maas.requests().iter().all(Recorded::is_ok));

    // A form POST answered 307 is repeated with its body, signed afresh (the
    // HMAC covers the body, so the server checks it was sent again).
    maas.clear_requests();
    let to307 = format!("{}&status=307", redirect("/MAAS/api/2.0/echo/post"));
    let echo = env.request_json(&["-f", "mh", "-d", "a=1&b=2", &to307]);
    assert_eq!((echo["method"].as_str(), echo["body_len"].as_u64()), (Some("POST"), Some(7)));
    let reqs = maas.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert!(reqs.iter().all(|r| r.is_ok() && r.body_len == 7), "{reqs:?}");
    // ... and a 302 after a POST becomes a GET without the body, as curl does.
    maas.clear_requests();
    let echo = env.request_json(&["-f", "mh", "-d", "a=1", &redirect("/MAAS/api/2.0/echo/get")]);
    assert_eq!((echo["method"].as_str(), echo["body_len"].as_u64()), (Some("GET"), Some(0)));
    assert_eq!(echo["content_type"], serde_json::Value::Null, "{echo}");
    assert!(maas.requests().iter().all(Recorded::is_ok));

    // Chains: a few hops are followed to the end; an endless one is cut off
    // (the last redirect comes back to the client).
    let chain = |depth: usize| {
        let mut target = "echo/end".to_string();
        for _ in 0..depth {
            target = format!("redirect?to={}", percent_encode(target.as_bytes()));
        }
        target
    };
    maas.clear_requests();
    let echo = env.request_json(&["-f", "mh", &chain(5)]);
    assert_eq!(echo["target"], "/MAAS/api/2.0/echo/end");
    assert_eq!(maas.requests().len(), 6);
    maas.clear_requests();
    let out = env.signet(&["request", "-i", "mh", &chain(30)]);
    assert!(out.ok().starts_with("HTTP/1.1 302 Found\r\n"), "{out:#?}");
    let hops = maas.requests().len();
    assert!((2..30).contains(&hops), "{hops} requests for a 30-hop chain");
    assert!(maas.requests().iter().all(Recorded::is_ok));

    // Another origin: not followed; the client gets the 302 and its Location.
    let other = BearerLikeServer::start(ExpectedAuth::bearer("x"));
    let port = maas.addr().port();
    let away = [
        format!("{}echo", other.url()),
        format!("http://localhost:{port}/MAAS/api/2.0/users/?op=whoami"),
        // Same host and port, outside the token's path.
        "/MAAS/admin/".to_string(),
        "/MAAS/api/2.0/../../admin/".to_string(),
    ];
    for to in &away {
        maas.clear_requests();
        let out = env.signet(&["request", "-i", "mh", &redirect(to)]);
        let text = out.ok();
        assert!(text.starts_with("HTTP/1.1 302 Found\r\n"), "{to}: {text}");
        let head = text.split("\r\n\r\n").next().unwrap_or_default();
        assert!(
            head.lines().any(|l| l.eq_ignore_ascii_case(&format!("location: {to}"))),
            "{to}: {text}"
        );
        let reqs = maas.requests();
        assert_eq!(reqs.len(), 1, "{to}: followed: {reqs:?}");
        // -f does not turn a 302 into a failure.
        env.signet(&["request", "-f", "mh", &redirect(to)]).ok();
    }
    assert!(
        other.requests().is_empty(),
        "credentials went to another origin: {:?}",
        other.requests()
    );
}
