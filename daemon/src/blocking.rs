//! A held connection, served on a thread of its own with blocking reads
//! and writes.
//!
//! Every connection starts on the runtime ([`crate::conn`]). One that asks
//! for a second one-frame answer (a sign above all) is held open for a
//! series of them, and moves here. A round trip is then one read and one
//! write: the thread sleeps in the read until the request is there, and
//! nothing stands between the read, the command and the write. On the
//! runtime the same round trip also goes through readiness polling, a task
//! wake-up and a poll, and arms its timers. A connection that makes one
//! request and goes (`signet sign`) never pays for a thread. A request that
//! needs its connection for more ([`cmd::needs_connection`]: a streamed
//! request, a proxy tied to the connection) takes the connection back to
//! the runtime for the rest of its life.
//!
//! It keeps the guarantees [`crate::conn`] states:
//! - a peer waits for a frame to begin at most the idle timeout, and for
//!   the rest of a frame at most the frame timeout. The socket's receive
//!   timeout wakes the read: there is no timer to arm per request;
//! - an oversized or garbage length prefix gets an error and a close; a
//!   body that does not decode gets an error and the connection carries on;
//! - once shutdown begins, no new request is served: [`Live::close`] shuts
//!   the reading side of every connection, which wakes its thread;
//! - a frame's bytes are wiped from the buffer once decoded, and the buffer
//!   when the connection ends: request frames carry secrets.

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use signet_proto::frame::{FrameError, write_frame};
use signet_proto::{ErrorCode, Failure, MAX_FRAME, Request, Response};
use tokio::runtime::Handle;
use zeroize::{Zeroize, Zeroizing};

use crate::agent::Agent;
use crate::cmd::{self, Caller};
use crate::conn::{self, Closed};

/// The connections served on threads, so that shutdown can wake them.
#[derive(Default)]
pub struct Live {
    closing: AtomicBool,
    streams: Mutex<Streams>,
}

#[derive(Default)]
struct Streams {
    next: u64,
    open: HashMap<u64, Arc<UnixStream>>,
}

impl Live {
    /// Adds a connection, until the guard it returns is dropped (also when
    /// its thread unwinds). Once shutdown has begun, its reading side is
    /// shut at once: the request it came with is still answered.
    pub fn add(&self, s: Arc<UnixStream>) -> Listed<'_> {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock that `close` takes: a connection added
        // here is shut either here or by it.
        if self.closing.load(Ordering::SeqCst) {
            let _ = s.shutdown(Shutdown::Read);
        }
        streams.next += 1;
        let id = streams.next;
        streams.open.insert(id, s);
        Listed { live: self, id }
    }

    /// Begins shutdown: shuts the reading side of every connection, so that
    /// a thread waiting for a request wakes to the end of its stream. A
    /// request in flight still finishes and sends its answer.
    pub fn close(&self) {
        let streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        self.closing.store(true, Ordering::SeqCst);
        for s in streams.open.values() {
            let _ = s.shutdown(Shutdown::Read);
        }
    }

    fn closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }
}

/// A connection's place in [`Live`], given up when dropped.
pub struct Listed<'a> {
    live: &'a Live,
    id: u64,
}

impl Drop for Listed<'_> {
    fn drop(&mut self) {
        self.live.streams.lock().unwrap_or_else(PoisonError::into_inner).open.remove(&self.id);
    }
}

/// A buffer the size of most frames; a larger frame grows it for its time.
const BUFFER: usize = 4096;

/// The frames of one connection, read through one buffer: a small request
/// costs one read.
struct Frames<'a> {
    s: &'a UnixStream,
    buf: Zeroizing<Vec<u8>>,
    start: usize,
    end: usize,
    /// The socket's receive timeout while no frame is under way: the
    /// shorter of the idle and frame timeouts, counted off by `fill`.
    tick: Duration,
    idle: Duration,
    frame_timeout: Duration,
    /// When the frame under way must be complete, once it has begun and
    /// did not come whole.
    due: Option<Instant>,
}

impl<'a> Frames<'a> {
    fn new(s: &'a UnixStream, idle: Duration, frame_timeout: Duration) -> io::Result<Self> {
        let tick = idle.min(frame_timeout);
        s.set_read_timeout(Some(tick))?;
        s.set_write_timeout(Some(frame_timeout))?;
        Ok(Frames {
            s,
            buf: Zeroizing::new(vec![0; BUFFER]),
            start: 0,
            end: 0,
            tick,
            idle,
            frame_timeout,
            due: None,
        })
    }

    /// Whether bytes beyond the last frame have come.
    fn buffered(&self) -> bool {
        self.end > self.start
    }

