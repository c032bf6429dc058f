//! `signet proxy` and `signet exec`: tools that want a URL and a key use a
//! token through a loopback proxy the agent runs, with a local credential.
//! The test servers check the real token as the real MAAS and VMS do, so a
//! request that reaches them with anything but the real key fails there.
//!
//! What must hold: a request without the local credential, with a wrong,
//! replayed or stale one, for another Host or for a path outside the base
//! is refused by the proxy and never reaches upstream; the real secret is
//! never in the tool's environment, arguments or answers; the proxies die
//! with `exec`, even when it is SIGKILLed; bodies stream both ways.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use signet_tests::upstream::{BearerLikeServer, ExpectedAuth, pattern_sha256, sha256_file};
use signet_tests::{Backend, TestEnv, eventually, exists, run, wait_timeout};

/// curl's answer: status, headers (lower-case names) and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Runs curl against a proxy; a connection failure is status 0.
fn curl(url: &str, headers: &[String], extra: &[&str]) -> Answer {
    let mut c = Command::new("curl");
    c.args(["-sS", "--noproxy", "*", "-D", "-", "-w", "\n%{http_code}"]);
    for h in headers {
        c.arg("-H").arg(h);
    }
    c.args(extra).arg(url);
    let out = run(&mut c, b"");
    if out.code() != 0 {
        return Answer { status: 0, headers: Vec::new(), body: out.stderr };
    }
    let (all, status) = out.stdout.rsplit_once('\n').expect("curl -w status");
    let mut all = all;
    // An interim `100 Continue` comes before the real head.
    while all.starts_with("HTTP/1.1 100") {
        all = all.split_once("\r\n\r\n").map_or("", |(_, rest)| rest);
    }
    let (head, body) = all.split_once("\r\n\r\n").unwrap_or((all, ""));
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer { status: status.trim().parse().expect("status"), headers, body: body.to_string() }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

fn nonce() -> String {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).expect("random");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The PLAINTEXT OAuth header python-libmaas and the MAAS CLI send for
/// `key` (`consumer:token:secret`).
fn maas_header(key: &str, nonce: &str, timestamp: u64) -> String {
    let mut parts = key.split(':');
    let (ck, tk, ts) =
        (parts.next().expect("ck"), parts.next().expect("tk"), parts.next().expect("ts"));
    format!(
        "Authorization: OAuth realm=\"OAuth\", oauth_nonce=\"{nonce}\", oauth_timestamp=\"{timestamp}\", oauth_version=\"1.0\", oauth_signature_method=\"PLAINTEXT\", oauth_consumer_key=\"{ck}\", oauth_token=\"{tk}\", oauth_signature=\"%26{ts}\""
    )
}

fn fresh_maas_header(key: &str) -> String {
    maas_header(key, &nonce(), unix_now())
}

/// `signet proxy ARGS --json`, asserting success.
fn start_proxy(env: &TestEnv, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["proxy"];
    full.extend_from_slice(args);
    full.push("--json");
    env.signet(&full).json()
}

fn s<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("no {key} in {v}"))
}

