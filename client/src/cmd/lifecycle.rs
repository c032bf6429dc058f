//! `maas …`, `vms …` and `rotate`: server tokens managed through the agent.
//! Keys minted by a server go straight into the keyring; they are printed
//! only with `--show`, once.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use signet_client::{
    Client, ClientError, ImportOutcome, LifecycleOp, MaasLogin, Response, ServerToken, Service,
    TokenKind,
};
use signet_proto::token::TlsOptions;

use crate::{Failed, input, name_ok};

fn unexpected(r: &Response) -> Failed {
    Failed { code: 1, message: format!("the agent sent an unexpected answer ({r:?})"), hint: None }
}

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
    CreateToken(CreateArgs),
    /// Delete a server token by its key.
    DeleteToken(DeleteArgs),
    /// Rename a server token (TOKEN: the whole token or its key).
    RenameToken(RenameArgs),
}

#[derive(Subcommand)]
pub enum VmsCmd {
    /// Have VMS mint an API token and store it as NEW.
    CreateToken(CreateArgs),
    /// The API tokens on the server: never secrets.
    Tokens(NameJson),
    /// Rename a server token.
    RenameToken(RenameArgs),
    /// Revoke a server token by id.
    RevokeToken(DeleteArgs),
}

#[derive(Args)]
pub struct LoginArgs {
    name: String,
    /// The MAAS URL, e.g. http://maas.example:5240/MAAS/
    url: String,
    /// Log in with this user's password instead of an API key.
    #[arg(long)]
    username: Option<String>,
    /// Store the key without checking it with whoami.
    #[arg(long)]
    no_verify: bool,
    #[arg(long, conflicts_with = "cacert")]
    insecure: bool,
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    #[arg(long)]
    comment: Option<String>,
}

