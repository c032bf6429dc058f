//! Tokens for https servers, against the TLS test servers (each with a CA
//! minted at start that no system store trusts): `--cacert` trusts that CA
//! for one token only, `--insecure` skips verification, and with neither the
//! handshake fails with exit 7 naming the origin, before any request is sent.

use std::time::Duration;

use signet_tests::headers::curl;
use signet_tests::upstream::{BearerLikeServer, ExpectedAuth, MaasServer};
use signet_tests::{Backend, TestEnv, eventually};

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
    // The agent answers once its side of the handshake has failed; the server
    // counts the failure only when the alert reaches it, which may be later.
    assert!(
        eventually(Duration::from_secs(10), || maas.handshake_failures() >= 1),
        "the server never saw the failed handshake"
    );

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
