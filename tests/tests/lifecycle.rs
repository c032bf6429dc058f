//! Token lifecycle through the APIs: MAAS and VMS test servers that check
//! every call's credentials as the real servers do.

use signet_tests::upstream::{MaasServer, VmsServer};
use signet_tests::{Backend, TestEnv};

fn whoami_ok(env: &TestEnv, name: &str) -> serde_json::Value {
    env.signet(&["maas", "whoami", name, "--json"]).json()
}

#[test]
fn maas_login_with_a_key_is_verified_before_it_is_stored() {
    let Some((env, maas)) = TestEnv::started_with_maas() else { return };
    let tok = maas.add_token("cli");
    let out = env
        .signet_in(&["maas", "login", "m", &maas.url()], format!("{}\n", tok.api_key()).as_bytes());
    out.ok();
    assert!(!out.stdout.contains(&tok.token_secret) && !out.stderr.contains(&tok.token_secret));
    let show = env.signet(&["show", "m", "--json"]).json();
    assert_eq!(show["url"], maas.api_url());
    assert_eq!(show["token_key"], tok.token_key.as_str());
    let me = whoami_ok(&env, "m");
    assert_eq!(me["username"], maas.user().username);
    assert_eq!(me["email"], maas.user().email);
    assert_eq!(me["is_superuser"], true);

    // A wrong key: the server says 401, exit 5, nothing stored.
    let bad = format!("{}:{}:wrongsecret", tok.consumer_key, tok.token_key);
    env.signet_in(&["maas", "login", "bad", &maas.url()], format!("{bad}\n").as_bytes()).fails(5);
    env.signet(&["show", "bad"]).fails(4);
    // --no-verify stores it unchecked.
    env.signet_in(
        &["maas", "login", "unchecked", &maas.url(), "--no-verify"],
        format!("{bad}\n").as_bytes(),
    )
    .ok();
    env.signet(&["maas", "whoami", "unchecked"]).fails(5);
    // A malformed key never reaches the server.
    let n = maas.requests().len();
    env.signet_in(&["maas", "login", "x", &maas.url()], b"a::b\n").fails(2);
    assert_eq!(maas.requests().len(), n);
}

#[test]
fn maas_login_with_a_password_never_shows_the_key() {
    let Some((env, maas)) = TestEnv::started_with_maas() else { return };
    let user = maas.user();
    let out = env.signet_in(
        &["maas", "login", "pw", &maas.url(), "--username", &user.username],
        format!("{}\n", user.password).as_bytes(),
    );
    out.ok();
    let minted = maas.tokens();
    assert_eq!(minted.len(), 1, "the server minted one token");
    assert!(
        !out.stdout.contains(&minted[0].token_secret)
            && !out.stderr.contains(&minted[0].token_secret)
    );
    assert_eq!(whoami_ok(&env, "pw")["username"], user.username);
    // A wrong password: 403 from the server, exit 5, nothing stored.
    let out = env
        .signet_in(&["maas", "login", "pw2", &maas.url(), "--username", &user.username], b"nope\n");
    assert!(out.fails(5).contains("refused"), "{out:#?}");
    env.signet(&["show", "pw2"]).fails(4);
}

#[test]
fn maas_tokens_lists_names_and_keys_never_secrets() {
    let Some((env, maas)) = TestEnv::started_with_maas() else { return };
    let tok = maas.add_token("cli");
    let other = maas.add_token("ci");
    env.add("m", "maas", &maas.api_url(), &tok.api_key(), &[]);
    let out = env.signet(&["maas", "tokens", "m", "--json"]);
    let list = out.json();
    let arr = list.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert!(arr.iter().any(|t| t["token_key"] == tok.token_key.as_str()
        && t["name"] == "cli"
        && t["current"] == true));
    assert!(arr.iter().any(|t| t["token_key"] == other.token_key.as_str() && t["name"] == "ci"));
    let text = env.signet(&["maas", "tokens", "m"]);
    for s in [&tok.token_secret, &other.token_secret] {
        assert!(
            !out.stdout.contains(s.as_str()) && !text.stdout.contains(s.as_str()),
            "a secret was printed"
        );
        assert!(!env.agent_log().contains(s.as_str()), "a secret was logged");
    }
}