#[test]
fn a_maas_tool_uses_a_local_key_and_everything_else_is_refused_before_upstream() {
    let Some((env, maas)) = TestEnv::started_with_maas() else { return };
    let real = maas.add_token("proxy");
    env.add("m1", "maas", &maas.url(), &real.api_key(), &[]);

    let p = start_proxy(&env, &["m1"]);
    let url = s(&p, "url").to_string();
    let key = s(&p, "key").to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{p}");
    assert_eq!(key.split(':').count(), 3, "a MAAS-shaped key: {p}");
    assert_ne!(key, real.api_key());
    let whoami = format!("{url}api/2.0/users/?op=whoami");

    // The tool's way: its own OAuth header, with the local key.
    let ok = curl(&whoami, &[fresh_maas_header(&key)], &[]);
    assert_eq!(ok.status, 200, "{}", ok.body);
    let me: serde_json::Value = serde_json::from_str(&ok.body).expect("json");
    assert_eq!(me["username"], maas.user().username);
    assert_eq!(maas.requests().len(), 1);
    let seen = maas.requests()[0].header("authorization").expect("auth").to_string();
    assert!(seen.contains(&real.consumer_key) && !seen.contains(&key[..18]), "{seen}");

    // The one exception: MAAS's API description, public on MAAS itself,
    // passes unsigned, its URLs pointed at the proxy.
    let d = curl(&format!("{url}api/2.0/describe/"), &[], &[]);
    assert_eq!(d.status, 200, "{}", d.body);
    assert!(d.body.contains(&format!("{url}api/2.0/users/")), "{}", d.body);
    assert!(!d.body.contains(&maas.url()), "{}", d.body);
    let last = maas.requests().pop().expect("describe went upstream");
    assert_eq!(last.header("authorization"), None, "{last:?}");

    // Refused by the proxy; upstream never sees any of these.
    let replayed = maas_header(&key, "a-nonce-used-twice", unix_now());
    assert_eq!(curl(&whoami, std::slice::from_ref(&replayed), &[]).status, 200);
    let before = maas.requests().len();
    let refusals: Vec<(&str, Answer, u16)> = vec![
        ("no credential", curl(&whoami, &[], &[]), 401),
        ("the real key itself", curl(&whoami, &[fresh_maas_header(&real.api_key())], &[]), 401),
        ("a replayed nonce", curl(&whoami, &[replayed], &[]), 401),
        (
            "a stale timestamp",
            curl(&whoami, &[maas_header(&key, &nonce(), unix_now() - 3600)], &[]),
            401,
        ),
        ("a wrong signature", curl(&whoami, &[fresh_maas_header(&format!("{}x", &key))], &[]), 401),
        (
            "another Host (DNS rebinding)",
            curl(&whoami, &[fresh_maas_header(&key), "Host: attacker.example".into()], &[]),
            421,
        ),
        (
            "a path outside the base",
            curl(
                &format!("{url}../api/2.0/users/?op=whoami"),
                &[fresh_maas_header(&key)],
                &["--path-as-is"],
            ),
            403,
        ),
    ];
    for (what, a, want) in &refusals {
        assert_eq!(a.status, *want, "{what}: {}", a.body);
        assert!(a.body.starts_with("signet proxy: "), "{what}: {}", a.body);
    }
    assert_eq!(maas.requests().len(), before, "a refused request reached upstream");

    // Redirects: in scope, pointed back at the proxy; out of scope, untouched.
    let inside = format!("{}api/2.0/echo", maas.url());
    let a = curl(&format!("{url}api/2.0/redirect?to={inside}"), &[fresh_maas_header(&key)], &[]);
    assert_eq!(a.status, 302, "{}", a.body);
    assert_eq!(a.header("location"), Some(format!("{url}api/2.0/echo").as_str()));
    let a = curl(
        &format!("{url}api/2.0/redirect?to=http://elsewhere.example/x"),
        &[fresh_maas_header(&key)],
        &[],
    );
    assert_eq!(a.header("location"), Some("http://elsewhere.example/x"));

    // Listed without its key; stopped, its key is worth nothing.
    let list = env.signet(&["proxy", "--list", "--json"]).json();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["url"], url.as_str());
    assert!(list[0]["key"].is_null(), "{list}");
    assert!(!env.signet(&["proxy", "--list"]).ok().contains(&key));
    env.signet(&["proxy", "--stop", "m1"]).ok();
    assert_eq!(curl(&whoami, &[fresh_maas_header(&key)], &[]).status, 0, "still listening");
    env.signet(&["proxy", "--stop", "m1"]).fails(4);

    // A new proxy on the same address has a new key; the old one is stale.
    let port = url.trim_start_matches("http://127.0.0.1:").trim_end_matches('/').to_string();
    let again = start_proxy(&env, &["m1", "--listen", &format!("127.0.0.1:{port}")]);
    assert_eq!(s(&again, "url"), url);
    let before = maas.requests().len();
    let stale = curl(&whoami, &[fresh_maas_header(&key)], &[]);
    assert_eq!(stale.status, 401, "{}", stale.body);
    assert_eq!(maas.requests().len(), before);
    assert_eq!(curl(&whoami, &[fresh_maas_header(s(&again, "key"))], &[]).status, 200);
    env.signet(&["proxy", "--stop", "m1"]).ok();

    // Only loopback.
    let err = env.signet(&["proxy", "m1", "--listen", "0.0.0.0:0"]).fails(5).to_string();
    assert!(err.contains("loopback"), "{err}");
    env.signet(&["proxy", "m1", "--listen", "localhost"]).fails(2);

    // The real secret never left the agent, in any answer.
    for r in maas.requests() {
        assert!(!r.target.contains(&real.token_secret));
    }
    assert!(!env.agent_log().contains(&real.token_secret));
}

