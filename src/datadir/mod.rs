//! Everything gscluster knows about a GeoServer data directory, and nothing else.
//!
//! * [`path`]: the one accepted spelling of a relative path (what may cross the wire).
//! * [`filter`]: which files are cluster configuration (the replicate filter and its defaults).
//! * [`scan`]: walking data_dir into path → stat, and hashing files.
//! * [`watch`]: inotify on the folders that can hold replicated files.
//! * [`manifest`]: what this node believes each file holds, and the pure diff from a scan.
//! * [`catalog`]: catalog ordering (what must be written first) and reference parsing;
//!   `CatalogIndex` answers "does every object a Delta touched resolve?".
//!
//! Boundaries: this module reads the data directory but never writes it, never talks to
//! GeoServer, MQTT or the state dir, and holds no clocks; the master and slave tasks call it.
//! Apart from `scan`, `watch`, `sha256_file` and `CatalogIndex`, everything here is a pure function
//! of its arguments so it can be unit- and property-tested.

pub mod catalog;
mod entry;
pub mod filter;
mod index;
mod listing;
pub mod manifest;
pub mod path;
mod rescan;
pub mod scan;
pub mod watch;

pub use catalog::{apply_cmp, apply_rank, parse_object, sort_for_apply, CatalogObject, Reference};
pub use entry::Entry;
pub use filter::{default_exclude, default_include, Filter};
pub use index::{CatalogIndex, Content, Unresolved};
pub use listing::FileStat;
pub use manifest::{diff, diff_part, diff_with_stats, LocalChange, Manifest, StatUpdate};
pub use path::{normalize, to_rel, PathError};
pub use rescan::rescan;
pub use scan::{scan, scan_paths, sha256_file, walk, Walk};
