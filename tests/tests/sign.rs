//! How each kind of token authenticates, against test servers on 127.0.0.1
//! that check credentials as the real APIs do: the header the agent sends
//! for `signet request`, and the one `signet sign` prints.
//!
//! A printed header is sent by curl, as a user's script would
//! (`curl -H "$(signet sign NAME URL)" URL`). A header that reveals the
//! secret (PLAINTEXT, api-token, bearer, basic, header) is printed only for
//! a token added with `--exportable`.

use signet_tests::headers::{
    curl, is_hex_nonce, oauth_line_params, oauth_param, oauth_params, recorded_nonce,
};
use signet_tests::upstream::oauth::{percent_encode, unix_now};
use signet_tests::upstream::{
    BearerLikeServer, ExpectedAuth, OAuth1Config, OAuth1Server, VmsServer,
};
use signet_tests::{Backend, TestEnv};

// ---------------------------------------------------------------------------
// MAAS
// ---------------------------------------------------------------------------

#[test]
fn maas_whoami_through_the_agent_and_sign_for_exportable_tokens() {
    let Some((env, maas)) = TestEnv::started_with_maas() else { return };
    let tok = maas.add_token("cli");
    env.add("maas", "maas", &maas.api_url(), &tok.api_key(), &[]);
    let out = env.signet(&["request", "maas", "users/?op=whoami"]);
    let body: serde_json::Value = serde_json::from_str(out.ok()).expect("json");
    assert_eq!(body["username"], maas.user().username);
    // Twice: a fresh nonce each time.
    env.signet(&["request", "maas", "users/?op=whoami"]).ok();
    assert!(maas.requests().iter().all(|r| r.is_ok()), "{:?}", maas.requests());

    // PLAINTEXT reveals the secret: sign needs --exportable.
    let err = env.signet(&["sign", "maas", "users/?op=whoami"]).fails(5).to_string();
    assert!(err.contains("not exportable"), "{err}");
    assert!(!err.contains(&tok.token_secret));
}

#[test]
fn maas_hmac_sha1_request_and_sign_without_exportable_and_a_replay_is_refused() {
    let Some((env, maas)) = TestEnv::started_with_maas() else { return };
    let tok = maas.add_token("cli");
    env.add("mh", "maas", &maas.api_url(), &tok.api_key(), &["--signature", "hmac-sha1"]);

    // request: the agent signs with HMAC-SHA1, the server accepts it.
    let who: serde_json::Value =
        serde_json::from_str(env.signet(&["request", "mh", "users/?op=whoami"]).ok())
            .expect("json");
    assert_eq!(who["username"], "admin");
    let reqs = maas.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert!(reqs[0].is_ok(), "{reqs:?}");
    let auth = reqs[0].header("authorization").expect("authorization");
    assert_eq!(oauth_param(&oauth_params(auth), "oauth_signature_method"), "HMAC-SHA1");
    assert!(!auth.contains(&tok.token_secret), "HMAC header carries the secret: {auth}");

    // sign: no --exportable needed, the header reveals nothing.
    let out = env.signet(&["sign", "mh", "users/?op=whoami"]);
    let line = out.ok().trim_end().to_string();
    assert_eq!(out.stdout.lines().count(), 1, "{out:#?}");
    assert!(!out.stdout.contains(&tok.token_secret) && !out.stderr.contains(&tok.token_secret));
    assert!(line.starts_with("Authorization: OAuth realm=\"OAuth\", oauth_nonce=\""), "{line}");
    let p = oauth_line_params(&line);
    assert_eq!(oauth_param(&p, "oauth_signature_method"), "HMAC-SHA1");
    assert_eq!(oauth_param(&p, "oauth_consumer_key"), tok.consumer_key);
    assert_eq!(oauth_param(&p, "oauth_token"), tok.token_key);
    let nonce = oauth_param(&p, "oauth_nonce").to_string();
    assert!(is_hex_nonce(&nonce), "{nonce}");

    // curl -H "$(signet sign mh URL)" URL: accepted.
    let url = format!("{}users/?op=whoami", maas.api_url());
    let (status, body) = curl(&[&line], &url, &[]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"username\""), "{body}");
    assert_eq!(recorded_nonce(maas.requests().last().unwrap()), nonce);

    // The same printed header again is a replay: the server refuses it.
    let (status, body) = curl(&[&line], &url, &[]);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Nonce already used"), "{body}");

    // Every sign is fresh.
    let again = env.sign_line(&["mh", "users/?op=whoami"]);
    assert_ne!(oauth_param(&oauth_line_params(&again), "oauth_nonce"), nonce);

    // A POST with form parameters: --form puts them under the signature, and
    // the server (which includes the urlencoded body in its base string) agrees.
    let create = "account/?op=create_authorisation_token";
    let line = env.sign_line(&["mh", "POST", create, "--form", "name=from curl"]);
    let url = format!("{}{create}", maas.api_url());
    let (status, body) = curl(&[&line], &url, &["-d", "name=from+curl"]);
    assert_eq!(status, 200, "{body}");
    assert!(maas.tokens().iter().any(|t| t.name == "from curl"), "{:?}", maas.tokens());
    // The same through the agent: -d is signed with the form parameters.
    let made = env.request_json(&["-f", "mh", "-d", "name=via agent", create]);
    assert_eq!(made["name"], "via agent", "{made}");
    assert!(maas.requests().last().unwrap().is_ok());
    // Signed without the form parameter, the same body is refused.
    let line = env.sign_line(&["mh", "POST", create]);
    let (status, body) = curl(&[&line], &url, &["-d", "name=from+curl"]);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Invalid signature"), "{body}");
}

