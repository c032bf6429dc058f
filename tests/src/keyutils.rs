//! The kernel keyring (keyutils), the agent's store where no Secret Service
//! runs. It needs no daemon: a test only asks whether this process may use it.

use std::process::Command;

use crate::process::run_bounded;

/// Whether this process can use the kernel keyring the way the agent does: a new
/// session keyring, and a key added to it (`keyctl session - keyctl add …`). False on
/// a kernel or sandbox (e.g. Docker's default seccomp) that blocks keyctl, or without
/// the `keyctl` tool (Debian package: keyutils).
pub fn keyutils_available() -> bool {
    let mut cmd = Command::new("keyctl");
    cmd.args(["session", "-", "keyctl", "add", "user", "signet-probe", "probe", "@s"]);
    matches!(run_bounded(cmd, None, false), Ok(out) if out.status.success())
}