/// A Bearer token, its server, and the token's value.
fn bearer_world() -> Option<(TestEnv, BearerLikeServer, String)> {
    let env = TestEnv::started(Backend::Keyutils)?;
    let real = format!("real-{}", nonce());
    let server = BearerLikeServer::start(ExpectedAuth::bearer(&real));
    env.add("api.prod", "bearer", &server.url(), &real, &[]);
    Some((env, server, real))
}

fn file_text(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn exec_gives_the_command_a_url_and_a_local_key_only_and_the_proxy_dies_with_it() {
    let Some((env, server, real)) = bearer_world() else { return };
    let dir = env.root.path();
    let script = r#"
        printf '%s\n' "$API_PROD_URL" > url
        printf '%s\n' "$API_PROD_KEY" > key
        cat /proc/$$/environ > environ
        curl -sS --noproxy '*' -H "Authorization: Bearer $API_PROD_KEY" "${API_PROD_URL}echo" > answer
        curl -sS --noproxy '*' -o /dev/null -w '%{http_code}' -H "Authorization: Bearer wrong" "${API_PROD_URL}echo" > wrong
        exit 3
    "#;
    let out = run(
        env.signet_command().current_dir(dir).args(["exec", "api.prod", "--", "sh", "-c", script]),
        b"",
    );
    assert_eq!(out.code(), 3, "exec exits with the command's status: {out:#?}");
    let url = file_text(&dir.join("url")).trim().to_string();
    let key = file_text(&dir.join("key")).trim().to_string();
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with('/'), "{url}");
    assert_eq!(key.len(), 40, "{key}");
    let answer: serde_json::Value =
        serde_json::from_str(&file_text(&dir.join("answer"))).expect("the echo answer");
    assert_eq!(answer["method"], "GET");
    assert_eq!(file_text(&dir.join("wrong")), "401");
    assert_eq!(server.requests().len(), 1, "only the good request reached upstream");
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some(format!("Bearer {real}").as_str())
    );

    // The real secret is nowhere the command could look.
    let environ = std::fs::read(dir.join("environ")).expect("environ");
    let environ = String::from_utf8_lossy(&environ);
    assert!(environ.contains(&format!("API_PROD_KEY={key}")), "{environ}");
    assert!(!environ.contains(&real), "the real secret is in the environment");
    for f in ["url", "key", "answer", "wrong"] {
        assert!(!file_text(&dir.join(f)).contains(&real), "{f}");
    }
    assert!(!out.stdout.contains(&real) && !out.stderr.contains(&real));

    // Gone once exec returns.
    assert_eq!(
        curl(&format!("{url}echo"), &[format!("Authorization: Bearer {key}")], &[]).status,
        0
    );
    let list = env.signet(&["proxy", "--list", "--json"]).json();
    assert_eq!(list, serde_json::json!([]));

    // A name of the caller's choice; a killed command's status is 128+signal.
    let out = run(
        env.signet_command().args([
            "exec",
            "api.prod=X",
            "--",
            "sh",
            "-c",
            "test -n \"$X_URL\" && kill -9 $$",
        ]),
        b"",
    );
    assert_eq!(out.code(), 137, "{out:#?}");
    env.signet(&["exec", "nope", "--", "true"]).fails(4);
    env.signet(&["exec", "api.prod=1X", "--", "true"]).fails(2);
}

