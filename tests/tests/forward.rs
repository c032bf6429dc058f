//! The restricted socket forwarded with real OpenSSH, as a user forwards
//! it to a remote machine: a throwaway sshd on 127.0.0.1 (its own host key
//! and config, `StreamLocalBindUnlink yes`), a throwaway client key, and
//! `ssh -R remote.sock:restricted.sock` running `signet` at the far end
//! against the forwarded socket. Use of an allowed token works through it;
//! add, rm and another token are refused.
//!
//! The agent sees the forwarding `ssh` client as its peer (SO_PEERCRED of
//! the local end): the trail records `/usr/bin/ssh`, and the uid check is
//! of whoever runs `ssh`, not of the remote user.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use signet_tests::process::{eventually, run};
use signet_tests::skip;
use signet_tests::upstream::{BearerLikeServer, ExpectedAuth};
use signet_tests::{Backend, TestEnv, bin};

const SECRET: &str = "forwarded-secret-41e7";
const SSHD: &str = "/usr/sbin/sshd";

/// Kills the throwaway sshd when the test ends, however it ends.
struct Sshd(Child);

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn keygen(path: &Path) {
    let out = run(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "signet-test", "-f"])
            .arg(path),
        b"",
    );
    assert_eq!(out.code(), 0, "ssh-keygen: {out:?}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn signing_through_a_socket_forwarded_by_openssh() {
    let have = Path::new(SSHD).exists()
        && Command::new("ssh").arg("-V").output().is_ok()
        && Command::new("ssh-keygen").arg("-?").output().is_ok();
    if !skip::require_or_skip("OpenSSH (sshd, ssh, ssh-keygen: Debian's openssh-server)", have) {
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        skip::skip("sshd must start as root to serve a login");
        return;
    }
    let Some(mut env) = TestEnv::new(Backend::Keyutils) else { return };
    let restricted = env.start_agent_with_restricted_socket(&["ok"]);
    let server = BearerLikeServer::start(ExpectedAuth::bearer(SECRET));
    env.add("ok", "bearer", &server.url(), SECRET, &["--exportable"]);
    env.add("other", "bearer", &server.url(), SECRET, &["--exportable"]);

    // The throwaway sshd: its own host key, config and port, nothing of
    // the machine's own.
    let dir = env.root.path().join("ssh");
    std::fs::create_dir_all(&dir).unwrap();
    keygen(&dir.join("host_key"));
    keygen(&dir.join("client_key"));
    std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
    // sshd refuses to start without its privilege separation directory.
    std::fs::create_dir_all("/run/sshd").unwrap();
    let port = free_port();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile none\n\
         AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
         PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\nAllowStreamLocalForwarding yes\n\
         StreamLocalBindUnlink yes\n",
        d = dir.display()
    );
    std::fs::write(dir.join("sshd_config"), config).unwrap();
    let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
    let sshd = Command::new(SSHD)
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start sshd");
    let _sshd = Sshd(sshd);
    let sshd_log = || std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(20), || TcpStream::connect(("127.0.0.1", port)).is_ok()),
        "sshd did not listen: {}",
        sshd_log()
    );

    // At the far end, signet uses the forwarded socket as a remote user's
    // shell would. Each step prints its exit status.
    let remote = dir.join("remote.sock");
    let signet = bin("signet");
    let script = format!(
        "export SIGNET_AUTH_SOCK={remote}\n\
         i=0; while [ ! -S \"$SIGNET_AUTH_SOCK\" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done\n\
         {s} sign ok echo/forwarded; echo \"rc=sign-ok:$?\"\n\
         {s} list; echo \"rc=list:$?\"\n\
         {s} sign other echo/forwarded; echo \"rc=sign-other:$?\"\n\
         {s} rm ok; echo \"rc=rm:$?\"\n\
         printf 'x\\n' | {s} add new --kind bearer --url http://127.0.0.1:9/; echo \"rc=add:$?\"\n",
        remote = remote.display(),
        s = signet.display()
    );
    let forward = format!("{}:{}", remote.display(), restricted.display());
    let mut ssh = Command::new("ssh");
    ssh.args(["-F", "/dev/null", "-i"])
        .arg(dir.join("client_key"))
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "LogLevel=ERROR",
            "-p",
            &port.to_string(),
            "-R",
            &forward,
            "root@127.0.0.1",
            "sh",
            "-s",
        ])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", env.home());
    let out = run(&mut ssh, script.as_bytes());
    assert_eq!(out.code(), 0, "ssh: {out:#?}\nsshd log:\n{}", sshd_log());
    let text = format!("{}{}", out.stdout, out.stderr);
    let rc = |step: &str| {
        let key = format!("rc={step}:");
        text.lines()
            .find_map(|l| l.strip_prefix(&key))
            .unwrap_or_else(|| panic!("no {step} in {text}\nsshd log:\n{}", sshd_log()))
            .trim()
            .to_string()
    };
    assert_eq!(rc("sign-ok"), "0", "{text}");
    assert!(text.contains(&format!("Authorization: Bearer {SECRET}")), "{text}");
    assert_eq!(rc("list"), "0", "{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("other")),
        "the list shows a token not allowed: {text}"
    );
    assert_eq!(rc("sign-other"), "5", "{text}");
    assert!(text.contains("not allowed"), "{text}");
    assert_eq!(rc("rm"), "5", "{text}");
    assert_eq!(rc("add"), "5", "{text}");
    assert!(text.contains("this socket is restricted"), "{text}");

    // Nothing was removed or added; the trail shows the forwarding ssh
    // client as the peer of each forwarded request.
    let names = env.signet(&["list", "--json"]).json();
    assert_eq!(names.as_array().unwrap().len(), 2, "{names}");
    let trail = env.signet(&["audit", "--json", "--token", "ok"]);
    let recs: Vec<serde_json::Value> =
        trail.ok().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let via: Vec<_> = recs.iter().filter(|r| r["socket"] == "restricted").collect();
    assert_eq!(via.len(), 2, "{recs:#?}");
    assert!(via.iter().all(|r| r["exe"].as_str().is_some_and(|e| e.ends_with("/ssh"))), "{via:#?}");
    let _ = std::io::stderr().flush();
}
