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
