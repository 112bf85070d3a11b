//! I/O errors that name their file. A bare `io::Error` says "No space left on device" and
//! nothing else; every file operation of gscluster goes through [`Context::at`], so what an
//! administrator reads is the operation and the path: `write
//! /var/lib/geoserver/data/workspaces/topp/workspace.xml: No space left on device`.
//!
//! The error stays an `io::Error` (same kind, so callers still match on `NotFound`,
//! `WouldBlock`…) whose message carries the operation and the path; wrapping an error that
//! already names its file does not name it twice.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// An I/O error of one operation on one file.
#[derive(Debug)]
pub struct FileError {
    pub op: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.op, self.path.display(), self.source)
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Whether `e` already names its file (it went through [`Context::at`]).
fn names_a_file(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<FileError>())
}

/// A file whose content cannot be taken: `path: what` (kind `InvalidData`).
pub fn invalid(path: &Path, what: impl fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {what}", path.display()),
    )
}

/// Name the operation and the file of an I/O result's error.
pub trait Context<T> {
    /// `op` is a verb the message starts with: "read", "write", "create", "remove",
    /// "rename", "fsync", "open", "list"...
    fn at(self, op: &'static str, path: &Path) -> io::Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn at(self, op: &'static str, path: &Path) -> io::Result<T> {
        self.map_err(|e| {
            if names_a_file(&e) {
                return e;
            }
            let kind = e.kind();
            io::Error::new(
                kind,
                FileError {
                    op,
                    path: path.to_path_buf(),
                    source: e,
                },
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_operation_and_the_file_and_keeps_the_kind() {
        let path = Path::new("/nonexistent/dir/layer.xml");
        let e = std::fs::read(path).at("read", path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let text = e.to_string();
        assert!(
            text.starts_with("read /nonexistent/dir/layer.xml: "),
            "{text}"
        );
        assert!(text.contains("No such file or directory"), "{text}");
        let again: io::Result<()> = Err(e);
        let e = again.at("write", Path::new("/other")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("read /nonexistent/dir/layer.xml: "),
            "{e}"
        );
    }
}
