//! `proxy` and `exec`: tools that want a URL and a key use a token
//! through a local proxy the agent runs, and only ever see a local
//! credential that works on loopback, for as long as the proxy lives.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

use clap::Args;
use serde_json::{Value, json};
use signet_client::{Client, ProxyOptions, RunningProxy, TiedProxy};
use signet_proto::expiry::format_time;

use crate::{Failed, name_ok};

#[derive(Args)]
pub struct ProxyArgs {
    /// The token to serve.
    #[arg(required_unless_present_any = ["stop", "list"])]
    name: Option<String>,
    /// Listen on this loopback IP:PORT (port 0: any free port; default 127.0.0.1:0).
    #[arg(long, value_name = "ADDR", conflicts_with = "unix")]
    listen: Option<String>,
    /// Listen on a Unix socket at PATH instead (curl --unix-socket PATH).
    #[arg(long, value_name = "PATH")]
    unix: Option<PathBuf>,
    /// Serve HTTPS with a certificate made for this proxy; its CA file is printed.
    #[arg(long)]
    tls: bool,
    /// Stop your proxies for the token NAME.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["name", "list", "listen", "unix", "tls"])]
    stop: Option<String>,
    /// List your running proxies.
    #[arg(long, conflicts_with_all = ["name", "listen", "unix", "tls"])]
    list: bool,
    /// Print JSON for scripts.
    #[arg(long)]
    json: bool,
}

fn proxy_json(p: &RunningProxy) -> Value {
    json!({
        "name": p.name,
        "kind": p.kind.as_str(),
        "url": p.url,
        "upstream": p.upstream,
        "unix": p.unix.as_ref().map(|u| u.to_string_lossy()),
        "ca_file": p.ca_file.as_ref().map(|c| c.to_string_lossy()),
        "key": p.credential.as_ref().and_then(|c| c.expose_str()),
        "started": format_time(p.started),
        "tied": p.tied,
    })
}

fn absolute(p: &Path) -> Result<PathBuf, Failed> {
    std::path::absolute(p).map_err(|e| Failed::usage(format!("{}: {e}", p.display())))
}

pub fn proxy(socket: Option<&Path>, a: ProxyArgs) -> Result<(), Failed> {
    if let Some(name) = &a.stop {
        name_ok(name)?;
        let stopped = Client::connect(socket)?.proxy_stop(name)?;
        if a.json {
            println!("{}", Value::Array(stopped.iter().map(proxy_json).collect()));
        } else {
            for p in &stopped {
                eprintln!("Stopped the proxy for {} at {}", p.name, p.url);
            }
        }
        return Ok(());
    }
    if a.list {
        let running = Client::connect(socket)?.proxies()?;
        if a.json {
            println!("{}", Value::Array(running.iter().map(proxy_json).collect()));
        } else if running.is_empty() {
            eprintln!("No proxy of yours is running.");
        } else {
            println!("{:<20} {:<28} {:<20} UPSTREAM", "NAME", "URL", "STARTED");
            for p in &running {
                let url =
                    p.unix.as_ref().map_or(p.url.clone(), |u| format!("unix:{}", u.display()));
                let tied = if p.tied { " (exec)" } else { "" };
                println!(
                    "{:<20} {:<28} {:<20} {}{tied}",
                    p.name,
                    url,
                    format_time(p.started),
                    p.upstream
                );
            }
        }
        return Ok(());
    }
    let Some(name) = a.name else {
        return Err(Failed::usage("give a token name, --stop NAME or --list"));
    };
    name_ok(&name)?;
    let opts = ProxyOptions {
        name: name.clone(),
        listen: a.listen,
        unix: a.unix.as_deref().map(absolute).transpose()?,
        tls: a.tls,
    };
    let p = Client::connect(socket)?.proxy_start(&opts)?;
    if a.json {
        println!("{}", proxy_json(&p));
        return Ok(());
    }
    println!("URL: {}", p.url);
    if let Some(u) = &p.unix {
        println!("Socket: {}", u.display());
    }
    if let Some(k) = p.credential.as_ref().and_then(|c| c.expose_str()) {
        println!("Key: {k}");
    }
    if let Some(ca) = &p.ca_file {
        println!("CA: {}", ca.display());
    }
    eprintln!("The key works only on this proxy. Stop it with: signet proxy --stop {name}");
    Ok(())
}

