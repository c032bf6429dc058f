//! `git-credential-signet`: a git credential helper that answers from the
//! exportable tokens signet-agent keeps.
//!
//! `git config --global credential.helper signet` makes git run
//! `git credential-signet get` (this program, found on PATH) whenever an
//! HTTP(S) remote asks for credentials, with the request on stdin as
//! `key=value` lines (gitcredentials(7)). The answer:
//!
//! - a `basic` token: `username=` and `password=`;
//! - a `bearer`, `api-token` or `header` token whose header is
//!   `Authorization: <scheme> <credential>`: `authtype=` and `credential=`,
//!   when git announced `capability[]=authtype` (git 2.46 and later); an
//!   older git is told why it gets nothing.
//!
//! The token is the one whose base URL covers `protocol://host/path`
//! (the longest such base; `credential.useHttpPath` makes git send the
//! path), or the one named by `--token NAME`. Either way the header comes
//! from the agent's `Sign` request, so the agent's own rules decide: a
//! token that is not exportable, expired or out of scope for that URL gets
//! nothing. `store` and `erase` do nothing: the agent owns the token.
//!
//! A token that matches nothing yields an empty answer (exit 0), so git
//! asks its next helper; a refusal says why on stderr, which git shows.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine as _;
use clap::Parser;
use signet_client::{Client, ClientError, TokenInfo, TokenKind};
use zeroize::Zeroizing;

/// Answers git's credential requests from the exportable tokens of
/// signet-agent. Set up with `git config --global credential.helper signet`.
#[derive(Parser)]
#[command(name = "git-credential-signet", version)]
struct Args {
    /// Use this token, whatever its base URL (the agent still checks the
    /// URL is in its scope).
    #[arg(long, value_name = "NAME")]
    token: Option<String>,
    /// The agent's socket (default: $SIGNET_AUTH_SOCK, else
    /// $XDG_RUNTIME_DIR/signet/agent.sock).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// get, store or erase (git passes it); others are ignored.
    action: String,
}

/// git's request lines are short; anything longer is not git talking.
const MAX_INPUT: u64 = 64 * 1024;

/// What git asked about.
#[derive(Debug, Default)]
struct Query {
    protocol: Option<String>,
    host: Option<String>,
    path: Option<String>,
    username: Option<String>,
    authtype_capable: bool,
}

fn parse_query(input: &str) -> Query {
    let mut q = Query::default();
    for line in input.lines() {
        // A blank line ends the request (gitcredentials(7)).
        if line.is_empty() {
            break;
        }
        let Some((k, v)) = line.split_once('=') else { continue };
        match k {
            "protocol" => q.protocol = Some(v.to_string()),
            "host" => q.host = Some(v.to_string()),
            "path" => q.path = Some(v.to_string()),
            "username" => q.username = Some(v.to_string()),
            "capability[]" if v == "authtype" => q.authtype_capable = true,
            _ => {}
        }
    }
    q
}

/// A refusal: what to say, what to do, and the exit code.
struct Refused {
    code: u8,
    message: String,
    hint: Option<String>,
}

impl From<ClientError> for Refused {
    fn from(e: ClientError) -> Refused {
        Refused {
            code: u8::try_from(e.exit_code()).unwrap_or(1),
            message: e.to_string(),
            hint: e.hint().map(str::to_string),
        }
    }
}

fn refused(code: u8, message: String, hint: Option<&str>) -> Refused {
    Refused { code, message, hint: hint.map(str::to_string) }
}