#[test]
fn exec_passes_signals_on_and_its_proxies_die_even_when_it_is_killed() {
    let Some((env, _server, _real)) = bearer_world() else { return };
    let dir = env.root.path().to_path_buf();
    let ready = dir.join("ready");

    // SIGTERM to exec reaches the command, and exec exits as it does.
    let script = format!(
        "trap 'exit 42' TERM; echo \"$API_PROD_URL\" > {}; while :; do sleep 0.1; done",
        ready.display()
    );
    let mut child = env
        .signet_command()
        .args(["exec", "api.prod", "--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn exec");
    assert!(eventually(Duration::from_secs(20), || !file_text(&ready).is_empty()));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    let status = wait_timeout(&mut child, Duration::from_secs(20)).expect("exec did not exit");
    assert_eq!(status.code(), Some(42));

    // SIGKILL: exec cannot clean up, and the agent stops its proxy anyway.
    std::fs::remove_file(&ready).expect("rm");
    let pidfile = dir.join("pid");
    let script = format!(
        "echo $$ > {}; echo \"$API_PROD_URL\" > {}; exec sleep 60",
        pidfile.display(),
        ready.display()
    );
    let mut child = env
        .signet_command()
        .args(["exec", "api.prod", "--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn exec");
    assert!(eventually(Duration::from_secs(20), || file_text(&ready).ends_with('\n')));
    let url = file_text(&ready).trim().to_string();
    assert_eq!(env.signet(&["proxy", "--list", "--json"]).json().as_array().map(Vec::len), Some(1));
    child.kill().expect("SIGKILL exec");
    let _ = child.wait();
    let gone = eventually(Duration::from_secs(20), || {
        curl(&format!("{url}echo"), &[], &[]).status == 0
            && env.signet(&["proxy", "--list", "--json"]).json() == serde_json::json!([])
    });
    if let Ok(pid) = file_text(&pidfile).trim().parse::<i32>() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(gone, "the proxy outlived the exec that was killed");
}

/// VmHWM (peak resident set) of a process, in KiB.
fn peak_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn bodies_stream_both_ways_through_tcp_and_unix_socket_proxies() {
    let Some((env, server, real)) = bearer_world() else { return };
    let p = start_proxy(&env, &["api.prod"]);
    let (url, key) = (s(&p, "url").to_string(), s(&p, "key").to_string());
    let auth = format!("Authorization: Bearer {key}");

    const DOWN: u64 = 256 << 20;
    const UP: u64 = 128 << 20;
    let file: PathBuf = env.root.path().join("down");
    let a = curl(
        &format!("{url}big/{DOWN}"),
        std::slice::from_ref(&auth),
        &["-o", file.to_str().expect("path")],
    );
    assert_eq!(a.status, 200);
    assert_eq!(std::fs::metadata(&file).expect("download").len(), DOWN);
    let got = sha256_file(&file);
    assert_eq!(got, pattern_sha256(DOWN));
    std::fs::remove_file(&file).expect("rm");

    let upload = env.root.path().join("up");
    {
        let mut f = std::fs::File::create(&upload).expect("create");
        let chunk = signet_tests::upstream::pattern_bytes(0, 1 << 20);
        let mut done = 0;
        while done < UP {
            // The pattern's period divides no chunk size evenly: write it by offset.
            let piece = signet_tests::upstream::pattern_bytes(done, chunk.len());
            f.write_all(&piece).expect("write");
            done += piece.len() as u64;
        }
    }
    let a = curl(
        &format!("{url}echo"),
        &[auth.clone(), "Content-Type: application/octet-stream".into()],
        &["--data-binary", &format!("@{}", upload.display())],
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let echo: serde_json::Value = serde_json::from_str(&a.body).expect("json");
    assert_eq!(echo["body_len"], UP);
    assert_eq!(echo["body_sha256"], pattern_sha256(UP));
    std::fs::remove_file(&upload).expect("rm");

    // Streamed, not held: the agent's peak memory stays far below the sizes.
    let pid = env.agent.as_ref().expect("agent").pid();
    let peak = peak_rss_kib(pid);
    assert!(peak > 0 && peak < 100 * 1024, "the agent peaked at {peak} KiB");

    // A Unix socket proxy: no Host guard (no web page reaches it), the key still.
    let sock = env.runtime_dir().join("api.sock");
    let p = start_proxy(&env, &["api.prod", "--unix", sock.to_str().expect("path")]);
    assert_eq!(s(&p, "unix"), sock.to_str().expect("path"));
    let key = s(&p, "key").to_string();
    let via = |auth: &str| {
        curl(
            "http://localhost/echo",
            &[format!("Authorization: Bearer {auth}")],
            &["--unix-socket", sock.to_str().expect("path")],
        )
    };
    assert_eq!(via(&key).status, 200);
    assert_eq!(via(&real).status, 401, "the real token is not the local key");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&sock).expect("socket").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Removing the token stops its proxies.
    env.signet(&["rm", "api.prod"]).ok();
    assert!(!exists(&sock), "the socket outlived its token");
    assert_eq!(env.signet(&["proxy", "--list", "--json"]).json(), serde_json::json!([]));
    assert!(server.requests().iter().all(|r| r.is_ok()));
}

/// The venv's python with python-libmaas and vastpy (`.ci/run` makes it
/// from tests/py-clients.txt), or `None` after a SKIP line.
fn py_clients() -> Option<PathBuf> {
    let dir = std::env::var_os("SIGNET_PY_CLIENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/py-clients"));
    let python = dir.join("bin/python");
    signet_tests::skip::require_or_skip(
        "python-libmaas and vastpy (the venv .ci/run makes in target/py-clients)",
        python.exists(),
    )
    .then_some(python)
}

#[test]
fn python_libmaas_works_through_exec_without_the_key() {
    let Some(python) = py_clients() else { return };
    let Some((env, maas)) = TestEnv::started_with_maas() else { return };
    let real = maas.add_token("libmaas");
    // Stored as `maas login` stores it, at the API root: the proxy's root is
    // still the MAAS URL, which python-libmaas appends `api/2.0/` to.
    env.add("maas.lab", "maas", &maas.api_url(), &real.api_key(), &[]);
    let script = r#"
import os
from maas.client import connect
assert ":" in os.environ["MAAS_KEY"]
client = connect(os.environ["MAAS_URL"], apikey=os.environ["MAAS_KEY"])
print("whoami", client.users.whoami().username)
creds = client.account.create_credentials()
print("created", creds.token_key)
client.account.delete_credentials(creds)
print("deleted")
print("environ", open("/proc/self/environ", "rb").read().decode(errors="replace"))
"#;
    let tokens_before = maas.tokens().len();
    let out = run(
        env.signet_command()
            .args(["exec", "maas.lab=MAAS", "--"])
            .arg(&python)
            .args(["-c", script]),
        b"",
    );
    assert_eq!(out.code(), 0, "{out:#?}\n{}", env.agent_log());
    assert!(out.stdout.contains(&format!("whoami {}", maas.user().username)), "{out:#?}");
    let created = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("created "))
        .expect("a token was created")
        .to_string();
    assert!(out.stdout.contains("deleted"), "{out:#?}");
    assert_eq!(maas.tokens().len(), tokens_before, "created, then deleted upstream");
    assert!(maas.token(&created).is_none());
    // Every call reached upstream signed with the real key, and nothing the
    // client saw held its secret.
    let authed: Vec<_> = maas.requests().into_iter().filter(|r| r.target.contains("op=")).collect();
    assert_eq!(authed.len(), 3, "{authed:#?}");
    for r in &authed {
        assert!(r.is_ok(), "{r:#?}");
        assert!(r.header("authorization").is_some_and(|a| a.contains(&real.consumer_key)));
    }
    assert!(!out.stdout.contains(&real.token_secret), "the real secret reached the client");
    assert!(!out.stdout.contains(&real.token_key));
}