#[test]
fn maas_create_token_goes_straight_into_the_keyring() {
    let Some((env, maas)) = TestEnv::started_with_maas() else { return };
    let tok = maas.add_token("cli");
    env.add("m", "maas", &maas.api_url(), &tok.api_key(), &[]);
    let out = env.signet(&["maas", "create-token", "m", "m2", "--token-name", "for-ci"]);
    out.ok();
    assert_eq!(out.stdout, "", "the key must not be printed without --show");
    let minted =
        maas.tokens().into_iter().find(|t| t.name == "for-ci").expect("minted on the server");
    assert_eq!(
        env.signet(&["show", "m2", "--json"]).json()["token_key"],
        minted.token_key.as_str()
    );
    assert_eq!(whoami_ok(&env, "m2")["username"], maas.user().username);
    // --show prints it once; the default server name is MAAS's.
    let out = env.signet(&["maas", "create-token", "m", "m3", "--show"]);
    let shown = out.ok().trim().to_string();
    let minted = maas
        .tokens()
        .into_iter()
        .find(|t| t.api_key() == shown)
        .expect("shown key is the minted one");
    assert_eq!(minted.name, "MAAS consumer");
}

#[test]
fn maas_create_token_that_cannot_be_stored_is_taken_back() {
    let Some(mut env) = TestEnv::new(Backend::SecretService) else { return };
    env.write_config("max_tokens_per_owner = 1\n");
    env.start_agent();
    let maas = MaasServer::start();
    let tok = maas.add_token("cli");
    env.add("m", "maas", &maas.api_url(), &tok.api_key(), &[]);
    let err = env.signet(&["maas", "create-token", "m", "m2"]).fails(5).to_string();
    assert!(err.contains("limit"), "{err}");
    assert_eq!(maas.tokens().len(), 1, "the minted token was left dangling: {:?}", maas.tokens());
}

#[test]
fn maas_delete_and_rename_server_tokens() {
    let Some((env, maas)) = TestEnv::started_with_maas() else { return };
    let tok = maas.add_token("cli");
    let other = maas.add_token("old-name");
    env.add("m", "maas", &maas.api_url(), &tok.api_key(), &[]);
    env.signet(&["maas", "rename-token", "m", &other.token_key, "new-name"]).ok();
    assert_eq!(maas.token(&other.token_key).unwrap().name, "new-name");
    env.signet(&["maas", "delete-token", "m", &other.token_key]).ok();
    assert!(maas.token(&other.token_key).is_none());
    env.signet(&["maas", "delete-token", "m", "nosuchkey"]).fails(4);
    // Its own token: refused without --force, then removed here too.
    let err = env.signet(&["maas", "delete-token", "m", &tok.token_key]).fails(5).to_string();
    assert!(err.contains("--force"), "{err}");
    assert!(maas.token(&tok.token_key).is_some());
    env.signet(&["maas", "delete-token", "m", &tok.token_key, "--force"]).ok();
    assert!(maas.token(&tok.token_key).is_none());
    env.signet(&["show", "m"]).fails(4);
    assert!(env.keyring_items().is_empty());
}

#[test]
fn maas_rotate_swaps_in_a_new_key_and_deletes_the_old() {
    let Some((env, maas)) = TestEnv::started_with_maas() else { return };
    let tok = maas.add_token("laptop");
    env.add("m", "maas", &maas.api_url(), &tok.api_key(), &["--comment", "kept"]);
    let out = env.signet(&["rotate", "m"]);
    out.ok();
    let tokens = maas.tokens();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_ne!(tokens[0].token_key, tok.token_key);
    assert_eq!(tokens[0].name, "laptop", "the new token keeps the old one's name");
    let show = env.signet(&["show", "m", "--json"]).json();
    assert_eq!(show["token_key"], tokens[0].token_key.as_str());
    assert_eq!(show["comment"], "kept");
    assert_eq!(whoami_ok(&env, "m")["username"], maas.user().username);
    let items = env.keyring_items();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].1, tokens[0].api_key().as_bytes());
    assert!(
        !out.stdout.contains(&tokens[0].token_secret)
            && !out.stderr.contains(&tokens[0].token_secret)
    );
}

#[test]
fn maas_rotate_failures_leave_a_working_token() {
    let Some((env, maas)) = TestEnv::started_with_maas() else { return };
    let tok = maas.add_token("laptop");
    env.add("m", "maas", &maas.api_url(), &tok.api_key(), &[]);

    // Mint fails: nothing changes.
    maas.fail_next("create_authorisation_token", 500);
    env.signet(&["rotate", "m"]).fails(1);
    assert_eq!(maas.tokens().len(), 1);
    assert_eq!(env.signet(&["show", "m", "--json"]).json()["token_key"], tok.token_key.as_str());
    whoami_ok(&env, "m");

    // Verify fails: the new server token is deleted, the old kept.
    maas.fail_next("whoami", 401);
    env.signet(&["rotate", "m"]).fails(5);
    assert_eq!(maas.tokens().len(), 1, "{:?}", maas.tokens());
    assert_eq!(maas.tokens()[0].token_key, tok.token_key);
    whoami_ok(&env, "m");

    // Deleting the old fails: rotated anyway, with a warning naming it.
    maas.fail_next("delete_authorisation_token", 500);
    let out = env.signet(&["rotate", "m"]);
    out.ok();
    assert!(out.stderr.contains("warning") && out.stderr.contains(&tok.token_key), "{out:#?}");
    assert_eq!(maas.tokens().len(), 2, "the old token remains, as the warning says");
    let current =
        env.signet(&["show", "m", "--json"]).json()["token_key"].as_str().unwrap().to_string();
    assert_ne!(current, tok.token_key);
    whoami_ok(&env, "m");
}

