//! A stand-in for systemd-logind on a private bus, for the test of the
//! agent's session-event lock: no real logind runs where the suite runs
//! (containers, CI), and a real one could not be made to lock a session or
//! announce sleep on demand anyway.
//!
//! It is a `dbus-daemon` with a private socket, pointed to by
//! `DBUS_SYSTEM_BUS_ADDRESS`, and a small Python service (the system's
//! `python3` with `python3-dbus` and `python3-gi`) that owns
//! `org.freedesktop.login1`: the Manager answers `GetSession` and
//! `GetSessionByPID` with one session, and emits `PrepareForSleep` and the
//! session's `Lock` when the test asks.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

const SERVICE: &str = r#"
import sys
import dbus, dbus.service, dbus.mainloop.glib
from gi.repository import GLib

dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
bus = dbus.bus.BusConnection(sys.argv[1])
SESSION = '/org/freedesktop/login1/session/_31'

class Session(dbus.service.Object):
    @dbus.service.signal('org.freedesktop.login1.Session')
    def Lock(self):
        pass

class Manager(dbus.service.Object):
    @dbus.service.method('org.freedesktop.login1.Manager', in_signature='s', out_signature='o')
    def GetSession(self, sid):
        return dbus.ObjectPath(SESSION)

    @dbus.service.method('org.freedesktop.login1.Manager', in_signature='u', out_signature='o')
    def GetSessionByPID(self, pid):
        return dbus.ObjectPath(SESSION)

    @dbus.service.signal('org.freedesktop.login1.Manager', signature='b')
    def PrepareForSleep(self, start):
        pass

session = Session(bus, SESSION)
manager = Manager(bus, '/org/freedesktop/login1')
name = dbus.service.BusName('org.freedesktop.login1', bus)

def command(source, condition):
    line = sys.stdin.readline()
    if not line:
        loop.quit()
        return False
    word = line.strip()
    if word == 'lock':
        session.Lock()
    elif word == 'sleep':
        manager.PrepareForSleep(True)
    elif word == 'wake':
        manager.PrepareForSleep(False)
    print('sent ' + word, flush=True)
    return True

GLib.io_add_watch(sys.stdin, GLib.IO_IN | GLib.IO_HUP, command)
print('ready', flush=True)
loop = GLib.MainLoop()
loop.run()
"#;

/// The private bus and the fake logind on it.
pub struct FakeLogind {
    bus: Child,
    _bus_out: BufReader<std::process::ChildStdout>,
    service: Child,
    stdin: ChildStdin,
    out: BufReader<std::process::ChildStdout>,
    /// For `DBUS_SYSTEM_BUS_ADDRESS`.
    pub address: String,
}

/// Whether this machine can run the fake: dbus-daemon and the Python
/// D-Bus bindings.
pub fn available() -> Result<(), String> {
    let py = Command::new("/usr/bin/python3")
        .args(["-c", "import dbus, dbus.mainloop.glib; from gi.repository import GLib"])
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("no /usr/bin/python3 ({e})"))?;
    if !py.success() {
        return Err("python3-dbus and python3-gi are not installed".into());
    }
    if !crate::exists(Path::new("/usr/bin/dbus-daemon")) {
        return Err("dbus-daemon is not installed".into());
    }
    Ok(())
}

impl FakeLogind {
    /// Starts the bus in `dir` and the service on it; waits until the
    /// service owns its name.
    pub fn start(dir: &Path) -> Result<FakeLogind, String> {
        available()?;
        let socket = dir.join("system_bus");
        let config = dir.join("system_bus.conf");
        std::fs::write(&config, crate::secret_service::bus_config(&socket))
            .map_err(|e| format!("cannot write the bus config: {e}"))?;
        let mut bus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start dbus-daemon: {e}"))?;
        let mut line = String::new();
        let mut bus_out = BufReader::new(bus.stdout.take().expect("stdout"));
        let _ = bus_out.read_line(&mut line);
        let address = line.trim().to_string();
        if address.is_empty() {
            let _ = bus.kill();
            let _ = bus.wait();
            return Err("dbus-daemon printed no address".into());
        }
        let mut service = Command::new("/usr/bin/python3")
            .args(["-c", SERVICE, &address])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the fake logind: {e}"))?;
        let stdin = service.stdin.take().expect("stdin");
        let mut out = BufReader::new(service.stdout.take().expect("stdout"));
        let mut ready = String::new();
        let _ = out.read_line(&mut ready);
        let me = FakeLogind { bus, _bus_out: bus_out, service, stdin, out, address };
        if ready.trim() != "ready" {
            return Err(format!("the fake logind did not start: {ready:?}"));
        }
        Ok(me)
    }

    fn send(&mut self, word: &str) {
        writeln!(self.stdin, "{word}").expect("fake logind stdin");
        self.stdin.flush().expect("flush");
        let mut line = String::new();
        let began = Instant::now();
        while line.trim() != format!("sent {word}") && began.elapsed() < Duration::from_secs(30) {
            line.clear();
            if self.out.read_line(&mut line).unwrap_or(0) == 0 {
                panic!("the fake logind exited");
            }
        }
    }

    /// Emits the session's `Lock` signal (what `loginctl lock-session`
    /// makes logind send).
    pub fn lock_session(&mut self) {
        self.send("lock");
    }

    /// Emits `PrepareForSleep(true)` on the Manager.
    pub fn prepare_for_sleep(&mut self) {
        self.send("sleep");
    }
}

impl Drop for FakeLogind {
    fn drop(&mut self) {
        let _ = self.service.kill();
        let _ = self.service.wait();
        let _ = self.bus.kill();
        let _ = self.bus.wait();
    }
}
