//! A place in an origin's stream of Deltas.

use serde::{Deserialize, Serialize};

/// Where an origin's stream stands on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub epoch: u64,
    pub seq: u64,
}
