//! signet's benchmark: every figure is measured in one run, next to the
//! baseline it is compared with, on the same machine at the same moment.
//!
//! ```sh
//! cargo build --release --workspace && target/release/signet-bench
//! ```
//!
//! It needs gnome-keyring, dbus and secret-tool (as the test suite does);
//! curl, ssh-agent and ssh-add are used where installed.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use signet_client::Client;
use signet_proto::frame::encode_frame;
use signet_proto::{Request, Response, SignRequest};
use signet_tests::upstream::{BearerLikeServer, ExpectedAuth};
use signet_tests::{Backend, TestEnv};

const HELD_OPS: usize = 20_000;
const PROCESS_RUNS: usize = 200;
const CLIENTS: usize = 32;
const THROUGHPUT_FOR: Duration = Duration::from_secs(3);

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Stats {
    p50: Duration,
    p99: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    Stats { p50: pct(&v, 0.5), p99: pct(&v, 0.99) }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// The floor: a raw Unix-socket round trip of frames of the same sizes,
/// to an echo thread that does nothing but read and answer.
fn raw_round_trip(req_len: usize, resp_len: usize) -> Stats {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("echo.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut reply = ((resp_len - 4) as u32).to_be_bytes().to_vec();
        reply.resize(resp_len, 0x5a);
        let mut prefix = [0u8; 4];
        let mut body = vec![0u8; 1 << 16];
        while s.read_exact(&mut prefix).is_ok() {
            let n = u32::from_be_bytes(prefix) as usize;
            if s.read_exact(&mut body[..n]).is_err() || s.write_all(&reply).is_err() {
                break;
            }
        }
    });
    let mut c = UnixStream::connect(&path).expect("connect");
    let mut frame = ((req_len - 4) as u32).to_be_bytes().to_vec();
    frame.resize(req_len, 0xa5);
    let mut back = vec![0u8; resp_len];
    let mut times = Vec::with_capacity(HELD_OPS);
    for _ in 0..HELD_OPS {
        let t = Instant::now();
        c.write_all(&frame).expect("write");
        c.read_exact(&mut back).expect("read");
        times.push(t.elapsed());
    }
    drop(c);
    let _ = server.join();
    stats(times)
}

/// The signature every measurement asks for.
const SIGN: (&str, &str, &str) = ("bench", "GET", "users/?op=whoami");

fn sign(c: &mut Client) -> Vec<signet_client::SignedHeader> {
    c.sign(SIGN.0, SIGN.1, SIGN.2, &[]).expect("sign")
}

fn median_process(mut make: impl FnMut() -> Command, runs: usize) -> Option<Duration> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut c = make();
        c.stdout(Stdio::null()).stderr(Stdio::null()).stdin(Stdio::null());
        let t = Instant::now();
        let ok = c.status().ok()?.success();
        times.push(t.elapsed());
        if !ok {
            return None;
        }
    }
    Some(stats(times).p50)
}

