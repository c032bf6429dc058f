//! `maas …`, `vms …` and `rotate`: server tokens managed through the agent.
//! Keys minted by a server go straight into the keyring; they are printed
//! only with `--show`, once.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use signet_client::{
    Client, ImportOutcome, MaasLoginParams, Minted, NewMaasToken, NewVmsToken, ServerToken,
    TlsOptions, TokenKind,
};

use crate::cmd::access::AccessArgs;
use crate::{Failed, input, name_ok};

#[derive(Subcommand)]
pub enum MaasCmd {
    /// Store a MAAS API key (from stdin or a prompt), verified with whoami;
    /// with --username, log in with a password and let the agent obtain the key.
    Login(LoginArgs),
    /// Import MAAS CLI profiles (~/.maascli.db) into the keyring.
    Import(ImportArgs),
    /// Who the token authenticates as.
    Whoami(NameJson),
    /// The account's tokens on the server: names and keys, never secrets.
    Tokens(NameJson),
    /// Have the server mint a token and store it as NEW.
    CreateToken(MaasCreateArgs),
    /// Delete a server token by its key.
    DeleteToken(MaasDeleteArgs),
    /// Rename a server token (TOKEN: the whole token or its key).
    RenameToken(MaasRenameArgs),
}

#[derive(Subcommand)]
pub enum VmsCmd {
    /// Have VMS mint an API token and store it as NEW.
    CreateToken(VmsCreateArgs),
    /// The API tokens on the server: never secrets.
    Tokens(NameJson),
    /// Rename a server token.
    RenameToken(VmsRenameArgs),
    /// Revoke a server token by id.
    RevokeToken(VmsRevokeArgs),
}

#[derive(Args)]
pub struct LoginArgs {
    /// The local name for the token.
    name: String,
    /// The MAAS URL, e.g. http://maas.example:5240/MAAS/
    url: String,
    /// Log in with this user's password instead of an API key.
    #[arg(long, value_name = "USER")]
    username: Option<String>,
    /// Store the key without checking it with whoami.
    #[arg(long)]
    no_verify: bool,
    /// Do not verify the server's TLS certificate.
    #[arg(long, conflicts_with = "cacert")]
    insecure: bool,
    /// Trust the CA certificates (PEM) in FILE for this token.
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// A note for yourself, shown by list --json and show.
    #[arg(long, value_name = "TEXT")]
    comment: Option<String>,
    #[command(flatten)]
    access: AccessArgs,
}

#[derive(Args)]
pub struct ImportArgs {
    /// The MAAS CLI database (default ~/.maascli.db).
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Erase the imported credentials from that file afterwards.
    #[arg(long)]
    scrub: bool,
    /// Print JSON for scripts: one item per profile.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct NameJson {
    /// The local token to authenticate with.
    name: String,
    /// Print JSON for scripts.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct MaasCreateArgs {
    /// The local token to authenticate with.
    name: String,
    /// The local name for the new token.
    new: String,
    /// The token's name on the server.
    #[arg(long, value_name = "T")]
    token_name: Option<String>,
    /// Print the new token once.
    #[arg(long)]
    show: bool,
    #[command(flatten)]
    access: AccessArgs,
}

#[derive(Args)]
pub struct VmsCreateArgs {
    /// The local token to authenticate with.
    name: String,
    /// The local name for the new token.
    new: String,
    /// The token's name on the server.
    #[arg(long, value_name = "T")]
    token_name: Option<String>,
    /// Expiry: a number and a unit (Y M w d h m s, e.g. 30D) or an RFC 3339 time.
    #[arg(long, value_name = "DUR")]
    expires: Option<String>,
    /// Mint the token for this user instead of yourself.
    #[arg(long, value_name = "USER")]
    owner: Option<String>,
    /// Print the new token once.
    #[arg(long)]
    show: bool,
    #[command(flatten)]
    access: AccessArgs,
}

