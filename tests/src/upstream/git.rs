//! A git smart-HTTP server that wants a token: every request must carry
//! the expected `Authorization` header, else 401 with `WWW-Authenticate`
//! (Basic and Bearer), as a git host does. Accepted requests under `/git/`
//! are served by the real `git-http-backend`, run as a CGI program over a
//! directory of bare repositories.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::upstream::bearer::ExpectedAuth;
use crate::upstream::server::{Handler, HttpServer, Reply, Req};
use crate::upstream::{Failures, server_common};

pub struct GitServer {
    http: HttpServer,
    state: Arc<GitState>,
}

struct GitState {
    expected: (String, String),
    root: PathBuf,
    backend: PathBuf,
    failures: Failures,
}

server_common!(GitServer);

/// `git-http-backend` of the git on PATH, the one the test runs.
pub fn http_backend() -> Option<PathBuf> {
    let out = Command::new("git").arg("--exec-path").output().ok()?;
    let dir = String::from_utf8(out.stdout).ok()?;
    let p = Path::new(dir.trim()).join("git-http-backend");
    p.exists().then_some(p)
}

impl GitServer {
    /// Serves the bare repositories in `root` at `origin()/git/<name>.git`
    /// to clients that send `auth`. `None` when git-http-backend is missing.
    pub fn start(root: &Path, auth: ExpectedAuth) -> Option<GitServer> {
        let backend = http_backend()?;
        let state = Arc::new(GitState {
            expected: auth.expected_header(),
            root: root.to_path_buf(),
            backend,
            failures: Failures::default(),
        });
        let http = HttpServer::start(state.clone(), false);
        Some(GitServer { http, state })
    }

    /// `origin()/git/`: where the repositories are.
    pub fn base_url(&self) -> String {
        format!("{}/git/", self.origin())
    }

    /// Where the repositories are kept.
    pub fn root(&self) -> &Path {
        &self.state.root
    }
}

impl Handler for GitState {
    async fn handle(&self, req: &mut Req) -> Reply {
        let (name, value) = &self.expected;
        let got: Vec<_> = req.headers.get_all(name.as_str()).iter().collect();
        let verdict = match got.as_slice() {
            [] => Some(format!("missing header {name}")),
            [one] if one.as_bytes() == value.as_bytes() => None,
            [_] => Some(format!("wrong value for header {name}")),
            _ => Some(format!("header {name} sent more than once")),
        };
        if let Some(why) = verdict {
            return Reply::refuse(401, &why)
                .with_header("www-authenticate", "Basic realm=\"git\"")
                .with_header("www-authenticate", "Bearer realm=\"git\"");
        }
        let Some(path_info) = req.path.strip_prefix("/git").map(str::to_string) else {
            return Reply::refuse(404, "Not Found");
        };
        let body = match req.body_bytes().await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let mut cmd = Command::new(&self.backend);
        cmd.env_clear()
            .env("GIT_PROJECT_ROOT", &self.root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("REQUEST_METHOD", req.method.as_str())
            .env("PATH_INFO", &path_info)
            .env("QUERY_STRING", req.query.as_deref().unwrap_or(""))
            .env("CONTENT_LENGTH", body.len().to_string())
            .env("REMOTE_USER", "signet-test")
            .env("REMOTE_ADDR", "127.0.0.1")
            .env("GATEWAY_INTERFACE", "CGI/1.1")
            .env("SERVER_PROTOCOL", "HTTP/1.1");
        for (h, var) in [
            ("content-type", "CONTENT_TYPE"),
            ("content-encoding", "HTTP_CONTENT_ENCODING"),
            ("git-protocol", "GIT_PROTOCOL"),
        ] {
            if let Some(v) = req.header(h) {
                cmd.env(var, v);
            }
        }
        let run = tokio::task::spawn_blocking(move || {
            let mut child =
                cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
            let mut stdin = child.stdin.take().expect("stdin");
            let feeder = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &body));
            let out = child.wait_with_output()?;
            let _ = feeder.join();
            Ok::<_, std::io::Error>(out.stdout)
        })
        .await;
        let out = match run {
            Ok(Ok(out)) => out,
            _ => return Reply::refuse(500, "git-http-backend did not run"),
        };
        cgi_reply(&out)
    }
}

/// A CGI program's output as a reply: header lines, a blank line, the body.
fn cgi_reply(out: &[u8]) -> Reply {
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2)));
    let Some((head_end, body_start)) = split else {
        return Reply::refuse(502, "git-http-backend wrote no header");
    };
    let head = String::from_utf8_lossy(&out[..head_end]);
    let mut status = 200;
    let mut headers = Vec::new();
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else { continue };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("status") {
            status = v.split_whitespace().next().and_then(|c| c.parse().ok()).unwrap_or(500);
        } else {
            headers.push((k.to_ascii_lowercase(), v.to_string()));
        }
    }
    let content_type = headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "application/octet-stream".into());
    let mut reply = Reply::new(status, &content_type, out[body_start..].to_vec(), "ok");
    for (k, v) in headers.into_iter().filter(|(k, _)| k != "content-type") {
        reply = reply.with_header(&k, &v);
    }
    reply
}