#[test]
fn maas_rotate_killed_at_any_instant_leaves_a_working_token() {
    let Some((mut env, maas)) = TestEnv::started_with_maas() else { return };
    let tok = maas.add_token("laptop");
    env.add("m", "maas", &maas.api_url(), &tok.api_key(), &[]);
    for round in 0..8u64 {
        let mut rotate = env.signet_command();
        let rotating = std::thread::spawn(move || {
            let _ = rotate
                .args(["rotate", "m"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        });
        std::thread::sleep(std::time::Duration::from_millis(3 + round * 4));
        env.kill_agent();
        let _ = rotating.join();
        env.start_agent();
        // Whatever step was cut, the local token works.
        assert_eq!(whoami_ok(&env, "m")["username"], maas.user().username, "round {round}");
        assert_eq!(env.keyring_items().len(), 1, "round {round}");
        // At worst one extra server token per interrupted rotation.
        assert!(maas.tokens().len() <= 2 + round as usize);
    }
}

fn make_maascli_db(path: &std::path::Path, profiles: &[(&str, serde_json::Value)]) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE profiles (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, data BLOB)",
    )
    .unwrap();
    for (name, data) in profiles {
        conn.execute(
            "INSERT INTO profiles (name, data) VALUES (?1, ?2)",
            rusqlite::params![name, data.to_string().into_bytes()],
        )
        .unwrap();
    }
}

