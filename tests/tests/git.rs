//! `git-credential-signet` with the real git against a loopback git
//! smart-HTTP server (the real git-http-backend) that wants the token: a
//! clone works with an exportable token in scope, and fails, saying why
//! and without the secret anywhere, for a token out of scope or not
//! exportable.

use std::path::{Path, PathBuf};
use std::process::Command;

use signet_tests::upstream::{ExpectedAuth, GitServer, http_backend};
use signet_tests::{Backend, Out, TestEnv, bin_dir, run, skip};

const SECRET: &str = "gh-s3cret-Zq81.xK";

/// The git under test and its version (major, minor).
fn git_version(git: &str) -> Option<(u32, u32)> {
    let out = Command::new(git).arg("--version").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let v = text.split_whitespace().nth(2)?;
    let mut it = v.split('.').map(|p| p.parse::<u32>().ok());
    Some((it.next()??, it.next()??))
}

/// A bare repository `root/team/repo.git` with one commit.
fn seed_repo(env: &TestEnv, root: &Path) {
    let work = env.root.path().join("seed");
    let git = |args: &[&str], dir: &Path| {
        let out = run(
            Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
                .args(args)
                .current_dir(dir)
                .env("HOME", env.home()),
            b"",
        );
        assert!(out.status.success(), "git {args:?}: {out:#?}");
    };
    std::fs::create_dir_all(&work).unwrap();
    git(&["init", "-q", "-b", "main"], &work);
    std::fs::write(work.join("hello.txt"), "hello from the server\n").unwrap();
    git(&["add", "hello.txt"], &work);
    git(&["commit", "-q", "-m", "first"], &work);
    std::fs::create_dir_all(root.join("team")).unwrap();
    git(&["clone", "-q", "--bare", work.to_str().unwrap(), "repo.git"], &root.join("team"));
}

/// `git clone URL DEST` in this world, with `credential.helper=signet`,
/// prompts off and no system or user config but `extra`.
fn clone(env: &TestEnv, git: &str, url: &str, dest: &Path, extra: &[&str]) -> Out {
    let path = format!("{}:{}", bin_dir().display(), std::env::var("PATH").unwrap_or_default());
    let mut c = Command::new(git);
    c.env_clear()
        .envs(env.base_env())
        .env("PATH", path)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .current_dir(env.root.path())
        .args(["-c", "credential.helper=", "-c"]);
    c.arg("credential.helper=signet").args(extra).args(["clone", "-q", url]).arg(dest);
    run(&mut c, b"")
}

/// The secret is in no output, no file of the clone, and reached the
/// server in no request that `server` did not accept.
fn assert_not_leaked(out: &Out, dest: &Path, server: &GitServer) {
    assert!(!out.stdout.contains(SECRET) && !out.stderr.contains(SECRET), "{out:#?}");
    let mut stack = vec![dest.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                assert!(!String::from_utf8_lossy(&b).contains(SECRET), "{}", p.display());
            }
        }
    }
    for r in server.requests() {
        assert!(r.status == 401, "a request went through: {r:?}");
        assert!(r.header("authorization").is_none(), "credentials were sent: {r:?}");
    }
}

fn setup() -> Option<(TestEnv, PathBuf)> {
    if !signet_tests::skip::require_or_skip("git with git-http-backend", http_backend().is_some()) {
        return None;
    }
    let env = TestEnv::started(Backend::SecretService)?;
    let root = env.root.path().join("repos");
    seed_repo(&env, &root);
    Some((env, root))
}

