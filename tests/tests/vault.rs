//! The vault file store (`--store file`): it survives restarts and a
//! reboot, refuses a wrong or missing passphrase without losing anything,
//! and keeps no secret and no token name in plaintext.

use std::os::unix::fs::PermissionsExt;

use signet_tests::agent::VAULT_PASSPHRASE;
use signet_tests::{Backend, Out, TestEnv, run};

const URL: &str = "https://api.example/";

/// Starts the agent detached (no `-D`), expecting it to refuse: the parent
/// returns either way, so a wrongly started agent cannot hang the test.
fn start_detached(env: &TestEnv) -> Out {
    let out = run(&mut env.agent_command(), b"");
    if out.code() == 0 {
        // It started after all: stop it before failing the test.
        stop_detached(env, &out);
    }
    out
}

fn stop_detached(env: &TestEnv, out: &Out) {
    let _ = run(env.command("signet-agent").arg("-k").env("SIGNET_AGENT_PID", pid_of(out)), b"");
}

fn pid_of(out: &Out) -> String {
    out.stdout
        .split("SIGNET_AGENT_PID=")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap_or("")
        .to_string()
}

#[test]
fn the_vault_survives_a_restart_and_a_reboot() {
    let Some(mut env) = TestEnv::started(Backend::File) else { return };
    env.add("deploy", "bearer", URL, "vault-secret-one", &["--exportable"]);
    env.add("backup", "bearer", URL, "vault-secret-two", &["--exportable"]);
    assert!(env.sign_line(&["deploy", URL]).contains("vault-secret-one"));

    env.restart_agent();
    assert!(env.sign_line(&["deploy", URL]).contains("vault-secret-one"));

    // A reboot: no clean shutdown, and the next agent runs in a new kernel
    // keyring session with no D-Bus session at all. The vault needs neither.
    env.kill_agent();
    env.start_agent();
    let log = env.agent_log();
    assert!(log.contains("store=\"file\"") || log.contains("store=file"), "{log}");
    assert!(env.sign_line(&["backup", URL]).contains("vault-secret-two"));
    let listed = env.signet(&["list", "--json"]).json();
    assert_eq!(listed.as_array().unwrap().len(), 2);
}

#[test]
fn a_wrong_passphrase_is_refused_with_exit_6_and_loses_nothing() {
    let Some(mut env) = TestEnv::started(Backend::File) else { return };
    env.add("deploy", "bearer", URL, "kept-secret", &["--exportable"]);
    env.stop_agent();
    let before = env.data_files();

    env.set_vault_passphrase("not the passphrase");
    let out = start_detached(&env);
    assert_eq!(out.code(), 6, "{out:#?}");
    assert!(out.stderr.contains("wrong vault passphrase"), "{out:#?}");
    assert!(!out.stderr.contains("not the passphrase"), "the passphrase leaked: {out:#?}");
    let mut after = env.data_files();
    let mut before = before;
    // The lock file is opened again by each start; its content is empty.
    before.sort();
    after.sort();
    assert_eq!(before, after, "a refused start changed the data directory");

    env.set_vault_passphrase(VAULT_PASSPHRASE);
    env.start_agent();
    assert!(env.sign_line(&["deploy", URL]).contains("kept-secret"));
}

#[test]
fn the_vault_file_holds_no_secret_and_no_token_name() {
    let Some(mut env) = TestEnv::started(Backend::File) else { return };
    let tokens = [
        ("prod-maas-region", "S3CRET-alpha-0001"),
        ("ci-runner-token", "S3CRET-bravo-0002"),
        ("vms-operator", "S3CRET-charlie-0003"),
    ];
    for (name, secret) in tokens {
        env.add(name, "bearer", URL, secret, &["--exportable"]);
    }
    env.signet(&["rename", "ci-runner-token", "renamed-runner-token"]).ok();
    env.signet(&["rm", "vms-operator"]).ok();
    env.restart_agent();

    let vault = std::fs::read(env.vault_file()).expect("vault file");
    let mode = std::fs::metadata(env.vault_file()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the vault is for its owner only");
    let needles = tokens.iter().flat_map(|(n, s)| [n.to_string(), s.to_string()]).chain([
        "renamed-runner-token".into(),
        "S3CRET".into(),
        VAULT_PASSPHRASE.into(),
    ]);
    for needle in needles {
        for form in [needle.clone(), needle.to_uppercase(), b64(&needle)] {
            assert!(
                !vault.windows(form.len()).any(|w| w == form.as_bytes()),
                "the vault file holds `{form}` in plaintext"
            );
        }
    }
    // No other file of the data directory holds a secret either.
    for (path, bytes) in env.data_files() {
        for (_, secret) in tokens {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds a secret",
                path.display()
            );
        }
    }
    // And what the vault holds is exactly the live tokens, sealed.
    let mut items = env.keyring_items();
    items.sort();
    let index = env.index();
    let mut ids: Vec<String> = index["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(items.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(), ids);
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s).trim_end_matches('=').to_string()
}