#[derive(Args)]
pub struct MaasDeleteArgs {
    /// The local token to authenticate with.
    name: String,
    /// The server token's key, as `maas tokens` lists it.
    token_key: String,
    /// Allow deleting the very token NAME uses (NAME is then removed too).
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct VmsRevokeArgs {
    /// The local token to authenticate with.
    name: String,
    /// The server token's id, as `vms tokens` lists it.
    id: String,
    /// Allow revoking the very token NAME uses (NAME is then removed too).
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct MaasRenameArgs {
    /// The local token to authenticate with.
    name: String,
    /// The server token: the whole token or its key.
    token: String,
    /// Its new name on the server.
    new_token_name: String,
}

#[derive(Args)]
pub struct VmsRenameArgs {
    /// The local token to authenticate with.
    name: String,
    /// The server token's id, as `vms tokens` lists it.
    id: String,
    /// Its new name on the server.
    new_name: String,
}

#[derive(Args)]
pub struct RotateArgs {
    /// The local token (maas or api-token) whose secret is replaced.
    name: String,
}

fn read_pem(p: &Option<PathBuf>) -> Result<Option<String>, Failed> {
    p.as_deref().map(crate::input::read_cacert).transpose()
}

pub fn maas(socket: Option<&Path>, cmd: MaasCmd) -> Result<(), Failed> {
    match cmd {
        MaasCmd::Login(a) => login(socket, a),
        MaasCmd::Import(a) => import(socket, a),
        MaasCmd::Whoami(a) => whoami(socket, a),
        MaasCmd::Tokens(a) => {
            name_ok(&a.name)?;
            let list = Client::connect(socket)?.maas_tokens(&a.name)?;
            print_tokens(&list, Service::Maas, a.json);
            Ok(())
        }
        MaasCmd::CreateToken(a) => {
            name_ok(&a.name)?;
            name_ok(&a.new)?;
            let req = NewMaasToken {
                access: a.access.parse()?,
                name: a.name,
                new_name: a.new,
                token_name: a.token_name,
                show: a.show,
            };
            report_minted(Client::connect(socket)?.maas_create_token(req)?, "created");
            Ok(())
        }
        MaasCmd::DeleteToken(a) => {
            name_ok(&a.name)?;
            Client::connect(socket)?.maas_delete_token(&a.name, &a.token_key, a.force)?;
            eprintln!("Server token deleted: {}", a.token_key);
            Ok(())
        }
        MaasCmd::RenameToken(a) => {
            name_ok(&a.name)?;
            Client::connect(socket)?.maas_rename_token(&a.name, &a.token, &a.new_token_name)?;
            Ok(())
        }
    }
}

pub fn vms(socket: Option<&Path>, cmd: VmsCmd) -> Result<(), Failed> {
    match cmd {
        VmsCmd::CreateToken(a) => {
            name_ok(&a.name)?;
            name_ok(&a.new)?;
            if let Some(x) = &a.expires {
                signet_proto::expiry::parse_expiry(x).map_err(|e| Failed::usage(e.to_string()))?;
            }
            let req = NewVmsToken {
                access: a.access.parse()?,
                name: a.name,
                new_name: a.new,
                token_name: a.token_name,
                expires: a.expires,
                owner: a.owner,
                show: a.show,
            };
            report_minted(Client::connect(socket)?.vms_create_token(req)?, "created");
            Ok(())
        }
        VmsCmd::Tokens(a) => {
            name_ok(&a.name)?;
            let list = Client::connect(socket)?.vms_tokens(&a.name)?;
            print_tokens(&list, Service::Vms, a.json);
            Ok(())
        }
        VmsCmd::RenameToken(a) => {
            name_ok(&a.name)?;
            Client::connect(socket)?.vms_rename_token(&a.name, &a.id, &a.new_name)?;
            Ok(())
        }
        VmsCmd::RevokeToken(a) => {
            name_ok(&a.name)?;
            Client::connect(socket)?.vms_revoke_token(&a.name, &a.id, a.force)?;
            eprintln!("Server token revoked: {}", a.id);
            Ok(())
        }
    }
}

pub fn rotate(socket: Option<&Path>, a: RotateArgs) -> Result<(), Failed> {
    name_ok(&a.name)?;
    report_minted(Client::connect(socket)?.rotate(&a.name)?, "rotated");
    Ok(())
}

fn login(socket: Option<&Path>, a: LoginArgs) -> Result<(), Failed> {
    name_ok(&a.name)?;
    let cacert_pem = read_pem(&a.cacert)?;
    let access = a.access.parse()?;
    let mut client = Client::connect(socket)?;
    let secret = match &a.username {
        // The password: one line, like any secret; never checked for shape.
        Some(u) => input::read_secret(TokenKind::Basic, &format!("{u}@{}", a.url))?,
        None => {
            let s = input::read_secret(TokenKind::Maas, &a.name)?;
            signet_proto::secret::validate(TokenKind::Maas, &s)
                .map_err(|e| Failed::usage(e.to_string()))?;
            s
        }
    };
    let t = client.maas_login(MaasLoginParams {
        name: a.name,
        url: a.url,
        username: a.username,
        secret,
        verify: !a.no_verify,
        tls: TlsOptions { insecure: a.insecure, cacert_pem },
        comment: a.comment,
        access,
    })?;
    eprintln!("Token added: {} ({}, {})", t.name, t.kind, t.url);
    Ok(())
}

fn import(socket: Option<&Path>, a: ImportArgs) -> Result<(), Failed> {
    let db = match a.db {
        Some(p) => p,
        None => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".maascli.db"))
            .ok_or_else(|| Failed::usage("HOME is not set: pass --db PATH"))?,
    };
    let items = Client::connect(socket)?.maas_import(&db, a.scrub)?;
    if a.json {
        let v: Vec<_> = items.iter().map(outcome_json).collect();
        println!("{}", serde_json::Value::Array(v));
    } else if items.is_empty() {
        eprintln!("No profiles in {}.", db.display());
    } else {
        for o in &items {
            println!("{}: {}", o.profile, o.note);
        }
    }
    Ok(())
}