#[derive(Args)]
pub struct ExecArgs {
    /// Tokens to serve, each as NAME or NAME=PREFIX; the command gets
    /// PREFIX_URL and PREFIX_KEY (and PREFIX_CA with --tls). The default
    /// PREFIX is NAME upper-cased, other characters than A-Z 0-9 as `_`.
    #[arg(required = true, value_name = "NAME[=PREFIX]")]
    tokens: Vec<String>,
    /// Serve HTTPS; PREFIX_CA names the CA file to trust.
    #[arg(long)]
    tls: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// The default environment prefix for a token name: `maas.prod` ->
/// `MAAS_PROD`; a leading digit gets a `_` in front.
pub fn default_prefix(name: &str) -> String {
    let mut p: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' })
        .collect();
    if p.starts_with(|c: char| c.is_ascii_digit()) {
        p.insert(0, '_');
    }
    p
}

fn prefix_ok(p: &str) -> bool {
    p.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The child's pid, for the signal handler.
static CHILD: AtomicI32 = AtomicI32::new(0);

/// Passes a signal on to the child, unless the terminal sent it: then the
/// child, in the same foreground process group, got it already.
extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel hands a valid siginfo to an SA_SIGINFO handler.
    let from_kernel = !info.is_null() && unsafe { (*info).si_code } == libc::SI_KERNEL;
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 && !from_kernel {
        // SAFETY: kill is async-signal-safe.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

fn install_forwarding() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is valid; the handler only reads an
        // atomic and calls kill, both async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = forward as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

pub fn exec(socket: Option<&Path>, a: ExecArgs) -> Result<(), Failed> {
    let mut wanted: Vec<(String, String)> = Vec::new();
    for t in &a.tokens {
        let (name, prefix) = match t.split_once('=') {
            Some((n, p)) => (n.to_string(), p.to_string()),
            None => (t.clone(), default_prefix(t)),
        };
        name_ok(&name)?;
        if !prefix_ok(&prefix) {
            return Err(Failed::usage(format!(
                "`{}` cannot start an environment variable's name",
                prefix.escape_debug()
            )));
        }
        if wanted.iter().any(|(_, p)| *p == prefix) {
            return Err(Failed {
                code: 2,
                message: format!("two tokens would both set {prefix}_URL"),
                hint: Some("give one of them its own prefix: NAME=PREFIX".into()),
            });
        }
        wanted.push((name, prefix));
    }
    let Some((program, args)) = a.command.split_first() else {
        return Err(Failed::usage("no command given after --"));
    };

    // One connection per proxy, each holding its proxy alive: when this
    // process ends, however it ends, the kernel closes them and the agent
    // stops the proxies.
    let mut held: Vec<TiedProxy> = Vec::new();
    let mut cmd = Command::new(program);
    cmd.args(args);
    for (name, prefix) in &wanted {
        let opts = ProxyOptions { name: name.clone(), tls: a.tls, ..ProxyOptions::default() };
        let tied = Client::connect(socket)?.proxy_tied(&opts)?;
        let p = &tied.proxy;
        cmd.env(format!("{prefix}_URL"), &p.url);
        if let Some(k) = p.credential.as_ref().and_then(|c| c.expose_str()) {
            cmd.env(format!("{prefix}_KEY"), k);
        }
        if let Some(ca) = &p.ca_file {
            cmd.env(format!("{prefix}_CA"), ca);
        }
        held.push(tied);
    }

    install_forwarding();
    let mut child = cmd.spawn().map_err(|e| Failed {
        code: if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 },
        message: format!("cannot run {}: {e}", program.to_string_lossy()),
        hint: None,
    })?;
    CHILD.store(i32::try_from(child.id()).unwrap_or(0), Ordering::SeqCst);
    let status = loop {
        match child.wait() {
            Ok(s) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Failed {
                    code: 1,
                    message: format!("waiting for the command: {e}"),
                    hint: None,
                });
            }
        }
    };
    drop(held);
    use std::os::unix::process::ExitStatusExt as _;
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    };
    if code == 0 {
        Ok(())
    } else {
        // The child said what went wrong, if anything: add nothing.
        Err(Failed { code, message: String::new(), hint: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_environment_names() {
        assert_eq!(default_prefix("maas.prod"), "MAAS_PROD");
        assert_eq!(default_prefix("vms-1@lab"), "VMS_1_LAB");
        assert_eq!(default_prefix("1st"), "_1ST");
        for n in ["maas.prod", "vms-1@lab", "1st", "a"] {
            assert!(prefix_ok(&default_prefix(n)), "{n}");
        }
        assert!(!prefix_ok("1A"));
        assert!(!prefix_ok("A-B"));
        assert!(!prefix_ok(""));
    }
}
