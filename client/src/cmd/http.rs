//! `sign` and `request`: using a token without holding it.

use std::fs::File;
use std::io::{self, Seek, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use signet_client::{Client, HttpRequest, RequestBody, client_error};

use crate::{Failed, name_ok};

// `NAME [METHOD] URL` puts an optional positional before a required one,
// which clap accepts only with `allow_missing_positional` on the command.
#[derive(Args, Debug, PartialEq)]
pub struct SignArgs {
    /// The token to sign with.
    name: String,
    /// The request's method.
    #[arg(default_value = "GET")]
    method: String,
    /// The request's URL; a relative URL is joined to the token's base URL.
    url: String,
    /// A form parameter the signature covers (OAuth HMAC), K=V.
    #[arg(long = "form", value_name = "K=V")]
    form: Vec<String>,
    /// Print JSON for scripts: {"headers": [{"name": N, "value": V}]}.
    #[arg(long)]
    json: bool,
}

impl SignArgs {
    /// `sign NAME URL` or `sign NAME METHOD URL` with no option: exactly
    /// what clap would make of those arguments. `None` for anything else
    /// (an option, `--`, `-h`, not UTF-8, another command), which clap
    /// then parses.
    pub fn plain(mut args: impl Iterator<Item = std::ffi::OsString>) -> Option<SignArgs> {
        if args.next()? != "sign" {
            return None;
        }
        let mut rest = Vec::with_capacity(3);
        for a in args {
            let a = a.into_string().ok()?;
            if a.starts_with('-') || rest.len() == 3 {
                return None;
            }
            rest.push(a);
        }
        let mut rest = rest.into_iter();
        let (name, method, url) = match (rest.next(), rest.next(), rest.next()) {
            (Some(n), Some(u), None) => (n, "GET".to_string(), u),
            (Some(n), Some(m), Some(u)) => (n, m, u),
            _ => return None,
        };
        Some(SignArgs { name, method, url, form: Vec::new(), json: false })
    }
}

fn io_failed(what: &str, e: io::Error) -> Failed {
    Failed { code: 1, message: format!("{what}: {e}"), hint: None }
}

pub fn sign(socket: Option<&Path>, a: SignArgs) -> Result<(), Failed> {
    name_ok(&a.name)?;
    let mut form = Vec::with_capacity(a.form.len());
    for kv in &a.form {
        form.push(
            kv.split_once('=')
                .ok_or_else(|| Failed::usage(format!("--form {kv}: expected K=V")))?,
        );
    }
    let headers = Client::connect(socket)?.sign(&a.name, &a.method, &a.url, &form)?;
    let mut out = io::stdout().lock();
    let written = if a.json {
        let items: Vec<_> = headers
            .iter()
            .map(|h| {
                serde_json::json!({"name": h.name, "value": h.value.expose_str().unwrap_or_default()})
            })
            .collect();
        writeln!(out, "{}", serde_json::json!({ "headers": items }))
    } else {
        headers.iter().try_for_each(|h| {
            writeln!(out, "{}: {}", h.name, h.value.expose_str().unwrap_or_default())
        })
    };
    written.map_err(|e| io_failed("cannot write the headers", e))
}

#[derive(Args)]
pub struct RequestArgs {
    /// The token to authenticate with.
    name: String,
    /// The URL; relative URLs are joined to the token's base URL.
    url: String,
    /// The method (default GET, or POST with a body).
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    method: Option<String>,
    /// An extra header, 'Name: value'.
    #[arg(short = 'H', long = "header", value_name = "K: V")]
    headers: Vec<String>,
    /// Body data, as curl's -d (several are joined with &; @FILE reads a file without its line breaks).
    #[arg(short = 'd', long = "data", value_name = "DATA", conflicts_with = "data_binary")]
    data: Vec<String>,
    /// Body bytes exactly as given: @FILE, @- for stdin, or literal data.
    #[arg(long = "data-binary", value_name = "@FILE|@-")]
    data_binary: Option<String>,
    /// Print the status line and response headers before the body.
    #[arg(short = 'i', long = "include")]
    include: bool,
    /// Exit 22 without printing the body when the status is 400 or more.
    #[arg(short = 'f', long = "fail")]
    fail: bool,
    /// Write the body to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Give up after SECS seconds.
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
}

/// A request body: bytes in memory, a file, or stdin.
enum BodySource {
    Bytes(io::Cursor<Vec<u8>>),
    File(File),
    Stdin(io::Stdin),
}

impl BodySource {
    /// A file (stdin included, when it is one) goes as itself, for the
    /// agent to read when it is a regular file.
    fn body(&mut self) -> RequestBody<'_> {
        match self {
            BodySource::Bytes(c) => RequestBody::Reader(Box::new(c)),
            BodySource::File(f) => RequestBody::File(f),
            BodySource::Stdin(s) => RequestBody::Reader(Box::new(s)),
        }
    }

    fn len(&self) -> Option<u64> {
        match self {
            BodySource::Bytes(c) => Some(c.get_ref().len() as u64),
            // What is left from the offset: stdin may have been read from.
            BodySource::File(f) => f
                .metadata()
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len().saturating_sub((&*f).stream_position().unwrap_or(0))),
            BodySource::Stdin(_) => None,
        }
    }
}

