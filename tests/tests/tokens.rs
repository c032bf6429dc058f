//! Every token command end to end: real agent, real Secret Service or
//! kernel keyring, real `signet` processes. And the token state that
//! `sign` and `request` read and write: expiry, and the use counts.

use std::time::Duration;

use signet_tests::upstream::{BearerLikeServer, ExpectedAuth};
use signet_tests::{Backend, TestEnv, eventually};

const MAAS_URL: &str = "http://maas.example:5240/MAAS/";

#[test]
fn add_list_show_rename_rm_with_the_secret_only_in_the_keyring() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    let secret = "ConsumerKeyAAA:TokenKeyBBB:TokenSecretCCC";
    let out = env.try_add("m1", "maas", MAAS_URL, secret, &[]);
    out.ok();
    assert!(!out.stdout.contains("TokenSecretCCC") && !out.stderr.contains("TokenSecretCCC"));

    let list = env.signet(&["list", "--json"]).json();
    let items = list.as_array().expect("array");
    assert_eq!(items.len(), 1);
    let m1 = &items[0];
    let mut keys: Vec<&str> = m1.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "comment",
            "confirm",
            "confirm_for_secs",
            "created",
            "expired",
            "expires",
            "exportable",
            "kind",
            "last_used",
            "name",
            "owner",
            "removes_at",
            "url",
            "use_count"
        ]
    );
    assert_eq!(m1["name"], "m1");
    assert_eq!(m1["kind"], "maas");
    assert_eq!(m1["url"], MAAS_URL);
    assert_eq!(m1["expired"], false);
    assert_eq!(m1["exportable"], false);
    assert!(!list.to_string().contains("TokenSecretCCC"));

    // The secret is in the Secret Service, under this agent's service, and
    // in no file of the data directory.
    let items = env.keyring_items();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].1, secret.as_bytes());
    for (path, bytes) in env.data_files() {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("TokenSecretCCC"), "secret found in {}", path.display());
    }

    // The human table and show.
    let table = env.signet(&["list"]).ok().to_string();
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("m1") && table.contains(MAAS_URL), "{table}");
    let show = env.signet(&["show", "m1"]).ok().to_string();
    assert!(show.contains("token key:") && show.contains("TokenKeyBBB"), "{show}");
    assert!(!show.contains("TokenSecretCCC"), "{show}");

    // Rename keeps the very same keyring item.
    let id_before = items[0].0.clone();
    env.signet(&["rename", "m1", "m2"]).ok();
    env.signet(&["show", "m1"]).fails(4);
    assert_eq!(env.signet(&["show", "m2", "--json"]).json()["name"], "m2");
    let items = env.keyring_items();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].0, id_before, "rename must not touch the secret");

    // rm removes both.
    env.signet(&["rm", "m2"]).ok();
    assert_eq!(env.signet(&["list", "--json"]).json(), serde_json::json!([]));
    assert!(env.keyring_items().is_empty(), "keyring item left behind");
}

#[test]
fn tokens_survive_an_agent_restart_in_the_secret_service() {
    let Some(mut env) = TestEnv::started(Backend::SecretService) else { return };
    env.add("m1", "maas", MAAS_URL, "ck:tk:ts", &["--comment", "prod"]);
    env.add(
        "v1",
        "api-token",
        "https://vms.example/",
        "Ab12Cd34.secretpart",
        &["--expires", "180D"],
    );
    env.signet(&["rename", "m1", "m2"]).ok();
    let before = env.signet(&["list", "--json"]).json();
    assert_eq!(env.stop_agent().code(), Some(0));
    assert!(!env.socket().exists(), "socket left behind after SIGTERM");
    env.start_agent();
    let after = env.signet(&["list", "--json"]).json();
    assert_eq!(before, after);
    assert_eq!(after[0]["name"], "m2");
    assert_eq!(after[0]["comment"], "prod");
    assert!(after[1]["expires"].is_string());
    assert_eq!(env.keyring_items().len(), 2);
    env.signet(&["rm", "m2", "v1"]).ok();
    assert!(env.keyring_items().is_empty());
}

#[test]
fn the_kernel_keyring_works_too() {
    let Some(mut env) = TestEnv::started(Backend::Keyutils) else { return };
    let st = env.signet(&["status", "--json"]).json();
    assert_eq!(st["store"], "keyutils");
    env.add("b1", "bearer", "https://api.example/", "tok-123", &[]);
    env.add("h1", "header", "https://api.example/", "v a l", &["--header-name", "X-Api-Key"]);
    assert_eq!(env.signet(&["list", "--json"]).json().as_array().unwrap().len(), 2);
    env.signet(&["rename", "b1", "b2"]).ok();
    env.signet(&["rm", "h1"]).ok();
    env.restart_agent();
    let l = env.signet(&["list", "--json"]).json();
    assert_eq!(l.as_array().unwrap().len(), 1);
    assert_eq!(l[0]["name"], "b2");
    for (path, bytes) in env.data_files() {
        assert!(!String::from_utf8_lossy(&bytes).contains("tok-123"), "{}", path.display());
    }
}

