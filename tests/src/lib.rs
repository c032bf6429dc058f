//! signet's end-to-end harness: the real binaries, a real keyring.
//!
//! - [`agent`]: a private world per test ([`TestEnv`]) that supervises
//!   `signet-agent -D` and runs `signet` against it;
//! - [`secret_service`]: a private D-Bus session bus with gnome-keyring on it;
//! - [`keyutils`]: whether the kernel keyring is usable here;
//! - [`skip`]: what a test does on a machine that lacks what it needs;
//! - [`fake_logind`]: a stand-in for systemd-logind on a private bus;
//! - [`memory`]: how many copies of a secret a process holds;
//! - [`headers`]: the headers `signet sign` prints, sent with curl and taken
//!   apart;
//! - [`process`]: where the binaries are, and running processes with bounds;
//! - [`raw`]: the agent's socket below the client library;
//! - [`upstream`]: real HTTP test servers that check credentials as the real
//!   APIs do.
//!
//! The binaries are the ones `cargo build --workspace` put next to the test
//! executable (or in `$SIGNET_BIN_DIR`).

pub mod agent;
pub mod fake_logind;
pub mod headers;
pub mod keyutils;
pub mod memory;
pub mod process;
pub mod raw;
pub mod secret_service;
pub mod skip;
pub mod upstream;

pub use agent::{AgentProc, Backend, TestEnv};
pub use memory::copies_in_memory;
pub use process::{Out, bin, bin_dir, eventually, exists, run, wait_timeout};
pub use secret_service::SecretServiceSession;