#[test]
fn maas_import_and_scrub_the_maas_cli_database() {
    let Some((env, maas)) = TestEnv::started_with_maas() else { return };
    let prod = maas.add_token("prod");
    let lab = maas.add_token("lab");
    let db = env.root.path().join("maascli.db");
    make_maascli_db(
        &db,
        &[
            (
                "prod",
                serde_json::json!({"name": "prod", "url": maas.api_url(), "credentials": [prod.consumer_key, prod.token_key, prod.token_secret], "description": {}, "cacerts": null}),
            ),
            (
                "lab",
                serde_json::json!({"name": "lab", "url": maas.url(), "credentials": [lab.consumer_key, lab.token_key, lab.token_secret], "description": {}}),
            ),
            (
                "anon",
                serde_json::json!({"name": "anon", "url": maas.url(), "credentials": null, "description": {}}),
            ),
        ],
    );
    let before = std::fs::read(&db).unwrap();
    assert!(before.windows(prod.token_secret.len()).any(|w| w == prod.token_secret.as_bytes()));

    let out = env.signet(&["maas", "import", "--db", db.to_str().unwrap(), "--scrub", "--json"]);
    let items = out.json();
    let by: std::collections::HashMap<&str, &serde_json::Value> =
        items.as_array().unwrap().iter().map(|i| (i["profile"].as_str().unwrap(), i)).collect();
    assert_eq!(by["prod"]["imported"], true);
    assert_eq!(by["prod"]["scrubbed"], true);
    assert_eq!(by["lab"]["imported"], true);
    assert_eq!(by["anon"]["imported"], false);
    for s in [&prod.token_secret, &lab.token_secret] {
        assert!(!out.stdout.contains(s.as_str()) && !out.stderr.contains(s.as_str()));
    }
    assert_eq!(whoami_ok(&env, "prod")["username"], maas.user().username);
    assert_eq!(env.signet(&["show", "lab", "--json"]).json()["url"], maas.api_url());
    whoami_ok(&env, "lab");

    // No key remains anywhere in the file's bytes, and the CLI is logged out.
    let after = std::fs::read(&db).unwrap();
    for s in [&prod.token_secret, &lab.token_secret, &prod.token_key] {
        assert!(
            !after.windows(s.len()).any(|w| w == s.as_bytes()),
            "key material left in the file"
        );
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    let data: Vec<u8> =
        conn.query_row("SELECT data FROM profiles WHERE name='prod'", [], |r| r.get(0)).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert!(v["credentials"].is_null());
    assert_eq!(v["url"], maas.api_url());

    // A missing database is a clear usage error.
    env.signet(&["maas", "import", "--db", "/nonexistent/maascli.db"]).fails(2);
}

fn vms_env() -> Option<(TestEnv, VmsServer, signet_tests::upstream::VmsToken)> {
    let env = TestEnv::started(Backend::SecretService)?;
    let vms = VmsServer::start();
    let first = vms.issue_token("admin", "admin_api_token");
    env.add("v", "api-token", &vms.url(), &first.token(), &[]);
    Some((env, vms, first))
}

#[test]
fn vms_create_list_rename_revoke() {
    let Some((env, vms, first)) = vms_env() else { return };
    let out =
        env.signet(&["vms", "create-token", "v", "v2", "--token-name", "ci", "--expires", "30D"]);
    assert_eq!(out.ok(), "");
    let minted = vms.tokens().into_iter().find(|t| t.name == "ci").expect("minted");
    assert!(minted.expires.is_some());
    assert!(env.signet(&["show", "v2", "--json"]).json()["expires"].is_string());
    env.signet(&["request", "v2", "/api/clusters/"]).ok();

    let list = env.signet(&["vms", "tokens", "v", "--json"]).json();
    let arr = list.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert!(arr.iter().any(|t| t["id"] == first.id.as_str() && t["current"] == true));
    assert!(!list.to_string().contains(&minted.secret));

    env.signet(&["vms", "rename-token", "v", &minted.id, "ci-renamed"]).ok();
    assert_eq!(vms.token(&minted.id).unwrap().name, "ci-renamed");
    env.signet(&["vms", "revoke-token", "v", &minted.id]).ok();
    assert!(vms.token(&minted.id).unwrap().revoked);
    env.signet(&["request", "v2", "/api/clusters/", "-f"]).fails(22);
    // Its own token needs --force.
    env.signet(&["vms", "revoke-token", "v", &first.id]).fails(5);

    // --show prints the token once.
    let shown = env.signet(&["vms", "create-token", "v", "v3", "--show"]).ok().trim().to_string();
    let id = shown.split('.').next().unwrap();
    assert_eq!(vms.token(id).unwrap().token(), shown);
}

#[test]
fn vms_limits_and_permissions_exit_5_with_the_servers_reason() {
    let Some((env, vms, _first)) = vms_env() else { return };
    vms.set_max_tokens_per_owner(2);
    env.signet(&["vms", "create-token", "v", "a1"]).ok();
    let err = env.signet(&["vms", "create-token", "v", "a2"]).fails(5).to_string();
    assert!(err.contains("400"), "{err}");
    env.signet(&["show", "a2"]).fails(4);
    let err = env
        .signet(&["vms", "create-token", "v", "a3", "--owner", "someone-else"])
        .fails(5)
        .to_string();
    assert!(err.contains("403"), "{err}");
}

#[test]
fn vms_rotate_revokes_the_old_token() {
    let Some((env, vms, first)) = vms_env() else { return };
    env.signet(&["rotate", "v"]).ok();
    assert!(vms.token(&first.id).unwrap().revoked, "old token not revoked");
    let live: Vec<_> = vms.tokens().into_iter().filter(|t| !t.revoked).collect();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].name, first.name, "same name");
    env.signet(&["request", "v", "/api/clusters/"]).ok();
    assert_eq!(env.keyring_items()[0].1, live[0].token().as_bytes());
}

#[test]
fn vms_rotate_failures_leave_a_working_token() {
    let Some((env, vms, first)) = vms_env() else { return };
    let live = |vms: &VmsServer| vms.tokens().into_iter().filter(|t| !t.revoked).count();

    // Mint fails: unchanged.
    vms.fail_next("create", 500);
    env.signet(&["rotate", "v"]).fails(1);
    assert_eq!(live(&vms), 1);
    env.signet(&["request", "v", "/api/clusters/"]).ok();

    // Verify fails: the new token is revoked again, the old one kept.
    vms.fail_next("show", 401);
    env.signet(&["rotate", "v"]).fails(5);
    assert_eq!(live(&vms), 1, "{:?}", vms.tokens());
    assert!(!vms.token(&first.id).unwrap().revoked);
    assert_eq!(env.keyring_items()[0].1, first.token().as_bytes());
    env.signet(&["request", "v", "/api/clusters/"]).ok();

    // Revoking the old fails: rotated, with a warning naming it.
    vms.fail_next("revoke", 500);
    let out = env.signet(&["rotate", "v"]);
    out.ok();
    assert!(out.stderr.contains("warning") && out.stderr.contains(&first.id), "{out:#?}");
    assert!(!vms.token(&first.id).unwrap().revoked, "the old token remains, as the warning says");
    assert_ne!(env.keyring_items()[0].1, first.token().as_bytes());
    env.signet(&["request", "v", "/api/clusters/"]).ok();
}