    /// Reads until `need` bytes from `start` are buffered. Before the first
    /// byte of a frame it waits at most the idle timeout; once a frame has
    /// begun, the whole frame must come within the frame timeout.
    fn fill(&mut self, need: usize) -> Result<(), Closed> {
        let mut waited = Duration::ZERO;
        let result = loop {
            if self.end - self.start >= need {
                break Ok(());
            }
            if let Some(due) = self.due
                && let Err(e) = self.rest_of_frame(due)
            {
                break Err(e);
            }
            if need > self.buf.len() - self.start {
                self.make_room(need);
            }
            match (&*self.s).read(&mut self.buf[self.end..]) {
                Ok(0) if self.buffered() => {
                    break Err(Closed::Error("the client closed the connection mid-frame".into()));
                }
                Ok(0) => break Err(Closed::Peer),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
                {
                    if self.buffered() {
                        break Err(Closed::Error("frame timed out".into()));
                    }
                    waited += self.tick;
                    if waited >= self.idle {
                        break Err(Closed::Idle);
                    }
                    continue;
                }
                Err(e) => break Err(Closed::Error(format!("read: {e}"))),
            }
            if self.end - self.start < need {
                // A frame under way, and not all here: its clock starts.
                self.due.get_or_insert_with(|| Instant::now() + self.frame_timeout);
            }
        };
        if self.due.is_some()
            && let Err(e) = self.s.set_read_timeout(Some(self.tick))
        {
            return Err(Closed::Error(format!("set the receive timeout: {e}")));
        }
        result
    }

    /// Bounds the next read of a frame under way by what is left of its
    /// frame timeout, counted from its first byte.
    fn rest_of_frame(&self, due: Instant) -> Result<(), Closed> {
        let left = due.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Closed::Error("frame timed out".into()));
        }
        self.s
            .set_read_timeout(Some(left))
            .map_err(|e| Closed::Error(format!("set the receive timeout: {e}")))
    }

    /// Makes room for `need` bytes from `start`: moves what is buffered to
    /// the front, and grows the buffer if that is not enough. The old
    /// buffer is wiped as it goes.
    fn make_room(&mut self, need: usize) {
        let len = self.end - self.start;
        if need > self.buf.len() {
            let mut bigger = Zeroizing::new(vec![0; need]);
            bigger[..len].copy_from_slice(&self.buf[self.start..self.end]);
            self.buf = bigger;
        } else {
            self.buf.copy_within(self.start..self.end, 0);
            self.buf[len..self.end].zeroize();
        }
        self.start = 0;
        self.end = len;
    }

    /// The next request, waiting at most the idle timeout for it to begin.
    /// The inner `Err` is the answer to a frame that did not decode; an
    /// oversized length prefix is answered here, and ends the connection.
    fn next(&mut self) -> Result<Result<Request, Response>, Closed> {
        self.due = None;
        self.fill(4)?;
        let prefix: [u8; 4] = self.buf[self.start..self.start + 4].try_into().unwrap_or_default();
        let len = u32::from_be_bytes(prefix) as usize;
        if len > MAX_FRAME {
            let e = FrameError::TooLarge(len);
            let _ = self.send(&conn::malformed_frame(&e));
            return Err(Closed::Error(e.to_string()));
        }
        self.fill(4 + len)?;
        let frame = self.start..self.start + 4 + len;
        let decoded = signet_proto::codec::decode::<Request>(&self.buf[frame.start + 4..frame.end]);
        self.buf[frame.clone()].zeroize();
        self.start = frame.end;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > BUFFER {
                // A large frame is over: give its memory back.
                self.buf = Zeroizing::new(vec![0; BUFFER]);
            }
        }
        Ok(decoded.map_err(|e| conn::malformed_request(&e)))
    }

    fn send(&self, resp: &Response) -> Result<(), Closed> {
        write_frame(&mut &*self.s, resp).map_err(|e| match e {
            FrameError::Io(e)
                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
            {
                Closed::Error("write timed out".into())
            }
            e => Closed::Error(format!("write: {e}")),
        })
    }
}

