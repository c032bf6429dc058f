//! `signet`: the command line client of signet-agent.
//!
//! Parses arguments (clap), reads secrets from stdin or a no-echo prompt,
//! talks to the agent through [`signet_client::Client`], and prints: a table
//! for people, `--json` for scripts. Every failure ends in one of the exit
//! codes in the README's table and a `signet: ...` line on stderr.
//!
//! `signet` runs once per request in wrapper scripts, so its start-up is
//! part of every request's cost. Its `main` is the C entry point: std's
//! runtime start-up spends a third of the process's instructions finding
//! the main thread's stack guard (reading /proc/self/maps), which a
//! program that neither recurses deeply nor spawns threads does not need.
//! `entry::main` does the rest of what that start-up does, itself.

#![cfg_attr(not(test), no_main)]

mod cmd;
mod entry;
mod input;
mod output;

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};
use signet_client::ClientError;

#[derive(Parser)]
#[command(
    name = "signet",
    version,
    about = "Use API tokens kept by signet-agent, without ever holding them"
)]
struct Cli {
    /// The agent's socket (default: $SIGNET_AUTH_SOCK, else
    /// $XDG_RUNTIME_DIR/signet/agent.sock).
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Add a token; its secret is read from stdin or prompted for.
    Add(cmd::tokens::AddArgs),
    /// List your tokens (never a secret).
    List(cmd::tokens::JsonArg),
    /// Show one token's metadata.
    Show(cmd::tokens::ShowArgs),
    /// Remove tokens and their secrets.
    Rm(cmd::tokens::RmArgs),
    /// Rename a token (its secret is not touched).
    Rename(cmd::tokens::RenameArgs),
    /// Show the agent's status.
    Status(cmd::tokens::JsonArg),
    /// Print the header lines that authenticate a request.
    #[command(allow_missing_positional = true)]
    Sign(cmd::http::SignArgs),
    /// Have the agent perform a request; the response body goes to stdout.
    Request(cmd::http::RequestArgs),
    /// MAAS accounts and their server tokens.
    #[command(subcommand)]
    Maas(cmd::lifecycle::MaasCmd),
    /// VMS API tokens on the server.
    #[command(subcommand)]
    Vms(cmd::lifecycle::VmsCmd),
    /// Replace a token's secret with a freshly minted one (maas, api-token).
    Rotate(cmd::lifecycle::RotateArgs),
    /// Show the agent's audit trail: every use and management action.
    Audit(cmd::audit::AuditArgs),
    /// The agent's vault file (`signet-agent --store file`).
    #[command(subcommand)]
    Vault(cmd::store::VaultCmd),
    /// Move every token's secret into another store, then use that store;
    /// at no moment is a secret in neither.
    Migrate(cmd::store::MigrateArgs),
    /// Lock the agent: it forgets every secret it holds in memory and
    /// refuses every use until `signet unlock`. Asks for a passphrase twice
    /// (no echo; read from stdin, one per line, when it is not a terminal).
    Lock,
    /// Unlock the agent with the passphrase given to `signet lock` (none
    /// when the agent locked itself on idle, a session lock or sleep).
    Unlock,
    /// Serve a token on a loopback URL with a local key, for tools that want a URL and a key.
    Proxy(cmd::proxy::ProxyArgs),
    /// Run a command with a local proxy per token: NAME[=PREFIX]... -- COMMAND [ARGS].
    Exec(cmd::proxy::ExecArgs),
    /// Print a shell completion script: `source <(signet completions bash)`.
    Completions(CompletionsArgs),
    /// Print the signet(1) man page (roff), or write it and a page per
    /// command (signet-add(1), ...) into a directory; for packagers and
    /// installers.
    #[command(hide = true)]
    Man(ManArgs),
}

#[derive(clap::Args)]
struct ManArgs {
    /// Write every page into DIR (e.g. ~/.local/share/man/man1) instead.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Writes what a generator produced to stdout; a closed pipe is a failure
/// like any other write error, not a panic.
fn print_generated(
    what: &str,
    render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>,
) -> Result<(), Failed> {
    use std::io::Write;
    let mut buf = Vec::new();
    let failed = |e: std::io::Error| Failed {
        code: 1,
        message: format!("cannot write the {what}: {e}"),
        hint: None,
    };
    render(&mut buf).map_err(failed)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&buf).and_then(|()| out.flush()).map_err(failed)
}

/// A failure of the command, with its exit code.
pub struct Failed {
    pub code: i32,
    pub message: String,
    pub hint: Option<String>,
}

impl Failed {
    pub fn usage(message: impl Into<String>) -> Failed {
        Failed { code: 2, message: message.into(), hint: None }
    }
}

