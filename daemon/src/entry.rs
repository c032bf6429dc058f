//! A token's metadata as the agent stores it: never its secret.
//!
//! This sits at the bottom of the agent: the store persists entries, policy
//! judges them, commands build and show them, and this module needs none of
//! them.

use serde::{Deserialize, Serialize};
use signet_proto::{TokenInfo, TokenKind, TokenParams};

/// Where an entry stands in the two-step changes (index, then keyring)
/// that make the store crash-safe (see `store::index`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// In the index, its secret maybe not yet in the keyring.
    Adding,
    /// Complete: metadata here, secret in the keyring.
    Active,
    /// Being removed: its secret may already be gone from the keyring.
    Removing,
}

/// One token's metadata as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Immutable: the keyring entry is keyed by it, so a rename never
    /// touches the secret.
    pub id: String,
    pub state: EntryState,
    pub name: String,
    pub kind: TokenKind,
    /// The normalised base URL: the token's scope.
    pub url: String,
    pub owner_uid: u32,
    pub created: i64,
    pub expires: Option<i64>,
    pub last_used: Option<i64>,
    pub use_count: u64,
    pub exportable: bool,
    pub comment: Option<String>,
    pub params: TokenParams,
    /// When the agent removes the token (its lifetime ends), Unix seconds.
    /// Absent from indexes written before lifetimes existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removes_at: Option<i64>,
    /// Each use asks the user first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub confirm: bool,
    /// Seconds a yes is remembered for the program that got it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm_for: Option<u64>,
}

impl Entry {
    /// A token about to be stored: no id yet (the store assigns one), not
    /// exportable, never used.
    pub fn draft(
        name: &str,
        kind: TokenKind,
        url: String,
        owner_uid: u32,
        created: i64,
        params: TokenParams,
    ) -> Entry {
        Entry {
            id: String::new(),
            state: EntryState::Adding,
            name: name.to_string(),
            kind,
            url,
            owner_uid,
            created,
            expires: None,
            last_used: None,
            use_count: 0,
            exportable: false,
            comment: None,
            params,
            removes_at: None,
            confirm: false,
            confirm_for: None,
        }
    }

    /// Whether the token has expired at `now`: expiry is exclusive, so a
    /// token is dead at the very second it names.
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires.is_some_and(|t| t <= now)
    }

    /// What a client may be told about the token. `owner` is the owner's
    /// user name, looked up once by the caller.
    pub fn info(&self, now: i64, owner: String) -> TokenInfo {
        TokenInfo {
            name: self.name.clone(),
            kind: self.kind,
            url: self.url.clone(),
            owner_uid: self.owner_uid,
            owner,
            created: self.created,
            expires: self.expires,
            expired: self.is_expired(now),
            last_used: self.last_used,
            use_count: self.use_count,
            exportable: self.exportable,
            comment: self.comment.clone(),
            params: self.params.clone(),
            removes_at: self.removes_at,
            confirm: self.confirm,
            confirm_for_secs: self.confirm_for,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draft_is_adding_unused_and_not_exportable() {
        let e =
            Entry::draft("t", TokenKind::Bearer, "https://h/".into(), 7, 100, Default::default());
        assert_eq!(e.state, EntryState::Adding);
        assert!(e.id.is_empty() && !e.exportable && e.use_count == 0 && e.last_used.is_none());
        assert_eq!((e.owner_uid, e.created), (7, 100));
    }

    #[test]
    fn expiry_is_exclusive_and_shown() {
        let mut e =
            Entry::draft("t", TokenKind::Bearer, "https://h/".into(), 7, 100, Default::default());
        assert!(!e.is_expired(i64::MAX));
        e.expires = Some(200);
        assert!(!e.is_expired(199));
        assert!(e.is_expired(200));
        let i = e.info(200, "alice".into());
        assert!(i.expired);
        assert_eq!(i.owner, "alice");
    }
}