fn main() -> ExitCode {
    let args = Args::parse();
    // `store` brings the password: the buffer is wiped, and sized so that
    // reading never moves it and leaves a copy behind.
    let mut input = Zeroizing::new(String::with_capacity(MAX_INPUT as usize + 1));
    // Read all of it whatever the action: git writes the request before it
    // reads, and a helper that leaves early must not break its pipe.
    if std::io::stdin().take(MAX_INPUT).read_to_string(&mut input).is_err() {
        eprintln!("git-credential-signet: the request on stdin is not text");
        return ExitCode::from(2);
    }
    if args.action != "get" {
        // store and erase: the agent owns the token; nothing to keep or drop.
        return ExitCode::SUCCESS;
    }
    match get(&args, &parse_query(&input)) {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(answer)) => {
            let mut out = std::io::stdout().lock();
            match out.write_all(answer.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("git-credential-signet: cannot answer git: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(r) => {
            eprintln!("git-credential-signet: {}", r.message);
            if let Some(h) = r.hint {
                eprintln!("git-credential-signet: {h}");
            }
            ExitCode::from(r.code)
        }
    }
}

/// Whether `url` is under the token's base URL: same scheme, host and port,
/// and a path inside the base path. Only to choose a token: the agent
/// checks scope again, by its own stricter rules, before it signs.
fn covers(base: &url::Url, url: &url::Url) -> bool {
    base.scheme() == url.scheme()
        && base.host_str() == url.host_str()
        && base.port_or_known_default() == url.port_or_known_default()
        && (url.path().starts_with(base.path())
            || base.path().strip_suffix('/').is_some_and(|p| url.path() == p))
}

/// Kinds whose signature is one fixed header git can send on every request.
/// MAAS and OAuth 1 sign each request anew, which git cannot ask for.
fn fixed_header(kind: TokenKind) -> bool {
    matches!(kind, TokenKind::Bearer | TokenKind::Basic | TokenKind::ApiToken | TokenKind::Header)
}

fn choose<'a>(tokens: &'a [TokenInfo], url: &url::Url) -> Result<Option<&'a TokenInfo>, Refused> {
    let fitting: Vec<(&TokenInfo, usize)> = tokens
        .iter()
        .filter(|t| fixed_header(t.kind))
        .filter_map(|t| {
            let base = url::Url::parse(&t.url).ok()?;
            covers(&base, url).then(|| (t, base.path().len()))
        })
        .collect();
    // A token the agent would hand out beats one it would refuse: an
    // exportable one first, then an unexpired one. The rest still fit, so
    // that the agent's refusal tells the user why git got nothing.
    let rank = |t: &TokenInfo| (t.exportable, !t.expired);
    let Some(top) = fitting.iter().map(|(t, _)| rank(t)).max() else { return Ok(None) };
    let fitting: Vec<_> = fitting.into_iter().filter(|(t, _)| rank(t) == top).collect();
    let Some(best) = fitting.iter().map(|(_, n)| *n).max() else { return Ok(None) };
    let names: Vec<&str> =
        fitting.iter().filter(|(_, n)| *n == best).map(|(t, _)| t.name.as_str()).collect();
    match names.as_slice() {
        [one] => Ok(fitting.iter().find(|(t, _)| t.name == *one).map(|(t, _)| *t)),
        many => Err(refused(
            2,
            format!("several tokens fit {url}: {}", many.join(", ")),
            Some(
                "name one for this remote: git config credential.<URL>.helper 'signet --token NAME'",
            ),
        )),
    }
}

