//! Frames: a 4-byte big-endian length, then that many bytes of one message.
//!
//! The length is checked against [`MAX_FRAME`] before a byte of the body is
//! read, so an oversized or garbage prefix costs nothing. Receive buffers are
//! zeroized when dropped because request frames carry secrets.
//!
//! Sync functions serve the client (it must not pay for an async runtime);
//! the async ones serve the agent.

use std::io::{self, Read, Write};

use serde::{Serialize, de::DeserializeOwned};
use zeroize::Zeroizing;

use crate::MAX_FRAME;
use crate::codec::{self, CodecError};

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the stream cleanly between frames.
    #[error("connection closed")]
    Closed,
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl FrameError {
    /// True when the stream can no longer be trusted to be at a frame
    /// boundary: anything but a well-delimited body that failed to decode.
    pub fn desynchronised(&self) -> bool {
        !matches!(self, FrameError::Codec(_))
    }
}

/// Encodes `msg` with its length prefix, ready to write in one call.
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let body = codec::encode(msg)?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Checks a length prefix before anything is allocated for the body.
fn body_len(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// Writes one frame.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    let bytes = Zeroizing::new(encode_frame(msg)?);
    w.write_all(&bytes)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame. A clean end of stream before the first byte of the
/// prefix is [`FrameError::Closed`]; anywhere else it is an i/o error.
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<T, FrameError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut prefix[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut body = Zeroizing::new(vec![0u8; body_len(prefix)?]);
    r.read_exact(&mut body)?;
    Ok(codec::decode(&body)?)
}

#[cfg(feature = "tokio")]
mod asynchronous {
    use super::*;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    /// Writes one frame.
    pub async fn write_frame_async<W, T>(w: &mut W, msg: &T) -> Result<(), FrameError>
    where
        W: AsyncWrite + Unpin,
        T: Serialize,
    {
        let bytes = Zeroizing::new(encode_frame(msg)?);
        w.write_all(&bytes).await?;
        w.flush().await?;
        Ok(())
    }

    /// Reads the length prefix of the next frame; `Closed` on a clean end of
    /// stream. Split from the body so that a server can wait for a prefix
    /// under an idle timeout and for the body under a shorter one.
    pub async fn read_prefix_async<R>(r: &mut R) -> Result<usize, FrameError>
    where
        R: AsyncRead + Unpin,
    {
        let mut prefix = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            let n = r.read(&mut prefix[got..]).await?;
            if n == 0 {
                if got == 0 {
                    return Err(FrameError::Closed);
                }
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
            got += n;
        }
        body_len(prefix)
    }

    /// Reads a frame body of `len` bytes (from [`read_prefix_async`]) and
    /// decodes it.
    pub async fn read_body_async<R, T>(r: &mut R, len: usize) -> Result<T, FrameError>
    where
        R: AsyncRead + Unpin,
        T: DeserializeOwned,
    {
        let mut body = Zeroizing::new(vec![0u8; len]);
        r.read_exact(&mut body).await?;
        Ok(codec::decode(&body)?)
    }

    /// Reads one whole frame.
    pub async fn read_frame_async<R, T>(r: &mut R) -> Result<T, FrameError>
    where
        R: AsyncRead + Unpin,
        T: DeserializeOwned,
    {
        let len = read_prefix_async(r).await?;
        read_body_async(r, len).await
    }
}

#[cfg(feature = "tokio")]
pub use asynchronous::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PROTOCOL_VERSION, Request, Response};
    use std::io::Cursor;

    #[test]
    fn oversized_prefix_is_refused_before_reading_the_body() {
        let mut bytes = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(b"short");
        let err = read_frame::<_, Request>(&mut Cursor::new(bytes)).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge(n) if n == MAX_FRAME + 1));
        assert!(err.desynchronised());
    }

    #[test]
    fn empty_stream_is_closed_and_truncated_prefix_is_not() {
        let err = read_frame::<_, Request>(&mut Cursor::new(Vec::new())).unwrap_err();
        assert!(matches!(err, FrameError::Closed));
        let err = read_frame::<_, Request>(&mut Cursor::new(vec![0, 0])).unwrap_err();
        assert!(matches!(err, FrameError::Io(_)));
    }

    #[test]
    fn truncated_body_is_an_io_error() {
        let mut bytes = 10u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0; 4]);
        let err = read_frame::<_, Request>(&mut Cursor::new(bytes)).unwrap_err();
        assert!(matches!(err, FrameError::Io(_)));
    }

    #[test]
    fn garbage_body_is_a_codec_error_and_keeps_the_stream_in_step() {
        let mut bytes = 3u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0xff, 0xff, 0xff]);
        let hello = Request::Hello { version: PROTOCOL_VERSION, software: "t".into() };
        write_frame(&mut bytes, &hello).unwrap();
        let mut cur = Cursor::new(bytes);
        let err = read_frame::<_, Request>(&mut cur).unwrap_err();
        assert!(matches!(err, FrameError::Codec(_)));
        assert!(!err.desynchronised());
        // the next frame is still readable
        assert!(matches!(read_frame::<_, Request>(&mut cur).unwrap(), Request::Hello { .. }));
    }

    #[test]
    fn frames_round_trip_sync() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &Response::Ok).unwrap();
        write_frame(&mut buf, &Request::List).unwrap();
        assert_eq!(u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize, buf.len() - 4 - 5);
        let mut cur = Cursor::new(buf);
        assert!(matches!(read_frame::<_, Response>(&mut cur).unwrap(), Response::Ok));
        assert!(matches!(read_frame::<_, Request>(&mut cur).unwrap(), Request::List));
        assert!(matches!(read_frame::<_, Request>(&mut cur), Err(FrameError::Closed)));
    }

    #[test]
    fn an_oversized_message_is_refused_on_write() {
        let big = Response::Failure(crate::Failure::new(
            crate::ErrorCode::Other,
            "x".repeat(MAX_FRAME + 1),
        ));
        assert!(matches!(encode_frame(&big), Err(FrameError::TooLarge(_))));
    }

    #[tokio::test]
    async fn frames_round_trip_async() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            write_frame_async(&mut a, &Request::Status).await.unwrap();
        });
        let got: Request = read_frame_async(&mut b).await.unwrap();
        assert!(matches!(got, Request::Status));
        writer.await.unwrap();
        assert!(matches!(read_frame_async::<_, Request>(&mut b).await, Err(FrameError::Closed)));
    }
}
