//! Unguessable identifiers from the OS random source, as lowercase hex:
//! token ids in the store and OAuth nonces share this one encoder.
//!
//! Bytes are drawn from the kernel 4 KiB at a time into a per-thread pool,
//! not with one getrandom(2) per nonce: a sign is served in tens of
//! microseconds, and the system call was a measurable part of it. What the
//! pool holds is only ever used for values that are sent in the clear
//! (nonces, ids); keys and salts come from the kernel directly. Each byte
//! handed out is wiped from the pool.

use std::cell::RefCell;

use zeroize::Zeroize;

const POOL: usize = 4096;

struct Pool {
    bytes: [u8; POOL],
    /// How many bytes at the front have been handed out (and wiped).
    used: usize,
}

thread_local! {
    static RANDOM: RefCell<Pool> = const { RefCell::new(Pool { bytes: [0; POOL], used: POOL }) };
}

/// Fills `out` from the calling thread's pool, refilling it from the
/// kernel when it runs out.
fn fill(out: &mut [u8]) -> Result<(), getrandom::Error> {
    if out.len() > POOL {
        return getrandom::fill(out);
    }
    RANDOM.with_borrow_mut(|p| {
        if POOL - p.used < out.len() {
            getrandom::fill(&mut p.bytes)?;
            p.used = 0;
        }
        let taken = &mut p.bytes[p.used..p.used + out.len()];
        out.copy_from_slice(taken);
        taken.zeroize();
        p.used += out.len();
        Ok(())
    })
}

/// `N` random bytes as `2N` lowercase hex characters.
pub fn hex<const N: usize>() -> Result<String, getrandom::Error> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = [0u8; N];
    fill(&mut bytes)?;
    let mut out = String::with_capacity(2 * N);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_ids_are_lowercase_hex_of_the_right_length_and_distinct() {
        let a = super::hex::<16>().unwrap();
        let b = super::hex::<16>().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn the_pool_refills_and_never_hands_out_the_same_bytes_twice() {
        // Many refills' worth: every value distinct, none all zero (a
        // wiped byte handed out again would show as a run of zeros).
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 * super::POOL / 16 {
            let v = super::hex::<16>().unwrap();
            assert_ne!(v, "0".repeat(32));
            assert!(seen.insert(v), "a value came out twice");
        }
        let wiped = super::RANDOM.with_borrow(|p| p.bytes[..p.used].iter().all(|b| *b == 0));
        assert!(wiped, "handed-out bytes must be wiped");
    }
}
