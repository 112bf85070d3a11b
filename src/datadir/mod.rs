//! Everything gscluster knows about a GeoServer data directory, and nothing else.
//!
//! * [`path`]: the one accepted spelling of a relative path (what may cross the wire).
//! * [`filter`]: which files are cluster configuration (the replicate filter and its defaults).

pub mod filter;
pub mod path;

pub use filter::{default_exclude, default_include, Filter};
pub use path::{normalize, to_rel, PathError};