#[test]
fn a_clone_gets_a_basic_token_in_scope_and_nothing_else() {
    let Some((env, root)) = setup() else { return };
    let server = GitServer::start(&root, ExpectedAuth::basic("gituser", SECRET)).unwrap();
    let base = format!("{}team/", server.base_url());
    let repo = format!("{base}repo.git");
    let path_on = ["-c", "credential.useHttpPath=true"];

    // Not exportable: the agent refuses to hand the secret out; git gets nothing.
    env.add("nx", "basic", &base, SECRET, &["--username", "gituser"]);
    let dest = env.root.path().join("c1");
    let out = clone(&env, "git", &repo, &dest, &path_on);
    assert!(!out.status.success(), "{out:#?}");
    assert!(
        out.stderr.contains("git-credential-signet: refused: token `nx` is not exportable"),
        "{out:#?}"
    );
    assert_not_leaked(&out, &dest, &server);
    env.signet(&["rm", "nx"]).ok();

    // Exportable but for another path: chosen by nobody, and refused by the
    // agent when named.
    env.add(
        "far",
        "basic",
        &format!("{}other/", server.base_url()),
        SECRET,
        &["--username", "gituser", "--exportable"],
    );
    let out = clone(&env, "git", &repo, &dest, &path_on);
    assert!(!out.status.success(), "{out:#?}");
    assert_not_leaked(&out, &dest, &server);
    let named = ["-c", "credential.useHttpPath=true", "-c", "credential.helper=signet --token far"];
    let out = clone(&env, "git", &repo, &dest, &named);
    assert!(!out.status.success(), "{out:#?}");
    assert!(
        out.stderr.contains("git-credential-signet: refused")
            && out.stderr.contains("only for URLs under"),
        "{out:#?}"
    );
    assert_not_leaked(&out, &dest, &server);
    server.clear_requests();

    // In scope and exportable: the clone works.
    env.add("gb", "basic", &base, SECRET, &["--username", "gituser", "--exportable"]);
    let out = clone(&env, "git", &repo, &dest, &path_on);
    assert!(out.status.success(), "{out:#?}");
    assert_eq!(std::fs::read_to_string(dest.join("hello.txt")).unwrap(), "hello from the server\n");
    assert!(server.requests().iter().any(|r| r.is_ok() && r.header("authorization").is_some()));
    // Nothing stored it: the remote URL has no credentials, no file has the secret.
    assert!(!out.stderr.contains(SECRET));
    let config = std::fs::read_to_string(dest.join(".git/config")).unwrap();
    assert!(!config.contains(SECRET) && !config.contains("gituser"), "{config}");
    assert!(env.signet(&["show", "gb", "--json"]).json()["use_count"].as_u64() >= Some(1));

    // Without the path git asks about the host only; the token is for a
    // path, so the helper says which setting is missing.
    let out = clone(&env, "git", &repo, &env.root.path().join("c2"), &[]);
    assert!(!out.status.success(), "{out:#?}");
    assert!(out.stderr.contains("credential.useHttpPath"), "{out:#?}");
}

#[test]
fn a_bearer_token_goes_as_authtype_to_a_git_that_can_send_it() {
    let Some((env, root)) = setup() else { return };
    let server = GitServer::start(&root, ExpectedAuth::bearer(SECRET)).unwrap();
    let base = format!("{}team/", server.base_url());
    let repo = format!("{base}repo.git");
    env.add("gt", "bearer", &base, SECRET, &["--exportable"]);
    let path_on = ["-c", "credential.useHttpPath=true"];

    match git_version("git") {
        Some(v) if v >= (2, 46) => {
            let dest = env.root.path().join("c1");
            let out = clone(&env, "git", &repo, &dest, &path_on);
            assert!(out.status.success(), "{out:#?}");
            assert!(dest.join("hello.txt").exists());
            let sent: Vec<_> = server
                .requests()
                .into_iter()
                .filter_map(|r| r.header("authorization").map(str::to_string))
                .collect();
            assert!(
                !sent.is_empty() && sent.iter().all(|h| h == &format!("Bearer {SECRET}")),
                "{sent:?}"
            );
        }
        v => skip::skip(&format!("git on PATH is {v:?}; authtype needs 2.46")),
    }

    // A git without authtype (Debian 12's is 2.39) gets nothing and a reason.
    let old = "/usr/bin/git";
    match git_version(old) {
        Some(v) if v < (2, 46) => {
            server.clear_requests();
            let dest = env.root.path().join("c2");
            let out = clone(&env, old, &repo, &dest, &path_on);
            assert!(!out.status.success(), "{out:#?}");
            assert!(out.stderr.contains("git 2.46 or later"), "{out:#?}");
            assert_not_leaked(&out, &dest, &server);
        }
        v => skip::skip(&format!("no git older than 2.46 at {old} ({v:?})")),
    }
}

