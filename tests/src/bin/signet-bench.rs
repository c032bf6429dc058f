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
/// Runs per side when the audit trail's cost is measured, alternated.
const AUDIT_ROUNDS: usize = 10;

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

    // 1b. What the audit trail costs a held-connection sign: this agent
    // (trail on) against a second one with `audit = false`, alternating
    // short runs so that both see the same load.
    let mut quiet = TestEnv::new(Backend::SecretService).expect("a second Secret Service");
    quiet.write_config("audit = false\n");
    quiet.start_agent();
    quiet.add(
        "bench",
        "maas",
        "http://maas.example:5240/MAAS/api/2.0/",
        "ck:tk:ts",
        &["--exportable"],
    );
    let mut off = Client::connect(Some(&quiet.socket())).expect("connect");
    for _ in 0..1000 {
        sign(&mut off);
    }
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 0..AUDIT_ROUNDS * 2 {
        let (c, into) =
            if round % 2 == 0 { (&mut probe, &mut with) } else { (&mut off, &mut without) };
        for _ in 0..HELD_OPS / AUDIT_ROUNDS {
            let t = Instant::now();
            sign(c);
            into.push(t.elapsed());
        }
    }
    let (with, without) = (stats(with), stats(without));
    println!("audit trail, held-connection sign, {AUDIT_ROUNDS} alternating runs each:");
    println!(
        "  audit = false                        p50 {:>10}  p99 {:>10}",
        us(without.p50),
        us(without.p99)
    );
    println!(
        "  audit on                             p50 {:>10}  p99 {:>10}   +{} p50 ({:.2}x)",
        us(with.p50),
        us(with.p99),
        us(with.p50.saturating_sub(without.p50)),
        with.p50.as_secs_f64() / without.p50.as_secs_f64()
    );
    drop(off);
    quiet.stop_agent();
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
    env.stop_agent();
}