fn which(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

fn main() {
    // SAFETY: set before any thread of ours is started. The agent logs at
    // its default level, as in real use.
    unsafe {
        std::env::set_var("SIGNET_REQUIRE_KEYRING", "1");
        std::env::set_var("SIGNET_LOG", "info");
    }
    let mut env = TestEnv::new(Backend::SecretService).expect("a Secret Service for the benchmark");
    env.start_agent();
    env.add(
        "bench",
        "maas",
        "http://maas.example:5240/MAAS/api/2.0/",
        "ck:tk:ts",
        &["--exportable"],
    );
    let upstream = BearerLikeServer::start(ExpectedAuth::bearer("bench-token"));
    env.add("web", "bearer", &upstream.url(), "bench-token", &[]);
    let sock = env.socket();

    println!(
        "signet benchmark ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();

    // Frame sizes of a real sign exchange, for the floor.
    let (name, method, url) = SIGN;
    let sign_req =
        SignRequest { name: name.into(), method: method.into(), url: url.into(), form: Vec::new() };
    let req_len = encode_frame(&Request::Sign(sign_req)).expect("encode").len();
    let mut probe = Client::connect(Some(&sock)).expect("connect");
    let headers = sign(&mut probe).into_iter().map(|h| (h.name, h.value)).collect();
    let resp_len = encode_frame(&Response::Signed(headers)).expect("encode").len();

    // 1. Floor vs held-connection sign.
    let floor = raw_round_trip(req_len, resp_len);
    for _ in 0..1000 {
        sign(&mut probe);
    }
    let mut times = Vec::with_capacity(HELD_OPS);
    for _ in 0..HELD_OPS {
        let t = Instant::now();
        sign(&mut probe);
        times.push(t.elapsed());
    }
    let held = stats(times);
    println!(
        "held connection, {HELD_OPS} round trips ({req_len} B request, {resp_len} B response frames):"
    );
    println!(
        "  raw Unix-socket round trip (floor)   p50 {:>10}  p99 {:>10}",
        us(floor.p50),
        us(floor.p99)
    );
    println!(
        "  signet sign                          p50 {:>10}  p99 {:>10}   {:.2}x floor (p50)",
        us(held.p50),
        us(held.p99),
        held.p50.as_secs_f64() / floor.p50.as_secs_f64()
    );
    println!();

    // 2. Throughput with many clients.
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (sock, stop, count) = (sock.clone(), stop.clone(), count.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(Some(&sock)).expect("connect");
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    sign(&mut c);
                    n += 1;
                }
                count.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    let t = Instant::now();
    std::thread::sleep(THROUGHPUT_FOR);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let rate = count.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64();
    println!("throughput, {CLIENTS} clients on held connections: {rate:.0} signs/s");
    println!();

    // 3. Whole processes.
    let truth = median_process(|| Command::new("true"), PROCESS_RUNS).expect("true");
    let signet = env.command("signet");
    let signet_bin = signet.get_program().to_owned();
    let signet_envs: Vec<_> =
        signet.get_envs().filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))).collect();
    let run_signet = |args: &[&str]| {
        let mut c = Command::new(&signet_bin);
        c.env_clear().envs(signet_envs.iter().cloned()).env("SIGNET_AUTH_SOCK", &sock).args(args);
        c
    };
    let sign_proc =
        median_process(|| run_signet(&["sign", "bench", "users/?op=whoami"]), PROCESS_RUNS)
            .expect("signet sign");
    println!("whole processes, median of {PROCESS_RUNS} runs:");
    println!("  true (process start floor)           {:>10}", ms(truth));
    println!("  signet sign                          {:>10}", ms(sign_proc));
    if which("secret-tool") {
        let session = env.session.as_ref().expect("session");
        session.store("bench", &[("bench", "1")], b"x").expect("store");
        let st = median_process(
            || {
                let mut c = session.command("secret-tool");
                c.args(["lookup", "bench", "1"]);
                c
            },
            50,
        );
        if let Some(st) = st {
            println!(
                "  secret-tool lookup                   {:>10}   signet sign is {:.1}x faster",
                ms(st),
                st.as_secs_f64() / sign_proc.as_secs_f64()
            );
        }
    }
    if which("ssh-agent") && which("ssh-add") {
        let dir = tempfile::tempdir().expect("tempdir");
        let ssh_sock = dir.path().join("ssh.sock");
        let agent = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&ssh_sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Ok(mut agent) = agent {
            signet_tests::eventually(Duration::from_secs(5), || ssh_sock.exists());
            // `ssh-add -l` exits 1 when the agent holds no keys: time it anyway.
            let mut times = Vec::new();
            for _ in 0..PROCESS_RUNS {
                let t = Instant::now();
                let _ = Command::new("ssh-add")
                    .arg("-l")
                    .env("SSH_AUTH_SOCK", &ssh_sock)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                times.push(t.elapsed());
            }
            let ssh = stats(times).p50;
            println!(
                "  ssh-add -l (ssh-agent)               {:>10}   signet sign / ssh-add = {:.2}",
                ms(ssh),
                sign_proc.as_secs_f64() / ssh.as_secs_f64()
            );
            let _ = agent.kill();
            let _ = agent.wait();
        }
    }
    println!();

    // 4. signet request vs curl against the same loopback server.
    if which("curl") {
        let url = format!("{}echo/bench", upstream.url());
        let req = median_process(|| run_signet(&["request", "web", "echo/bench"]), PROCESS_RUNS)
            .expect("signet request");
        let curl = median_process(
            || {
                let mut c = Command::new("curl");
                c.args([
                    "-s",
                    "-f",
                    "-o",
                    "/dev/null",
                    "-H",
                    "Authorization: Bearer bench-token",
                    &url,
                ]);
                c
            },
            PROCESS_RUNS,
        )
        .expect("curl");
        println!("a GET against a loopback HTTP server, median of {PROCESS_RUNS} runs:");
        println!("  curl                                 {:>10}", ms(curl));
        println!(
            "  signet request                       {:>10}   {:.2}x curl",
            ms(req),
            req.as_secs_f64() / curl.as_secs_f64()
        );
    }
    // 5. The local proxy against the same server direct.
    proxy_section(&env, &upstream);
    env.stop_agent();
}

const PROXY_GETS: usize = 2_000;
const PROXY_CLIENTS: usize = 100;
const PROXY_CLIENT_GETS: usize = 100;
const BIG: u64 = 1 << 30;

