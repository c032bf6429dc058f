//! The audit trail: one JSON line per use of a token and per management
//! action, appended to `audit.jsonl` in the data directory.
//!
//! It knows nothing of the rest of the agent: the dispatch hands it a
//! finished [`Record`] of plain values. What it guarantees:
//! - a request never waits on the disk: [`Audit::record`] puts the record
//!   on a bounded queue to one writer thread, which serialises it; a full
//!   queue drops the record and counts it, and the writer puts a `dropped`
//!   record in the trail as soon as it catches up, so a gap is never
//!   silent;
//! - each `write(2)` carries complete lines (a batch) on an `O_APPEND` file,
//!   so concurrent writers and readers never see two lines interleaved;
//! - the file is created 0600 and refused on open when it is not ours or
//!   is open to anyone else;
//! - a line torn by a crash (kill -9 mid-write) is never misread: readers
//!   skip a line without its newline or that does not parse, and on open
//!   the writer ends a torn last line with a newline, so the next record
//!   starts on a line of its own;
//! - the trail is rotated by size: `audit.jsonl` becomes `audit.jsonl.1`,
//!   and so on up to `audit.jsonl.<keep>`; older files are removed.
//!
//! What a line never holds: a secret, a header value, a query string or a
//! fragment (a URL is recorded as origin and path only).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The trail's file name in the data directory.
pub const FILE_NAME: &str = "audit.jsonl";
/// Lines waiting for the writer; beyond this, lines are dropped and counted.
pub const QUEUE: usize = 4096;
/// How long the writer lets lines gather while the agent is busy.
const BATCH: Duration = Duration::from_millis(5);
/// The longest path kept in a line: a path is not a place to store data.
const MAX_PATH: usize = 1024;

/// How the trail is kept.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dir: PathBuf,
    /// Rotate once the file would grow past this many bytes.
    pub max_bytes: u64,
    /// Rotated files kept: `audit.jsonl.1` … `audit.jsonl.<keep>`.
    pub keep: u32,
}

/// One line of the trail, as written and as read back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// RFC 3339, UTC, microseconds: fixed width, so text order is time order.
    pub time: String,
    /// What happened: `sign`, `request`, `add`, `rm`, …, or `dropped`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// The peer's program (`/proc/PID/exe`, read when it connected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// Which socket the request came through: `main` or `restricted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The new name of a rename, or the name a minted token is stored as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The URL's path, never its query or fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The upstream HTTP status of a performed request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `ok`, a failure code (`policy`, `no-such-token`, …) or
    /// `client-left`.
    #[serde(default)]
    pub outcome: String,
    /// The exit status `signet` gives for this outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    /// How many lines a `dropped` record stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
}

/// The origin (`scheme://host:port`, never user info) and the path of a
/// URL, never its query or fragment. A URL that does not parse keeps its
/// text up to the first `?` or `#`.
pub fn origin_and_path(url: &str) -> (Option<String>, Option<String>) {
    match url::Url::parse(url.trim()) {
        Ok(u) => origin_and_path_of(&u),
        Err(_) => {
            let t = url.split(['?', '#']).next().unwrap_or("");
            (None, Some(clip(t)))
        }
    }
}

/// [`origin_and_path`] of a URL parsed already.
pub fn origin_and_path_of(u: &url::Url) -> (Option<String>, Option<String>) {
    (origin_of(u), Some(clip(u.path())))
}

/// The URL's origin as the trail writes it: `scheme://host[:port]`, the
/// port only when it is not the scheme's default; `None` for an opaque
/// origin. For http and https, the parser has already put the host in
/// ASCII and dropped a default port, so the origin is a slice of the
/// serialisation (user info excluded) and needs no second pass.
fn origin_of(u: &url::Url) -> Option<String> {
    use url::Position;
    if matches!(u.scheme(), "http" | "https") && u.has_host() {
        let authority = &u[Position::BeforeHost..Position::AfterPort];
        return Some(format!("{}://{authority}", u.scheme()));
    }
    let origin = u.origin().ascii_serialization();
    (origin != "null").then_some(origin)
}

