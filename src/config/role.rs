//! What a node does: its role, and what a pure slave does with local edits.

use serde::Deserialize;

/// What a node does with deltas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Publishes local changes, never applies remote ones.
    Master,
    /// Applies remote changes, never publishes.
    Slave,
    /// Both publishes and applies.
    Both,
}

impl Role {
    pub fn publishes(self) -> bool {
        matches!(self, Role::Master | Role::Both)
    }
    pub fn applies(self) -> bool {
        matches!(self, Role::Slave | Role::Both)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Slave => "slave",
            Role::Both => "both",
        }
    }
}

/// What a pure slave does when a replicated file is edited locally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDrift {
    Revert,
    Warn,
}