/// One keep-alive HTTP/1.1 connection, enough for GETs with a
/// Content-Length answer.
struct Http1 {
    stream: std::io::BufReader<std::net::TcpStream>,
    host: String,
    auth: String,
}

impl Http1 {
    fn connect(origin: &str, auth: &str) -> std::io::Result<Http1> {
        let host = origin.trim_start_matches("http://").trim_end_matches('/').to_string();
        let stream = std::net::TcpStream::connect(&host)?;
        stream.set_nodelay(true)?;
        Ok(Http1 { stream: std::io::BufReader::new(stream), host, auth: auth.to_string() })
    }

    /// GET `path`; the status, after the body is read to its end.
    fn get(&mut self, path: &str) -> std::io::Result<u16> {
        use std::io::BufRead as _;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n\r\n",
            self.host, self.auth
        );
        self.stream.get_mut().write_all(req.as_bytes())?;
        let mut line = String::new();
        self.stream.read_line(&mut line)?;
        let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut len = 0usize;
        loop {
            line.clear();
            if self.stream.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body)?;
        Ok(status)
    }
}

fn get_times(origin: &str, auth: &str, path: &str) -> Stats {
    let mut c = Http1::connect(origin, auth).expect("connect");
    for _ in 0..200 {
        c.get(path).expect("warm-up GET");
    }
    let mut times = Vec::with_capacity(PROXY_GETS);
    for _ in 0..PROXY_GETS {
        let t = Instant::now();
        assert_eq!(c.get(path).expect("GET"), 200);
        times.push(t.elapsed());
    }
    stats(times)
}

/// Seconds curl takes to fetch `url` to /dev/null.
fn curl_secs(url: &str, auth: &str) -> Option<f64> {
    let t = Instant::now();
    let ok = Command::new("curl")
        .args(["-s", "-f", "--noproxy", "*", "-o", "/dev/null", "-H", auth, url])
        .status()
        .ok()?
        .success();
    ok.then(|| t.elapsed().as_secs_f64())
}

fn proxy_section(env: &TestEnv, upstream: &BearerLikeServer) {
    let out = env.signet(&["proxy", "web", "--json"]);
    let p = out.json();
    let url = p["url"].as_str().expect("url").to_string();
    let key = p["key"].as_str().expect("key").to_string();
    let local_auth = format!("Bearer {key}");
    let direct_auth = "Bearer bench-token";
    let direct = upstream.url();

    let path = "/big/64";
    let d = get_times(&direct, direct_auth, path);
    let through = get_times(&url, &local_auth, path);
    println!(
        "the local proxy (signet proxy), a 64-byte GET on one keep-alive connection, {PROXY_GETS} each:"
    );
    println!("  direct to the server                 p50 {:>10}  p99 {:>10}", us(d.p50), us(d.p99));
    println!(
        "  through the proxy                    p50 {:>10}  p99 {:>10}   +{} p50",
        us(through.p50),
        us(through.p99),
        us(through.p50.saturating_sub(d.p50))
    );

    if which("curl") {
        let big = format!("big/{BIG}");
        let direct_s =
            curl_secs(&format!("{direct}{big}"), &format!("Authorization: {direct_auth}"));
        let proxy_s = curl_secs(&format!("{url}{big}"), &format!("Authorization: {local_auth}"));
        if let (Some(a), Some(b)) = (direct_s, proxy_s) {
            let mib = (BIG >> 20) as f64;
            println!(
                "  1 GiB download with curl: direct {:.0} MiB/s, through the proxy {:.0} MiB/s ({:.2}x direct)",
                mib / a,
                mib / b,
                a / b
            );
        }
    }

    let errors = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let workers: Vec<_> = (0..PROXY_CLIENTS)
        .map(|_| {
            let (url, auth, errors) = (url.clone(), local_auth.clone(), errors.clone());
            std::thread::spawn(move || {
                let Ok(mut c) = Http1::connect(&url, &auth) else {
                    errors.fetch_add(PROXY_CLIENT_GETS as u64, Ordering::Relaxed);
                    return;
                };
                for _ in 0..PROXY_CLIENT_GETS {
                    if !matches!(c.get(path), Ok(200)) {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let total = PROXY_CLIENTS * PROXY_CLIENT_GETS;
    println!(
        "  {PROXY_CLIENTS} concurrent keep-alive clients, {total} GETs: {} errors, {:.0} GETs/s",
        errors.load(Ordering::Relaxed),
        total as f64 / t.elapsed().as_secs_f64()
    );
    let _ = env.signet(&["proxy", "--stop", "web"]);
}
