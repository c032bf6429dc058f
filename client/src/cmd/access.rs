//! `lock` and `unlock`, and the flags that set how the agent guards a new
//! token (`--lifetime`, `--confirm`, `--confirm-for`).

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::time::Duration;

use clap::Args;
use signet_client::{Client, LocalAccess, LockKind, Secret};
use signet_proto::expiry::{Expiry, parse_expiry};
use zeroize::Zeroizing;

use crate::Failed;

/// How the agent guards a new token, whatever the server thinks of it.
#[derive(Args)]
pub struct AccessArgs {
    /// The agent removes the token (index and keyring) this long after it
    /// is added: a number and a unit (Y M w d h m s, e.g. 8h). Unlike
    /// --expires, nothing changes on the server.
    #[arg(long, value_name = "DUR")]
    lifetime: Option<String>,
    /// Ask before each use, through the agent's askpass program
    /// (SIGNET_ASKPASS, else SSH_ASKPASS).
    #[arg(long)]
    confirm: bool,
    /// Like --confirm, but a yes lets the same program use the token
    /// without asking again for DUR (e.g. 10m).
    #[arg(long, value_name = "DUR")]
    confirm_for: Option<String>,
}

fn duration(flag: &str, text: &str) -> Result<Duration, Failed> {
    match parse_expiry(text).map_err(|e| Failed::usage(format!("{flag}: {e}")))? {
        Expiry::After(secs) => Ok(Duration::from_secs(secs)),
        Expiry::At(_) => Err(Failed::usage(format!(
            "{flag} takes a duration (a number and a unit, e.g. 8h), not a time"
        ))),
    }
}

impl AccessArgs {
    /// The flags as the client library takes them; a malformed duration
    /// is a usage error before the agent is asked.
    pub fn parse(&self) -> Result<LocalAccess, Failed> {
        Ok(LocalAccess {
            lifetime: self.lifetime.as_deref().map(|t| duration("--lifetime", t)).transpose()?,
            confirm: self.confirm || self.confirm_for.is_some(),
            confirm_for: self
                .confirm_for
                .as_deref()
                .map(|t| duration("--confirm-for", t))
                .transpose()?,
        })
    }
}

/// A passphrase: from a no-echo prompt on the terminal, else one line of
/// stdin (so scripts and tests can lock without a terminal).
fn read_passphrase(
    prompt: &str,
    stdin_lines: &mut Option<Zeroizing<String>>,
) -> Result<Secret, Failed> {
    let line = if std::io::stdin().is_terminal() {
        Zeroizing::new(rpassword::prompt_password(prompt).map_err(|e| Failed {
            code: 1,
            message: format!("cannot read from the terminal: {e}"),
            hint: None,
        })?)
    } else {
        let all = stdin_lines.get_or_insert_with(|| {
            let mut s = Zeroizing::new(String::new());
            let _ = std::io::stdin().take(64 * 1024).read_to_string(&mut s);
            s
        });
        let (first, rest) = match all.find('\n') {
            Some(i) => (
                Zeroizing::new(all[..i].trim_end_matches('\r').to_string()),
                all[i + 1..].to_string(),
            ),
            None => (Zeroizing::new(all.to_string()), String::new()),
        };
        **all = rest;
        first
    };
    Ok(Secret::new(line.as_bytes().to_vec()))
}

pub fn lock(socket: Option<&Path>) -> Result<(), Failed> {
    let mut client = Client::connect(socket)?;
    let mut stdin = None;
    let first = read_passphrase("Lock passphrase: ", &mut stdin)?;
    let again = read_passphrase("Again: ", &mut stdin)?;
    if first.expose() != again.expose() {
        return Err(Failed {
            code: 2,
            message: "the two passphrases differ".into(),
            hint: Some("run `signet lock` again and type the same passphrase twice".into()),
        });
    }
    if first.is_empty() {
        return Err(Failed {
            code: 2,
            message: "an empty passphrase locks nothing".into(),
            hint: Some("run `signet lock` again with a passphrase".into()),
        });
    }
    client.lock(first)?;
    eprintln!("Agent locked.");
    Ok(())
}

pub fn unlock(socket: Option<&Path>) -> Result<(), Failed> {
    let mut client = Client::connect(socket)?;
    let passphrase = match client.status()?.locked {
        None => {
            eprintln!("The agent is not locked.");
            return Ok(());
        }
        Some(LockKind::Auto) => None,
        Some(LockKind::Passphrase) => Some(read_passphrase("Unlock passphrase: ", &mut None)?),
        Some(LockKind::Vault) => Some(read_passphrase("Vault passphrase: ", &mut None)?),
    };
    client.unlock(passphrase)?;
    eprintln!("Agent unlocked.");
    Ok(())
}
