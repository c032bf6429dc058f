//! signet's benchmark: every figure is measured in one run, next to the
//! floor it is compared with, on the same machine at the same moment.
//!
//! ```sh
//! cargo build --release --workspace && target/release/signet-bench
//! target/release/signet-bench store     # the store at 10,000 tokens only
//! target/release/signet-bench held      # signs only: held, many clients, a process
//! ```
//!
//! Each floor is measured the way its subject is: the same warm-up, the same
//! frame sizes, the same number of clients, and in blocks that alternate
//! with the subject's, so that a change in the machine's state (frequency,
//! another process) falls on both alike. Every ratio is printed beside the
//! absolute figures it comes from, and beside its target.
//!
//! It needs gnome-keyring, dbus and secret-tool (as the test suite does);
//! curl, ssh-agent and ssh-add are used where installed.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
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
const BLOCKS: usize = 10;
const WARM_UP: usize = 1_000;
const PROCESS_RUNS: usize = 200;
const CLIENTS: usize = 32;
/// Each side of the many-client comparison runs this long, twice.
const THROUGHPUT_FOR: Duration = Duration::from_millis(1500);
const STREAM_BYTES: u64 = 1 << 30;
const STREAM_RUNS: usize = 3;
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

/// "met" or "missed", for a ratio and its bound.
fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// A server that answers every frame of `req_len` bytes with `resp_len`
/// bytes and does nothing else: the floor for a request of those sizes.
/// One thread per connection, as many connections as come.
struct Echo {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Echo {
    fn start(resp_len: usize) -> Echo {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("echo.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { return };
                std::thread::spawn(move || {
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
            }
        });
        Echo { path, _dir: dir }
    }
}

/// A client of [`Echo`] that sends frames of `req_len` bytes.
struct EchoClient {
    s: UnixStream,
    frame: Vec<u8>,
    back: Vec<u8>,
}

impl EchoClient {
    fn connect(echo: &Echo, req_len: usize, resp_len: usize) -> EchoClient {
        let s = UnixStream::connect(&echo.path).expect("connect to the echo server");
        let mut frame = ((req_len - 4) as u32).to_be_bytes().to_vec();
        frame.resize(req_len, 0xa5);
        EchoClient { s, frame, back: vec![0u8; resp_len] }
    }