#[test]
fn maas_plaintext_sign_needs_exportable_and_its_header_works_once_with_curl() {
    let Some((env, maas)) = TestEnv::started_with_maas() else { return };
    let tok = maas.add_token("exported");
    env.add("mx", "maas", &maas.api_url(), &tok.api_key(), &["--exportable"]);

    let before = unix_now();
    let line = env.sign_line(&["mx", "users/?op=whoami"]);
    assert!(line.starts_with("Authorization: OAuth realm=\"OAuth\", oauth_nonce=\""), "{line}");
    let p = oauth_line_params(&line);
    let names: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "realm",
            "oauth_nonce",
            "oauth_timestamp",
            "oauth_version",
            "oauth_signature_method",
            "oauth_consumer_key",
            "oauth_token",
            "oauth_signature"
        ],
        "{line}"
    );
    assert_eq!(oauth_param(&p, "realm"), "OAuth");
    assert!(is_hex_nonce(oauth_param(&p, "oauth_nonce")), "{line}");
    let ts: u64 = oauth_param(&p, "oauth_timestamp").parse().expect("timestamp");
    assert!(ts >= before && ts <= unix_now() + 1, "{ts} vs {before}");
    assert_eq!(oauth_param(&p, "oauth_version"), "1.0");
    assert_eq!(oauth_param(&p, "oauth_signature_method"), "PLAINTEXT");
    assert_eq!(oauth_param(&p, "oauth_consumer_key"), tok.consumer_key);
    assert_eq!(oauth_param(&p, "oauth_token"), tok.token_key);
    // Empty consumer secret: `&` + token secret, percent-encoded in the header.
    assert_eq!(oauth_param(&p, "oauth_signature"), format!("%26{}", tok.token_secret));

    let url = format!("{}users/?op=whoami", maas.api_url());
    let (status, body) = curl(&[&line], &url, &[]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"admin\""), "{body}");
    let (status, body) = curl(&[&line], &url, &[]);
    assert_eq!(status, 401, "a replayed PLAINTEXT header must be refused: {body}");
    assert!(body.contains("Nonce already used"), "{body}");

    // The same key without --exportable: refused, and the secret is nowhere.
    env.add("mn", "maas", &maas.api_url(), &tok.api_key(), &[]);
    let out = env.signet(&["sign", "mn", "users/?op=whoami"]);
    let err = out.fails(5);
    assert!(err.contains("not exportable"), "{err}");
    assert!(err.contains("signet request"), "{err}");
    assert!(out.stdout.is_empty(), "{out:#?}");
    assert!(!out.stdout.contains(&tok.token_secret) && !out.stderr.contains(&tok.token_secret));
    let out = env.signet(&["sign", "mn", "users/?op=whoami", "--json"]);
    out.fails(5);
    assert!(!out.stdout.contains(&tok.token_secret) && !out.stderr.contains(&tok.token_secret));
    // Two successful curl requests, one replay; nothing from the refused signs.
    assert_eq!(maas.requests().len(), 2, "{:?}", maas.requests());
    // The agent performs PLAINTEXT requests too; its debug log never shows the secret.
    env.signet(&["request", "-f", "mn", "users/?op=whoami"]).ok();
    assert!(!env.agent_log().contains(&tok.token_secret), "secret in the agent log");
}