/// `-d @FILE` is read whole into memory (its line breaks dropped, as curl
/// does); `--data-binary @FILE` streams instead, for bodies of any size.
const MAX_DATA: usize = 64 << 20;

fn body_source(a: &RequestArgs) -> Result<Option<BodySource>, Failed> {
    if let Some(d) = &a.data_binary {
        return Ok(Some(match d.strip_prefix('@') {
            // Stdin as a file: redirected from a regular file, the agent
            // reads it itself; else it is read here, unbuffered. A closed
            // stdin reads as empty, as std's own handle has it.
            Some("-") => match io::stdin().as_fd().try_clone_to_owned() {
                Ok(fd) => BodySource::File(File::from(fd)),
                Err(_) => BodySource::Stdin(io::stdin()),
            },
            Some(path) => BodySource::File(
                File::open(path).map_err(|e| Failed::usage(format!("cannot read {path}: {e}")))?,
            ),
            None => BodySource::Bytes(io::Cursor::new(d.as_bytes().to_vec())),
        }));
    }
    if a.data.is_empty() {
        return Ok(None);
    }
    let mut parts = Vec::with_capacity(a.data.len());
    for d in &a.data {
        parts.push(match d.strip_prefix('@') {
            Some(path) => {
                let raw = crate::input::read_bounded(path, MAX_DATA, "-d").map_err(|f| Failed {
                    hint: Some("--data-binary @FILE streams a body of any size".into()),
                    ..f
                })?;
                raw.into_iter().filter(|b| *b != b'\n' && *b != b'\r').collect()
            }
            None => d.as_bytes().to_vec(),
        });
    }
    Ok(Some(BodySource::Bytes(io::Cursor::new(parts.join(&b'&')))))
}

fn parse_header(h: &str) -> Result<(String, String), Failed> {
    let (k, v) = h
        .split_once(':')
        .ok_or_else(|| Failed::usage(format!("-H {h}: expected 'Name: value'")))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

fn failed_from_io(e: io::Error, what: &str) -> Failed {
    match client_error(e) {
        Ok(c) => Failed::from(c),
        Err(e) => io_failed(what, e),
    }
}

/// Where a response body goes: a file or stdout, which the agent may be
/// handed to write into.
trait Output: Write + AsFd {}
impl<T: Write + AsFd> Output for T {}

pub fn request(socket: Option<&Path>, a: RequestArgs) -> Result<(), Failed> {
    name_ok(&a.name)?;
    let mut headers = a.headers.iter().map(|h| parse_header(h)).collect::<Result<Vec<_>, _>>()?;
    let mut body = body_source(&a)?;
    if body.is_some() && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
        // As curl does for -d and --data-binary.
        headers.push(("Content-Type".into(), "application/x-www-form-urlencoded".into()));
    }
    let method =
        a.method.clone().unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.into());
    let mut client = Client::connect(socket)?;
    let req = HttpRequest {
        name: a.name.clone(),
        method,
        url: a.url.clone(),
        headers,
        body_len: body.as_ref().and_then(BodySource::len),
        timeout: a.timeout.map(Duration::from_secs),
        body_into_file: true,
    };
    let mut resp = client.perform(req, body.as_mut().map(BodySource::body))?;
    let status = resp.head.status;
    if let Some(why) = &resp.head.unfollowed {
        let to = resp.header("location").map(String::from_utf8_lossy).unwrap_or_default();
        eprintln!("signet: not following the redirect ({status}) to {to}: {why}");
    }
    if a.fail && status >= 400 {
        // Drain, so the agent finishes cleanly, but print nothing.
        io::copy(&mut resp, &mut io::sink())
            .map_err(|e| failed_from_io(e, "reading the response"))?;
        return Err(Failed {
            code: 22,
            message: format!(
                "the server answered {} {} for {}",
                status, resp.head.reason, resp.head.url
            ),
            hint: None,
        });
    }
    // The file is made only for a body that will be written, so `-f -o`
    // leaves no empty file behind on an error status, as curl does.
    let mut out: Box<dyn Output> = match &a.output {
        Some(p) => Box::new(
            File::create(p).map_err(|e| io_failed(&format!("cannot write {}", p.display()), e))?,
        ),
        None => Box::new(io::stdout().lock()),
    };
    if a.include {
        let mut h = format!("{} {} {}\r\n", resp.head.version, status, resp.head.reason);
        for (k, v) in &resp.head.headers {
            h.push_str(&format!("{k}: {}\r\n", String::from_utf8_lossy(&v.0)));
        }
        h.push_str("\r\n");
        out.write_all(h.as_bytes()).map_err(|e| io_failed("cannot write the response", e))?;
    }
    // The agent writes the body into the output itself when it is a file
    // or /dev/null (after what is written here so far); else it comes
    // through the socket and is written here.
    out.flush().map_err(|e| io_failed("cannot write the response", e))?;
    resp.deliver_into(Some(out.as_fd())).map_err(|e| failed_from_io(e, "reading the response"))?;
    let copied = resp.write_to(&mut out);
    copied.map_err(|e| failed_from_io(e, "cannot write the response"))?;
    out.flush().map_err(|e| io_failed("cannot write the response", e))?;
    Ok(())
}