#[derive(Args)]
pub struct ImportArgs {
    /// The MAAS CLI database (default ~/.maascli.db).
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Erase the imported credentials from that file afterwards.
    #[arg(long)]
    scrub: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct NameJson {
    name: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct CreateArgs {
    /// The local token to authenticate with.
    name: String,
    /// The local name for the new token.
    new: String,
    /// The token's name on the server.
    #[arg(long)]
    token_name: Option<String>,
    /// VMS: expiry (e.g. 30D, 12h).
    #[arg(long, value_name = "DUR")]
    expires: Option<String>,
    /// VMS: mint for another user.
    #[arg(long, value_name = "USER")]
    owner: Option<String>,
    /// Print the new token once.
    #[arg(long)]
    show: bool,
}

#[derive(Args)]
pub struct DeleteArgs {
    name: String,
    /// MAAS: the token key; VMS: the token id.
    token: String,
    /// Allow deleting the very token NAME uses (NAME is then removed too).
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct RenameArgs {
    name: String,
    token: String,
    new_token_name: String,
}

#[derive(Args)]
pub struct RotateArgs {
    name: String,
}

fn read_pem(p: &Option<PathBuf>) -> Result<Option<String>, Failed> {
    p.as_ref()
        .map(|p| {
            std::fs::read_to_string(p)
                .map_err(|e| Failed::usage(format!("cannot read --cacert {}: {e}", p.display())))
        })
        .transpose()
}

pub fn maas(socket: Option<&Path>, cmd: MaasCmd) -> Result<(), Failed> {
    match cmd {
        MaasCmd::Login(a) => login(socket, a),
        MaasCmd::Import(a) => import(socket, a),
        MaasCmd::Whoami(a) => {
            name_ok(&a.name)?;
            match Client::connect(socket)?.lifecycle(LifecycleOp::Whoami { name: a.name })? {
                Response::Account(acct) => {
                    if a.json {
                        println!(
                            "{}",
                            serde_json::json!({
                                "username": acct.username, "email": acct.email,
                                "is_superuser": acct.is_superuser, "is_local": acct.is_local,
                            })
                        );
                    } else {
                        println!("username:     {}", acct.username);
                        println!("email:        {}", acct.email.unwrap_or_default());
                        println!(
                            "is_superuser: {}",
                            acct.is_superuser.map_or("?".into(), |b| b.to_string())
                        );
                        println!(
                            "is_local:     {}",
                            acct.is_local.map_or("?".into(), |b| b.to_string())
                        );
                    }
                    Ok(())
                }
                other => Err(unexpected(&other)),
            }
        }
        MaasCmd::Tokens(a) => tokens(socket, Service::Maas, a),
        MaasCmd::CreateToken(a) => create(socket, Service::Maas, a),
        MaasCmd::DeleteToken(a) => delete(socket, Service::Maas, a),
        MaasCmd::RenameToken(a) => rename(socket, Service::Maas, a),
    }
}

pub fn vms(socket: Option<&Path>, cmd: VmsCmd) -> Result<(), Failed> {
    match cmd {
        VmsCmd::CreateToken(a) => create(socket, Service::Vms, a),
        VmsCmd::Tokens(a) => tokens(socket, Service::Vms, a),
        VmsCmd::RenameToken(a) => rename(socket, Service::Vms, a),
        VmsCmd::RevokeToken(a) => delete(socket, Service::Vms, a),
    }
}

fn login(socket: Option<&Path>, a: LoginArgs) -> Result<(), Failed> {
    name_ok(&a.name)?;
    let cacert_pem = read_pem(&a.cacert)?;
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
    let t = client.maas_login(MaasLogin {
        name: a.name,
        url: a.url,
        username: a.username,
        secret,
        verify: !a.no_verify,
        tls: TlsOptions { insecure: a.insecure, cacert_pem },
        comment: a.comment,
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
    let db =
        std::path::absolute(&db).map_err(|e| Failed::usage(format!("{}: {e}", db.display())))?;
    let op = LifecycleOp::MaasImport { db: db.display().to_string(), scrub: a.scrub };
    match Client::connect(socket)?.lifecycle(op)? {
        Response::Imported(items) => {
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
        other => Err(unexpected(&other)),
    }
}

fn outcome_json(o: &ImportOutcome) -> serde_json::Value {
    serde_json::json!({"profile": o.profile, "imported": o.imported, "scrubbed": o.scrubbed, "note": o.note})
}

fn token_json(t: &ServerToken) -> serde_json::Value {
    serde_json::json!({
        "id": t.id, "name": t.name, "owner": t.owner, "created": t.created,
        "expiry": t.expiry, "last_used": t.last_used, "revoked": t.revoked, "current": t.current,
    })
}

fn tokens(socket: Option<&Path>, service: Service, a: NameJson) -> Result<(), Failed> {
    name_ok(&a.name)?;
    match Client::connect(socket)?.lifecycle(LifecycleOp::ListTokens { service, name: a.name })? {
        Response::ServerTokens(list) => {
            if a.json {
                let mut v: Vec<_> = list.iter().map(token_json).collect();
                if service == Service::Maas {
                    // MAAS lists names and keys only.
                    for (item, t) in v.iter_mut().zip(&list) {
                        *item = serde_json::json!({"name": t.name, "token_key": t.id, "current": t.current});
                    }
                }
                println!("{}", serde_json::Value::Array(v));
            } else {
                let id = if service == Service::Maas { "TOKEN KEY" } else { "ID" };
                println!("{id:<24} NAME");
                for t in &list {
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
            Ok(())
        }
        other => Err(unexpected(&other)),
    }
}

fn create(socket: Option<&Path>, service: Service, a: CreateArgs) -> Result<(), Failed> {
    name_ok(&a.name)?;
    name_ok(&a.new)?;
    if service == Service::Maas && (a.expires.is_some() || a.owner.is_some()) {
        return Err(Failed::usage("--expires and --owner apply to VMS tokens only"));
    }
    if let Some(x) = &a.expires {
        signet_proto::expiry::parse_expiry(x).map_err(|e| Failed::usage(e.to_string()))?;
    }
    let op = LifecycleOp::CreateToken {
        service,
        name: a.name,
        new_name: a.new,
        token_name: a.token_name,
        expires: a.expires,
        owner: a.owner,
        show: a.show,
    };
    minted(Client::connect(socket)?.lifecycle(op), "created")
}

fn minted(r: Result<Response, ClientError>, what: &str) -> Result<(), Failed> {
    match r? {
        Response::Minted { token, shown, notes } => {
            if let Some(s) = shown {
                println!("{}", s.expose_str().unwrap_or_default());
            }
            eprintln!("Token {what}: {} ({}, {})", token.name, token.kind, token.url);
            for n in notes {
                eprintln!("signet: warning: {n}");
            }
            Ok(())
        }
        other => Err(unexpected(&other)),
    }
}

fn delete(socket: Option<&Path>, service: Service, a: DeleteArgs) -> Result<(), Failed> {
    name_ok(&a.name)?;
    let op =
        LifecycleOp::DeleteToken { service, name: a.name, token: a.token.clone(), force: a.force };
    match Client::connect(socket)?.lifecycle(op)? {
        Response::Ok => {
            eprintln!(
                "Server token {}: {}",
                if service == Service::Maas { "deleted" } else { "revoked" },
                a.token
            );
            Ok(())
        }
        other => Err(unexpected(&other)),
    }
}

fn rename(socket: Option<&Path>, service: Service, a: RenameArgs) -> Result<(), Failed> {
    name_ok(&a.name)?;
    let op = LifecycleOp::RenameToken {
        service,
        name: a.name,
        token: a.token,
        new_token_name: a.new_token_name,
    };
    match Client::connect(socket)?.lifecycle(op)? {
        Response::Ok => Ok(()),
        other => Err(unexpected(&other)),
    }
}

pub fn rotate(socket: Option<&Path>, a: RotateArgs) -> Result<(), Failed> {
    name_ok(&a.name)?;
    minted(Client::connect(socket)?.lifecycle(LifecycleOp::Rotate { name: a.name }), "rotated")
}