fn clip(s: &str) -> String {
    if s.len() <= MAX_PATH {
        return s.to_string();
    }
    let mut end = MAX_PATH;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Now, as the trail writes it.
pub fn timestamp(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    // Written digit by digit: the trail stamps every sign, and this is a
    // tenth of the cost of the formatting machinery.
    if let Ok(year) = u16::try_from(t.year())
        && year <= 9999
    {
        let mut out = [0u8; 27];
        let mut at = 0;
        let mut put = |v: u32, width: u32, sep: u8| {
            for i in (0..width).rev() {
                out[at] = b'0' + (v / 10u32.pow(i) % 10) as u8;
                at += 1;
            }
            out[at] = sep;
            at += 1;
        };
        put(year.into(), 4, b'-');
        put(u8::from(t.month()).into(), 2, b'-');
        put(t.day().into(), 2, b'T');
        put(t.hour().into(), 2, b':');
        put(t.minute().into(), 2, b':');
        put(t.second().into(), 2, b'.');
        put(t.microsecond(), 6, b'Z');
        return out.iter().map(|&b| char::from(b)).collect();
    }
    formatted(t)
}

/// [`timestamp`] through the formatting machinery, for the years the fast
/// path does not write (and, in the tests, to check it against).
fn formatted(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Reads `/proc/PID/exe` of a peer; `None` when it is gone or closed to us
/// (a non-dumpable program, another uid's).
pub fn exe_of(pid: i32) -> Option<String> {
    if pid <= 0 {
        return None;
    }
    std::fs::read_link(format!("/proc/{pid}/exe")).ok().map(|p| p.to_string_lossy().into_owned())
}

/// Why the trail cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open the audit trail {}: {err}", path.display())]
    Open { path: PathBuf, err: io::Error },
    #[error(
        "refusing the audit trail {}: its mode is {mode:03o}, open to group or others; `chmod 600 {}`",
        path.display(), path.display()
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("refusing the audit trail {}: it is owned by uid {owner}, not by this user", path.display())]
    NotOurs { path: PathBuf, owner: u32 },
}

enum Msg {
    /// A record and the moment it happened: serialised on the writer's
    /// thread, off the path of the request it records.
    Record(Box<Record>, time::OffsetDateTime),
    /// Answered once every line queued before it is written.
    Sync(mpsc::Sender<()>),
}

/// The handle the agent records through; a disabled trail records nothing.
/// Clones share the one writer.
#[derive(Clone)]
pub struct Audit {
    tx: Option<SyncSender<Msg>>,
    dropped: std::sync::Arc<AtomicU64>,
    path: Option<PathBuf>,
    keep: u32,
}

impl Audit {
    /// A trail that records nothing (`audit = false`).
    pub fn disabled() -> Audit {
        Audit { tx: None, dropped: Default::default(), path: None, keep: 0 }
    }

    /// Opens (or creates, 0600) the trail and starts its writer thread.
    pub fn open(s: Settings) -> Result<Audit, AuditError> {
        Audit::start(s, QUEUE, None)
    }