#[test]
fn a_passphrase_file_others_can_read_is_refused() {
    let Some(env) = TestEnv::new(Backend::File) else { return };
    std::fs::set_permissions(env.passphrase_file(), std::fs::Permissions::from_mode(0o640))
        .unwrap();
    let out = start_detached(&env);
    assert_eq!(out.code(), 6, "{out:#?}");
    assert!(out.stderr.contains("chmod 600"), "{out:#?}");
    assert!(!env.vault_file().exists(), "no vault is created from a refused passphrase");
}

#[test]
fn without_a_passphrase_the_agent_refuses_to_start_and_says_how() {
    let Some(env) = TestEnv::new(Backend::File) else { return };
    let out = run(env.agent_command().env_remove("SIGNET_VAULT_PASSPHRASE_FILE"), b"");
    assert_eq!(out.code(), 6, "{out:#?}");
    assert!(out.stderr.contains("SIGNET_VAULT_PASSPHRASE_FILE"), "{out:#?}");
    assert!(out.stderr.contains("terminal"), "{out:#?}");
    assert!(!env.vault_file().exists());
}

#[test]
fn without_its_passphrase_an_existing_vault_starts_locked_and_unlock_opens_it() {
    let Some(mut env) = TestEnv::started(Backend::File) else { return };
    env.add("deploy", "bearer", URL, "opened-at-unlock", &["--exportable"]);
    env.stop_agent();

    // No passphrase file and no terminal, as under systemd without
    // LoadCredential: the agent serves, locked, and keeps the vault shut.
    env.agent_env.push(("SIGNET_VAULT_PASSPHRASE_FILE".into(), String::new()));
    env.start_agent();
    let status = env.signet(&["status", "--json"]).json();
    assert_eq!(status["lock"], "vault", "{status}");
    let listed = env.signet(&["list", "--json"]).json();
    assert_eq!(listed[0]["name"], "deploy", "the index answers while the vault is shut");
    let refused = env.signet(&["sign", "deploy", URL]);
    assert_eq!(refused.code(), 5, "{refused:#?}");
    assert!(refused.stderr.contains("locked"), "{refused:#?}");
    let added = env.try_add("other", "bearer", URL, "not-now", &[]);
    assert_eq!(added.code(), 5, "{added:#?}");

    let wrong = env.signet_in(&["unlock"], b"not the passphrase\n");
    assert_eq!(wrong.code(), 6, "{wrong:#?}");
    assert!(wrong.stderr.contains("wrong passphrase"), "{wrong:#?}");
    assert_eq!(env.signet(&["status", "--json"]).json()["lock"], "vault");

    let opened = env.signet_in(&["unlock"], format!("{VAULT_PASSPHRASE}\n").as_bytes());
    assert_eq!(opened.code(), 0, "{opened:#?}");
    assert_eq!(env.signet(&["status", "--json"]).json()["locked"], false);
    assert!(env.sign_line(&["deploy", URL]).contains("opened-at-unlock"));
    env.add("later", "bearer", URL, "added-after-unlock", &["--exportable"]);
    assert!(env.vault_items(VAULT_PASSPHRASE).len() >= 2);
    let log = env.agent_log();
    assert!(!log.contains(VAULT_PASSPHRASE) && !log.contains("not the passphrase"), "{log}");

    // The opened vault is the one the next start with the passphrase finds.
    env.agent_env.clear();
    env.restart_agent();
    assert!(env.sign_line(&["later", URL]).contains("added-after-unlock"));
}

#[test]
fn auto_without_a_secret_service_takes_an_existing_vault() {
    let Some(mut env) = TestEnv::started(Backend::File) else { return };
    env.add("deploy", "bearer", URL, "auto-found-me", &["--exportable"]);
    env.stop_agent();
    // This world has no D-Bus session: auto must find the vault.
    env.store = Some("auto");
    env.start_agent();
    assert!(env.sign_line(&["deploy", URL]).contains("auto-found-me"));
}