    fn round_trip(&mut self) {
        self.s.write_all(&self.frame).expect("write");
        self.s.read_exact(&mut self.back).expect("read");
    }
}

/// Times `BLOCKS` blocks of each of `a` and `b`, alternating, after warming
/// both up the same way.
fn alternate(mut a: impl FnMut(), mut b: impl FnMut()) -> (Stats, Stats) {
    for _ in 0..WARM_UP {
        a();
        b();
    }
    let per_block = HELD_OPS / BLOCKS;
    let (mut ta, mut tb) = (Vec::with_capacity(HELD_OPS), Vec::with_capacity(HELD_OPS));
    for _ in 0..BLOCKS {
        for _ in 0..per_block {
            let t = Instant::now();
            a();
            ta.push(t.elapsed());
        }
        for _ in 0..per_block {
            let t = Instant::now();
            b();
            tb.push(t.elapsed());
        }
    }
    (stats(ta), stats(tb))
}

/// Round trips per second of `CLIENTS` threads, each looping on its own
/// connection for `for_`.
fn rate<C: Send + 'static>(
    connect: impl Fn() -> C + Send + Sync + 'static,
    op: fn(&mut C),
    for_: Duration,
) -> f64 {
    let connect = Arc::new(connect);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(std::sync::Barrier::new(CLIENTS + 1));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (connect, stop, count, ready) =
                (connect.clone(), stop.clone(), count.clone(), ready.clone());
            std::thread::spawn(move || {
                let mut c = connect();
                ready.wait();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    op(&mut c);
                    n += 1;
                }
                count.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    ready.wait();
    let t = Instant::now();
    std::thread::sleep(for_);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    count.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64()
}

/// Adds the token that [`SIGN`] names: an exportable MAAS token, whose
/// PLAINTEXT header the agent may hand out.
fn add_sign_token(env: &TestEnv) {
    env.add(
        SIGN.0,
        "maas",
        "http://maas.example:5240/MAAS/api/2.0/",
        "ck:tk:ts",
        &["--exportable"],
    );
}

/// The signature every measurement asks for.
const SIGN: (&str, &str, &str) = ("bench", "GET", "users/?op=whoami");

fn sign(c: &mut Client) -> Vec<signet_client::SignedHeader> {
    c.sign(SIGN.0, SIGN.1, SIGN.2, &[]).expect("sign")
}

/// Medians of two commands run alternately, `runs` times each.
fn alternate_processes(
    mut a: impl FnMut() -> Command,
    mut b: impl FnMut() -> Command,
    runs: usize,
) -> (Duration, Duration) {
    let time = |mut c: Command| {
        c.stdout(Stdio::null()).stderr(Stdio::null()).stdin(Stdio::null());
        let t = Instant::now();
        let status = c.status().expect("run");
        let took = t.elapsed();
        assert!(status.success(), "{c:?} failed: {status}");
        took
    };
    let (mut ta, mut tb) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    // One unmeasured run each: the page cache and the agent warm up alike.
    time(a());
    time(b());
    for _ in 0..runs {
        ta.push(time(a()));
        tb.push(time(b()));
    }
    (stats(ta).p50, stats(tb).p50)
}

fn which(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

/// Resident set size of `pid`, in bytes.
fn rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Runs `c` while sampling `pid`'s RSS; returns the time taken and the
/// largest growth of the RSS over its value at the start.
fn timed_with_rss(mut c: Command, pid: i32) -> (Duration, u64) {
    let base = rss(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(base));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    c.stdout(Stdio::null()).stderr(Stdio::piped()).stdin(Stdio::null());
    let t = Instant::now();
    let out = c.output().expect("run");
    let took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    assert!(out.status.success(), "{c:?}: {}", String::from_utf8_lossy(&out.stderr));
    (took, peak.load(Ordering::Relaxed).saturating_sub(base))
}

/// How long `c` takes with its output read by `cat` into /dev/null, both
/// processes to their exit.
fn into_pipe(mut c: Command) -> Duration {
    let t = Instant::now();
    let mut producer =
        c.stdout(Stdio::piped()).stderr(Stdio::null()).stdin(Stdio::null()).spawn().expect("run");
    let pipe = producer.stdout.take().expect("stdout");
    let cat = Command::new("cat").stdin(pipe).stdout(Stdio::null()).status().expect("cat");
    let done = producer.wait().expect("wait");
    let took = t.elapsed();
    assert!(done.success() && cat.success(), "{c:?} | cat failed");
    took
}

/// The raw floor of a stream: `bytes` through a Unix socket pair, in
/// 256 KiB writes and reads, with nothing else done to them.
fn socket_copy(bytes: u64) -> Duration {
    let (mut w, mut r) = UnixStream::pair().expect("socketpair");
    let t = Instant::now();
    let writer = std::thread::spawn(move || {
        let buf = vec![0x5au8; 256 << 10];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            w.write_all(&buf[..n]).expect("write");
            left -= n as u64;
        }
    });
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0u64;
    while got < bytes {
        let n = r.read(&mut buf).expect("read");
        assert!(n > 0, "socket pair closed early");
        got += n as u64;
    }
    let _ = writer.join();
    t.elapsed()
}

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / f64::from(1 << 20)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A file of `len` bytes of the pattern, for uploads.
fn pattern_file(dir: &Path, len: u64) -> PathBuf {
    let path = dir.join("upload.bin");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    let chunk = signet_tests::upstream::pattern_bytes(0, 251 * 4096);
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).expect("write");
        left -= n as u64;
    }
    f.flush().expect("flush");
    path
}

/// Tokens in the store-scale measurements.
const SCALE_TOKENS: usize = 10_000;

/// The `i`th token of the store-scale measurements.
fn scale_token(i: usize) -> signet_client::NewToken {
    signet_client::NewToken::new(
        format!("t{i:05}"),
        signet_client::TokenKind::Bearer,
        "https://api.example/",
        signet_client::Secret::from_str_value(&format!("secret-{i}")),
    )
}

