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
    let mut body = Zeroizing::new(Vec::new());
    read_frame_into(r, &mut body)?;
    Ok(codec::decode(&body)?)
}

/// The messages that carry a body in chunks: [`crate::Request`] (the
/// request body) and [`crate::Response`] (the response body).
pub trait Chunked: Serialize {
    /// The `BodyChunk` variant, holding no bytes.
    fn empty_chunk() -> Self;
}

impl Chunked for crate::Request {
    fn empty_chunk() -> Self {
        crate::Request::BodyChunk(crate::Chunk::default())
    }
}

impl Chunked for crate::Response {
    fn empty_chunk() -> Self {
        crate::Response::BodyChunk(crate::Chunk::default())
    }
}

/// The encoded `BodyChunk` variant of `M` without its bytes' length.
fn chunk_tag<M: Chunked>() -> Vec<u8> {
    // An empty chunk encodes as the variant, then a zero length: one byte.
    let mut tag = codec::encode(&M::empty_chunk()).unwrap_or_default();
    tag.pop();
    tag
}

/// The head of a frame that carries `len` body bytes as `M`'s `BodyChunk`:
/// the length prefix and the message up to the bytes. The head followed by
/// the bytes is exactly `encode_frame(&M::BodyChunk(Chunk(bytes)))`, so a
/// body goes out without being copied into a message first.
pub fn chunk_head<M: Chunked>(len: usize) -> Result<Vec<u8>, FrameError> {
    let tag = chunk_tag::<M>();
    let len_field = codec::encode(&(len as u64))?;
    let body = tag.len() + len_field.len() + len;
    if body > MAX_FRAME {
        return Err(FrameError::TooLarge(body));
    }
    let mut head = Vec::with_capacity(4 + tag.len() + len_field.len());
    head.extend_from_slice(&(body as u32).to_be_bytes());
    head.extend_from_slice(&tag);
    head.extend_from_slice(&len_field);
    Ok(head)
}

/// Where the body bytes lie in a frame's body when it is `M`'s `BodyChunk`,
/// so that they can be used where they are; `None` for any other message,
/// which is then decoded as usual.
pub fn chunk_data<M: Chunked>(body: &[u8]) -> Option<std::ops::Range<usize>> {
    let tag = chunk_tag::<M>();
    let rest = body.strip_prefix(&tag[..])?;
    let (len, used) = codec::decode_prefix::<u64>(rest).ok()?;
    let start = tag.len() + used;
    (usize::try_from(len).ok()? == body.len() - start).then_some(start..body.len())
}

/// Reads one frame's body, undecoded, into `buf` (whose allocation is
/// reused from frame to frame). End of stream as in [`read_frame`].
pub fn read_frame_into<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> Result<(), FrameError> {
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
    let len = body_len(prefix)?;
    buf.resize(len, 0);
    r.read_exact(buf)?;
    Ok(())
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
    fn a_chunk_head_and_its_bytes_are_the_encoded_chunk_frame() {
        // Around each boundary of the length's variable-size encoding.
        for len in [0, 1, 250, 251, 252, 255, 256, 65_535, 65_536, 65_537, crate::MAX_CHUNK] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut req = chunk_head::<Request>(len).unwrap();
            req.extend_from_slice(&data);
            let whole = encode_frame(&Request::BodyChunk(crate::Chunk(data.clone()))).unwrap();
            assert_eq!(req, whole, "request chunk of {len}");
            let mut resp = chunk_head::<Response>(len).unwrap();
            resp.extend_from_slice(&data);
            let whole = encode_frame(&Response::BodyChunk(crate::Chunk(data.clone()))).unwrap();
            assert_eq!(resp, whole, "response chunk of {len}");
            assert_eq!(chunk_data::<Response>(&resp[4..]).map(|r| &resp[4..][r]), Some(&data[..]));
            assert_eq!(chunk_data::<Request>(&req[4..]).map(|r| &req[4..][r]), Some(&data[..]));
        }
        assert!(matches!(
            chunk_head::<Response>(MAX_FRAME),
            Err(FrameError::TooLarge(n)) if n > MAX_FRAME
        ));
    }

    #[test]
    fn chunk_data_finds_no_chunk_in_other_messages_or_a_lying_length() {
        let end = encode_frame(&Response::BodyEnd).unwrap();
        assert_eq!(chunk_data::<Response>(&end[4..]), None);
        let mut short = encode_frame(&Response::BodyChunk(crate::Chunk(vec![7; 10]))).unwrap();
        short.pop();
        assert_eq!(chunk_data::<Response>(&short[4..]), None);
        let mut long = encode_frame(&Response::BodyChunk(crate::Chunk(vec![7; 10]))).unwrap();
        long.push(0);
        assert_eq!(chunk_data::<Response>(&long[4..]), None);
        assert_eq!(chunk_data::<Response>(&[]), None);
    }

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
