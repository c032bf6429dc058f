//! Real HTTP test servers that check credentials the way the real APIs do.
//!
//! Each is a real HTTP/1.1 server on 127.0.0.1 (ephemeral port), optionally over TLS
//! with a certificate minted at start, running on a thread of its own and stopped on
//! drop. Every request is logged ([`Recorded`]) with the verdict the server reached.
//!
//! - [`MaasServer`]: MAAS's OAuth 1.0 check (PLAINTEXT / HMAC-SHA1, piston's rules)
//!   and its account API;
//! - [`OAuth1Server`]: a generic RFC 5849 service (HMAC-SHA1, HMAC-SHA256, PLAINTEXT);
//! - [`VmsServer`]: VAST VMS `Api-Token` auth and its `/api/apitokens/` API;
//! - [`BearerLikeServer`]: a fixed expected header (bearer, basic, api-token, any);
//! - [`GitServer`]: git smart HTTP (the real git-http-backend) behind such a header.
//!
//! All of them also serve `echo…`, `big/<n>` and `redirect?to=` behind their auth
//! check (see each server's docs for where).
//!
//! [`SilentServer`], [`TruncatingServer`] and [`closed_port`] fail below HTTP
//! instead, for the tests of upstream failures.

mod bearer;
mod broken;
mod git;
mod maas;
pub mod oauth;
mod oauth1;
mod server;
mod vms;

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

pub use bearer::{BearerLikeServer, ExpectedAuth};
pub use broken::{SilentServer, TruncatingServer, closed_port};
pub use git::{GitServer, http_backend};
pub use maas::{MaasConfig, MaasServer, MaasToken, MaasUser};
pub use oauth::SignatureMethod;
pub use oauth1::{OAuth1Config, OAuth1Server};
pub use vms::{VmsServer, VmsToken};

/// One request a test server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    /// Path and query, as received.
    pub target: String,
    /// Every header, names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
    /// Bytes of request body received (the server reads every body to its end).
    pub body_len: u64,
    /// The status answered.
    pub status: u16,
    /// "ok" when the request was accepted, else why not (the 4xx body's text), or
    /// "injected <status>" for a `fail_next` answer.
    pub verdict: String,
}

impl Recorded {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn is_ok(&self) -> bool {
        self.verdict == "ok"
    }
}

/// The `big/<n>` pattern: byte i of the stream is `i % 251` (a prime period, so
/// shifted or dropped chunks never line up by accident).
pub fn pattern_bytes(offset: u64, len: usize) -> Vec<u8> {
    let cycle: Vec<u8> = (0..251u8).collect();
    let start = (offset % 251) as usize;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&cycle[start..(start + len).min(251)]);
    while out.len() < len {
        let take = (len - out.len()).min(251);
        out.extend_from_slice(&cycle[..take]);
    }
    out
}

/// SHA-256 (lowercase hex) of the first `n` bytes of the pattern, computed in chunks.
pub fn pattern_sha256(n: u64) -> String {
    let mut hasher = ring::digest::Context::new(&ring::digest::SHA256);
    let mut done = 0u64;
    while done < n {
        let len = (n - done).min(1 << 20) as usize;
        hasher.update(&pattern_bytes(done, len));
        done += len as u64;
    }
    server::hex(hasher.finish().as_ref())
}

/// SHA-256 (lowercase hex) of a file, read in 1 MiB chunks: what a
/// transfer wrote, to compare with [`pattern_sha256`].
pub fn sha256_file(path: &std::path::Path) -> String {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path).expect("open");
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    server::hex(ctx.finish().as_ref())
}

/// Answers queued by `fail_next(op, status)`, consumed one per matching request.
#[derive(Default)]
pub(crate) struct Failures {
    queued: Mutex<HashMap<String, VecDeque<u16>>>,
}

impl Failures {
    pub fn push(&self, op: &str, status: u16) {
        if let Ok(mut q) = self.queued.lock() {
            q.entry(op.to_string()).or_default().push_back(status);
        }
    }

    /// The injected answer for `op`, if one is queued for it (or for "*").
    pub fn take(&self, op: &str) -> Option<server::Reply> {
        let mut q = self.queued.lock().ok()?;
        let status = [op, "*"].iter().find_map(|k| q.get_mut(*k).and_then(VecDeque::pop_front))?;
        let text = format!("Injected failure for {op}");
        Some(server::Reply::text(status, &text, &format!("injected {status}")))
    }
}

/// The methods every test server shares; `$t` has fields `http: HttpServer` and
/// `state: Arc<…>` whose `failures: Failures` field backs `fail_next`.
macro_rules! server_common {
    ($t:ty) => {
        impl $t {
            /// The socket address the server listens on (127.0.0.1, ephemeral port).
            pub fn addr(&self) -> std::net::SocketAddr {
                self.http.addr()
            }

            /// `http://127.0.0.1:PORT` or `https://…` (no trailing slash).
            pub fn origin(&self) -> String {
                self.http.origin()
            }

            pub fn is_tls(&self) -> bool {
                self.http.is_tls()
            }

            /// The PEM of the CA that signed this server's certificate (for `--cacert`).
            /// Panics for a plain-HTTP server: asking is a bug in the test.
            pub fn ca_pem(&self) -> String {
                match self.http.ca_pem() {
                    Some(pem) => pem.to_string(),
                    None => panic!("ca_pem(): this server was started without TLS"),
                }
            }

            /// Writes `ca_pem()` to `dir/<port>-ca.pem` and returns the path.
            pub fn write_ca_pem(&self, dir: &std::path::Path) -> std::path::PathBuf {
                let path = dir.join(format!("{}-ca.pem", self.addr().port()));
                if let Err(e) = std::fs::write(&path, self.ca_pem()) {
                    panic!("cannot write {}: {e}", path.display());
                }
                path
            }

            /// Every request received so far, oldest first.
            pub fn requests(&self) -> Vec<$crate::upstream::Recorded> {
                self.http.requests()
            }

            pub fn clear_requests(&self) {
                self.http.clear_requests()
            }

            /// TLS handshakes that failed (e.g. a client that did not trust the CA).
            pub fn handshake_failures(&self) -> u64 {
                self.http.handshake_failures()
            }

            /// The next request for operation `op` (after its auth check passed) is
            /// answered `status` with a plain-text body; "*" matches any operation.
            /// Calls queue up.
            pub fn fail_next(&self, op: &str, status: u16) {
                self.state.failures.push(op, status)
            }
        }
    };
}
pub(crate) use server_common;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_i_mod_251_from_any_offset() {
        for (offset, len) in [(0u64, 0usize), (0, 1000), (250, 3), (251 * 7 + 5, 600), (10, 251)] {
            let expect: Vec<u8> = (0..len as u64).map(|i| ((offset + i) % 251) as u8).collect();
            assert_eq!(pattern_bytes(offset, len), expect, "{offset} {len}");
        }
    }
}