#[test]
fn every_kind_is_accepted_with_its_settings() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    env.add("k-maas", "maas", MAAS_URL, "a:b:c", &["--signature", "hmac-sha1"]);
    env.add(
        "k-oauth1",
        "oauth1",
        "https://api.example/",
        "cs\nts",
        &["--consumer-key", "ck", "--token-key", "tk"],
    );
    env.add(
        "k-vms",
        "api-token",
        "https://vms.example/",
        "Ab12Cd34.s3cret",
        &["--tenant", "t1", "--exportable"],
    );
    env.add("k-bearer", "bearer", "https://api.example/", "tok", &[]);
    env.add("k-basic", "basic", "https://api.example/", "pass word", &["--username", "alice"]);
    env.add("k-header", "header", "https://api.example/", "v", &["--header-name", "X-Api-Key"]);
    let l = env.signet(&["list", "--json"]).json();
    let kinds: Vec<&str> =
        l.as_array().unwrap().iter().map(|t| t["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["basic", "bearer", "header", "maas", "oauth1", "api-token"]);
    let d = env.signet(&["show", "k-maas", "--json"]).json();
    assert_eq!(d["signature"], "hmac-sha1");
    assert_eq!(d["consumer_key"], "a");
    let d = env.signet(&["show", "k-vms", "--json"]).json();
    assert_eq!(d["tenant"], "t1");
    assert_eq!(d["exportable"], true);
    let d = env.signet(&["show", "k-oauth1", "--json"]).json();
    assert_eq!(d["signature"], "hmac-sha1");
    assert_eq!(d["token_key"], "tk");
    assert_eq!(env.keyring_items().len(), 6);
    let oauth = env.keyring_items().into_iter().find(|(_, s)| s.starts_with(b"cs")).unwrap();
    assert_eq!(oauth.1, b"cs\nts");
}

#[test]
fn malformed_secrets_are_refused_with_the_expected_shape_and_never_echoed() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    let cases: &[(&str, &[u8], &str)] = &[
        ("maas", b":tk:ts\n", "consumer_key:token_key:token_secret"),
        ("maas", b"ck:tk:\n", "consumer_key:token_key:token_secret"),
        ("maas", b"ck::Sekrit\n", "consumer_key:token_key:token_secret"),
        ("maas", b"ck:tk:Sekrit:x\n", "consumer_key:token_key:token_secret"),
        ("maas", b"\n", "consumer_key:token_key:token_secret"),
        ("api-token", b"noDotSekrit\n", "<id>.<secret>"),
        ("bearer", b"two Sekrit\n", "without whitespace"),
        ("bearer", b"line1\nSekrit\n", "one line"),
    ];
    for (kind, stdin, shape) in cases {
        let out = env.signet_in(
            &["add", "bad", "--kind", kind, "--url", "http://maas.example/MAAS/"],
            stdin,
        );
        let err = out.fails(2);
        assert!(err.contains(shape), "{kind} {stdin:?}: {err}");
        assert!(!err.contains("Sekrit"), "secret echoed: {err}");
    }
    assert_eq!(env.signet(&["list", "--json"]).json(), serde_json::json!([]));
    assert!(env.keyring_items().is_empty());
}

#[test]
fn expiry_is_stored_shown_and_listed_as_expired() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    env.add("soon", "bearer", "https://h/", "t", &["--expires", "1s"]);
    env.add("later", "bearer", "https://h/", "t", &["--expires", "1Y"]);
    env.add("at", "bearer", "https://h/", "t", &["--expires", "2099-01-31T00:00:00Z"]);
    let l = env.signet(&["show", "at", "--json"]).json();
    assert_eq!(l["expires"], "2099-01-31T00:00:00Z");
    let later = env.signet(&["show", "later", "--json"]).json();
    let created = later["created"].as_str().unwrap().to_string();
    let expires = later["expires"].as_str().unwrap().to_string();
    assert!(
        expires[..4].parse::<i32>().unwrap() == created[..4].parse::<i32>().unwrap() + 1,
        "{created} {expires}"
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let soon = env.signet(&["show", "soon", "--json"]).json();
    assert_eq!(soon["expired"], true);
    assert_eq!(later["expired"], false);
    let table = env.signet(&["list"]).ok().to_string();
    assert!(table.lines().any(|l| l.starts_with("soon") && l.contains("expired")), "{table}");
}

#[test]
fn the_token_limit_names_itself_and_how_to_raise_it() {
    let Some(mut env) = TestEnv::new(Backend::SecretService) else { return };
    env.write_config("max_tokens_per_owner = 2\n");
    env.start_agent();
    env.add("a", "bearer", "https://h/", "t", &[]);
    env.add("b", "bearer", "https://h/", "t", &[]);
    let err = env.try_add("c", "bearer", "https://h/", "t", &[]).fails(5).to_string();
    assert!(err.contains("at most 2"), "{err}");
    assert!(err.contains("max_tokens_per_owner"), "{err}");
    env.signet(&["rm", "a"]).ok();
    env.add("c", "bearer", "https://h/", "t", &[]);
    assert_eq!(env.signet(&["status", "--json"]).json()["max_tokens_per_owner"], 2);
}

#[test]
fn a_locked_keyring_is_a_store_failure_and_loses_nothing() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    env.add("a", "bearer", "https://h/", "t", &[]);
    env.session.as_ref().unwrap().lock().expect("lock the collection");
    let out = env.try_add("b", "bearer", "https://h/", "t", &[]);
    let err = out.fails(6).to_string();
    assert!(err.contains("keyring"), "{err}");
    // Nothing half-added, the old token still listed, the agent alive.
    let names: Vec<String> = env
        .signet(&["list", "--json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["a"]);
    let idx = env.index();
    assert_eq!(idx["tokens"].as_array().unwrap().len(), 1, "{idx}");
}

// ---------------------------------------------------------------------------
// State that sign and request use
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
