//! `signet`: the command line client of signet-agent.
//!
//! Parses arguments (clap), reads secrets from stdin or a no-echo prompt,
//! talks to the agent through [`signet_client::Client`], and prints: a table
//! for people, `--json` for scripts. Every failure ends in one of the exit
//! codes in the README's table and a `signet: ...` line on stderr.

mod cmd;
mod input;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use signet_client::ClientError;

#[derive(Parser)]
#[command(
    name = "signet",
    version,
    about = "Use API tokens kept by signet-agent, without ever holding them"
)]
struct Cli {
    /// The agent's socket (default: $SIGNET_AUTH_SOCK).
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let socket = cli.socket.as_deref();
    let result = match cli.cmd {
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            report(&f);
            ExitCode::from(u8::try_from(f.code).unwrap_or(1))
        }
    }
}
