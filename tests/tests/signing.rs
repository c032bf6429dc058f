//! Signing and agent-performed requests against real servers on 127.0.0.1
//! that check credentials as the real APIs do.
//!
//! Everything goes through the real `signet` binary; where a test checks a
//! header that `signet sign` printed, curl sends it, as a user's script would
//! (`curl -H "$(signet sign NAME URL)" URL`).

use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use signet_tests::headers::{
    curl, is_hex_nonce, oauth_line_params, oauth_param, oauth_params, recorded_nonce,
};
use signet_tests::upstream::oauth::{percent_encode, unix_now};
use signet_tests::upstream::{
    BearerLikeServer, ExpectedAuth, MaasServer, OAuth1Config, OAuth1Server, Recorded, SilentServer,
    TruncatingServer, VmsServer, closed_port, pattern_sha256,
};
use signet_tests::{Backend, Out, TestEnv, eventually};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

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

fn sha256_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path).expect("open");
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
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

/// A port other than `p` on 127.0.0.1 (for "other port" refusals; nothing
/// needs to listen there).
fn other_port(p: u16) -> u16 {
    if p == u16::MAX { p - 1 } else { p + 1 }
}

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

        // Query parameters with spaces, unicode, + and empty values.
        let echo = env.request_json(&[name, "v1/search?q=a b&name=café&plus=1+2&empty=&q=z"]);
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
    // A unicode query signed by the agent and sent by curl.
    let line = env.sign_line(&["o256", "v1/search?name=café"]);
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

// ---------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------

#[test]
fn tls_with_cacert_works_without_it_exits_7_and_insecure_works() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    let maas = MaasServer::start_tls();
    let tok = maas.add_token("cli");
    let ca = maas.write_ca_pem(env.root.path());
    let ca_arg = ca.to_str().expect("utf-8 path");
    assert!(maas.url().starts_with("https://"));

    env.add("ca", "maas", &maas.api_url(), &tok.api_key(), &["--cacert", ca_arg]);
    let who = env.request_json(&["ca", "users/?op=whoami"]);
    assert_eq!(who["username"], "admin");

    // Another token of the same server, without the CA: the agent's client for
    // `ca` must not lend it its trust.
    env.add("noca", "maas", &maas.api_url(), &tok.api_key(), &[]);
    let before = maas.requests().len();
    let err = env.signet(&["request", "noca", "users/?op=whoami"]).fails(7).to_string();
    assert!(err.contains("certificate"), "{err}");
    assert!(err.contains(&maas.origin()), "{err}");
    assert_eq!(maas.requests().len(), before);
    assert!(maas.handshake_failures() >= 1);

    env.add("insecure", "maas", &maas.api_url(), &tok.api_key(), &["--insecure"]);
    let who = env.request_json(&["insecure", "users/?op=whoami"]);
    assert_eq!(who["username"], "admin");
    // And the trusted one still works afterwards.
    env.request_json(&["ca", "users/?op=whoami"]);

    // A bearer server over TLS: request, and sign + curl --cacert.
    let b = BearerLikeServer::start_tls(ExpectedAuth::bearer("tls-token"));
    let bca = b.write_ca_pem(env.root.path());
    let bca_arg = bca.to_str().expect("utf-8 path");
    env.add("b", "bearer", &b.url(), "tls-token", &["--cacert", bca_arg, "--exportable"]);
    env.add("b-noca", "bearer", &b.url(), "tls-token", &[]);
    let echo = env.request_json(&["-f", "b", "echo"]);
    assert_eq!(echo["target"], "/echo");
    let err = env.signet(&["request", "b-noca", "echo"]).fails(7).to_string();
    assert!(err.contains("certificate"), "{err}");
    // maas's CA does not vouch for b.
    env.add("b-wrongca", "bearer", &b.url(), "tls-token", &["--cacert", ca_arg]);
    env.signet(&["request", "b-wrongca", "echo"]).fails(7);
    let line = env.sign_line(&["b", "echo"]);
    let (status, body) = curl(&[&line], &format!("{}echo", b.url()), &["--cacert", bca_arg]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(b.requests().len(), 2, "{:?}", b.requests());
}

// ---------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------

const BIG: u64 = 100 * 1024 * 1024;
const RSS_LIMIT_KIB: u64 = 64 * 1024;

