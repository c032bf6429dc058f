//! Where things live, and the checks that make a directory safe to use.
//!
//! The socket's directory is the agent's first line of defence: created
//! 0700 and owned by the agent's uid, so nobody else can even reach the
//! socket. An existing directory that another user owns, or that the group
//! or others can enter, is refused rather than "fixed": someone else may
//! already have a foothold in it.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `$VAR` if set to an absolute path, else `~/<fallback>`.
pub fn xdg_dir(var: &str, fallback: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(v) if Path::new(&v).is_absolute() => Some(PathBuf::from(v)),
        _ => home_dir().map(|h| h.join(fallback)),
    }
}

fn home_dir() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(h));
    }
    nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|u| u.dir)
}

/// `$XDG_RUNTIME_DIR/signet/agent.sock`, else `/tmp/signet-<uid>/agent.sock`:
/// the one path clients look at when `SIGNET_AUTH_SOCK` is unset, so it is
/// defined once, by the client library.
pub fn default_socket_path() -> PathBuf {
    signet_client::default_socket_path()
}

/// `$XDG_DATA_HOME/signet`, else `~/.local/share/signet`.
pub fn default_data_dir() -> Option<PathBuf> {
    xdg_dir("XDG_DATA_HOME", ".local/share").map(|d| d.join("signet"))
}

/// Why a directory is not safe to keep the socket or the index in.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("cannot create directory {}: {err}", path.display())]
    Create { path: PathBuf, err: io::Error },
    #[error("cannot inspect directory {}: {err}", path.display())]
    Inspect { path: PathBuf, err: io::Error },
    #[error("{} is not a directory (a symbolic link or a file is refused)", path.display())]
    NotADirectory { path: PathBuf },
    #[error(
        "refusing to use {}: it is owned by uid {owner}, not by this user (uid {me}); choose a directory of your own",
        path.display()
    )]
    NotOurs { path: PathBuf, owner: u32, me: u32 },
    #[error(
        "refusing to use {}: its mode is {mode:03o}, open to group or others, who could reach what the agent keeps there; name a path in a private subdirectory (the agent creates missing directories 0700, e.g. {}), or `chmod 700 {}` if nothing else needs it open",
        path.display(),
        path.join("signet").display(),
        path.display()
    )]
    Open { path: PathBuf, mode: u32 },
}

/// Makes sure `dir` exists, is a directory (not a link to one) owned by us,
/// and is closed to group and others. Missing parents are created 0700.
pub fn ensure_private_dir(dir: &Path) -> Result<(), DirError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|err| DirError::Create { path: dir.to_path_buf(), err })?;
    check_private_dir(dir)
}

/// The check alone, for a directory that must already exist.
pub fn check_private_dir(dir: &Path) -> Result<(), DirError> {
    let path = || dir.to_path_buf();
    let md = fs::symlink_metadata(dir).map_err(|err| DirError::Inspect { path: path(), err })?;
    if !md.file_type().is_dir() {
        return Err(DirError::NotADirectory { path: path() });
    }
    let me = nix::unistd::geteuid().as_raw();
    if md.uid() != me {
        return Err(DirError::NotOurs { path: path(), owner: md.uid(), me });
    }
    let mode = md.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(DirError::Open { path: path(), mode });
    }
    Ok(())
}

/// Makes `p` absolute against the current directory, so the path the agent
/// prints for `eval` still works after it changes directory.
pub fn absolute(p: &Path) -> io::Result<PathBuf> {
    if p.is_absolute() { Ok(p.to_path_buf()) } else { Ok(std::env::current_dir()?.join(p)) }
}

/// Makes `parts`, one after the other, the content of `path`, so that a
/// crash at any instant leaves the old content or the new, never a mix: a
/// temporary file beside it (mode 0600 from creation), fsynced, renamed over
/// it, then the directory fsynced, since the rename is durable only then.
pub fn replace_file(path: &Path, parts: &[&[u8]]) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = path.file_name().ok_or_else(|| io::Error::other("no file name"))?.to_os_string();
    tmp.push(".tmp");
    let tmp = dir.join(tmp);
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        for part in parts {
            f.write_all(part)?;
        }
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dir_is_created_0700() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b");
        ensure_private_dir(&d).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn open_dirs_and_links_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("open");
        fs::create_dir(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o750)).unwrap();
        let err = ensure_private_dir(&d).unwrap_err().to_string();
        assert!(err.contains("750") && err.contains("chmod 700"), "{err}");
        assert!(err.contains("open/signet"), "{err}");
        // Never advise removing a directory the agent did not create.
        assert!(!err.contains("remove"), "{err}");

        let target = t.path().join("real");
        fs::create_dir(&target).unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o700)).unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(check_private_dir(&link).unwrap_err().to_string().contains("not a directory"));
    }
}