#[test]
fn vastpy_lists_api_tokens_through_a_tls_proxy() {
    let Some(python) = py_clients() else { return };
    let Some(env) = TestEnv::started(Backend::Keyutils) else { return };
    let vms = signet_tests::upstream::VmsServer::start_tls();
    let real = vms.issue_token("admin", "proxy");
    let ca = vms.write_ca_pem(env.root.path());
    env.add(
        "vms.lab",
        "api-token",
        &vms.url(),
        &real.token(),
        &["--cacert", ca.to_str().expect("path")],
    );
    let script = r#"
import json, os, stat
from urllib.parse import urlparse
from vastpy import VASTClient
ca = os.environ["VMS_CA"]
assert stat.S_IMODE(os.stat(ca).st_mode) == 0o600, oct(os.stat(ca).st_mode)
url = urlparse(os.environ["VMS_URL"])
assert url.scheme == "https", url
client = VASTClient(address=url.netloc, token=os.environ["VMS_KEY"], cert_file=ca)
print(json.dumps(client.apitokens.get()))
"#;
    let out = run(
        env.signet_command()
            .args(["exec", "--tls", "vms.lab=VMS", "--"])
            .arg(&python)
            .args(["-c", script]),
        b"",
    );
    assert_eq!(out.code(), 0, "{out:#?}\n{}", env.agent_log());
    let listed: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("json");
    let ids: Vec<&str> =
        listed.as_array().expect("a list").iter().filter_map(|t| t["id"].as_str()).collect();
    assert!(ids.contains(&real.id.as_str()), "{listed}");
    assert!(!out.stdout.contains(&real.secret));
    // The certificate file dies with the proxy.
    let pem_files = || {
        std::fs::read_dir(env.runtime_dir().join("signet"))
            .expect("runtime dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".pem"))
            .count()
    };
    assert!(
        eventually(Duration::from_secs(20), || pem_files() == 0),
        "the CA file outlived its proxy"
    );
    assert!(
        vms.requests()
            .iter()
            .all(|r| r.header("authorization")
                == Some(format!("Api-Token {}", real.token()).as_str()))
    );
}

#[test]
fn oauthlib_hmac_signatures_are_verified_form_bodies_included() {
    let Some(python) = py_clients() else { return };
    let Some((env, maas)) = TestEnv::started_with_maas() else { return };
    let real = maas.add_token("hmac");
    // The token signs upstream with HMAC too: the form body is covered twice.
    env.add("m.hmac", "maas", &maas.api_url(), &real.api_key(), &["--signature", "hmac-sha1"]);
    // oauthlib, as requests-oauthlib drives it, signing with the local key.
    let script = r#"
import os, urllib.request, urllib.error
from oauthlib import oauth1
ck, tk, ts = os.environ["M_KEY"].split(":")
client = oauth1.Client(ck, client_secret="", resource_owner_key=tk,
                       resource_owner_secret=ts, signature_method=oauth1.SIGNATURE_HMAC)
base = os.environ["M_URL"] + "api/2.0/"
form = {"Content-Type": "application/x-www-form-urlencoded"}

def call(method, url, body=None, headers=None, send=None):
    uri, headers, body = client.sign(url, method, body, headers or {})
    data = (send if send is not None else body)
    req = urllib.request.Request(uri, data=data.encode() if data else None, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()

print("whoami", *call("GET", base + "users/?op=whoami"))
print("create", *call("POST", base + "account/?op=create_authorisation_token", "name=made-by-hmac", form))
print("tampered", *call("POST", base + "account/?op=create_authorisation_token", "name=a", form, send="name=b"))
"#;
    let out = run(
        env.signet_command().args(["exec", "m.hmac=M", "--"]).arg(&python).args(["-c", script]),
        b"",
    );
    assert_eq!(out.code(), 0, "{out:#?}\n{}", env.agent_log());
    let line = |what: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{what} ")))
            .unwrap_or_else(|| panic!("no {what}: {out:#?}"))
            .to_string()
    };
    assert!(line("whoami").starts_with("200 "), "{out:#?}");
    assert!(line("create").starts_with("200 "), "{out:#?}");
    assert!(line("tampered").starts_with("401 signet proxy: the signature is wrong"), "{out:#?}");
    assert!(maas.tokens().iter().any(|t| t.name == "made-by-hmac"), "the form reached upstream");
    assert!(!maas.tokens().iter().any(|t| t.name == "b" || t.name == "a"));
    for r in maas.requests().iter().filter(|r| r.target.contains("op=")) {
        assert!(r.is_ok(), "{r:#?}");
        assert!(r.header("authorization").is_some_and(|a| a.contains("HMAC-SHA1")), "{r:#?}");
    }
}

#[test]
fn every_proxied_request_is_in_the_audit_trail_without_its_query() {
    let Some((env, _server, real)) = bearer_world() else { return };
    let p = start_proxy(&env, &["api.prod"]);
    let (url, key) = (s(&p, "url"), s(&p, "key"));
    let ok = curl(
        &format!("{url}echo/audited?token=q-secret"),
        &[format!("Authorization: Bearer {key}")],
        &[],
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    let refused = curl(&format!("{url}echo/refused"), &["Authorization: Bearer wrong".into()], &[]);
    assert_eq!(refused.status, 401, "{}", refused.body);

    let out = env.signet(&["audit", "--token", "api.prod", "--json"]);
    assert_eq!(out.code(), 0, "{out:#?}");
    let records: Vec<serde_json::Value> =
        out.stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let proxied: Vec<_> = records.iter().filter(|r| r["action"] == "proxy").collect();
    assert_eq!(proxied.len(), 2, "{records:#?}");
    assert_eq!(proxied[0]["path"], "/echo/audited", "{records:#?}");
    assert_eq!(proxied[0]["status"], 200);
    assert_eq!(proxied[0]["outcome"], "ok");
    assert_eq!(proxied[1]["path"], "/echo/refused");
    assert_eq!(proxied[1]["status"], 401);
    assert_eq!(proxied[1]["outcome"], "refused");
    let trail = std::fs::read(env.data_dir().join("audit.jsonl")).expect("the trail");
    let trail = String::from_utf8_lossy(&trail);
    for secret in ["q-secret", real.as_str(), key] {
        assert!(!trail.contains(secret), "the trail holds {secret}");
    }
}