/// The store at [`SCALE_TOKENS`] tokens: add latency, list, and agent start
/// to ready with the kernel keyring and with the vault file.
fn store_scale() {
    let mut env = TestEnv::new(Backend::Keyutils).expect("the kernel keyring for the benchmark");
    // The real Argon2id cost, as users get it.
    env.weak_vault_kdf = false;
    env.start_agent();
    let mut c = Client::connect(Some(&env.socket())).expect("connect");
    let mut adds = Vec::with_capacity(SCALE_TOKENS);
    for i in 0..SCALE_TOKENS {
        let t = scale_token(i);
        let start = Instant::now();
        c.add(t).expect("add");
        adds.push(start.elapsed());
    }
    let last = stats(adds[SCALE_TOKENS - 500..].to_vec());
    let first = stats(adds[..500].to_vec());
    let mut lists = Vec::new();
    for _ in 0..9 {
        let start = Instant::now();
        let n = c.list().expect("list").len();
        lists.push(start.elapsed());
        assert_eq!(n, SCALE_TOKENS);
    }
    let list = stats(lists);
    drop(c);

    // Start to ready: the process from spawn to its eval line (-D prints
    // it once the socket accepts connections), median of 9.
    let time_starts = |env: &mut TestEnv| {
        let mut v = Vec::new();
        for _ in 0..9 {
            env.stop_agent();
            let start = Instant::now();
            env.start_agent();
            v.push(start.elapsed());
        }
        stats(v).p50
    };
    let ku_start = time_starts(&mut env);

    env.set_vault_passphrase("bench vault passphrase");
    env.stop_agent();
    env.start_agent();
    // The kernel keyring lost the secrets with the last agent: put them
    // back through a fresh agent, then move them into the vault.
    env.stop_agent();
    std::fs::remove_file(env.data_dir().join("index.json")).expect("reset index");
    let _ = std::fs::remove_file(env.data_dir().join("index.journal"));
    env.start_agent();
    let mut c = Client::connect(Some(&env.socket())).expect("connect");
    for i in 0..SCALE_TOKENS {
        c.add(scale_token(i)).expect("add");
    }
    let start = Instant::now();
    let m = c
        .migrate(
            signet_client::StoreKind::File,
            Some(signet_client::Secret::from_str_value("bench vault passphrase")),
        )
        .expect("migrate");
    let migrate = start.elapsed();
    assert_eq!(m.moved as usize, SCALE_TOKENS);
    drop(c);
    env.store = Some("auto");
    // The vault's start against opening the vault alone (Argon2id, then
    // every item decrypted) in this process, in alternating pairs: each
    // is ~0.3 s and varies by tens of ms, so the start beyond the opening
    // is the median of the pairwise differences, not a difference of
    // medians.
    let (mut starts, mut opens, mut beyond) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..9 {
        env.stop_agent();
        let start = Instant::now();
        env.start_agent();
        let started = start.elapsed();
        let start = Instant::now();
        signet_agent::store::vault::Vault::read_all(
            &env.vault_file(),
            &signet_client::Secret::from_str_value("bench vault passphrase"),
        )
        .expect("vault");
        let opened = start.elapsed();
        starts.push(started);
        opens.push(opened);
        // Signed: the index is parsed while the key is derived, so a start
        // can take less than opening the vault here did.
        beyond.push((started.as_secs_f64() - opened.as_secs_f64()) * 1e3);
    }
    beyond.sort_by(f64::total_cmp);
    let beyond = beyond[beyond.len() / 2];
    let (file_start, kdf) = (stats(starts).p50, stats(opens).p50);
    env.stop_agent();

    println!("the store at {SCALE_TOKENS} tokens (target in brackets):");
    println!("  add, first 500 p50 / p99             {:>10} / {}", ms(first.p50), ms(first.p99));
    println!(
        "  add, last 500 p50 / p99              {:>10} / {}   [p50 <= 10 ms]",
        ms(last.p50),
        ms(last.p99)
    );
    println!("  list of all, median                  {:>10}   [<= 20 ms]", ms(list.p50));
    println!("  start to ready, keyutils, median     {:>10}   [<= 50 ms]", ms(ku_start));
    println!("  start to ready, vault file, median   {:>10}", ms(file_start));
    println!("    opening the vault alone, median     {:>10}", ms(kdf));
    println!("    the start beyond it, median of pairs {beyond:>6.2} ms   [<= 50 ms]");
    println!("  migrate keyutils -> file, all        {:>10}", ms(migrate));
}

