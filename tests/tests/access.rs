//! Who may use a token, and when: lock and unlock, the idle lock, the lock
//! on session events (logind), lifetimes, and confirmation before a use.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use signet_tests::fake_logind::FakeLogind;
use signet_tests::memory::{copies_of_each, random_tag};
use signet_tests::skip::skip;
use signet_tests::upstream::{BearerLikeServer, ExpectedAuth};
use signet_tests::{Backend, TestEnv, eventually, wait_timeout};

/// A MAAS token signed with HMAC, whose header `signet sign` may return.
#[track_caller]
fn add_maas(env: &TestEnv, name: &str, secret: &str, extra: &[&str]) {
    let mut args = vec!["--signature", "hmac-sha1"];
    args.extend_from_slice(extra);
    env.add(name, "maas", "http://maas.example/MAAS/", secret, &args);
}

fn status(env: &TestEnv) -> serde_json::Value {
    env.signet(&["status", "--json"]).json()
}

fn lock(env: &TestEnv, passphrase: &str) {
    env.signet_in(&["lock"], format!("{passphrase}\n{passphrase}\n").as_bytes()).ok();
}

fn spawn_signet(env: &TestEnv, args: &[&str], stdin: &str) -> Child {
    use std::io::Write;
    let mut c = env
        .signet_command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn signet");
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    c
}

fn finished(mut c: Child) -> (i32, String) {
    let status = wait_timeout(&mut c, Duration::from_secs(120)).expect("signet did not finish");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut c.stderr.take().unwrap(), &mut err).unwrap();
    (status.code().unwrap_or(-1), err)
}

#[test]
fn lock_wipes_every_secret_refuses_all_but_list_and_unlock_needs_the_passphrase() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    let tag = random_tag();
    let maas_secret = format!("LockMaas{tag}");
    let bearer_secret = format!("LockBearer{tag}");
    let passphrase = format!("pass {tag}");
    let up = BearerLikeServer::start(ExpectedAuth::bearer(&bearer_secret));
    add_maas(&env, "m", &format!("ck:tk:{maas_secret}"), &[]);
    env.add("b", "bearer", &format!("{}/", up.origin()), &bearer_secret, &[]);
    env.signet(&["sign", "m", "GET", "api/2.0/users/"]).ok();
    env.signet(&["request", "b", "/x"]).ok();

    let pid = env.agent.as_ref().unwrap().pid();
    let root = nix::unistd::geteuid().is_root();
    if root {
        // The scan finds the secrets while they are in use (the cache).
        let before = copies_of_each(pid, &[maas_secret.as_bytes(), bearer_secret.as_bytes()]);
        assert!(before.iter().all(|n| *n >= 1), "the scan finds nothing at all: {before:?}");
    }

    lock(&env, &passphrase);
    let st = status(&env);
    assert_eq!((st["locked"].as_bool(), st["lock"].as_str()), (Some(true), Some("passphrase")));

    // Every use and every management request but list, status and unlock.
    for args in [
        &["sign", "m", "GET", "api/2.0/users/"][..],
        &["request", "b", "/x"],
        &["show", "m"],
        &["rm", "m"],
        &["rename", "m", "m2"],
        &["maas", "whoami", "m"],
    ] {
        let out = env.signet(args);
        let err = out.fails(5);
        assert!(err.contains("the agent is locked"), "{args:?}: {err}");
        assert!(err.contains("signet unlock"), "{args:?}: {err}");
    }
    let out = env.try_add("n", "bearer", "https://h/", "NewSecret", &[]);
    assert!(out.fails(5).contains("the agent is locked"));
    assert_eq!(env.signet(&["list", "--json"]).json().as_array().unwrap().len(), 2);
    let out = env.signet_in(&["lock"], b"other one\nother one\n");
    assert!(out.fails(5).contains("already locked"));

    if root {
        let needles = [maas_secret.as_bytes(), bearer_secret.as_bytes(), passphrase.as_bytes()];
        let mut left = Vec::new();
        let clean = eventually(Duration::from_secs(10), || {
            left = copies_of_each(pid, &needles);
            left.iter().all(|n| *n == 0)
        });
        assert!(clean, "copies left after lock (maas, bearer, passphrase): {left:?}");
    } else {
        skip("the memory scan after lock needs root to read the agent's memory");
    }

    // A wrong passphrase is refused, later each time; other clients are
    // served meanwhile.
    let began = Instant::now();
    let err = env.signet_in(&["unlock"], b"wrong\n").fails(5).to_string();
    assert!(err.contains("wrong passphrase (1 in a row"), "{err}");
    assert!(began.elapsed() >= Duration::from_secs(1), "no delay after a wrong passphrase");
    let began = Instant::now();
    env.signet_in(&["unlock"], b"wrong again\n").fails(5);
    assert!(began.elapsed() >= Duration::from_secs(2), "the delay does not grow");
    let mut third = spawn_signet(&env, &["unlock"], "still wrong\n");
    // The third waits 4 s; list and status answer at once meanwhile.
    std::thread::sleep(Duration::from_millis(300));
    env.signet(&["list"]).ok();
    assert_eq!(status(&env)["locked"], true);
    assert!(matches!(third.try_wait(), Ok(None)), "the wrong unlock answered before its delay");
    let (code, err) = finished(third);
    assert_eq!(code, 5, "{err}");

    env.signet_in(&["unlock"], format!("{passphrase}\n").as_bytes()).ok();
    assert_eq!(status(&env)["locked"], false);
    env.signet(&["sign", "m", "GET", "api/2.0/users/"]).ok();
    env.signet(&["request", "b", "/x"]).ok();
    assert!(env.signet(&["unlock"]).ok().is_empty());
}