/// Serves the connection `s`, `first` first, until it ends or until a
/// request comes that [needs its connection](cmd::needs_connection): that
/// request is returned, to be served with the rest of the connection on
/// the runtime. The handshake is done.
pub fn serve(
    s: &UnixStream,
    first: Request,
    caller: &Caller,
    agent: &Arc<Agent>,
    runtime: &Handle,
    live: &Live,
) -> Result<Request, Closed> {
    let config = &agent.config;
    let mut frames = Frames::new(s, config.idle_timeout(), config.frame_timeout())
        .map_err(|e| Closed::Error(format!("set the socket's timeouts: {e}")))?;
    let mut req = first;
    loop {
        if cmd::needs_connection(&req) {
            if frames.buffered() {
                // Nothing may follow such a request before its answer:
                // what did is not the runtime's to make sense of.
                let f = Failure::new(
                    ErrorCode::Protocol,
                    "the client sent more before the answer to its request",
                );
                frames.send(&Response::Failure(f))?;
                return Err(Closed::Error("data sent ahead of an answer".into()));
            }
            return Ok(req);
        }
        // On this thread's stack: a sign's future is not allocated.
        let answer = runtime.block_on(cmd::answer(agent, caller, req));
        frames.send(&answer)?;
        req = loop {
            match frames.next()? {
                Ok(req) => break req,
                Err(answer) => frames.send(&answer)?,
            }
        };
        if live.closing() {
            return Err(Closed::Shutdown);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    use signet_proto::frame::encode_frame;
    use signet_proto::{MAX_FRAME, Request, Response};

    use super::{Closed, Frames};

    const IDLE: Duration = Duration::from_millis(300);
    const FRAME: Duration = Duration::from_millis(200);

    fn list() -> Vec<u8> {
        encode_frame(&Request::List).unwrap()
    }

    fn status() -> Vec<u8> {
        encode_frame(&Request::Status).unwrap()
    }

    #[test]
    fn pipelined_frames_come_out_one_by_one_from_one_read() {
        let (mut client, agent) = UnixStream::pair().unwrap();
        let mut frames = Frames::new(&agent, IDLE, FRAME).unwrap();
        client.write_all(&[list(), status(), list()].concat()).unwrap();
        assert!(matches!(frames.next(), Ok(Ok(Request::List))));
        assert!(frames.buffered(), "the rest stays buffered");
        assert!(matches!(frames.next(), Ok(Ok(Request::Status))));
        assert!(matches!(frames.next(), Ok(Ok(Request::List))));
        assert!(!frames.buffered());
        // Consumed bytes are wiped: nothing of the frames is left behind.
        assert!(frames.buf.iter().all(|b| *b == 0));
    }

    #[test]
    fn a_frame_in_pieces_is_put_together() {
        let (mut client, agent) = UnixStream::pair().unwrap();
        let frame = encode_frame(&Request::Show { name: "web".into() }).unwrap();
        let writer = std::thread::spawn(move || {
            for b in frame {
                client.write_all(&[b]).unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
            client
        });
        let mut frames = Frames::new(&agent, IDLE, FRAME).unwrap();
        match frames.next() {
            Ok(Ok(Request::Show { name })) => assert_eq!(name, "web"),
            other => panic!("{other:?}"),
        }
        drop(writer.join());
    }

    #[test]
    fn a_frame_larger_than_the_buffer_grows_it_for_its_time_only() {
        let (mut client, agent) = UnixStream::pair().unwrap();
        let comment = "c".repeat(200_000);
        let frame = encode_frame(&Request::Show { name: comment.clone() }).unwrap();
        let writer = std::thread::spawn(move || {
            client.write_all(&frame).unwrap();
            client.write_all(&list()).unwrap();
            client
        });
        let mut frames = Frames::new(&agent, IDLE, FRAME).unwrap();
        match frames.next() {
            Ok(Ok(Request::Show { name })) => assert_eq!(name, comment),
            other => panic!("{other:?}"),
        }
        assert!(matches!(frames.next(), Ok(Ok(Request::List))));
        assert_eq!(frames.buf.len(), super::BUFFER, "the large buffer was given back");
        drop(writer.join());
    }

    #[test]
    fn an_oversized_prefix_is_answered_and_ends_the_connection() {
        let (mut client, agent) = UnixStream::pair().unwrap();
        let mut frames = Frames::new(&agent, IDLE, FRAME).unwrap();
        client.write_all(&((MAX_FRAME + 1) as u32).to_be_bytes()).unwrap();
        assert!(matches!(frames.next(), Err(Closed::Error(_))));
        match signet_proto::frame::read_frame::<_, Response>(&mut client).unwrap() {
            Response::Failure(f) => assert!(f.message.contains("malformed frame"), "{}", f.message),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_body_that_does_not_decode_is_answered_and_the_connection_goes_on() {
        let (mut client, agent) = UnixStream::pair().unwrap();
        let mut frames = Frames::new(&agent, IDLE, FRAME).unwrap();
        client.write_all(&[0, 0, 0, 3, 0xff, 0xfe, 0xfd]).unwrap();
        client.write_all(&list()).unwrap();
        match frames.next() {
            Ok(Err(Response::Failure(f))) => {
                assert!(f.message.contains("malformed request"), "{}", f.message)
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(frames.next(), Ok(Ok(Request::List))));
    }

    #[test]
    fn a_silent_client_is_closed_after_the_idle_wait() {
        let (_client, agent) = UnixStream::pair().unwrap();
        let mut frames = Frames::new(&agent, IDLE, FRAME).unwrap();
        let t = Instant::now();
        assert!(matches!(frames.next(), Err(Closed::Idle)));
        let waited = t.elapsed();
        // Counted off in receive timeouts of the shorter of the two waits.
        assert!(waited >= IDLE && waited < IDLE + FRAME + Duration::from_millis(300), "{waited:?}");
    }

    #[test]
    fn a_stalled_frame_is_closed_after_the_frame_timeout() {
        let (mut client, agent) = UnixStream::pair().unwrap();
        let mut frames = Frames::new(&agent, Duration::from_secs(30), FRAME).unwrap();
        client.write_all(&[0, 0, 0, 100, 1, 2]).unwrap();
        let t = Instant::now();
        match frames.next() {
            Err(Closed::Error(e)) => assert!(e.contains("timed out"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(t.elapsed() < FRAME + Duration::from_millis(300), "{:?}", t.elapsed());
    }

    #[test]
    fn a_body_that_stalls_after_a_slow_prefix_has_only_what_is_left() {
        let (mut client, agent) = UnixStream::pair().unwrap();
        let mut frames = Frames::new(&agent, Duration::from_secs(30), FRAME).unwrap();
        let feeder = std::thread::spawn(move || {
            client.write_all(&[0, 0]).unwrap();
            std::thread::sleep(FRAME / 2);
            client.write_all(&[0, 100, 1]).unwrap();
            client
        });
        let t = Instant::now();
        match frames.next() {
            Err(Closed::Error(e)) => assert!(e.contains("timed out"), "{e}"),
            other => panic!("{other:?}"),
        }
        // Not half the frame timeout for the prefix and a whole one more
        // for the body.
        let took = t.elapsed();
        assert!(took < FRAME + FRAME / 4, "{took:?}");
        drop(feeder.join());
    }

    #[test]
    fn a_frame_fed_a_byte_at_a_time_still_has_only_the_frame_timeout() {
        let (mut client, agent) = UnixStream::pair().unwrap();
        let drip = std::thread::spawn(move || {
            let mut prefix = vec![0, 0, 0, 100];
            prefix.extend(std::iter::repeat_n(7u8, 100));
            for b in prefix {
                if client.write_all(&[b]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let mut frames = Frames::new(&agent, Duration::from_secs(30), FRAME).unwrap();
        let t = Instant::now();
        assert!(matches!(frames.next(), Err(Closed::Error(_))));
        // Each byte resets no clock: the frame as a whole had FRAME.
        assert!(t.elapsed() < FRAME + Duration::from_millis(200), "{:?}", t.elapsed());
        drop(frames);
        drop(agent);
        drip.join().unwrap();
    }

    #[test]
    fn a_client_that_closes_between_frames_or_within_one_is_told_apart() {
        let (client, agent) = UnixStream::pair().unwrap();
        let mut frames = Frames::new(&agent, IDLE, FRAME).unwrap();
        drop(client);
        assert!(matches!(frames.next(), Err(Closed::Peer)));

        let (mut client, agent) = UnixStream::pair().unwrap();
        let mut frames = Frames::new(&agent, IDLE, FRAME).unwrap();
        client.write_all(&[0, 0, 0, 9, 1]).unwrap();
        drop(client);
        assert!(matches!(frames.next(), Err(Closed::Error(_))));
    }

    #[test]
    fn a_shut_reading_side_ends_a_wait_at_once() {
        // What `Live::close` does to a connection waiting for a request.
        let (_client, agent) = UnixStream::pair().unwrap();
        let agent = std::sync::Arc::new(agent);
        let live = super::Live::default();
        let _listed = live.add(agent.clone());
        let waiting = {
            let agent = agent.clone();
            std::thread::spawn(move || {
                let mut frames = Frames::new(&agent, Duration::from_secs(30), FRAME).unwrap();
                let t = Instant::now();
                (matches!(frames.next(), Err(Closed::Peer)), t.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        live.close();
        let (peer, waited) = waiting.join().unwrap();
        assert!(peer && waited < Duration::from_secs(2), "{waited:?}");
        assert!(live.closing());
        // One added after shutdown began is shut as it comes.
        let (_c2, a2) = UnixStream::pair().unwrap();
        let a2 = std::sync::Arc::new(a2);
        let listed = live.add(a2.clone());
        let mut frames = Frames::new(&a2, IDLE, FRAME).unwrap();
        assert!(matches!(frames.next(), Err(Closed::Peer)));
        // Its place is given up with the guard: the stream is ours alone.
        drop(frames);
        drop(listed);
        assert_eq!(std::sync::Arc::strong_count(&a2), 1);
    }
}
