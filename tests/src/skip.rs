//! What a test does on a machine that lacks what it needs.
//!
//! A developer's machine may have no Secret Service or a sandbox that blocks
//! keyctl: there a test prints a visible `SKIP:` line and returns, rather than
//! fail for a reason that has nothing to do with signet. CI sets
//! `SIGNET_REQUIRE_KEYRING`, and then a missing keyring is a failure, so that
//! a broken CI image cannot pass by skipping everything.
//!
//! A test runner hides the output of tests that pass, so every SKIP line also
//! goes to `target/<profile>/signet-skips.txt`, beside the binaries.

use std::io::Write as _;
use std::thread;

/// True when `SIGNET_REQUIRE_KEYRING` is set to something other than "" or "0".
pub fn keyring_required() -> bool {
    std::env::var("SIGNET_REQUIRE_KEYRING").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The SKIP policy. Available: true. Not available: a panic when SIGNET_REQUIRE_KEYRING
/// is set (CI), else a visible `SKIP: <test>: <what>: not available on this machine`
/// line on stderr and false, and the test returns early.
pub fn require_or_skip(what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    skip_or_fail(what, "not available on this machine");
    false
}

/// The SKIP policy for a fallible start-up, e.g.
/// `let Some(ss) = require_ok("Secret Service", SecretServiceSession::start()) else { return };`
pub fn require_ok<T>(what: &str, result: Result<T, String>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(reason) => {
            skip_or_fail(what, &reason);
            None
        }
    }
}

/// A SKIP that no environment variable turns into a failure, for what CI
/// cannot be asked to provide (e.g. running as root): `SKIP: <test>: <why>`.
pub fn skip(why: &str) {
    record(&format!("SKIP: {}: {why}", test_name()));
}

fn skip_or_fail(what: &str, reason: &str) {
    let test = test_name();
    if keyring_required() {
        panic!("{test}: {what} is required (SIGNET_REQUIRE_KEYRING is set) but unusable: {reason}");
    }
    record(&format!(
        "SKIP: {test}: {what}: {reason} (set SIGNET_REQUIRE_KEYRING=1 to fail instead)"
    ));
}

/// The test harness names each test's thread after the test.
fn test_name() -> String {
    thread::current().name().unwrap_or("<unnamed test>").to_string()
}

fn record(line: &str) {
    eprintln!("{line}");
    let log = crate::bin_dir().join("signet-skips.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
        // One write per line: tests run in parallel processes, and O_APPEND
        // keeps a single write whole.
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_flag_parsing() {
        // Reads the real environment: only checks that the call does not panic.
        let _ = keyring_required();
    }
}