#[test]
fn a_100_mib_download_and_upload_stream_through_the_agent_in_constant_memory() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    let server = BearerLikeServer::start(ExpectedAuth::bearer("stream-token"));
    env.add("s", "bearer", &server.url(), "stream-token", &[]);
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
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    let server = BearerLikeServer::start(ExpectedAuth::bearer("stdin-token"));
    env.add("s", "bearer", &server.url(), "stdin-token", &[]);
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
    let mut hung = env.signet_command();
    hung.args(["request", "slow", "hang"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut hung = hung.spawn().expect("spawn signet");
    let accepted_before = silent.accepted();
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
// Token state
// ---------------------------------------------------------------------------

#[test]
fn an_expired_token_refuses_sign_and_request_saying_when() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    let server = BearerLikeServer::start(ExpectedAuth::bearer("short-lived"));
    env.add("e", "bearer", &server.url(), "short-lived", &["--expires", "1s", "--exportable"]);
    let expires = env.signet(&["show", "e", "--json"]).json()["expires"]
        .as_str()
        .expect("expires set")
        .to_string();
    assert!(
        eventually(
            Duration::from_secs(10),
            || env.signet(&["show", "e", "--json"]).json()["expired"] == true
        ),
        "the token never expired"
    );
    for args in [
        &["sign", "e", "echo"][..],
        &["request", "e", "echo"],
        &["request", "e", "echo", "-d", "x=1"],
    ] {
        let out = env.signet(args);
        let err = out.fails(5);
        assert!(err.contains("expired") && err.contains(&expires), "{args:?}: {err}");
        assert!(!out.stdout.contains("short-lived") && !err.contains("short-lived"));
    }
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    assert_eq!(env.signet(&["show", "e", "--json"]).json()["use_count"], 0);
}

#[test]
fn use_count_and_last_used_are_kept_and_survive_a_restart() {
    let Some((mut env, maas)) = TestEnv::started_with_maas() else { return };
    let tok = maas.add_token("cli");
    env.add("m", "maas", &maas.api_url(), &tok.api_key(), &[]);
    let fresh = env.signet(&["show", "m", "--json"]).json();
    assert_eq!(fresh["use_count"], 0);
    assert_eq!(fresh["last_used"], serde_json::Value::Null);

    let n = 4;
    for _ in 0..n {
        env.signet(&["request", "m", "users/?op=whoami"]).ok();
    }
    let shown = env.signet(&["show", "m", "--json"]).json();
    assert_eq!(shown["use_count"], n, "{shown}");
    let last_used = shown["last_used"].as_str().expect("last_used set").to_string();
    assert!(last_used.as_str() >= shown["created"].as_str().unwrap(), "{shown}");
    let listed = env.signet(&["list", "--json"]).json();
    assert_eq!(listed[0]["use_count"], n);

    // Flushed at shutdown: a restart keeps them.
    env.restart_agent();
    let shown = env.signet(&["show", "m", "--json"]).json();
    assert_eq!(shown["use_count"], n, "{shown}");
    assert_eq!(shown["last_used"], last_used.as_str());
    // And counting goes on.
    env.signet(&["request", "m", "users/?op=whoami"]).ok();
    assert_eq!(env.signet(&["show", "m", "--json"]).json()["use_count"], n + 1);
    assert_eq!(maas.requests().len(), n as usize + 1);
}

#[test]
fn a_crash_keeps_the_use_counts_that_the_30_s_batch_wrote() {
    let Some(mut env) = TestEnv::started(Backend::SecretService) else { return };
    let server = BearerLikeServer::start(ExpectedAuth::bearer("counted"));
    env.add("c", "bearer", &server.url(), "counted", &[]);
    for _ in 0..2 {
        env.request_json(&["c", "echo"]);
    }
    // Batched every 30 s: the index file gets the count without a shutdown.
    let on_disk = |env: &TestEnv| env.index()["tokens"][0]["use_count"] == 2;
    assert!(
        eventually(Duration::from_secs(45), || on_disk(&env)),
        "use count not on disk after 45 s: {}",
        env.index()
    );
    // So a crash (SIGKILL: no shutdown flush) keeps it.
    env.kill_agent();
    env.start_agent();
    let shown = env.signet(&["show", "c", "--json"]).json();
    assert_eq!(shown["use_count"], 2, "{shown}");
    assert!(shown["last_used"].is_string(), "{shown}");
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
