//! `add`, `list`, `show`, `rm`, `rename` and `status`: the token store.

use std::path::{Path, PathBuf};

use clap::Args;
use signet_client::{Client, NewToken, SignatureMethod, TlsOptions, TokenKind, TokenParams};
use signet_proto::expiry::parse_expiry;
use signet_proto::token::normalize_base_url;

use crate::cmd::access::AccessArgs;
use crate::{Failed, input, name_ok, output, report};

#[derive(Args)]
pub struct JsonArg {
    /// Print JSON for scripts.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct AddArgs {
    /// The token's name (A-Z a-z 0-9 . _ @ -, at most 64).
    name: String,
    /// maas, oauth1, api-token, bearer, basic or header.
    #[arg(long, value_name = "KIND")]
    kind: TokenKind,
    /// The base URL: the token is used only for URLs under it.
    #[arg(long, value_name = "URL")]
    url: String,
    /// Expiry: a number and a unit (Y M w d h m s, e.g. 180D) or an RFC 3339 time.
    #[arg(long, value_name = "DUR")]
    expires: Option<String>,
    /// Allow `signet sign` to return headers that contain the secret itself.
    #[arg(long)]
    exportable: bool,
    /// A note for yourself, shown by list --json and show.
    #[arg(long, value_name = "TEXT")]
    comment: Option<String>,
    /// basic: the user name.
    #[arg(long, value_name = "U")]
    username: Option<String>,
    /// header: the header's name.
    #[arg(long, value_name = "H")]
    header_name: Option<String>,
    /// oauth1: the consumer key.
    #[arg(long, value_name = "K", requires = "token_key")]
    consumer_key: Option<String>,
    /// oauth1: the token key.
    #[arg(long, value_name = "T", requires = "consumer_key")]
    token_key: Option<String>,
    /// maas, oauth1: plaintext, hmac-sha1 or hmac-sha256.
    #[arg(long, value_name = "M")]
    signature: Option<SignatureMethod>,
    /// api-token: the tenant, sent as X-Tenant-Name.
    #[arg(long, value_name = "T")]
    tenant: Option<String>,
    /// Do not verify the server's TLS certificate.
    #[arg(long, conflicts_with = "cacert")]
    insecure: bool,
    /// Trust the CA certificates (PEM) in FILE for this token.
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    #[command(flatten)]
    access: AccessArgs,
}

pub fn add(socket: Option<&Path>, a: AddArgs) -> Result<(), Failed> {
    // Everything that can be checked without the secret is checked before
    // asking for it: a typo should not cost the user a paste.
    name_ok(&a.name)?;
    normalize_base_url(&a.url).map_err(|e| Failed::usage(e.to_string()))?;
    let expires = a
        .expires
        .as_deref()
        .map(parse_expiry)
        .transpose()
        .map_err(|e| Failed::usage(e.to_string()))?;
    let cacert_pem = a.cacert.as_deref().map(input::read_cacert).transpose()?;
    let access = a.access.parse()?;
    let mut client = Client::connect(socket)?;
    let secret = input::read_secret(a.kind, &a.name)?;
    signet_proto::secret::validate(a.kind, &secret).map_err(|e| Failed::usage(e.to_string()))?;
    let added = client.add(NewToken {
        name: a.name,
        kind: a.kind,
        url: a.url,
        expires,
        exportable: a.exportable,
        comment: a.comment,
        params: TokenParams {
            username: a.username,
            header_name: a.header_name,
            consumer_key: a.consumer_key,
            token_key: a.token_key,
            signature: a.signature,
            tenant: a.tenant,
            tls: TlsOptions { insecure: a.insecure, cacert_pem },
        },
        secret,
        access,
    })?;
    eprintln!("Token added: {} ({}, {})", added.name, added.kind, added.url);
    Ok(())
}

pub fn list(socket: Option<&Path>, a: JsonArg) -> Result<(), Failed> {
    let tokens = Client::connect(socket)?.list()?;
    if a.json {
        let items: Vec<_> = tokens.iter().map(output::token_json).collect();
        println!("{}", serde_json::Value::Array(items));
    } else if tokens.is_empty() {
        eprintln!("The agent has no tokens.");
    } else {
        print!("{}", output::token_table(&tokens));
    }
    Ok(())
}

#[derive(Args)]
pub struct ShowArgs {
    /// The token to show.
    name: String,
    /// Print JSON for scripts, with the kind's settings.
    #[arg(long)]
    json: bool,
}

pub fn show(socket: Option<&Path>, a: ShowArgs) -> Result<(), Failed> {
    name_ok(&a.name)?;
    let t = Client::connect(socket)?.show(&a.name)?;
    if a.json {
        println!("{}", output::token_detail_json(&t));
    } else {
        print!("{}", output::token_details(&t));
    }
    Ok(())
}

#[derive(Args)]
pub struct RmArgs {
    /// The tokens to remove.
    #[arg(required = true)]
    names: Vec<String>,
}

/// Removes each named token; a failure on one does not stop the others.
/// The exit code is that of the first failure.
pub fn rm(socket: Option<&Path>, a: RmArgs) -> Result<(), Failed> {
    for n in &a.names {
        name_ok(n)?;
    }
    let mut client = Client::connect(socket)?;
    let mut first_code = None;
    for n in &a.names {
        match client.remove(n) {
            Ok(()) => eprintln!("Token removed: {n}"),
            Err(e) => {
                let f = Failed::from(e);
                report(&f);
                first_code.get_or_insert(f.code);
            }
        }
    }
    // Each failure was reported as it happened.
    first_code.map_or(Ok(()), |code| Err(Failed { code, message: String::new(), hint: None }))
}

#[derive(Args)]
pub struct RenameArgs {
    /// The token's current name.
    old: String,
    /// Its new name.
    new: String,
}

pub fn rename(socket: Option<&Path>, a: RenameArgs) -> Result<(), Failed> {
    name_ok(&a.old)?;
    name_ok(&a.new)?;
    let t = Client::connect(socket)?.rename(&a.old, &a.new)?;
    eprintln!("Token renamed: {} -> {}", a.old, t.name);
    Ok(())
}

pub fn status(socket: Option<&Path>, a: JsonArg) -> Result<(), Failed> {
    let s = Client::connect(socket)?.status()?;
    if a.json {
        println!("{}", output::status_json(&s));
    } else {
        print!("{}", output::status_text(&s));
    }
    Ok(())
}