#[test]
fn lock_refuses_mismatched_and_short_passphrases() {
    let Some(env) = TestEnv::started(Backend::Keyutils) else { return };
    let out = env.signet_in(&["lock"], b"one passphrase\nanother\n");
    assert!(out.fails(2).contains("differ"));
    let out = env.signet_in(&["lock"], b"abc\nabc\n");
    assert!(out.fails(2).contains("at least 4"));
    assert_eq!(status(&env)["locked"], false);
}

#[test]
fn idle_lock_locks_after_no_use_and_unlocks_without_a_passphrase() {
    let Some(mut env) = TestEnv::new(Backend::Keyutils) else { return };
    env.write_config("idle_lock_secs = 2\n");
    env.start_agent();
    add_maas(&env, "m", "ck:tk:IdleSecret", &[]);
    assert_eq!(status(&env)["idle_lock_secs"], 2);
    let locked =
        eventually(Duration::from_secs(30), || status(&env)["lock"].as_str() == Some("auto"));
    assert!(locked, "not locked after 2 s idle: {}", status(&env));
    assert!(env.signet(&["sign", "m", "GET", "x"]).fails(5).contains("the agent is locked"));
    assert!(env.agent_log().contains("agent locked: idle"));
    env.signet(&["unlock"]).ok();
    env.signet(&["sign", "m", "GET", "x"]).ok();
    // The clock starts over after an unlock, and locks again.
    let again =
        eventually(Duration::from_secs(30), || status(&env)["lock"].as_str() == Some("auto"));
    assert!(again, "not locked again after the unlock");
}

#[test]
fn a_zero_idle_lock_or_lifetime_is_refused_at_start() {
    let Some(env) = TestEnv::new(Backend::Keyutils) else { return };
    for bad in ["idle_lock_secs = 0\n", "lifetime_secs = 0\n", "confirm_timeout_secs = 0\n"] {
        env.write_config(bad);
        let out = signet_tests::run(env.agent_command().arg("-D"), b"");
        assert_ne!(out.code(), 0, "{bad}");
        let key = bad.split(' ').next().unwrap();
        assert!(out.stderr.contains(&format!("{key} must be at least 1")), "{out:#?}");
    }
}

/// The logind path, against a stand-in: no real logind runs where the
/// suite runs, and none could be made to lock a session on demand.
#[test]
fn session_lock_and_sleep_from_logind_lock_the_agent() {
    let Some(mut env) = TestEnv::new(Backend::Keyutils) else { return };
    let Some(mut logind) = signet_tests::skip::require_ok(
        "a private D-Bus with a fake logind",
        FakeLogind::start(env.root.path()),
    ) else {
        return;
    };
    env.agent_env.push(("DBUS_SYSTEM_BUS_ADDRESS".into(), logind.address.clone()));
    env.agent_env.push(("XDG_SESSION_ID".into(), "31".into()));
    env.start_agent();
    add_maas(&env, "m", "ck:tk:SessionSecret", &[]);
    let watching = eventually(Duration::from_secs(30), || {
        env.agent_log().contains("watching the login session for locks and sleep")
    });
    assert!(watching, "the agent did not subscribe: {}", env.agent_log());

    logind.lock_session();
    let locked = eventually(Duration::from_secs(30), || status(&env)["locked"] == true);
    assert!(locked, "a session Lock did not lock the agent: {}", env.agent_log());
    assert!(env.signet(&["sign", "m", "GET", "x"]).fails(5).contains("locked"));
    env.signet(&["unlock"]).ok();
    env.signet(&["sign", "m", "GET", "x"]).ok();

    logind.prepare_for_sleep();
    let locked = eventually(Duration::from_secs(30), || status(&env)["locked"] == true);
    assert!(locked, "PrepareForSleep(true) did not lock the agent: {}", env.agent_log());
    assert!(env.agent_log().contains("the machine is about to sleep"));
}

