//! `signet migrate --to STORE`: every secret moves, the agent goes on with
//! the new store, the old one is emptied, the next start follows the move,
//! and a kill at any instant leaves every token's secret in the store the
//! index names.

use signet_client::Secret;
use signet_tests::agent::VAULT_PASSPHRASE;
use signet_tests::{Backend, TestEnv};
use std::collections::BTreeMap;

const URL: &str = "https://api.example/";

fn migrate(env: &TestEnv, to: &str, stdin: &str) -> serde_json::Value {
    env.signet_in(&["migrate", "--to", to, "--json"], stdin.as_bytes()).json()
}

/// Every token of the index, by id, and its expected secret.
fn expected(env: &TestEnv) -> BTreeMap<String, String> {
    env.index()["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert_eq!(t["state"], "active", "{t}");
            let n: usize = t["name"].as_str().unwrap()[1..].parse().unwrap();
            (t["id"].as_str().unwrap().to_string(), format!("secret-{n}"))
        })
        .collect()
}

/// The store the index names holds every token's secret, and nothing else.
fn assert_store_of_record_whole(env: &TestEnv, what: &str) {
    let want = expected(env);
    let got: BTreeMap<String, String> = env
        .keyring_items()
        .into_iter()
        .map(|(id, s)| (id, String::from_utf8(s).unwrap()))
        .collect();
    assert_eq!(got, want, "{what}: the store of record and the index disagree");
}

#[test]
fn secret_service_to_file_and_back() {
    let Some(mut env) = TestEnv::started(Backend::SecretService) else { return };
    env.add_numbered(5, URL);
    env.set_vault_passphrase(VAULT_PASSPHRASE);
    let pw = format!("{VAULT_PASSPHRASE}\n{VAULT_PASSPHRASE}\n");

    let m = migrate(&env, "file", &pw);
    assert_eq!((m["from"].as_str(), m["to"].as_str()), (Some("secret-service"), Some("file")));
    assert_eq!(m["moved"], 5);
    assert_eq!(m["left_behind"], 0);
    assert_eq!(env.index()["store"], "file");
    assert!(env.sign_line(&["t3", URL]).contains("secret-3"));
    assert_store_of_record_whole(&env, "after the move to file");
    let ss = env.session.as_ref().unwrap();
    let service = env.keyring_service();
    assert!(
        ss.search(&[("service", service.as_str())]).is_empty(),
        "copies left in the Secret Service"
    );
    assert_eq!(env.signet(&["status", "--json"]).json()["store"], "file");

    // The next start follows the move: `auto` opens the vault although a
    // Secret Service answers, and the old explicit store is refused.
    env.stop_agent();
    let out = signet_tests::run(&mut env.agent_command(), b"");
    assert_eq!(out.code(), 1, "{out:#?}");
    assert!(out.stderr.contains("--store file"), "{out:#?}");
    env.store = Some("auto");
    env.start_agent();
    assert!(env.sign_line(&["t1", URL]).contains("secret-1"));

    let m = migrate(&env, "secret-service", "");
    assert_eq!(m["moved"], 5);
    assert_eq!(env.index()["store"], "secret-service");
    assert_store_of_record_whole(&env, "after the move back");
    let vault = signet_agent::store::vault::Vault::read_all(
        &env.vault_file(),
        &Secret::from_str_value(VAULT_PASSPHRASE),
    )
    .unwrap();
    assert!(vault.is_empty(), "copies left in the vault");
    assert!(env.sign_line(&["t4", URL]).contains("secret-4"));
}

#[test]
fn file_to_keyutils_and_back() {
    let Some(mut env) = TestEnv::started(Backend::File) else { return };
    if !signet_tests::skip::require_or_skip(
        "kernel keyring (keyutils)",
        signet_tests::keyutils::keyutils_available(),
    ) {
        return;
    }
    env.add_numbered(4, URL);
    let m = migrate(&env, "keyutils", "");
    assert_eq!((m["from"].as_str(), m["to"].as_str()), (Some("file"), Some("keyutils")));
    assert_eq!(m["moved"], 4);
    assert!(env.sign_line(&["t2", URL]).contains("secret-2"));
    assert_eq!(env.index()["store"], "keyutils");
    let vault = signet_agent::store::vault::Vault::read_all(
        &env.vault_file(),
        &Secret::from_str_value(VAULT_PASSPHRASE),
    )
    .unwrap();
    assert!(vault.is_empty(), "copies left in the vault");

    // Into the existing vault again: asked once, a wrong passphrase refused.
    let out = env.signet_in(&["migrate", "--to", "file"], b"not it\n");
    assert_eq!(out.code(), 6, "{out:#?}");
    assert_eq!(env.index()["store"], "keyutils", "a refused migration switched stores");
    assert!(env.sign_line(&["t2", URL]).contains("secret-2"));
    let m = migrate(&env, "file", &format!("{VAULT_PASSPHRASE}\n"));
    assert_eq!(m["moved"], 4);
    assert_store_of_record_whole(&env, "back in the vault");
    env.store = Some("auto");
    env.restart_agent();
    assert!(env.sign_line(&["t0", URL]).contains("secret-0"));
    let out = env.signet(&["migrate", "--to", "file"]);
    assert_eq!(out.code(), 6, "{out:#?}");
    assert!(out.stderr.contains("already"), "{out:#?}");
}

/// SIGKILL the agent at several instants of migrations between the Secret
/// Service and the vault: after each restart, the store the index names
/// holds every token's secret.
#[test]
fn migrate_killed_at_any_instant_keeps_every_secret_in_the_store_of_record() {
    let Some(mut env) = TestEnv::started(Backend::SecretService) else { return };
    env.add_numbered(60, URL);
    env.set_vault_passphrase(VAULT_PASSPHRASE);
    env.store = Some("auto");
    // One whole migration, timed: the kills land at fractions of its length.
    let t = std::time::Instant::now();
    migrate(&env, "file", &format!("{VAULT_PASSPHRASE}\n{VAULT_PASSPHRASE}\n"));
    let whole = t.elapsed();
    let mut switched = 0;
    for round in 0..8u64 {
        let before = env.index()["store"].as_str().unwrap_or("secret-service").to_string();
        let to = if before == "file" { "secret-service" } else { "file" };
        let mut child = env
            .signet_command()
            .args(["migrate", "--to", to])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            let _ = stdin.write_all(format!("{VAULT_PASSPHRASE}\n{VAULT_PASSPHRASE}\n").as_bytes());
        }
        // 0.1, 0.3, … 1.5 of a whole migration: before, during and after.
        std::thread::sleep(whole.mul_f64(0.1 + 0.2 * round as f64));
        env.kill_agent();
        let _ = child.wait();
        env.start_agent();
        let after = env.index()["store"].as_str().unwrap_or("").to_string();
        if after != before {
            switched += 1;
        }
        assert_store_of_record_whole(&env, &format!("round {round} ({before} -> {to})"));
        assert!(env.sign_line(&["t42", URL]).contains("secret-42"));
    }
    eprintln!("migrate kill test: {switched} of 8 rounds ended in the new store");
}
