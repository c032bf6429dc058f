//! The headers `signet sign` prints, used the way a user's script uses them:
//! handed to curl (`curl -H "$(signet sign NAME URL)" URL`), so a test server
//! judges them as it judges any client, and taken apart to check what an
//! OAuth header carries.

use std::process::Command;

use crate::process::run;
use crate::upstream::Recorded;

/// Runs curl with each of `headers` as its own `-H`; returns (status, body).
pub fn curl(headers: &[&str], url: &str, extra: &[&str]) -> (u16, String) {
    let mut c = Command::new("curl");
    // --noproxy: the servers are local, whatever the developer's environment says.
    c.args(["-sS", "--noproxy", "*", "-w", "\n%{http_code}"]);
    for h in headers {
        c.arg("-H").arg(h);
    }
    c.args(extra).arg(url);
    let out = run(&mut c, b"");
    assert_eq!(out.code(), 0, "curl failed: {out:#?}");
    let (body, status) = out.stdout.rsplit_once('\n').expect("curl -w status");
    (status.trim().parse().expect("status code"), body.to_string())
}

/// The parameters of an `OAuth …` header value, in order, values still
/// percent-encoded as sent (realm included).
pub fn oauth_params(value: &str) -> Vec<(String, String)> {
    let rest = value.strip_prefix("OAuth ").unwrap_or_else(|| panic!("not OAuth: {value}"));
    rest.split(", ")
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("malformed {kv} in {value}"));
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
            (k.to_string(), v.unwrap_or_else(|| panic!("unquoted {kv}")).to_string())
        })
        .collect()
}

/// The value of parameter `name` among `params`; its absence fails the test.
pub fn oauth_param<'a>(params: &'a [(String, String)], name: &str) -> &'a str {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {params:?}"))
}

/// The parameters of an `Authorization: OAuth …` line.
pub fn oauth_line_params(line: &str) -> Vec<(String, String)> {
    let value = line.strip_prefix("Authorization: ").unwrap_or_else(|| panic!("{line}"));
    oauth_params(value)
}

/// The oauth_nonce a recorded request carried.
pub fn recorded_nonce(r: &Recorded) -> String {
    let auth = r.header("authorization").unwrap_or_else(|| panic!("no Authorization: {r:?}"));
    oauth_param(&oauth_params(auth), "oauth_nonce").to_string()
}

/// The agent's nonces are 16 random bytes in lowercase hex.
pub fn is_hex_nonce(n: &str) -> bool {
    n.len() == 32 && n.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
