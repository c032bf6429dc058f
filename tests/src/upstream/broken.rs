//! Upstreams that fail below HTTP, for the tests of how the agent reports a
//! failure it cannot blame on the credentials: a port nobody listens on, a
//! server that accepts and never answers, and one that cuts its body short.
//! Plain TCP on 127.0.0.1, so nothing in a real HTTP stack can tidy the
//! failure up.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// A port on 127.0.0.1 that nothing listens on (bound, noted, released).
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A TCP server that accepts connections and never answers; returns the
/// number of connections it accepted once stopped.
pub struct SilentServer {
    port: u16,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<usize>>,
}

impl SilentServer {
    pub fn start() -> SilentServer {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let port = l.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (stop.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            // Held, not dropped: a closed connection would be an answer.
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => {
                        held.push(s);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            held.len()
        });
        SilentServer { port, stop, accepted, thread: Some(thread) }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Stops accepting, closes every connection; returns how many there were.
    pub fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map(|t| t.join().expect("silent server")).unwrap_or(0)
    }
}

/// A raw HTTP server that answers every connection with `head`, then `sent`
/// bytes of body, then closes (whatever the head promised).
pub struct TruncatingServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<usize>,
}

impl TruncatingServer {
    pub fn start(head: String, sent: usize) -> TruncatingServer {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let port = l.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut served = 0;
            while !flag.load(Ordering::Relaxed) {
                let Ok((mut s, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                // The whole request head first: answering earlier would be a
                // different failure (a reset while the client still writes).
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&vec![b'x'; sent]);
                let _ = s.flush();
                served += 1;
            }
            served
        });
        TruncatingServer { port, stop, thread }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server; returns how many requests it answered.
    pub fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("server")
    }
}
