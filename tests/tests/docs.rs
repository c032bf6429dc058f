//! Shell completions and man pages, generated from the binaries' own
//! argument definitions: they load in a real bash and render with man.

use std::process::Command;

use signet_tests::{bin, run};

fn signet(args: &[&str]) -> String {
    run(Command::new(bin("signet")).args(args), b"").ok().to_string()
}

#[test]
fn bash_completion_loads_and_completes_commands_and_flags() {
    // The README's line, in a real bash: the function is registered, and
    // completing `signet li` offers `list`, `signet maas l` offers `login`.
    let script = format!(
        r#"source <("{}" completions bash) || exit 9
complete -p signet
COMP_WORDS=(signet li); COMP_CWORD=1; _signet signet li signet; echo "words: ${{COMPREPLY[*]}}"
COMP_WORDS=(signet maas l); COMP_CWORD=2; _signet signet l maas; echo "words: ${{COMPREPLY[*]}}"
COMP_WORDS=(signet completions ''); COMP_CWORD=2; _signet signet '' completions; echo "words: ${{COMPREPLY[*]}}""#,
        bin("signet").display()
    );
    let out = run(Command::new("bash").arg("--norc").arg("-c").arg(&script), b"");
    let text = out.ok();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("complete ") && lines[0].ends_with(" signet"), "{text}");
    assert_eq!(lines[1], "words: list", "{text}");
    assert_eq!(lines[2], "words: login", "{text}");
    for shell in ["bash", "zsh", "fish"] {
        assert!(lines[3].split_whitespace().any(|w| w == shell), "{text}");
    }
}

#[test]
fn zsh_and_fish_scripts_name_every_command() {
    let zsh = signet(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef signet"), "{zsh}");
    let fish = signet(&["completions", "fish"]);
    for cmd in ["add", "list", "sign", "request", "completions"] {
        assert!(zsh.contains(&format!("'{cmd}:")), "zsh lacks {cmd}");
        assert!(fish.contains(&format!("-a \"{cmd}\"")), "fish lacks {cmd}");
    }
    // An unknown shell is a usage error that names the ones there are.
    let out = run(Command::new(bin("signet")).args(["completions", "tcsh"]), b"");
    assert_eq!(out.code(), 2, "{out:#?}");
    assert!(out.stderr.contains("bash") && out.stderr.contains("fish"), "{out:#?}");
}

/// `man -l FILE` output with formatting stripped, or `None` after a SKIP
/// line when man is not installed (CI installs man-db).
fn render(page: &std::path::Path) -> Option<String> {
    if !signet_tests::skip::require_or_skip(
        "man (man-db)",
        std::path::Path::new("/usr/bin/man").exists(),
    ) {
        return None;
    }
    let out = run(
        Command::new("man")
            .arg("-l")
            .arg(page)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .env_remove("MAN_KEEP_FORMATTING"),
        b"",
    );
    Some(out.ok().to_string())
}

#[test]
fn man_pages_render_for_both_binaries_and_every_command() {
    let dir = tempfile::tempdir().unwrap();
    run(Command::new(bin("signet")).args(["man", "--dir"]).arg(dir.path()), b"").ok();
    let agent = run(Command::new(bin("signet-agent")).arg("--man"), b"");
    std::fs::write(dir.path().join("signet-agent.1"), agent.ok()).unwrap();
    // The one-page form is the directory's signet.1.
    assert_eq!(signet(&["man"]), std::fs::read_to_string(dir.path().join("signet.1")).unwrap());

    for (page, must) in [
        ("signet.1", &["NAME", "SYNOPSIS", "signet-add(1)", "SIGNET_AUTH_SOCK"][..]),
        ("signet-add.1", &["NAME", "--kind"]),
        ("signet-maas-login.1", &["NAME", "--username"]),
        ("signet-agent.1", &["NAME", "-D", "-k", "SIGNET_AGENT_PID", "--store"]),
    ] {
        let path = dir.path().join(page);
        let roff = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(roff.starts_with(".ie \\n(.g .ds Aq") || roff.contains(".TH "), "{page}: not roff");
        let Some(text) = render(&path) else { return };
        for m in must {
            assert!(text.contains(m), "{page} lacks {m}:\n{text}");
        }
    }
    // A hidden generator does not document itself.
    assert!(!dir.path().join("signet-man.1").exists());
}