#[test]
fn the_helper_speaks_gits_protocol() {
    let Some(env) = TestEnv::started(Backend::SecretService) else { return };
    env.add(
        "b",
        "basic",
        "https://git.example/team/",
        SECRET,
        &["--username", "u", "--exportable"],
    );
    env.add("t", "bearer", "https://git.example/", SECRET, &["--exportable"]);
    let helper = |args: &[&str], input: &str| {
        run(env.command("git-credential-signet").args(args), input.as_bytes())
    };

    // The longest base wins; a basic token is a user name and password.
    let out = helper(&["get"], "protocol=https\nhost=git.example\npath=team/repo.git\n\n");
    assert_eq!(out.ok(), format!("username=u\npassword={SECRET}\n"));
    // Elsewhere on the host the bearer token fits, for a git that says it
    // can send another scheme.
    let out =
        helper(&["get"], "capability[]=authtype\nprotocol=https\nhost=git.example\npath=x.git\n\n");
    assert_eq!(
        out.ok(),
        format!("capability[]=authtype\nauthtype=Bearer\ncredential={SECRET}\nephemeral=1\n")
    );
    // A header git cannot send: refused, saying which, nothing on stdout.
    env.add(
        "k",
        "header",
        "https://key.example/",
        SECRET,
        &["--header-name", "X-API-Key", "--exportable"],
    );
    let out = helper(&["get"], "capability[]=authtype\nprotocol=https\nhost=key.example\n\n");
    assert_eq!(out.code(), 5, "{out:#?}");
    assert!(out.stdout.is_empty() && out.stderr.contains("`X-API-Key` header"), "{out:#?}");
    assert!(!out.stderr.contains(SECRET));
    env.signet(&["rm", "k"]).ok();
    // Nothing fits: an empty answer, so git asks its next helper.
    for q in [
        "protocol=https\nhost=other.example\n",
        "protocol=ssh\nhost=git.example\n",
        "host=git.example\n",
        "",
    ] {
        let out = helper(&["get"], q);
        assert_eq!(out.ok(), "", "{q:?}");
    }
    // store and erase keep and drop nothing: the agent owns the token.
    for action in ["store", "erase", "something-new"] {
        let out = helper(
            &[action],
            &format!("protocol=https\nhost=git.example\nusername=u\npassword={SECRET}\n"),
        );
        assert_eq!(out.ok(), "", "{action}");
        assert!(out.stderr.is_empty(), "{out:#?}");
    }
    assert_eq!(env.signet(&["list", "--json"]).json().as_array().unwrap().len(), 2);
    // Two that fit equally: none is guessed; the user is told how to name one.
    env.add(
        "b2",
        "basic",
        "https://git.example/team/",
        SECRET,
        &["--username", "v", "--exportable"],
    );
    let out = helper(&["get"], "protocol=https\nhost=git.example\npath=team/repo.git\n\n");
    assert_eq!(out.code(), 2, "{out:#?}");
    assert!(
        out.stdout.is_empty() && out.stderr.contains("b, b2") && out.stderr.contains("--token"),
        "{out:#?}"
    );
    let out = helper(
        &["--token", "b2", "get"],
        "protocol=https\nhost=git.example\npath=team/repo.git\n\n",
    );
    assert_eq!(out.ok(), format!("username=v\npassword={SECRET}\n"));
    // No agent: exit 3 and how to start one, nothing on stdout.
    let out = run(
        env.command("git-credential-signet")
            .arg("get")
            .env("SIGNET_AUTH_SOCK", env.root.path().join("none.sock")),
        b"protocol=https\nhost=git.example\n",
    );
    assert_eq!(out.code(), 3, "{out:#?}");
    assert!(out.stdout.is_empty() && out.stderr.contains("signet-agent"), "{out:#?}");
}
