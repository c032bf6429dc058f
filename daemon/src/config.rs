//! Every limit of the agent, named in one place, and the config file that
//! may change them.
//!
//! The file is `$XDG_CONFIG_HOME/signet/config.toml` (else
//! `~/.config/signet/config.toml`), or the one `--config` names. A missing
//! file means the defaults; a malformed one, or an unknown key, stops the
//! agent with a message naming the file: a typo in a limit must not silently
//! leave the default in force.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The longest confirmation wait: under the 120 s the `signet` client
/// waits for any answer.
pub const MAX_CONFIRM_TIMEOUT_SECS: u64 = 110;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// At most this many tokens per owner; `None`: unlimited.
    pub max_tokens_per_owner: Option<u32>,
    /// Connections served at once; more are answered with an error and closed.
    pub max_connections: u32,
    /// A connection with no request for this long is closed.
    pub idle_timeout_secs: u64,
    /// Once a frame's length has arrived, its body must arrive within this.
    pub frame_timeout_secs: u64,
    /// On SIGTERM, in-flight requests get this long to finish.
    pub shutdown_grace_secs: u64,
    /// Waiting this long for the keyring to answer is a store failure.
    pub keyring_timeout_secs: u64,
    /// An upstream server that sends nothing for this long, while the agent
    /// waits for its answer or the next piece of its body, is given up on
    /// (exit 7). `signet request --timeout` bounds a whole request instead.
    pub upstream_idle_timeout_secs: u64,
    /// Lock the agent after this long without a use of any token; `None`:
    /// never.
    pub idle_lock_secs: Option<u64>,
    /// Lock the agent when the login session locks or the machine is about
    /// to sleep, where logind tells (the system bus).
    pub lock_on_session_events: bool,
    /// A token added without `--lifetime` is removed after this long;
    /// `None`: kept until removed.
    pub lifetime_secs: Option<u64>,
    /// A confirmation not answered within this long is a no.
    pub confirm_timeout_secs: u64,
    /// Keep the audit trail (`audit.jsonl` in the data directory).
    pub audit: bool,
    /// Rotate the audit trail once it would grow past this many bytes.
    pub audit_max_bytes: u64,
    /// Rotated audit files kept (`audit.jsonl.1` …); older ones are removed.
    pub audit_keep: u32,
    /// Also listen here, serving only sign, request and list
    /// (`--restricted-socket`).
    pub restricted_socket: Option<PathBuf>,
    /// Only these tokens through the restricted socket (`--allow`); all
    /// when empty.
    pub restricted_allow: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_tokens_per_owner: None,
            max_connections: 256,
            idle_timeout_secs: 300,
            frame_timeout_secs: 10,
            shutdown_grace_secs: 5,
            keyring_timeout_secs: 30,
            upstream_idle_timeout_secs: 120,
            idle_lock_secs: None,
            lock_on_session_events: true,
            lifetime_secs: None,
            confirm_timeout_secs: 60,
            audit: true,
            audit_max_bytes: 10 << 20,
            audit_keep: 3,
            restricted_socket: None,
            restricted_allow: Vec::new(),
        }
    }
}

impl Config {
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
    pub fn frame_timeout(&self) -> Duration {
        Duration::from_secs(self.frame_timeout_secs)
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
    pub fn keyring_timeout(&self) -> Duration {
        Duration::from_secs(self.keyring_timeout_secs)
    }
    pub fn upstream_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.upstream_idle_timeout_secs)
    }
    pub fn confirm_timeout(&self) -> Duration {
        Duration::from_secs(self.confirm_timeout_secs)
    }
    pub fn idle_lock(&self) -> Option<Duration> {
        self.idle_lock_secs.map(Duration::from_secs)
    }

    /// The default location of the config file.
    pub fn default_path() -> Option<PathBuf> {
        crate::paths::xdg_dir("XDG_CONFIG_HOME", ".config").map(|d| d.join("signet/config.toml"))
    }

    /// Reads `path`; a file that does not exist gives the defaults only when
    /// it was not named explicitly.
    pub fn load(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Config::default());
            }
            Err(err) => return Err(ConfigError::Read { path: path.to_path_buf(), err }),
        };
        let cfg: Config = toml::from_str(&text)
            .map_err(|err| ConfigError::Parse { path: path.to_path_buf(), err })?;
        let invalid = |what| Err(ConfigError::Invalid { path: path.to_path_buf(), what });
        if cfg.max_connections == 0 {
            return invalid("max_connections must be at least 1");
        }
        // signet gives up on any answer after 120 s: a longer question
        // would be answered to nobody.
        if cfg.confirm_timeout_secs > MAX_CONFIRM_TIMEOUT_SECS {
            return invalid("confirm_timeout_secs must be at most 110");
        }
        // Below one line's size every record would rotate the file.
        if cfg.audit_max_bytes < 4096 {
            return invalid("audit_max_bytes must be at least 4096");
        }
        // A zero timeout would make every call of its kind fail at once.
        for (value, what) in [
            (cfg.idle_timeout_secs, "idle_timeout_secs must be at least 1"),
            (cfg.frame_timeout_secs, "frame_timeout_secs must be at least 1"),
            (cfg.keyring_timeout_secs, "keyring_timeout_secs must be at least 1"),
            (cfg.upstream_idle_timeout_secs, "upstream_idle_timeout_secs must be at least 1"),
            (cfg.confirm_timeout_secs, "confirm_timeout_secs must be at least 1"),
            (cfg.idle_lock_secs.unwrap_or(1), "idle_lock_secs must be at least 1"),
            (cfg.lifetime_secs.unwrap_or(1), "lifetime_secs must be at least 1"),
        ] {
            if value == 0 {
                return invalid(what);
            }
        }
        Ok(cfg)
    }
}

/// Why the config file could not be used. Each names the file: a typo in a
/// limit must be easy to find.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {err}", path.display())]
    Read { path: PathBuf, err: std::io::Error },
    #[error("config file {}: {err}", path.display())]
    Parse { path: PathBuf, err: toml::de::Error },
    #[error("config file {}: {what}", path.display())]
    Invalid { path: PathBuf, what: &'static str },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        for bad in [
            "max_token_per_owner = 3",
            "max_tokens_per_owner = -1",
            "max_connections = 0",
            "keyring_timeout_secs = 0",
            "frame_timeout_secs = 0",
            "idle_timeout_secs = 0",
            "upstream_idle_timeout_secs = 0",
            "idle_lock_secs = 0",
            "lifetime_secs = 0",
            "confirm_timeout_secs = 0",
            "confirm_timeout_secs = 111",
            "lock_on_session_events = 1",
            "audit_max_bytes = 10",
            "audit = 3",
            "x",
        ] {
            std::fs::write(&p, bad).unwrap();
            let err = Config::load(&p, true).unwrap_err().to_string();
            assert!(err.contains("c.toml"), "{bad}: {err}");
        }
    }

    #[test]
    fn missing_file_gives_defaults_unless_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("none.toml");
        assert_eq!(Config::load(&p, false).unwrap().max_tokens_per_owner, None);
        assert!(Config::load(&p, true).is_err());
        std::fs::write(&p, "max_tokens_per_owner = 3\n").unwrap();
        let c = Config::load(&p, false).unwrap();
        assert_eq!(c.max_tokens_per_owner, Some(3));
        assert_eq!(c.max_connections, Config::default().max_connections);
    }
}