#[test]
fn sign_json_is_a_list_of_name_value_headers() {
    let Some((env, maas)) = TestEnv::started_with_maas() else { return };
    let tok = maas.add_token("json");
    env.add("mh", "maas", &maas.api_url(), &tok.api_key(), &["--signature", "hmac-sha1"]);
    let out = env.signet(&["sign", "mh", "users/?op=whoami", "--json"]);
    let v = out.json();
    let obj = v.as_object().expect("object");
    assert_eq!(obj.keys().collect::<Vec<_>>(), ["headers"], "{v}");
    let headers = v["headers"].as_array().expect("headers array");
    assert_eq!(headers.len(), 1, "{v}");
    let mut keys: Vec<&String> = headers[0].as_object().expect("item").keys().collect();
    keys.sort();
    assert_eq!(keys, ["name", "value"], "{v}");
    assert_eq!(headers[0]["name"], "Authorization");
    let value = headers[0]["value"].as_str().expect("value string");
    assert!(value.starts_with("OAuth realm=\"OAuth\", oauth_nonce=\""), "{value}");
    // The JSON value works as a header.
    let url = format!("{}users/?op=whoami", maas.api_url());
    let (status, body) = curl(&[&format!("Authorization: {value}")], &url, &[]);
    assert_eq!(status, 200, "{body}");

    // Two headers, in order.
    let vms = VmsServer::start();
    let t = vms.issue_token("admin", "json");
    env.add("vx", "api-token", &vms.url(), &t.token(), &["--tenant", "tenant-a", "--exportable"]);
    let v = env.signet(&["sign", "vx", "api/clusters/", "--json"]).json();
    assert_eq!(
        v,
        serde_json::json!({"headers": [
            {"name": "Authorization", "value": format!("Api-Token {}", t.token())},
            {"name": "X-Tenant-Name", "value": "tenant-a"},
        ]})
    );
}

// ---------------------------------------------------------------------------
// Generic OAuth 1.0a
// ---------------------------------------------------------------------------

const O_CK: &str = "consumer-key-1";
const O_TK: &str = "token-key-1";
// Reserved and non-ASCII characters, so that every encoding step counts.
const O_CS: &str = "c$s&1/+ =~";
const O_TS: &str = "t s=2~é%";

fn oauth1_server() -> OAuth1Server {
    OAuth1Server::start(OAuth1Config::new(O_CK, O_CS, O_TK, O_TS))
}

fn add_oauth1(env: &TestEnv, name: &str, server: &OAuth1Server, extra: &[&str]) {
    let mut args = vec!["--consumer-key", O_CK, "--token-key", O_TK];
    args.extend_from_slice(extra);
    env.add(name, "oauth1", &server.url(), &format!("{O_CS}\n{O_TS}"), &args);
}

