//! The one place that knows messages are bincode.
//!
//! bincode 2, standard configuration, with a decode limit equal to the frame
//! limit so that a hostile length inside a frame (a `Vec` claiming a billion
//! elements) fails fast instead of allocating. Changing the encoding is a
//! change to this file alone.

use serde::{Serialize, de::DeserializeOwned};

use crate::MAX_FRAME;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME>()
}

/// Why bytes could not become a message, or a message bytes.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("malformed message: {0}")]
    Decode(String),
    #[error("malformed message: {0} trailing bytes after the message")]
    Trailing(usize),
    #[error("cannot encode message: {0}")]
    Encode(String),
}

/// Reads a run of bytes however the format presents it (borrowed, owned or
/// as a sequence), for the byte-carrying types [`crate::Secret`] and
/// [`crate::Chunk`]; their `Serialize` writes one run with `serialize_bytes`.
pub(crate) fn deserialize_bytes<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<u8>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Vec<u8>, A::Error> {
            // The hint comes from the peer: bound what it may make us reserve.
            let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0).min(4096));
            while let Some(b) = a.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
    d.deserialize_byte_buf(V)
}

/// Encodes a message into a fresh buffer.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(msg, config()).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes exactly one message that must fill `bytes` completely: trailing
/// bytes mean the peer and we disagree about the layout, which is an error,
/// not something to ignore.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    // bincode's error text names the type and the position, never the bytes.
    let (msg, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(msg)
}

/// Decodes one value at the start of `bytes`; returns it and the number of
/// bytes it took.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), CodecError> {
    bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| CodecError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Pair {
        a: u32,
        b: String,
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [&[][..], &[0xff; 3][..], &[0xfc, 0xff, 0xff, 0xff, 0xff][..]] {
            assert!(decode::<Pair>(bytes).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn a_huge_claimed_length_is_refused_without_allocating_it() {
        // a = 1, then a string length of u64::MAX (varint marker 0xfd + 8 bytes)
        let mut bytes = vec![1u8, 0xfd];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode::<Pair>(&bytes).is_err());
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(&Pair { a: 7, b: "x".into() }).unwrap();
        bytes.push(0);
        assert!(matches!(decode::<Pair>(&bytes), Err(CodecError::Trailing(1))));
    }

    #[test]
    fn round_trip() {
        let p = Pair { a: 7, b: "héllo".into() };
        assert_eq!(decode::<Pair>(&encode(&p).unwrap()).unwrap(), p);
    }
}
