//! Reading secrets: from standard input when it is not a terminal, else
//! from a no-echo prompt on the terminal. Never from argv or the
//! environment, where other processes and shell history can see them.

use std::io::{IsTerminal, Read};

use signet_client::{Secret, TokenKind};
use zeroize::Zeroizing;

use crate::Failed;

/// More than this on stdin is not a secret but a mistake (a file piped in
/// by accident): refuse it rather than send it to the keyring.
const MAX_SECRET: usize = 64 * 1024;

/// Reads the secret of a `kind` token: one line (two for `oauth1`), the
/// final newline stripped.
pub fn read_secret(kind: TokenKind, what: &str) -> Result<Secret, Failed> {
    let lines = if kind == TokenKind::Oauth1 { 2 } else { 1 };
    if std::io::stdin().is_terminal() {
        let prompts: &[&str] =
            if lines == 2 { &["Consumer secret", "Token secret"] } else { &["Secret"] };
        let mut out = Zeroizing::new(String::new());
        for (i, p) in prompts.iter().enumerate() {
            let v = Zeroizing::new(
                rpassword::prompt_password(format!("{p} for {what}: ")).map_err(|e| Failed {
                    code: 1,
                    message: format!("cannot read from the terminal: {e}"),
                    hint: None,
                })?,
            );
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&v);
        }
        return Ok(Secret::new(out.as_bytes().to_vec()));
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(256));
    std::io::stdin().take(MAX_SECRET as u64 + 1).read_to_end(&mut buf).map_err(|e| Failed {
        code: 1,
        message: format!("cannot read the secret from stdin: {e}"),
        hint: None,
    })?;
    if buf.len() > MAX_SECRET {
        return Err(Failed::usage(format!(
            "more than {MAX_SECRET} bytes on stdin: expected the secret on {} line{}",
            lines,
            if lines == 1 { "" } else { "s" }
        )));
    }
    strip_final_newline(&mut buf);
    if lines == 1 && buf.contains(&b'\n') {
        return Err(Failed::usage(
            "more than one line on stdin: expected the secret alone on one line",
        ));
    }
    Ok(Secret::from(buf))
}

fn strip_final_newline(buf: &mut Vec<u8>) {
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
}

/// Reads at most `max` bytes of the file at `path` (`-` for stdin): a
/// device such as /dev/zero, or a wrong file, must not be read without end.
pub fn read_bounded(path: &str, max: usize, what: &str) -> Result<Vec<u8>, Failed> {
    let mut buf = Vec::new();
    let read = if path == "-" {
        std::io::stdin().take(max as u64 + 1).read_to_end(&mut buf)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(max as u64 + 1).read_to_end(&mut buf))
    };
    read.map_err(|e| Failed::usage(format!("cannot read {what} {path}: {e}")))?;
    if buf.len() > max {
        return Err(Failed::usage(format!("{what} {path} is larger than {max} bytes")));
    }
    Ok(buf)
}

/// A CA bundle (`--cacert`), bounded and UTF-8.
pub fn read_cacert(path: &std::path::Path) -> Result<String, Failed> {
    let shown = path.display().to_string();
    let bytes = read_bounded(&shown, signet_proto::token::MAX_CACERT, "--cacert")?;
    String::from_utf8(bytes).map_err(|_| Failed::usage(format!("--cacert {shown} is not PEM text")))
}

/// Reads `prompts.len()` passphrases: each from a no-echo prompt on the
/// terminal, or, when stdin is not a terminal, one per line of stdin.
pub fn read_passphrases(prompts: &[&str]) -> Result<Vec<Secret>, Failed> {
    if std::io::stdin().is_terminal() {
        let mut out = Vec::with_capacity(prompts.len());
        for p in prompts {
            let v = Zeroizing::new(rpassword::prompt_password(format!("{p}: ")).map_err(|e| {
                Failed {
                    code: 1,
                    message: format!("cannot read from the terminal: {e}"),
                    hint: None,
                }
            })?);
            out.push(Secret::from_str_value(&v));
        }
        return Ok(out);
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(256));
    std::io::stdin().take(MAX_SECRET as u64 + 1).read_to_end(&mut buf).map_err(|e| Failed {
        code: 1,
        message: format!("cannot read the passphrases from stdin: {e}"),
        hint: None,
    })?;
    let lines: Vec<&[u8]> = buf
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .take(prompts.len())
        .collect();
    if buf.len() > MAX_SECRET || lines.len() < prompts.len() {
        return Err(Failed::usage(format!(
            "expected {} line{} on stdin: {}",
            prompts.len(),
            if prompts.len() == 1 { "" } else { "s" },
            prompts.join(", ")
        )));
    }
    Ok(lines.into_iter().map(|l| Secret::new(l.to_vec())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_final_newline_goes() {
        for (input, want) in [
            (&b"abc\n"[..], &b"abc"[..]),
            (b"abc\r\n", b"abc"),
            (b"abc", b"abc"),
            (b"abc\n\n", b"abc\n"),
            (b"", b""),
        ] {
            let mut v = input.to_vec();
            strip_final_newline(&mut v);
            assert_eq!(v, want);
        }
    }
}