#[test]
fn oauth1_hmac_sha1_hmac_sha256_and_plaintext_are_accepted_by_an_rfc5849_server() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    let server = oauth1_server();
    add_oauth1(&env, "o-sha1", &server, &[]);
    add_oauth1(&env, "o-sha256", &server, &["--signature", "hmac-sha256"]);
    add_oauth1(&env, "o-plain", &server, &["--signature", "plaintext"]);
    add_oauth1(&env, "o-plain-x", &server, &["--signature", "plaintext", "--exportable"]);
    assert_eq!(env.signet(&["show", "o-sha1", "--json"]).json()["signature"], "hmac-sha1");

    for (name, method) in [
        ("o-sha1", "HMAC-SHA1"),
        ("o-sha256", "HMAC-SHA256"),
        ("o-plain", "PLAINTEXT"),
        ("o-plain-x", "PLAINTEXT"),
    ] {
        let echo = env.request_json(&[name, "v1/items?b=2&a=1"]);
        assert_eq!(echo["method"], "GET", "{name}");
        assert_eq!(echo["target"], "/v1/items?b=2&a=1", "{name}");
        let last = server.requests().pop().expect("recorded");
        assert!(last.is_ok(), "{name}: {last:?}");
        let auth = last.header("authorization").expect("authorization");
        let p = oauth_params(auth);
        assert_eq!(oauth_param(&p, "oauth_signature_method"), method, "{name}");
        assert_eq!(oauth_param(&p, "oauth_consumer_key"), O_CK, "{name}");
        assert!(p.iter().all(|(k, _)| k != "realm"), "oauth1 sends no realm: {auth}");
    }

    // sign: HMAC without --exportable; the header works once with curl.
    for (name, method) in [("o-sha1", "HMAC-SHA1"), ("o-sha256", "HMAC-SHA256")] {
        let line = env.sign_line(&[name, "v1/items?q=1"]);
        assert!(line.starts_with("Authorization: OAuth oauth_nonce=\""), "{line}");
        assert_eq!(oauth_param(&oauth_line_params(&line), "oauth_signature_method"), method);
        assert!(!line.contains("t%20s") && !line.contains("c%24s"), "{line}");
        let url = format!("{}v1/items?q=1", server.url());
        let (status, body) = curl(&[&line], &url, &[]);
        assert_eq!(status, 200, "{name}: {body}");
        let (status, body) = curl(&[&line], &url, &[]);
        assert_eq!(status, 401, "{name}: replay accepted: {body}");
    }

    // PLAINTEXT: only with --exportable.
    let out = env.signet(&["sign", "o-plain", "v1/items"]);
    assert!(out.fails(5).contains("not exportable"), "{out:#?}");
    assert!(!out.stderr.contains(O_TS) && !out.stdout.contains(O_TS));
    let line = env.sign_line(&["o-plain-x", "v1/items"]);
    let p = oauth_line_params(&line);
    assert_eq!(oauth_param(&p, "oauth_signature_method"), "PLAINTEXT");
    // enc(enc(cs) & enc(ts)): the signature is the key, encoded again.
    let key = format!("{}&{}", percent_encode(O_CS.as_bytes()), percent_encode(O_TS.as_bytes()));
    assert_eq!(oauth_param(&p, "oauth_signature"), percent_encode(key.as_bytes()));
    let (status, body) = curl(&[&line], &format!("{}v1/items", server.url()), &[]);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn oauth1_hmac_covers_form_bodies_and_odd_query_parameters() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    let server = oauth1_server();
    add_oauth1(&env, "o1", &server, &[]);
    add_oauth1(&env, "o256", &server, &["--signature", "hmac-sha256"]);

    for name in ["o1", "o256"] {
        // A form body: POST, content-type form, the parameters in the base string.
        let echo = env.request_json(&[name, "-d", "a=1&b=two words", "v1/form"]);
        assert_eq!(echo["method"], "POST", "{echo}");
        assert_eq!(echo["content_type"], "application/x-www-form-urlencoded", "{echo}");
        assert_eq!(echo["body_len"], "a=1&b=two words".len(), "{echo}");
        let last = server.requests().pop().expect("recorded");
        assert!(last.is_ok(), "{name}: {last:?}");

        // Several -d are joined with & as curl does; still covered.
        let echo = env.request_json(&[name, "-d", "x=1", "-d", "y=%C3%A9+%2B", "v1/form"]);
        assert_eq!(echo["body_len"], "x=1&y=%C3%A9+%2B".len(), "{echo}");
        assert!(server.requests().pop().expect("recorded").is_ok());

        // Query parameters with encoded spaces and unicode, + and empty
        // values. Raw spaces and non-ASCII are refused: parsers disagree
        // on them (see attacks.rs).
        let echo =
            env.request_json(&[name, "v1/search?q=a%20b&name=caf%C3%A9&plus=1+2&empty=&q=z"]);
        assert_eq!(echo["target"], "/v1/search?q=a%20b&name=caf%C3%A9&plus=1+2&empty=&q=z");
        let last = server.requests().pop().expect("recorded");
        assert!(last.is_ok(), "{name}: {last:?}");
    }

    // sign --form for a POST: curl sends the body, the server checks it.
    let line = env.sign_line(&["o1", "POST", "v1/form", "--form", "a=1", "--form", "b=two words"]);
    let url = format!("{}v1/form", server.url());
    let (status, body) = curl(&[&line], &url, &["-d", "a=1&b=two+words"]);
    assert_eq!(status, 200, "{body}");
    // A different body with that signature is refused.
    let line = env.sign_line(&["o1", "POST", "v1/form", "--form", "a=1", "--form", "b=two words"]);
    let (status, body) = curl(&[&line], &url, &["-d", "a=1&b=three+words"]);
    assert_eq!(status, 401, "{body}");
    // A unicode query, percent-encoded as curl sends it, signed by the
    // agent. (Raw non-ASCII is refused: see attacks.rs.)
    let line = env.sign_line(&["o256", "v1/search?name=caf%C3%A9"]);
    let (status, body) = curl(&[&line], &format!("{}v1/search?name=caf%C3%A9", server.url()), &[]);
    assert_eq!(status, 200, "{body}");
}

