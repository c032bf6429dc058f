//! What a process holds in memory: for the tests that prove a secret is
//! gone from the agent (after rm, after lock).

/// How many times `needle` occurs in the readable memory of process `pid`
/// (root only: the agent is not dumpable). Unreadable ranges are skipped.
pub fn copies_in_memory(pid: i32, needle: &[u8]) -> usize {
    copies_of_each(pid, &[needle])[0]
}

/// [`copies_in_memory`] for several needles in one pass over the memory.
pub fn copies_of_each(pid: i32, needles: &[&[u8]]) -> Vec<usize> {
    use std::os::unix::fs::FileExt;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("mem");
    let mut found = vec![0; needles.len()];
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (Some(range), Some(perms)) = (parts.next(), parts.next()) else { continue };
        if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else { continue };
        let (a, b) = (u64::from_str_radix(a, 16).unwrap(), u64::from_str_radix(b, 16).unwrap());
        let mut buf = vec![0u8; (b - a) as usize];
        if mem.read_exact_at(&mut buf, a).is_err() {
            continue;
        }
        for (n, needle) in found.iter_mut().zip(needles) {
            *n += buf.windows(needle.len()).filter(|w| w == needle).count();
        }
    }
    found
}

/// A fresh random tag (16 hex digits), made at run time so that no copy
/// of a secret built from it sits in the test's own image beforehand.
pub fn random_tag() -> String {
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).expect("randomness");
    nonce.iter().map(|b| format!("{b:02x}")).collect()
}