#[test]
fn a_lifetime_removes_the_token_from_index_and_keyring() {
    let Some(mut env) = TestEnv::new(Backend::SecretService) else { return };
    env.write_config("lifetime_secs = 86400\n");
    env.start_agent();
    env.add(
        "short",
        "bearer",
        "https://h/",
        "ShortLived",
        &["--lifetime", "3s", "--expires", "1d"],
    );
    env.add("default", "bearer", "https://h/", "DefaultLived", &[]);
    let list = env.signet(&["list", "--json"]).json();
    let short = &list.as_array().unwrap().iter().find(|t| t["name"] == "short").unwrap().clone();
    assert!(short["removes_at"].is_string() && short["expires"].is_string(), "{short}");
    assert_ne!(short["removes_at"], short["expires"]);
    let show = env.signet(&["show", "default", "--json"]).json();
    let created = signet_proto::expiry::parse_expiry(show["created"].as_str().unwrap()).unwrap();
    let removes = signet_proto::expiry::parse_expiry(show["removes_at"].as_str().unwrap()).unwrap();
    let (signet_proto::expiry::Expiry::At(c), signet_proto::expiry::Expiry::At(r)) =
        (created, removes)
    else {
        panic!("times expected: {show}")
    };
    assert_eq!(r - c, 86400, "the config's default lifetime");
    assert!(env.signet(&["show", "short"]).ok().contains("removed at:"));
    assert_eq!(env.keyring_items().len(), 2);

    let gone = eventually(Duration::from_secs(30), || {
        env.keyring_items().len() == 1
            && env.index()["tokens"].as_array().is_some_and(|t| t.len() == 1)
    });
    assert!(gone, "index {} keyring {}", env.index(), env.keyring_items().len());
    assert!(env.keyring_items().iter().all(|(_, s)| s != b"ShortLived"));
    assert_eq!(env.signet(&["show", "short"]).code(), 4);
    assert!(env.agent_log().contains("token removed: its lifetime ended"));
    let bad =
        env.try_add("x", "bearer", "https://h/", "S", &["--lifetime", "2030-01-01T00:00:00Z"]);
    assert!(bad.fails(2).contains("takes a duration"));
}

/// A scripted askpass: its answer is read from a file at each call, and
/// each call is logged with its environment's prompt kind and question.
struct Askpass {
    dir: PathBuf,
}

impl Askpass {
    fn new(dir: &Path) -> Askpass {
        let script = dir.join("askpass");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nd={}\nprintf '%s|%s\\n===\\n' \"$SSH_ASKPASS_PROMPT\" \"$1\" >> \"$d/asked\"\ncase \"$(cat \"$d/answer\")\" in\n  yes) exit 0 ;;\n  sleep) sleep 600 & echo $! > \"$d/sleeper\"; wait ;;\n  *) exit 1 ;;\nesac\n",
                dir.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let a = Askpass { dir: dir.to_path_buf() };
        a.answer("no");
        a
    }
    fn program(&self) -> String {
        self.dir.join("askpass").display().to_string()
    }
    fn answer(&self, a: &str) {
        std::fs::write(self.dir.join("answer"), a).unwrap();
    }
    fn asked(&self) -> String {
        std::fs::read_to_string(self.dir.join("asked")).unwrap_or_default()
    }
    fn calls(&self) -> usize {
        self.asked().matches("===").count()
    }
}