// ---------------------------------------------------------------------------
// VMS and the header-only kinds
// ---------------------------------------------------------------------------

#[test]
fn vms_api_token_request_tenant_and_sign() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    let vms = VmsServer::start();
    let t = vms.issue_token("admin", "cli");
    env.add("v", "api-token", &vms.url(), &t.token(), &[]);
    let clusters = env.request_json(&["v", "api/clusters/"]);
    assert_eq!(clusters[0]["name"], "vast-test", "{clusters}");
    let last = vms.requests().pop().expect("recorded");
    assert_eq!(last.header("authorization"), Some(format!("Api-Token {}", t.token()).as_str()));
    assert_eq!(last.header("x-tenant-name"), None);

    // A server that requires a tenant: --tenant adds X-Tenant-Name.
    vms.require_tenant(Some("tenant-a"));
    let out = env.signet(&["request", "-f", "v", "api/clusters/"]);
    out.fails(22);
    assert!(out.stdout.is_empty(), "{out:#?}");
    env.add("vt", "api-token", &vms.url(), &t.token(), &["--tenant", "tenant-a"]);
    let clusters = env.request_json(&["-f", "vt", "api/clusters/"]);
    assert_eq!(clusters[0]["name"], "vast-test", "{clusters}");
    let last = vms.requests().pop().expect("recorded");
    assert!(last.is_ok(), "{last:?}");
    assert_eq!(last.header("x-tenant-name"), Some("tenant-a"));

    // sign: the header is the secret, so only with --exportable.
    let out = env.signet(&["sign", "vt", "api/clusters/"]);
    assert!(out.fails(5).contains("not exportable"), "{out:#?}");
    assert!(!out.stderr.contains(&t.secret) && !out.stdout.contains(&t.secret));
    env.add("vx", "api-token", &vms.url(), &t.token(), &["--tenant", "tenant-a", "--exportable"]);
    let lines = env.sign_lines(&["vx", "api/clusters/"]);
    assert_eq!(
        lines,
        [format!("Authorization: Api-Token {}", t.token()), "X-Tenant-Name: tenant-a".to_string()]
    );
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let (status, body) = curl(&refs, &format!("{}api/clusters/", vms.url()), &[]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("vast-test"), "{body}");
    // The Authorization line alone is not enough for this server.
    let (status, _) = curl(&refs[..1], &format!("{}api/clusters/", vms.url()), &[]);
    assert_eq!(status, 401);
}

