//! How the binaries are linked. `signet` and `git-credential-signet` run
//! once per request, so they are linked statically where glibc's static
//! archive is installed (.cargo/rustc-wrapper): no dynamic loader runs
//! before them. The agent starts once and resolves host names through NSS,
//! so it keeps the loader.

use std::path::Path;
use std::process::Command;

use signet_tests::process::bin;
use signet_tests::skip::require_or_skip;

/// Whether the ELF executable at `path` names a program interpreter (the
/// dynamic loader): a `PT_INTERP` entry among its program headers.
fn has_interpreter(path: &Path) -> bool {
    const PT_INTERP: u32 = 3;
    let elf = std::fs::read(path).expect("read the binary");
    assert_eq!(&elf[..4], b"\x7fELF", "{} is not an ELF file", path.display());
    assert_eq!(elf[4], 2, "{} is not a 64-bit ELF file", path.display());
    assert_eq!(elf[5], 1, "{} is not little-endian", path.display());
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    assert!(phnum > 0, "{} has no program headers", path.display());
    (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == PT_INTERP
    })
}

/// Whether the C compiler finds glibc's static archive.
fn static_glibc() -> bool {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    Command::new(cc)
        .arg("-print-file-name=libc.a")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .is_some_and(|p| p.starts_with('/') && Path::new(&p).is_file())
}

#[test]
fn the_per_request_programs_start_without_the_dynamic_loader() {
    if !require_or_skip("glibc's static archive (libc.a)", static_glibc()) {
        return;
    }
    for name in ["signet", "git-credential-signet"] {
        let path = bin(name);
        assert!(!has_interpreter(&path), "{name} is dynamically linked");
    }
    // The check itself can tell the two apart.
    assert!(has_interpreter(&bin("signet-agent")), "signet-agent lost its loader");
    // And a static client still runs.
    let out = Command::new(bin("signet")).arg("--version").output().expect("run signet");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("signet "), "{out:?}");
}
