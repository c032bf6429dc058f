//! `vault passwd` and `migrate`: where the agent keeps the secrets.

use std::path::Path;

use clap::{Args, Subcommand, ValueEnum};
use signet_client::{Client, Secret, StoreKind};

use crate::{Failed, input};

#[derive(Subcommand)]
pub enum VaultCmd {
    /// Change the vault file's passphrase: asks for the current one and the
    /// new one twice (no echo; from stdin, one per line, when it is not a
    /// terminal) and re-seals every secret at once.
    Passwd,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Target {
    /// The encrypted vault file in the agent's data directory.
    File,
    /// The Secret Service of the agent's session.
    SecretService,
    /// The kernel keyring (gone at reboot).
    Keyutils,
}

#[derive(Args)]
pub struct MigrateArgs {
    /// The store to move every secret into.
    #[arg(long, value_name = "STORE")]
    to: Target,
    /// Print JSON for scripts.
    #[arg(long)]
    json: bool,
}

fn same(a: &Secret, b: &Secret) -> Result<(), Failed> {
    if a.expose() != b.expose() {
        return Err(Failed::usage("the two new passphrases differ; nothing was changed"));
    }
    if a.is_empty() {
        return Err(Failed::usage("the new passphrase is empty; nothing was changed"));
    }
    Ok(())
}

pub fn vault(socket: Option<&Path>, cmd: VaultCmd) -> Result<(), Failed> {
    match cmd {
        VaultCmd::Passwd => {
            let mut client = Client::connect(socket)?;
            let mut p = input::read_passphrases(&[
                "Current vault passphrase",
                "New vault passphrase",
                "New vault passphrase again",
            ])?
            .into_iter();
            let (old, new, again) = match (p.next(), p.next(), p.next()) {
                (Some(a), Some(b), Some(c)) => (a, b, c),
                _ => return Err(Failed::usage("expected three passphrases")),
            };
            same(&new, &again)?;
            client.vault_passwd(old, new)?;
            eprintln!("Vault passphrase changed");
            Ok(())
        }
    }
}

pub fn migrate(socket: Option<&Path>, a: MigrateArgs) -> Result<(), Failed> {
    let to = match a.to {
        Target::File => StoreKind::File,
        Target::SecretService => StoreKind::SecretService,
        Target::Keyutils => StoreKind::Keyutils,
    };
    let mut client = Client::connect(socket)?;
    let passphrase = if to == StoreKind::File {
        // A vault that exists is opened with its passphrase; a new one is
        // created, so the passphrase is asked twice.
        let status = client.status()?;
        let exists = Path::new(&status.data_dir).join("vault").exists();
        if exists {
            input::read_passphrases(&["Vault passphrase"])?.into_iter().next()
        } else {
            let p =
                input::read_passphrases(&["New vault passphrase", "New vault passphrase again"])?;
            same(&p[0], &p[1])?;
            p.into_iter().next()
        }
    } else {
        None
    };
    let m = client.migrate(to, passphrase)?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "from": m.from, "to": m.to, "moved": m.moved, "left_behind": m.left_behind
            })
        );
    } else {
        eprintln!("Moved {} token(s) from {} to {}", m.moved, m.from, m.to);
        if m.left_behind > 0 {
            eprintln!(
                "signet: {} old cop{} could not be deleted from {}; the agent no longer uses them",
                m.left_behind,
                if m.left_behind == 1 { "y" } else { "ies" },
                m.from
            );
        }
    }
    Ok(())
}