fn whoami(socket: Option<&Path>, a: NameJson) -> Result<(), Failed> {
    name_ok(&a.name)?;
    let acct = Client::connect(socket)?.maas_whoami(&a.name)?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "username": acct.username, "email": acct.email,
                "is_superuser": acct.is_superuser, "is_local": acct.is_local,
            })
        );
    } else {
        let flag = |b: Option<bool>| b.map_or("?".into(), |b| b.to_string());
        println!("username:     {}", acct.username);
        println!("email:        {}", acct.email.unwrap_or_default());
        println!("is_superuser: {}", flag(acct.is_superuser));
        println!("is_local:     {}", flag(acct.is_local));
    }
    Ok(())
}

fn outcome_json(o: &ImportOutcome) -> serde_json::Value {
    serde_json::json!({"profile": o.profile, "imported": o.imported, "scrubbed": o.scrubbed, "note": o.note})
}

/// Which server a token list came from: MAAS lists token keys and names
/// only, VMS ids with owners, dates and revocation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Service {
    Maas,
    Vms,
}

fn token_json(t: &ServerToken, service: Service) -> serde_json::Value {
    match service {
        Service::Maas => {
            serde_json::json!({"name": t.name, "token_key": t.id, "current": t.current})
        }
        Service::Vms => serde_json::json!({
            "id": t.id, "name": t.name, "owner": t.owner, "created": t.created,
            "expiry": t.expiry, "last_used": t.last_used, "revoked": t.revoked, "current": t.current,
        }),
    }
}

fn print_tokens(list: &[ServerToken], service: Service, json: bool) {
    if json {
        let v: Vec<_> = list.iter().map(|t| token_json(t, service)).collect();
        println!("{}", serde_json::Value::Array(v));
        return;
    }
    let id = if service == Service::Maas { "TOKEN KEY" } else { "ID" };
    println!("{id:<24} NAME");
    for t in list {
        let mut extra = String::new();
        if t.revoked == Some(true) {
            extra.push_str("  (revoked)");
        }
        if let Some(x) = &t.expiry {
            extra.push_str(&format!("  expires {x}"));
        }
        if t.current {
            extra.push_str("  (this token)");
        }
        println!("{:<24} {}{extra}", t.id, t.name.as_deref().unwrap_or(""));
    }
}

fn report_minted(m: Minted, what: &str) {
    if let Some(s) = m.shown {
        println!("{}", s.expose_str().unwrap_or_default());
    }
    eprintln!("Token {what}: {} ({}, {})", m.token.name, m.token.kind, m.token.url);
    for n in m.notes {
        eprintln!("signet: warning: {n}");
    }
}