impl From<ClientError> for Failed {
    fn from(e: ClientError) -> Failed {
        Failed { code: e.exit_code(), message: e.to_string(), hint: e.hint().map(str::to_string) }
    }
}

/// A token name the agent would accept (1 to 64 characters from
/// `A-Z a-z 0-9 . _ @ -`, starting with a letter or digit), else a usage
/// error (exit 2) before the agent is asked.
pub fn name_ok(name: &str) -> Result<(), Failed> {
    signet_proto::token::validate_name(name).map_err(|e| Failed::usage(e.to_string()))
}

pub fn report(f: &Failed) {
    if f.message.is_empty() {
        return;
    }
    eprintln!("signet: {}", f.message);
    if let Some(h) = &f.hint {
        eprintln!("signet: {h}");
    }
}

pub(crate) fn run(cli: Cli) -> Result<(), Failed> {
    let socket = cli.socket.as_deref();
    match cli.cmd {
        Command::Add(a) => cmd::tokens::add(socket, a),
        Command::List(a) => cmd::tokens::list(socket, a),
        Command::Show(a) => cmd::tokens::show(socket, a),
        Command::Rm(a) => cmd::tokens::rm(socket, a),
        Command::Rename(a) => cmd::tokens::rename(socket, a),
        Command::Status(a) => cmd::tokens::status(socket, a),
        Command::Sign(a) => cmd::http::sign(socket, a),
        Command::Request(a) => cmd::http::request(socket, a),
        Command::Maas(c) => cmd::lifecycle::maas(socket, c),
        Command::Vms(c) => cmd::lifecycle::vms(socket, c),
        Command::Rotate(a) => cmd::lifecycle::rotate(socket, a),
        Command::Audit(a) => cmd::audit::audit(socket, a),
        Command::Vault(c) => cmd::store::vault(socket, c),
        Command::Migrate(a) => cmd::store::migrate(socket, a),
        Command::Lock => cmd::access::lock(socket),
        Command::Unlock => cmd::access::unlock(socket),
        Command::Proxy(a) => cmd::proxy::proxy(socket, a),
        Command::Exec(a) => cmd::proxy::exec(socket, a),
        Command::Completions(a) => print_generated("completion script", |buf| {
            clap_complete::generate(a.shell, &mut Cli::command(), "signet", buf);
            Ok(())
        }),
        Command::Man(ManArgs { dir: None }) => {
            // As the directory form has it: no page for the `help` command.
            let cmd = Cli::command().disable_help_subcommand(true);
            print_generated("man page", |buf| clap_mangen::Man::new(cmd).render(buf))
        }
        Command::Man(ManArgs { dir: Some(dir) }) => clap_mangen::generate_to(Cli::command(), &dir)
            .map_err(|e| Failed {
                code: 1,
                message: format!("cannot write the man pages into {}: {e}", dir.display()),
                hint: Some("name an existing directory you can write to".into()),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clap_sign(argv: &[&str]) -> Option<cmd::http::SignArgs> {
        let cli =
            Cli::try_parse_from(std::iter::once("signet").chain(argv.iter().copied())).ok()?;
        match cli.cmd {
            Command::Sign(a) if cli.socket.is_none() => Some(a),
            _ => None,
        }
    }

    fn plain(argv: &[&str]) -> Option<cmd::http::SignArgs> {
        cmd::http::SignArgs::plain(argv.iter().map(std::ffi::OsString::from))
    }

    #[test]
    fn the_plain_sign_path_agrees_with_clap() {
        let taken: &[&[&str]] = &[
            &["sign", "maas", "machines/"],
            &["sign", "maas", "POST", "machines/?op=allocate"],
            &["sign", "", "x"],
            &["sign", "a b", "GET", "http://h/p q"],
        ];
        for argv in taken {
            let fast = plain(argv);
            assert!(fast.is_some(), "{argv:?} should take the plain path");
            assert_eq!(fast, clap_sign(argv), "{argv:?}");
        }
        let left_to_clap: &[&[&str]] = &[
            &["sign"],
            &["sign", "maas"],
            &["sign", "maas", "GET", "u", "extra"],
            &["sign", "--json", "maas", "u"],
            &["sign", "maas", "u", "--json"],
            &["sign", "maas", "--form", "a=b", "u"],
            &["sign", "--", "maas", "u"],
            &["sign", "-h"],
            &["--socket", "/s", "sign", "maas", "u"],
            &["list"],
            &[],
        ];
        for argv in left_to_clap {
            assert_eq!(plain(argv), None, "{argv:?} must be left to clap");
        }
    }
}