/// What the audit trail costs a held-connection sign: this agent (trail
/// on, through `probe`) against a second one with `audit = false`,
/// alternating short runs so that both see the same load.
fn audit_cost(probe: &mut Client) {
    let mut quiet = TestEnv::new(Backend::SecretService).expect("a second Secret Service");
    quiet.write_config("audit = false\n");
    quiet.start_agent();
    add_sign_token(&quiet);
    let mut off = Client::connect(Some(&quiet.socket())).expect("connect");
    for _ in 0..1000 {
        sign(&mut off);
    }
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 0..AUDIT_ROUNDS * 2 {
        let (c, into) =
            if round % 2 == 0 { (&mut *probe, &mut with) } else { (&mut off, &mut without) };
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
}

fn main() {
    // SAFETY: set before any thread of ours is started. The agent logs at
    // its default level, as in real use.
    unsafe {
        std::env::set_var("SIGNET_REQUIRE_KEYRING", "1");
        std::env::set_var("SIGNET_LOG", "info");
    }
    if std::env::args().nth(1).as_deref() == Some("store") {
        store_scale();
        return;
    }
    let mut env = TestEnv::new(Backend::SecretService).expect("a Secret Service for the benchmark");
    env.start_agent();
    add_sign_token(&env);
    let upstream = BearerLikeServer::start(ExpectedAuth::bearer("bench-token"));
    env.add("web", "bearer", &upstream.url(), "bench-token", &[]);
    let held_only = match std::env::args().nth(1).as_deref() {
        Some("proxy") => return proxy_section(&env, &upstream),
        Some("stream") => return stream_section(&env, &upstream),
        Some("held") => true,
        _ => false,
    };
    let sock = env.socket();

    println!(
        "signet benchmark ({} cores); each ratio is against a floor measured in the same run",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();

    // Frame sizes of a real sign exchange, for the floors.
    let (name, method, url) = SIGN;
    let sign_req =
        SignRequest { name: name.into(), method: method.into(), url: url.into(), form: Vec::new() };
    let req_len = encode_frame(&Request::Sign(sign_req)).expect("encode").len();
    let mut probe = Client::connect(Some(&sock)).expect("connect");
    let headers = sign(&mut probe).into_iter().map(|h| (h.name, h.value)).collect();
    let resp_len = encode_frame(&Response::Signed(headers)).expect("encode").len();
    let echo = Echo::start(resp_len);

    // 1. One held connection: the raw round trip vs a sign.
    let mut raw = EchoClient::connect(&echo, req_len, resp_len);
    let (floor, held) = alternate(|| raw.round_trip(), || drop(sign(&mut probe)));
    drop(raw);
    let held_ratio = held.p50.as_secs_f64() / floor.p50.as_secs_f64();
    println!(
        "one held connection, {HELD_OPS} round trips each in {BLOCKS} alternating blocks \
         ({req_len} B request, {resp_len} B response frames):"
    );
    println!(
        "  raw Unix-socket round trip (floor)   p50 {:>10}  p99 {:>10}",
        us(floor.p50),
        us(floor.p99)
    );
    println!(
        "  signet sign                          p50 {:>10}  p99 {:>10}   {held_ratio:.2}x floor; \
         target <= 1.5x: {}",
        us(held.p50),
        us(held.p99),
        verdict(held_ratio <= 1.5)
    );
    println!();

    if !held_only {
        audit_cost(&mut probe);
    }

    // 2. Many clients: the raw echo with as many clients vs signs.
    let (mut floor_rate, mut sign_rate) = (0.0, 0.0);
    for _ in 0..2 {
        let path = echo.path.clone();
        floor_rate += rate(
            move || {
                let s = UnixStream::connect(&path).expect("connect");
                let mut frame = ((req_len - 4) as u32).to_be_bytes().to_vec();
                frame.resize(req_len, 0xa5);
                EchoClient { s, frame, back: vec![0u8; resp_len] }
            },
            EchoClient::round_trip,
            THROUGHPUT_FOR,
        ) / 2.0;
        let sock = sock.clone();
        sign_rate += rate(
            move || Client::connect(Some(&sock)).expect("connect"),
            |c| drop(sign(c)),
            THROUGHPUT_FOR,
        ) / 2.0;
    }
    let rate_ratio = sign_rate / floor_rate;
    println!("{CLIENTS} clients on held connections, alternating runs of {THROUGHPUT_FOR:?}:");
    println!("  raw echo (floor)                     {floor_rate:>10.0} round trips/s");
    println!(
        "  signet sign                          {sign_rate:>10.0} signs/s   {rate_ratio:.2}x floor; \
         target >= 0.8x: {}",
        verdict(rate_ratio >= 0.8)
    );
    println!();

    // 3. Whole processes.
    let signet = env.command("signet");
    let signet_bin = signet.get_program().to_owned();
    let signet_envs: Vec<_> =
        signet.get_envs().filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))).collect();
    let run_signet = |args: &[&str]| {
        let mut c = Command::new(&signet_bin);
        c.env_clear().envs(signet_envs.iter().cloned()).env("SIGNET_AUTH_SOCK", &sock).args(args);
        c
    };
    let (truth, sign_proc) = alternate_processes(
        || Command::new("true"),
        || run_signet(&["sign", "bench", "users/?op=whoami"]),
        PROCESS_RUNS,
    );
    let process_floor = truth + floor.p50;
    let proc_ratio = sign_proc.as_secs_f64() / process_floor.as_secs_f64();
    println!("whole processes, medians of {PROCESS_RUNS} alternating runs:");
    println!("  true (process start floor)           {:>10}", ms(truth));
    println!(
        "  signet sign                          {:>10}   {proc_ratio:.2}x (true + raw round trip); \
         target <= 1.3x: {}",
        ms(sign_proc),
        verdict(proc_ratio <= 1.3)
    );
    if held_only {
        env.stop_agent();
        return;
    }
    if which("secret-tool") {
        let session = env.session.as_ref().expect("session");
        session.store("bench", &[("bench", "1")], b"x").expect("store");
        let (st, sign_proc) = alternate_processes(
            || {
                let mut c = session.command("secret-tool");
                c.args(["lookup", "bench", "1"]);
                c
            },
            || run_signet(&["sign", "bench", "users/?op=whoami"]),
            50,
        );
        println!(
            "  secret-tool lookup                   {:>10}   signet sign ({}) is {:.1}x faster",
            ms(st),
            ms(sign_proc),
            st.as_secs_f64() / sign_proc.as_secs_f64()
        );
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
            // `ssh-add -l` fails on an empty agent: give it a key to list.
            let key = dir.path().join("key");
            let keyed = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&key)
                .status()
                .is_ok_and(|s| s.success())
                && Command::new("ssh-add")
                    .arg(&key)
                    .env("SSH_AUTH_SOCK", &ssh_sock)
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
            if keyed {
                let (ssh, sign_proc) = alternate_processes(
                    || {
                        let mut c = Command::new("ssh-add");
                        c.arg("-l").env("SSH_AUTH_SOCK", &ssh_sock);
                        c
                    },
                    || run_signet(&["sign", "bench", "users/?op=whoami"]),
                    PROCESS_RUNS,
                );
                println!(
                    "  ssh-add -l (ssh-agent, one key)      {:>10}   signet sign ({}) / ssh-add = {:.2}",
                    ms(ssh),
                    ms(sign_proc),
                    sign_proc.as_secs_f64() / ssh.as_secs_f64()
                );
            }
            let _ = agent.kill();
            let _ = agent.wait();
        }
    }
    println!();

    // The local proxy against the same server direct.
    proxy_section(&env, &upstream);
    println!();

    if !which("curl") {
        println!("SKIP: curl is not installed: no comparison of requests with curl");
        env.stop_agent();
        return;
    }
    let auth = "Authorization: Bearer bench-token";

    // 4. A small GET, signet request vs curl against the same loopback server.
    let url = format!("{}echo/bench", upstream.url());
    let (curl, req) = alternate_processes(
        || {
            let mut c = Command::new("curl");
            c.args(["-s", "-f", "-o", "/dev/null", "-H", auth, &url]);
            c
        },
        || run_signet(&["request", "web", "echo/bench"]),
        PROCESS_RUNS,
    );
    println!(
        "a small GET against a loopback HTTP server, medians of {PROCESS_RUNS} alternating runs:"
    );
    println!("  curl                                 {:>10}", ms(curl));
    println!(
        "  signet request                       {:>10}   {:.2}x curl",
        ms(req),
        req.as_secs_f64() / curl.as_secs_f64()
    );
    println!();

    // 5. 1 GiB each way.
    stream_section(&env, &upstream);
    env.stop_agent();
    println!();
    store_scale();
}