fn get(args: &Args, q: &Query) -> Result<Option<Zeroizing<String>>, Refused> {
    let (Some(protocol), Some(host)) = (q.protocol.as_deref(), q.host.as_deref()) else {
        return Ok(None);
    };
    if !matches!(protocol, "http" | "https") {
        return Ok(None);
    }
    let text = format!("{protocol}://{host}/{}", q.path.as_deref().unwrap_or(""));
    let url = url::Url::parse(&text)
        .map_err(|e| refused(2, format!("git asked about `{}`: {e}", text.escape_debug()), None))?;

    let mut agent = Client::connect(args.socket.as_deref())?;
    let name = match &args.token {
        Some(n) => n.clone(),
        None => {
            let tokens = agent.list()?;
            match choose(&tokens, &url)? {
                Some(t) => t.name.clone(),
                None => {
                    no_token_hint(&tokens, &url, q.path.is_none());
                    return Ok(None);
                }
            }
        }
    };
    // The agent decides: export, expiry and scope for exactly this URL.
    let headers = agent.sign(&name, "GET", url.as_str(), &[])?;
    let [header] = headers.as_slice() else {
        return Err(refused(
            5,
            format!("token `{name}` needs {} headers on a request; git sends one", headers.len()),
            None,
        ));
    };
    if !header.name.eq_ignore_ascii_case("authorization") {
        return Err(refused(
            5,
            format!(
                "token `{name}` goes in a `{}` header; git can send only Authorization",
                header.name
            ),
            None,
        ));
    }
    let value = header
        .value
        .expose_str()
        .ok_or_else(|| refused(1, format!("the agent's header for `{name}` is not text"), None))?;
    let (scheme, credential) = value.split_once(' ').unwrap_or((value, ""));
    let mut answer = Zeroizing::new(String::with_capacity(value.len() * 2 + 64));
    if scheme.eq_ignore_ascii_case("basic") {
        let plain = Zeroizing::new(
            base64::engine::general_purpose::STANDARD.decode(credential.trim()).map_err(|_| {
                refused(1, format!("the agent's Basic header for `{name}` is not base64"), None)
            })?,
        );
        let text = std::str::from_utf8(&plain).map_err(|_| {
            refused(1, format!("token `{name}`'s user name and password are not UTF-8"), None)
        })?;
        let (user, password) = text.split_once(':').unwrap_or((text, ""));
        if [user, password].iter().any(|s| s.contains(['\n', '\0'])) {
            return Err(refused(
                1,
                format!("token `{name}` has a line break git cannot carry"),
                None,
            ));
        }
        answer.push_str("username=");
        answer.push_str(user);
        answer.push_str("\npassword=");
        answer.push_str(password);
        answer.push('\n');
    } else if q.authtype_capable {
        answer.push_str("capability[]=authtype\nauthtype=");
        answer.push_str(scheme);
        answer.push_str("\ncredential=");
        answer.push_str(credential);
        // Tells git not to hand the credential to a storing helper.
        answer.push_str("\nephemeral=1\n");
    } else {
        return Err(refused(
            5,
            format!(
                "token `{name}` is sent as `Authorization: {scheme} ...`, and this git cannot send that scheme"
            ),
            Some(
                "git 2.46 or later can (credential authtype); or keep the token as --kind basic with the user name your git host expects",
            ),
        ));
    }
    Ok(Some(answer))
}

/// Nothing fits: if a token would have, had git sent the path, say so.
fn no_token_hint(tokens: &[TokenInfo], url: &url::Url, no_path: bool) {
    if !no_path {
        return;
    }
    let same_host = tokens.iter().filter(|t| fixed_header(t.kind)).find(|t| {
        url::Url::parse(&t.url).is_ok_and(|b| {
            b.scheme() == url.scheme()
                && b.host_str() == url.host_str()
                && b.port_or_known_default() == url.port_or_known_default()
        })
    });
    if let Some(t) = same_host {
        eprintln!(
            "git-credential-signet: token `{}` is for {}, but git did not say which path it wants; set `git config --global credential.useHttpPath true`",
            t.name, t.url
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_request_lines_are_read_up_to_a_blank_line() {
        let q = parse_query(
            "capability[]=authtype\ncapability[]=state\nprotocol=https\nhost=git.example:8443\npath=team/repo.git\nusername=me\nwwwauth[]=Basic realm=\"x\"\n\nprotocol=http\n",
        );
        assert_eq!(q.protocol.as_deref(), Some("https"));
        assert_eq!(q.host.as_deref(), Some("git.example:8443"));
        assert_eq!(q.path.as_deref(), Some("team/repo.git"));
        assert_eq!(q.username.as_deref(), Some("me"));
        assert!(q.authtype_capable);
        assert!(!parse_query("protocol=https\nhost=h\n").authtype_capable);
    }

    #[test]
    fn a_base_url_covers_its_own_paths_only() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        let base = u("https://git.example/team/");
        assert!(covers(&base, &u("https://git.example/team/repo.git")));
        assert!(covers(&base, &u("https://git.example/team")));
        assert!(!covers(&base, &u("https://git.example/teammate/repo.git")));
        assert!(!covers(&base, &u("https://git.example/other/repo.git")));
        assert!(!covers(&base, &u("http://git.example/team/repo.git")));
        assert!(!covers(&base, &u("https://git.example:8443/team/repo.git")));
        assert!(covers(&u("https://git.example/"), &u("https://git.example:443/x")));
    }
}