    /// [`Audit::open`] with a queue of `queue` lines and a writer that
    /// starts draining only once `gate` fires (to test a stalled disk).
    fn start(s: Settings, queue: usize, gate: Option<Receiver<()>>) -> Result<Audit, AuditError> {
        let path = s.dir.join(FILE_NAME);
        let file = open_file(&path)?;
        let (tx, rx) = mpsc::sync_channel(queue);
        let dropped = std::sync::Arc::new(AtomicU64::new(0));
        let len =
            file.metadata().map_err(|err| AuditError::Open { path: path.clone(), err })?.len();
        let writer = Writer {
            path: path.clone(),
            file,
            len,
            max: s.max_bytes,
            keep: s.keep,
            pending: Vec::with_capacity(BATCH_BYTES),
            line: Vec::with_capacity(1024),
            pending_lines: 0,
        };
        let counter = dropped.clone();
        std::thread::Builder::new()
            .name("signet-audit".into())
            .spawn(move || {
                if let Some(g) = gate {
                    let _ = g.recv();
                }
                writer.run(rx, &counter)
            })
            .map_err(|err| AuditError::Open { path: path.clone(), err })?;
        Ok(Audit { tx: Some(tx), dropped, path: Some(path), keep: s.keep })
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues `r` (its time is set here); never waits. A full queue drops
    /// the line and counts it.
    pub fn record(&self, r: Record) {
        let Some(tx) = &self.tx else { return };
        let at = time::OffsetDateTime::now_utc();
        match tx.try_send(Msg::Record(Box::new(r), at)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Waits, at most `limit`, until every line queued so far is on disk.
    pub fn sync(&self, limit: Duration) -> bool {
        let Some(tx) = &self.tx else { return true };
        let (done_tx, done_rx) = mpsc::channel();
        if tx.send_timeout_compat(Msg::Sync(done_tx), limit).is_err() {
            return false;
        }
        done_rx.recv_timeout(limit).is_ok()
    }

    /// The trail's records, oldest first, from the rotated files and the
    /// current one, that `keep` says are wanted. Lines that are torn or do
    /// not parse are skipped.
    pub fn read(&self, keep: impl Fn(&Record) -> bool) -> io::Result<Vec<Record>> {
        let Some(path) = &self.path else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for n in (0..=self.keep).rev() {
            let p = rotated(path, n);
            let text = match std::fs::read(&p) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            out.extend(parse_lines(&text).filter(|r| keep(r)));
        }
        Ok(out)
    }
}

/// The complete, parseable records in `text`: a last line without its
/// newline is a torn write and is skipped, as is any line that is not a
/// record.
pub fn parse_lines(text: &[u8]) -> impl Iterator<Item = Record> + '_ {
    let complete = match text.iter().rposition(|b| *b == b'\n') {
        Some(i) => &text[..=i],
        None => &text[..0],
    };
    complete
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice::<Record>(l).ok())
        .filter(|r| !r.time.is_empty() && !r.action.is_empty())
}

trait SendTimeout {
    fn send_timeout_compat(&self, m: Msg, limit: Duration) -> Result<(), ()>;
}

impl SendTimeout for SyncSender<Msg> {
    /// `SyncSender` has no timed send: retry `try_send` until `limit`.
    fn send_timeout_compat(&self, mut m: Msg, limit: Duration) -> Result<(), ()> {
        let until = std::time::Instant::now() + limit;
        loop {
            match self.try_send(m) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(_)) => return Err(()),
                Err(TrySendError::Full(back)) => {
                    if std::time::Instant::now() >= until {
                        return Err(());
                    }
                    m = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    if n == 0 {
        return path.to_path_buf();
    }
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Opens the trail for appending: created 0600, never through a link,
/// refused when not ours or open to others; a torn last line is ended.
fn open_file(path: &Path) -> Result<File, AuditError> {
    let err = |err| AuditError::Open { path: path.to_path_buf(), err };
    let mut f = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(err)?;
    let md = f.metadata().map_err(err)?;
    if md.uid() != nix::unistd::geteuid().as_raw() {
        return Err(AuditError::NotOurs { path: path.to_path_buf(), owner: md.uid() });
    }
    let mode = md.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(AuditError::TooOpen { path: path.to_path_buf(), mode });
    }
    if md.len() > 0 {
        let mut last = [0u8; 1];
        f.seek(SeekFrom::End(-1)).map_err(err)?;
        f.read_exact(&mut last).map_err(err)?;
        if last[0] != b'\n' {
            // A crash tore the last line: end it, so the next record is
            // a line of its own and the torn one stays unparseable.
            f.write_all(b"\n").map_err(err)?;
        }
    }
    Ok(f)
}

struct Writer {
    path: PathBuf,
    file: File,
    /// The file's size, kept here rather than asked of the kernel per line:
    /// only this writer appends (one agent per data directory).
    len: u64,
    max: u64,
    keep: u32,
    /// Whole lines not written yet: one `write(2)` carries a batch.
    pending: Vec<u8>,
    pending_lines: u64,
    /// The line being made, kept to be reused: no allocation per line.
    line: Vec<u8>,
}

/// The most a batch holds before it is written.
const BATCH_BYTES: usize = 64 * 1024;

impl Writer {
    /// Blocks while the agent is idle; once a line arrives, drains the
    /// queue every [`BATCH`] until a pause finds it empty. A busy agent so
    /// queues lines without waking this thread for each one (a wake-up
    /// costs the request a system call and, on a loaded machine, its CPU).
    fn run(mut self, rx: Receiver<Msg>, dropped: &AtomicU64) {
        let mut warned = false;
        while let Ok(first) = rx.recv() {
            self.handle(first, dropped, &mut warned);
            loop {
                std::thread::sleep(BATCH);
                let mut got = false;
                loop {
                    match rx.try_recv() {
                        Ok(m) => {
                            self.handle(m, dropped, &mut warned);
                            got = true;
                        }
                        Err(mpsc::TryRecvError::Empty) => break,
                        Err(mpsc::TryRecvError::Disconnected) => return,
                    }
                }
                self.flush(dropped, &mut warned);
                self.report_dropped(dropped);
                if !got {
                    break;
                }
            }
        }
    }

    fn handle(&mut self, msg: Msg, dropped: &AtomicU64, warned: &mut bool) {
        match msg {
            Msg::Record(mut r, at) => {
                r.time = timestamp(at);
                let mut line = std::mem::take(&mut self.line);
                line.clear();
                if serde_json::to_writer(&mut line, &r).is_err() {
                    self.line = line;
                    return;
                }
                line.push(b'\n');
                // A batch never takes the file past its limit: rotation
                // happens between batches, as it did between lines.
                if !self.pending.is_empty()
                    && self.len + (self.pending.len() + line.len()) as u64 > self.max
                {
                    self.flush(dropped, warned);
                }
                self.pending.extend_from_slice(&line);
                self.line = line;
                self.pending_lines += 1;
                if self.pending.len() >= BATCH_BYTES {
                    self.flush(dropped, warned);
                }
            }
            Msg::Sync(done) => {
                self.flush(dropped, warned);
                // What was dropped before this point is part of what the
                // caller waits for.
                self.report_dropped(dropped);
                let _ = done.send(());
            }
        }
    }

    /// Writes the pending batch; lines it could not write count as dropped.
    fn flush(&mut self, dropped: &AtomicU64, warned: &mut bool) {
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        let lines = std::mem::take(&mut self.pending_lines);
        if let Err(e) = self.append(&batch) {
            if !*warned {
                tracing::warn!(error = %e, path = %self.path.display(), "cannot write the audit trail");
                *warned = true;
            }
            dropped.fetch_add(lines, Ordering::Relaxed);
        }
        self.pending = batch;
        self.pending.clear();
    }

    /// Caught up: say how many lines the full queue cost.
    fn report_dropped(&mut self, dropped: &AtomicU64) {
        let n = dropped.swap(0, Ordering::Relaxed);
        if n > 0 {
            let r = Record {
                time: timestamp(time::OffsetDateTime::now_utc()),
                action: "dropped".into(),
                outcome: "dropped".into(),
                dropped: Some(n),
                ..Record::default()
            };
            let mut line = serde_json::to_vec(&r).unwrap_or_default();
            line.push(b'\n');
            if self.append(&line).is_err() {
                dropped.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// One `write(2)` of complete lines, rotating first when they would
    /// take the file past its limit.
    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        if self.len > 0 && self.len + line.len() as u64 > self.max {
            self.rotate()?;
        }
        let n = self.file.write(line)?;
        self.len += n as u64;
        if n != line.len() {
            // A short write (a full disk): end the fragment so that it
            // stays one unparseable line, and report the loss.
            let _ = self.file.write(b"\n");
            return Err(io::Error::other("short write"));
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                let from = rotated(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, rotated(&self.path, n + 1))?;
                }
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        self.file = open_file(&self.path).map_err(|e| io::Error::other(e.to_string()))?;
        self.len = self.file.metadata()?.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_origin_and_path_only() {
        let (o, p) = origin_and_path("https://user:pw@h.example:8443/a/b?key=SECRET#frag");
        assert_eq!(o.as_deref(), Some("https://h.example:8443"));
        assert_eq!(p.as_deref(), Some("/a/b"));
        let (o, p) = origin_and_path("api/2.0/?op=SECRET");
        assert_eq!(o, None);
        assert_eq!(p.as_deref(), Some("api/2.0/"));
    }

    #[test]
    fn torn_and_foreign_lines_are_skipped() {
        let text = b"{\"time\":\"t\",\"action\":\"sign\",\"outcome\":\"ok\"}\nnot json\n{\"time\":\"t2\",\"act";
        let got: Vec<_> = parse_lines(text).collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].action, "sign");
    }

    #[test]
    fn timestamps_are_fixed_width_utc() {
        let t = time::macros::datetime!(2026-01-02 03:04:05.000007 UTC);
        assert_eq!(timestamp(t), "2026-01-02T03:04:05.000007Z");
        // Another offset is written as UTC.
        let t = time::macros::datetime!(2026-01-01 23:59:59.999999 -02:00);
        assert_eq!(timestamp(t), "2026-01-02T01:59:59.999999Z");
        let t = time::macros::datetime!(0000-01-01 00:00:00 UTC);
        assert_eq!(timestamp(t), "0000-01-01T00:00:00.000000Z");
        let t = time::macros::datetime!(9999-12-31 23:59:59.999999 UTC);
        assert_eq!(timestamp(t), "9999-12-31T23:59:59.999999Z");
        // Against the formatting machinery, over a spread of instants.
        let mut t = time::macros::datetime!(1970-01-01 00:00:00 UTC);
        for _ in 0..5000 {
            t += time::Duration::microseconds(987_654_321_123);
            assert_eq!(timestamp(t), formatted(t));
        }
    }

    #[test]
    fn an_origin_is_the_urls_origin_without_its_user_info() {
        for url in [
            "http://maas.example:5240/MAAS/api/2.0/",
            "https://vms.example/api/",
            "https://vms.example:443/api/",
            "http://vms.example:80/x",
            "http://user:secret@h.example:8080/p?q=1#f",
            "https://user@h.example/",
            "http://[::1]:8080/",
            "http://127.0.0.1/",
            "HTTP://EXAMPLE.COM/A",
            "http://bücher.example/",
            "ftp://files.example:2121/x",
            "file:///etc/passwd",
            "data:text/plain,x",
            "mailto:a@b.example",
        ] {
            let u = url::Url::parse(url).unwrap();
            let origin = u.origin().ascii_serialization();
            let expected = (origin != "null").then_some(origin);
            assert_eq!(origin_of(&u), expected, "{url}");
            assert!(!origin_of(&u).unwrap_or_default().contains("secret"), "{url}");
        }
    }

    #[test]
    fn a_full_queue_drops_and_says_how_many() {
        let d = tempfile::tempdir().unwrap();
        let (open, gate) = mpsc::channel();
        let s = Settings { dir: d.path().into(), max_bytes: 1 << 20, keep: 1 };
        let a = Audit::start(s, 4, Some(gate)).unwrap();
        // The writer is stalled: 4 lines fit, 6 are dropped without waiting.
        for i in 0..10 {
            a.record(Record {
                action: "sign".into(),
                token: Some(format!("t{i}")),
                ..Default::default()
            });
        }
        open.send(()).unwrap();
        assert!(a.sync(Duration::from_secs(10)));
        let all = a.read(|_| true).unwrap();
        let tokens: Vec<_> = all.iter().filter_map(|r| r.token.as_deref()).collect();
        assert_eq!(tokens, ["t0", "t1", "t2", "t3"]);
        let dropped: Vec<_> = all.iter().filter(|r| r.action == "dropped").collect();
        assert_eq!(dropped.len(), 1, "{all:?}");
        assert_eq!(dropped[0].dropped, Some(6));
    }

    #[test]
    fn batched_lines_land_whole_and_in_order() {
        let d = tempfile::tempdir().unwrap();
        let a =
            Audit::open(Settings { dir: d.path().into(), max_bytes: 1 << 30, keep: 1 }).unwrap();
        // More than one batch's worth (64 KiB), queued faster than the
        // writer drains.
        for i in 0..3000 {
            a.record(Record {
                action: "sign".into(),
                token: Some(format!("t{i}")),
                ..Default::default()
            });
        }
        assert!(a.sync(Duration::from_secs(10)));
        let all = a.read(|_| true).unwrap();
        // The queue (4096) holds them all: nothing is dropped.
        let tokens: Vec<_> = all.iter().filter_map(|r| r.token.clone()).collect();
        let expected: Vec<_> = (0..3000).map(|i| format!("t{i}")).collect();
        assert_eq!(tokens, expected, "lines lost, out of order or split");
        let text = std::fs::read_to_string(d.path().join(FILE_NAME)).unwrap();
        assert!(
            text.ends_with('\n') && text.lines().all(|l| l.starts_with('{') && l.ends_with('}'))
        );
    }

    #[test]
    fn rotation_keeps_the_newest_files() {
        let d = tempfile::tempdir().unwrap();
        let a = Audit::open(Settings { dir: d.path().into(), max_bytes: 300, keep: 2 }).unwrap();
        for i in 0..30 {
            a.record(Record {
                action: "sign".into(),
                token: Some(format!("t{i}")),
                ..Default::default()
            });
        }
        assert!(a.sync(Duration::from_secs(10)));
        for n in 0..=2 {
            let len = std::fs::metadata(rotated(&d.path().join(FILE_NAME), n)).unwrap().len();
            assert!(len <= 300, "file {n} is {len} bytes");
        }
        assert!(!rotated(&d.path().join(FILE_NAME), 3).exists());
        let all = a.read(|_| true).unwrap();
        assert_eq!(all.last().unwrap().token.as_deref(), Some("t29"));
    }
}