#[test]
fn bearer_basic_and_header_kinds_and_a_wrong_secret_with_and_without_f() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    struct Case {
        kind: &'static str,
        auth: ExpectedAuth,
        secret: &'static str,
        wrong: &'static str,
        extra: &'static [&'static str],
    }
    let cases = [
        Case {
            kind: "bearer",
            auth: ExpectedAuth::bearer("tok-123.abc_XYZ"),
            secret: "tok-123.abc_XYZ",
            wrong: "tok-123.abc_XYz",
            extra: &[],
        },
        Case {
            kind: "basic",
            auth: ExpectedAuth::basic("alice", "pa:ss wörd"),
            secret: "pa:ss wörd",
            wrong: "pa:ss word",
            extra: &["--username", "alice"],
        },
        Case {
            kind: "header",
            auth: ExpectedAuth::header("X-Api-Key", "key value 1"),
            secret: "key value 1",
            wrong: "key value 2",
            extra: &["--header-name", "X-Api-Key"],
        },
    ];
    for c in &cases {
        let server = BearerLikeServer::start(c.auth.clone());
        let good = format!("{}-good", c.kind);
        let bad = format!("{}-bad", c.kind);
        let exp = format!("{}-x", c.kind);
        env.add(&good, c.kind, &server.url(), c.secret, c.extra);
        env.add(&bad, c.kind, &server.url(), c.wrong, c.extra);
        let mut x = c.extra.to_vec();
        x.push("--exportable");
        env.add(&exp, c.kind, &server.url(), c.secret, &x);

        let echo = env.request_json(&["-f", &good, "echo/1"]);
        assert_eq!(echo["target"], "/echo/1", "{}", c.kind);
        let last = server.requests().pop().expect("recorded");
        assert!(last.is_ok(), "{}: {last:?}", c.kind);
        let (hname, hvalue) = c.auth.expected_header();
        assert_eq!(last.header(&hname), Some(hvalue.as_str()), "{}", c.kind);

        // The wrong secret: the server says 401. -f: exit 22 and no body.
        let out = env.signet(&["request", "-f", &bad, "echo/2"]);
        let err = out.fails(22);
        assert!(err.contains("401"), "{}: {err}", c.kind);
        assert!(out.stdout.is_empty(), "{}: {out:#?}", c.kind);
        // Without -f: exit 0 and the body.
        let out = env.signet(&["request", &bad, "echo/3"]);
        assert!(out.ok().contains(&format!("wrong value for header {hname}")), "{out:#?}");
        let reqs = server.requests();
        assert_eq!(reqs.iter().filter(|r| r.status == 401).count(), 2, "{reqs:?}");

        // Exportable: the printed line works with curl.
        let line = env.sign_line(&[&exp, "echo/4"]);
        assert_eq!(line, format!("{hname}: {hvalue}"), "{}", c.kind);
        let (status, body) = curl(&[&line], &format!("{}echo/4", server.url()), &[]);
        assert_eq!(status, 200, "{}: {body}", c.kind);
        let out = env.signet(&["sign", &good, "echo/4"]);
        out.fails(5);
        assert!(!out.stdout.contains(c.secret) && !out.stderr.contains(c.secret));
    }
    // The agent logs at debug level here; never a secret or a header made of one.
    let log = env.agent_log();
    assert!(log.contains("DEBUG"), "the log level is not debug: {log}");
    for c in &cases {
        let (_, hvalue) = c.auth.expected_header();
        assert!(!log.contains(c.secret) && !log.contains(&hvalue), "{} secret in the log", c.kind);
    }
}