/// 1 GiB each way: the socket-copy floor, curl, `signet request`, all to
/// and from the same loopback server, in alternating runs.
fn stream_section(env: &TestEnv, upstream: &BearerLikeServer) {
    let auth = "Authorization: Bearer bench-token";
    let agent_pid = env.agent.as_ref().expect("agent").pid();
    let run_signet = |args: &[&str]| {
        let mut c = env.command("signet");
        c.args(args);
        c
    };
    let copy = median((0..STREAM_RUNS).map(|_| socket_copy(STREAM_BYTES)).collect());
    let big = format!("{}big/{STREAM_BYTES}", upstream.url());
    let big_rel = format!("big/{STREAM_BYTES}");
    let upload = pattern_file(env.root.path(), STREAM_BYTES);
    let upload_arg = format!("@{}", upload.display());
    let sink = format!("{}sink", upstream.url());
    let (mut curl_down, mut signet_down, mut curl_up, mut signet_up) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut curl_pipe, mut signet_pipe) = (Vec::new(), Vec::new());
    let mut rss_growth = 0u64;
    for _ in 0..STREAM_RUNS {
        // Into a pipe, which the agent is not handed: the body crosses
        // the client's socket in chunk frames.
        let mut c = Command::new("curl");
        c.args(["-s", "-f", "-H", auth, &big]);
        curl_pipe.push(into_pipe(c));
        signet_pipe.push(into_pipe(run_signet(&["request", "web", &big_rel])));
        let mut c = Command::new("curl");
        c.args(["-s", "-f", "-o", "/dev/null", "-H", auth, &big]);
        curl_down.push(timed_with_rss(c, agent_pid).0);
        let (t, grew) =
            timed_with_rss(run_signet(&["request", "web", &big_rel, "-o", "/dev/null"]), agent_pid);
        signet_down.push(t);
        rss_growth = rss_growth.max(grew);
        let mut c = Command::new("curl");
        // -T streams the file; --data-binary @FILE would read it whole first.
        c.args(["-s", "-f", "-o", "/dev/null", "-X", "POST", "-H", auth])
            .args(["-H", "Content-Type: application/octet-stream", "-T"])
            .arg(&upload)
            .arg(&sink);
        curl_up.push(timed_with_rss(c, agent_pid).0);
        let (t, grew) = timed_with_rss(
            run_signet(&[
                "request",
                "web",
                "sink",
                "-o",
                "/dev/null",
                "--data-binary",
                &upload_arg,
            ]),
            agent_pid,
        );
        signet_up.push(t);
        rss_growth = rss_growth.max(grew);
    }
    let _ = std::fs::remove_file(&upload);
    let rate_of = |v: Vec<Duration>| mib_s(STREAM_BYTES, median(v));
    let (copy_r, cd, sd, cu, su) = (
        mib_s(STREAM_BYTES, copy),
        rate_of(curl_down),
        rate_of(signet_down),
        rate_of(curl_up),
        rate_of(signet_up),
    );
    println!("1 GiB over loopback, medians of {STREAM_RUNS} alternating runs:");
    println!("  Unix socket pair copy (floor)        {copy_r:>8.0} MiB/s");
    println!("  download: curl                       {cd:>8.0} MiB/s");
    println!(
        "  download: signet request             {sd:>8.0} MiB/s   {:.2}x curl; target >= 0.8x: {}",
        sd / cd,
        verdict(sd / cd >= 0.8)
    );
    let (cp, sp) = (rate_of(curl_pipe), rate_of(signet_pipe));
    println!("  download into a pipe: curl | cat     {cp:>8.0} MiB/s");
    println!(
        "  download into a pipe: signet | cat   {sp:>8.0} MiB/s   {:.2}x curl (through the socket)",
        sp / cp
    );
    println!("  upload:   curl -T                    {cu:>8.0} MiB/s");
    println!(
        "  upload:   signet request             {su:>8.0} MiB/s   {:.2}x curl; target >= 0.8x: {}",
        su / cu,
        verdict(su / cu >= 0.8)
    );
    println!(
        "  agent RSS growth during a transfer   {:>8.1} MiB; target <= 20 MiB: {}",
        rss_growth as f64 / f64::from(1 << 20),
        verdict(rss_growth <= 20 << 20)
    );
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
        // Medians of 3 alternating runs, as the `request` transfers are:
        // one run each swung the ratio from 0.54x to 0.89x between runs.
        let (mut direct_s, mut proxy_s) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let d = curl_secs(&format!("{direct}{big}"), &format!("Authorization: {direct_auth}"));
            let p = curl_secs(&format!("{url}{big}"), &format!("Authorization: {local_auth}"));
            if let (Some(d), Some(p)) = (d, p) {
                direct_s.push(Duration::from_secs_f64(d));
                proxy_s.push(Duration::from_secs_f64(p));
            }
        }
        if !direct_s.is_empty() {
            let (a, b) = (median(direct_s).as_secs_f64(), median(proxy_s).as_secs_f64());
            let mib = (BIG >> 20) as f64;
            println!(
                "  1 GiB download with curl, medians of 3 alternating runs: direct {:.0} MiB/s, through the proxy {:.0} MiB/s ({:.2}x direct; target >= 0.7x: {})",
                mib / a,
                mib / b,
                a / b,
                verdict(a / b >= 0.7)
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
