//! Signing and agent-performed requests against real servers on 127.0.0.1
//! that check credentials as the real APIs do.

use signet_tests::upstream::MaasServer;
use signet_tests::{Backend, TestEnv};

#[test]
fn maas_whoami_through_the_agent_and_sign_for_exportable_tokens() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    let maas = MaasServer::start();
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
