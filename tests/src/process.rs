//! Finding the binaries under test, and running processes so that a test
//! sees everything they wrote and never hangs on one that does not finish.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Bound on every keyring tool call (`secret-tool`, `dbus-send`, `keyctl`): a
/// prompt that nobody answers must not hang a test.
const TOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the binaries under test are.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SIGNET_BIN_DIR") {
        return PathBuf::from(d);
    }
    // target/<profile>/deps/<test-exe> -> target/<profile>/
    let exe = std::env::current_exe().expect("current_exe");
    let mut d = exe.parent().expect("exe dir").to_path_buf();
    if d.ends_with("deps") {
        d.pop();
    }
    d
}

/// The path of binary `name`, which must have been built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the binaries first (cargo build --workspace), or set SIGNET_BIN_DIR",
        p.display()
    );
    p
}

/// The outcome of one `signet` run.
#[derive(Debug)]
pub struct Out {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// The exit code; a death by signal is a test failure.
    pub fn code(&self) -> i32 {
        match self.status.code() {
            Some(c) => c,
            None => panic!("killed by signal {:?}: {self:?}", self.status.signal()),
        }
    }

    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code(), 0, "expected success: {self:#?}");
        &self.stdout
    }

    /// Asserts exit `code` and returns stderr.
    #[track_caller]
    pub fn fails(&self, code: i32) -> &str {
        assert_eq!(self.code(), code, "expected exit {code}: {self:#?}");
        assert!(
            self.stderr.starts_with("signet: "),
            "stderr must start with `signet: `: {self:#?}"
        );
        &self.stderr
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }
}

/// Runs `cmd` with `stdin`, collecting both outputs.
pub fn run(cmd: &mut Command, stdin: &[u8]) -> Out {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let mut stdout = String::new();
    let mut stderr = String::new();
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let _ = so.read_to_string(&mut stdout);
    stderr.push_str(&err_reader.join().unwrap_or_default());
    let _ = writer.join();
    let status = child.wait().expect("wait");
    Out { status, stdout, stderr }
}

/// Waits for `child` at most `limit`.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `f` until it is true, at most `limit`.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// True when `path` exists.
pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// What a keyring tool run by [`run_bounded`] left behind.
pub(crate) struct ToolOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs a tool with a time bound. With `merged`, stderr goes into the same pipe as
/// stdout, so lines keep the order the tool wrote them in (secret-tool writes
/// attributes to stderr and flushes after each line).
pub(crate) fn run_bounded(
    mut cmd: Command,
    stdin: Option<&[u8]>,
    merged: bool,
) -> Result<ToolOutput, String> {
    let program = format!("{:?}", cmd.get_program());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let (reader, writer) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let err_pipe =
        if merged { None } else { Some(std::io::pipe().map_err(|e| format!("pipe: {e}"))?) };
    {
        let stdout_writer = writer.try_clone().map_err(|e| format!("pipe: {e}"))?;
        cmd.stdout(stdout_writer);
    }
    match &err_pipe {
        Some((_, w)) => cmd.stderr(w.try_clone().map_err(|e| format!("pipe: {e}"))?),
        None => cmd.stderr(writer.try_clone().map_err(|e| format!("pipe: {e}"))?),
    };
    let spawned = cmd.spawn();
    // Our copies of the write ends must go, or the readers never see EOF.
    drop(writer);
    let (err_reader, err_writer) = match err_pipe {
        Some((r, w)) => (Some(r), Some(w)),
        None => (None, None),
    };
    drop(err_writer);
    drop(cmd);
    let mut child = spawned.map_err(|e| format!("cannot run {program}: {e}"))?;

    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let data = data.to_vec();
        thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    let out_thread = thread::spawn(move || {
        let mut buf = Vec::new();
        let mut reader = reader;
        let _ = reader.read_to_end(&mut buf);
        buf
    });
    let err_thread = err_reader.map(|mut r| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    });

    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(2)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{program} did not finish within {}s", TOOL_TIMEOUT.as_secs()));
            }
            Err(e) => return Err(format!("waiting for {program}: {e}")),
        }
    };
    let stdout = out_thread.join().unwrap_or_default();
    let stderr = err_thread.map(|t| t.join().unwrap_or_default()).unwrap_or_default();
    Ok(ToolOutput { status, stdout, stderr })
}
