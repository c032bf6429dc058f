//! Unguessable identifiers from the OS random source, as lowercase hex:
//! token ids in the store and OAuth nonces share this one encoder.

/// `N` random bytes as `2N` lowercase hex characters.
pub fn hex<const N: usize>() -> Result<String, getrandom::Error> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)?;
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
}