#[test]
fn auto_without_a_secret_service_or_a_vault_names_the_file_store() {
    let Some(mut env) = TestEnv::new(Backend::Keyutils) else { return };
    env.store = Some("auto");
    let out = run(&mut env.agent_command(), b"");
    assert_eq!(out.code(), 0, "{out:#?}");
    stop_detached(&env, &out);
    assert!(out.stderr.contains("will not survive a reboot"), "{out:#?}");
    assert!(out.stderr.contains("--store file"), "{out:#?}");
    assert!(!env.vault_file().exists(), "auto never creates a vault");
}

fn passwd(env: &TestEnv, old: &str, new: &str, again: &str) -> Out {
    env.signet_in(&["vault", "passwd"], format!("{old}\n{new}\n{again}\n").as_bytes())
}

#[test]
fn vault_passwd_reseals_under_the_new_passphrase_only() {
    let Some(mut env) = TestEnv::started(Backend::File) else { return };
    env.add("deploy", "bearer", URL, "passwd-secret", &["--exportable"]);
    let before = std::fs::read(env.vault_file()).unwrap();

    let out = passwd(&env, "wrong old words", "new words", "new words");
    assert_eq!(out.code(), 6, "{out:#?}");
    assert!(out.stderr.contains("wrong vault passphrase"), "{out:#?}");
    let out = passwd(&env, VAULT_PASSPHRASE, "new words", "other words");
    assert_eq!(out.code(), 2, "{out:#?}");
    assert_eq!(
        std::fs::read(env.vault_file()).unwrap(),
        before,
        "a refused passwd changed the vault"
    );

    passwd(&env, VAULT_PASSPHRASE, "new words", "new words").ok();
    // The running agent goes on with the new key.
    env.add("later", "bearer", URL, "added-after", &["--exportable"]);
    assert!(env.sign_line(&["deploy", URL]).contains("passwd-secret"));
    env.stop_agent();

    let out = start_detached(&env);
    assert_eq!(out.code(), 6, "the old passphrase still opens the vault: {out:#?}");
    env.set_vault_passphrase("new words");
    env.start_agent();
    assert!(env.sign_line(&["deploy", URL]).contains("passwd-secret"));
    assert!(env.sign_line(&["later", URL]).contains("added-after"));
}

#[test]
fn vault_passwd_without_a_vault_says_so() {
    let Some(env) = TestEnv::started(Backend::Keyutils) else { return };
    let out = passwd(&env, "a", "b", "b");
    assert_eq!(out.code(), 6, "{out:#?}");
    assert!(out.stderr.contains("not in a vault file"), "{out:#?}");
}

/// `signet vault passwd` killed with the agent at any instant: the vault
/// opens afterwards under exactly one of the two passphrases, with every
/// token.
#[test]
fn vault_passwd_killed_at_any_instant_leaves_one_whole_vault() {
    let Some(mut env) = TestEnv::started(Backend::File) else { return };
    env.add_numbered(300, URL);
    let passes = [VAULT_PASSPHRASE, "second passphrase"];
    // One whole passwd, timed: the kills land at fractions of its length.
    let t = std::time::Instant::now();
    passwd(&env, passes[0], passes[1], passes[1]).ok();
    let whole = t.elapsed();
    env.set_vault_passphrase(passes[1]);
    let mut current = 1usize;
    let mut changed = 0;
    for round in 0..8u64 {
        let (old, new) = (passes[current], passes[1 - current]);
        let mut child = env
            .signet_command()
            .args(["vault", "passwd"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(format!("{old}\n{new}\n{new}\n").as_bytes()).unwrap();
        }
        // 0.1, 0.3, … 1.5 of a whole passwd: before, during and after.
        std::thread::sleep(whole.mul_f64(0.1 + 0.2 * round as f64));
        env.kill_agent();
        let _ = child.wait();

        // Exactly one passphrase opens it, and every token is there.
        let opened: Vec<usize> = (0..2)
            .filter(|&i| {
                signet_agent::store::vault::Vault::read_all(
                    &env.vault_file(),
                    &signet_proto::Secret::from_str_value(passes[i]),
                )
                .is_ok()
            })
            .collect();
        assert_eq!(opened.len(), 1, "round {round}: {opened:?}");
        if opened[0] != current {
            changed += 1;
        }
        current = opened[0];
        env.set_vault_passphrase(passes[current]);
        env.start_agent();
        assert_eq!(env.keyring_items().len(), 300, "round {round}");
        assert!(env.sign_line(&["t123", URL]).contains("secret-123"));
    }
    eprintln!("passwd kill test: {changed} of 8 rounds ended under the new passphrase");
}