#[test]
fn confirm_asks_before_each_use_and_never_holds_up_other_clients() {
    let Some(mut env) = TestEnv::new(Backend::Keyutils) else { return };
    let askpass = Askpass::new(env.root.path());
    env.write_config("confirm_timeout_secs = 8\n");
    env.agent_env.push(("SIGNET_ASKPASS".into(), askpass.program()));
    env.start_agent();
    add_maas(&env, "c", "ck:tk:ConfirmSecret", &["--confirm"]);
    add_maas(&env, "p", "ck:tk:PlainSecret", &[]);
    assert_eq!(env.signet(&["show", "c", "--json"]).json()["confirm"], true);

    askpass.answer("yes");
    env.signet(&["sign", "c", "POST", "api/2.0/machines/?op=SECRETQUERY"]).ok();
    let asked = askpass.asked();
    assert!(asked.starts_with("confirm|Allow a use of the token `c`?"), "{asked}");
    assert!(asked.contains("POST http://maas.example/MAAS/api/2.0/machines/"), "{asked}");
    assert!(!asked.contains("SECRETQUERY"), "the question shows the query: {asked}");
    assert!(asked.contains("/signet (pid "), "the program is not named: {asked}");
    assert!(asked.contains("Command: "), "{asked}");
    assert!(
        asked.contains("sign c POST api/2.0/machines/?…"),
        "the command line is not shown: {asked}"
    );

    askpass.answer("no");
    let out = env.signet(&["sign", "c", "GET", "x"]);
    assert!(out.fails(5).contains("was not confirmed"), "{out:#?}");
    assert!(out.stderr.contains("signet: "), "{out:#?}");
    // Token management through the token is a use too.
    let out = env.signet(&["maas", "whoami", "c"]);
    assert!(out.fails(5).contains("was not confirmed"), "{out:#?}");
    assert!(askpass.asked().contains("Request: (token management) http://maas.example/MAAS/"));
    // A token without --confirm never asks.
    let calls = askpass.calls();
    env.signet(&["sign", "p", "GET", "x"]).ok();
    assert_eq!(askpass.calls(), calls);

    // An unanswered question: the other token's client is served while it
    // is open; then it times out as a no and the askpass is killed.
    askpass.answer("sleep");
    let pending = spawn_signet(&env, &["sign", "c", "GET", "x"], "");
    assert!(eventually(Duration::from_secs(30), || askpass.calls() == calls + 1));
    env.signet(&["sign", "p", "GET", "x"]).ok();
    env.signet(&["list"]).ok();
    let mut pending = pending;
    assert!(matches!(pending.try_wait(), Ok(None)), "the question was answered meanwhile");
    let (code, err) = finished(pending);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("not confirmed within 8 s"), "{err}");
    let sleeper: i32 =
        std::fs::read_to_string(env.root.path().join("sleeper")).unwrap().trim().parse().unwrap();
    let killed = eventually(Duration::from_secs(10), || {
        !Path::new(&format!("/proc/{sleeper}")).exists()
            || std::fs::read_to_string(format!("/proc/{sleeper}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
    assert!(killed, "the askpass's child still runs after the timeout");
}

#[test]
fn confirm_for_remembers_a_yes_for_the_same_program_only_and_no_askpass_is_a_no() {
    let Some(mut env) = TestEnv::new(Backend::Keyutils) else { return };
    let askpass = Askpass::new(env.root.path());
    env.agent_env.push(("SIGNET_ASKPASS".into(), askpass.program()));
    env.start_agent();
    add_maas(&env, "r", "ck:tk:RememberSecret", &["--confirm-for", "1h"]);
    let show = env.signet(&["show", "r", "--json"]).json();
    assert_eq!(
        (show["confirm"].as_bool(), show["confirm_for_secs"].as_u64()),
        (Some(true), Some(3600))
    );
    askpass.answer("yes");
    env.signet(&["sign", "r", "GET", "x"]).ok();
    assert_eq!(askpass.calls(), 1);
    askpass.answer("no");
    // The same program (signet) again: remembered.
    env.signet(&["sign", "r", "GET", "y"]).ok();
    assert_eq!(askpass.calls(), 1);
    // Another program (the same client at another path): asked, refused.
    let other = env.root.path().join("other-signet");
    std::fs::copy(signet_tests::bin("signet"), &other).unwrap();
    let mut c = std::process::Command::new(&other);
    c.env_clear().envs(env.base_env()).env("SIGNET_AUTH_SOCK", env.socket());
    let out = signet_tests::run(c.args(["sign", "r", "GET", "x"]), b"");
    out.fails(5);
    assert_eq!(askpass.calls(), 2);
    assert!(askpass.asked().contains("other-signet"), "{}", askpass.asked());
    // A lock forgets every remembered yes.
    lock(&env, "forget them");
    env.signet_in(&["unlock"], b"forget them\n").ok();
    env.signet(&["sign", "r", "GET", "x"]).fails(5);
    assert_eq!(askpass.calls(), 3);

    // Without any askpass program, a confirmed token cannot be used.
    let Some(mut bare) = TestEnv::new(Backend::Keyutils) else { return };
    bare.start_agent();
    add_maas(&bare, "c", "ck:tk:NoAskpass", &["--confirm"]);
    let out = bare.signet(&["sign", "c", "GET", "x"]);
    let err = out.fails(5);
    assert!(err.contains("no askpass program is set") && err.contains("SIGNET_ASKPASS"), "{err}");
}
