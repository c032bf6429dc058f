//! The audit trail: a line for each use and management action with the
//! right fields and never a secret or a query string, 0600, rotated at its
//! size limit, a torn last line skipped after kill -9, and `signet audit`
//! filtering by token and time.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use signet_client::Client;
use signet_tests::upstream::{BearerLikeServer, ExpectedAuth};
use signet_tests::{Backend, TestEnv};

const SECRET: &str = "Zq7-audit-secret-tok-5521";
const QUERY: &str = "QueryValue0xA11CE";

fn trail(env: &TestEnv) -> PathBuf {
    env.data_dir().join("audit.jsonl")
}

/// `signet audit --json ARGS`, one object per line.
fn audit(env: &TestEnv, args: &[&str]) -> Vec<serde_json::Value> {
    let mut full = vec!["audit", "--json"];
    full.extend_from_slice(args);
    let out = env.signet(&full);
    out.ok()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn actions(records: &[serde_json::Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| format!("{}:{}", r["action"].as_str().unwrap(), r["outcome"].as_str().unwrap()))
        .collect()
}

#[test]
fn each_action_is_recorded_with_its_fields_and_no_secret_or_query() {
    let Some(env) = TestEnv::started(Backend::Keyutils) else { return };
    let server = BearerLikeServer::start(ExpectedAuth::bearer(SECRET));
    env.add("b", "bearer", &server.url(), SECRET, &["--exportable"]);
    env.sign_line(&["b", &format!("echo/signed?apikey={QUERY}#frag")]);
    env.signet(&["request", "b", &format!("echo/performed?q={QUERY}")]).ok();
    env.signet(&["sign", "b", "POST", &format!("{}elsewhere?x={QUERY}", "http://203.0.113.9/")])
        .fails(5);
    env.signet(&["rename", "b", "c"]).ok();
    env.signet(&["sign", "nope", "/"]).fails(4);
    env.signet(&["rm", "c"]).ok();
    // Reads are not recorded.
    env.signet(&["list"]).ok();
    env.signet(&["status"]).ok();

    let recs = audit(&env, &[]);
    assert_eq!(
        actions(&recs),
        [
            "add:ok",
            "sign:ok",
            "request:ok",
            "sign:policy",
            "rename:ok",
            "sign:no-such-token",
            "rm:ok"
        ],
        "{recs:#?}"
    );
    let me = nix::unistd::getuid().as_raw();
    for r in &recs {
        assert_eq!(r["uid"], me, "{r}");
        assert!(r["pid"].as_i64().unwrap() > 0, "{r}");
        assert!(r["exe"].as_str().unwrap().ends_with("/signet"), "{r}");
        assert_eq!(r["socket"], "main", "{r}");
        let t = r["time"].as_str().unwrap();
        assert!(t.len() == 27 && t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
    let origin = server.origin();
    assert_eq!(recs[0]["token"], "b");
    assert_eq!(recs[0]["exit"], 0);
    assert_eq!(recs[1]["method"], "GET");
    assert_eq!(recs[1]["origin"], origin.as_str());
    assert_eq!(recs[1]["path"], "/echo/signed");
    assert_eq!(recs[2]["path"], "/echo/performed");
    assert_eq!(recs[2]["status"], 200);
    assert_eq!(recs[3]["method"], "POST");
    assert_eq!(recs[3]["origin"], "http://203.0.113.9");
    assert_eq!(recs[3]["exit"], 5);
    assert_eq!(recs[4]["token"], "b");
    assert_eq!(recs[4]["new_name"], "c");
    assert_eq!(recs[5]["exit"], 4);
    assert_eq!(recs[6]["token"], "c");

    // The file itself: 0600, one JSON object per line, and neither the
    // secret nor a query value anywhere in it.
    let path = trail(&env);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let bytes = std::fs::read(&path).unwrap();
    for needle in [SECRET.as_bytes(), QUERY.as_bytes(), b"frag", b"Bearer"] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{:?} in the trail",
            String::from_utf8_lossy(needle)
        );
    }
    assert!(bytes.ends_with(b"\n"));
    assert_eq!(String::from_utf8(bytes).unwrap().lines().count(), recs.len());

    // --token: only that token's records (the rename is recorded under the
    // old name).
    assert_eq!(actions(&audit(&env, &["--token", "c"])), ["rm:ok"]);
    assert_eq!(audit(&env, &["--token", "b"]).len(), 5);

    // --since: a time after the last record so far, then one more use.
    let last = recs[6]["time"].as_str().unwrap();
    let cut = time::OffsetDateTime::parse(last, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .replace_nanosecond(0)
        .unwrap()
        + time::Duration::seconds(2);
    std::thread::sleep(Duration::from_millis(4200));
    env.signet(&["sign", "gone", "/"]).fails(4);
    let cut = cut.format(&time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(actions(&audit(&env, &["--since", &cut])), ["sign:no-such-token"]);
    assert_eq!(audit(&env, &["--since", "1h"]).len(), 8);

    // The table for people names the columns; bad input is a usage error.
    let table = env.signet(&["audit", "--token", "c"]);
    assert!(table.ok().starts_with("TIME (UTC)"), "{table:?}");
    assert!(env.signet(&["audit", "--since", "soon"]).fails(2).contains("--since"));
}

#[test]
fn rotation_keeps_the_newest_files_and_a_torn_line_is_skipped_after_kill() {
    let Some(mut env) = TestEnv::new(Backend::Keyutils) else { return };
    env.write_config("audit_max_bytes = 4096\naudit_keep = 2\n");
    env.start_agent();
    let server = BearerLikeServer::start(ExpectedAuth::bearer(SECRET));
    env.add("b", "bearer", &server.url(), SECRET, &["--exportable"]);
    let mut c = Client::connect(Some(&env.socket())).unwrap();
    let n = 60;
    for i in 0..n {
        c.sign("b", "GET", &format!("echo/{i}"), &[]).unwrap();
    }
    drop(c);
    let recs = audit(&env, &[]);
    let path = trail(&env);
    let rotated = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
    for p in [path.clone(), rotated(1), rotated(2)] {
        let len = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).len();
        assert!(len > 0 && len <= 4096, "{}: {len} bytes", p.display());
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
    assert!(!rotated(3).exists(), "only audit_keep rotated files are kept");
    // The oldest lines are gone, the newest are all there, in order.
    assert!(recs.len() < n + 1, "{}", recs.len());
    let paths: Vec<&str> = recs.iter().map(|r| r["path"].as_str().unwrap()).collect();
    let tail: Vec<String> = (n - 10..n).map(|i| format!("/echo/{i}")).collect();
    assert_eq!(&paths[paths.len() - 10..], tail.as_slice());

    // kill -9, then half a line at the end, as a write cut short leaves it.
    env.kill_agent();
    let before = std::fs::read(&path).unwrap();
    let torn = br#"{"time":"2026-01-01T00:00:00.000000Z","action":"sign","token":"torn"#;
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    std::io::Write::write_all(&mut f, torn).unwrap();
    drop(f);
    env.start_agent();
    env.signet(&["rm", "b"]).ok();
    let recs = audit(&env, &[]);
    assert_eq!(recs.last().unwrap()["action"], "rm", "{:#?}", recs.last());
    assert!(recs.iter().all(|r| r["token"] != "torn"), "the torn line was read");
    // The torn line's file may have been rotated by the next record.
    let (mut after, current) = (std::fs::read(&path).unwrap(), std::fs::read(&path).unwrap());
    if !after.starts_with(&before) {
        after = std::fs::read(rotated(1)).unwrap();
        after.extend_from_slice(&current);
    }
    let mut expect = before.clone();
    expect.extend_from_slice(torn);
    expect.push(b'\n');
    assert!(after.starts_with(&expect), "the torn line was not ended before the next record");
    let rest = std::str::from_utf8(&after[expect.len()..]).unwrap();
    let line: serde_json::Value = serde_json::from_str(rest.lines().next().unwrap()).unwrap();
    assert_eq!(line["action"], "rm");
}

#[test]
fn an_open_trail_file_is_refused_and_audit_false_writes_none() {
    let Some(mut env) = TestEnv::new(Backend::Keyutils) else { return };
    std::fs::create_dir_all(env.data_dir()).unwrap();
    std::fs::set_permissions(env.data_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(trail(&env), b"").unwrap();
    std::fs::set_permissions(trail(&env), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = signet_tests::process::run(env.agent_command().arg("-D"), b"");
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stderr.contains("chmod 600"), "{out:?}");

    std::fs::remove_file(trail(&env)).unwrap();
    env.write_config("audit = false\n");
    env.start_agent();
    env.add("b", "bearer", "http://127.0.0.1:9/", SECRET, &[]);
    assert!(!trail(&env).exists());
    let err = env.signet(&["audit"]).fails(5).to_string();
    assert!(err.contains("audit trail is off") && err.contains("audit = true"), "{err}");
}
