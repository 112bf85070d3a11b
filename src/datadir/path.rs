//! Relative data-directory paths: the only form of path that crosses the wire.
//!
//! Every path in a manifest, a Delta or a plan is a relative, `/`-separated, already-normalised
//! string. We *reject* anything else instead of repairing it: a path that needs repair was not
//! produced by our own scan, so it is either a bug or an attack (invariant 5, "a Delta can only
//! write inside data_dir"). Rejecting also keeps one canonical spelling per file, so two nodes can
//! never disagree about whether `a/./b` and `a/b` are the same entry.

use std::fmt;
use std::path::{Component, Path};

/// Longest accepted path in bytes (Linux `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest accepted path segment in bytes (Linux `NAME_MAX`).
pub const MAX_SEGMENT_BYTES: usize = 255;

/// Why a relative path was refused. Each variant carries the offending path so the message can be
/// logged on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathError {
    Empty,
    Absolute(String),
    DotSegment(String),
    EmptySegment(String),
    ControlChar(String),
    Backslash(String),
    DriveLetter(String),
    TooLong(String),
    SegmentTooLong(String),
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use PathError::*;
        let (path, why) = match self {
            Empty => return f.write_str("empty path rejected"),
            Absolute(p) => (p, "absolute paths are not allowed"),
            DotSegment(p) => (p, "`.` and `..` segments are not allowed"),
            EmptySegment(p) => (p, "empty segment (`//`, leading or trailing `/`)"),
            ControlChar(p) => (p, "contains NUL or another control character"),
            Backslash(p) => (p, "contains a backslash; use `/` as the separator"),
            DriveLetter(p) => (p, "starts with a Windows drive letter"),
            TooLong(p) => (p, "longer than 4096 bytes"),
            SegmentTooLong(p) => (p, "has a segment longer than 255 bytes"),
        };
        // `{:?}` so control characters in a hostile path cannot forge log lines.
        write!(f, "path {path:?} rejected: {why}")
    }
}

impl std::error::Error for PathError {}

/// Checks that `rel` is a relative, `/`-separated, normalised path and returns it unchanged.
///
/// Nothing is rewritten: the input must already be in canonical form.
pub fn normalize(rel: &str) -> Result<String, PathError> {
    check_normal(rel)?;
    Ok(rel.to_string())
}

/// [`normalize`] without the copy: `Ok` when `rel` is already a normal relative path.
pub fn check_normal(rel: &str) -> Result<(), PathError> {
    let owned = || rel.to_string();
    if rel.is_empty() {
        return Err(PathError::Empty);
    }
    if rel.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong(owned()));
    }
    if rel.chars().any(char::is_control) {
        return Err(PathError::ControlChar(owned()));
    }
    if rel.contains('\\') {
        return Err(PathError::Backslash(owned()));
    }
    if rel.starts_with('/') {
        return Err(PathError::Absolute(owned()));
    }
    let b = rel.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        return Err(PathError::DriveLetter(owned()));
    }
    for seg in rel.split('/') {
        match seg {
            "" => return Err(PathError::EmptySegment(owned())),
            "." | ".." => return Err(PathError::DotSegment(owned())),
            s if s.len() > MAX_SEGMENT_BYTES => return Err(PathError::SegmentTooLong(owned())),
            _ => {}
        }
    }
    Ok(())
}

/// Turns a path found by the scan into the relative form used everywhere else.
///
/// Returns `None` for paths outside `data_dir`, for `data_dir` itself and for names that are not
/// UTF-8: such names cannot be carried in a Delta, so callers log and skip them.
pub fn to_rel(data_dir: &Path, abs: &Path) -> Option<String> {
    let rest = abs.strip_prefix(data_dir).ok()?;
    let mut out = String::new();
    for c in rest.components() {
        match c {
            Component::Normal(s) => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(s.to_str()?);
            }
            _ => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_data_dir_paths() {
        for p in [
            "global.xml",
            "workspaces/DIUPostgres/PostGISStore/Energy Performance Certificates/layer.xml",
            "styles/images/école.svg",
            "gwc-layers/LayerInfoImpl--4ede52dd_1675b074524_-6526.xml",
            ".hidden",
            "a/b:c",
        ] {
            assert_eq!(normalize(p).as_deref(), Ok(p), "{p}");
        }
    }

    #[test]
    fn rejects_each_kind_of_bad_path() {
        type Make = fn(String) -> PathError;
        let cases: &[(&str, Make)] = &[
            ("/etc/passwd", PathError::Absolute),
            ("../x", PathError::DotSegment),
            ("a/../../x", PathError::DotSegment),
            ("a/./b", PathError::DotSegment),
            (".", PathError::DotSegment),
            ("a//b", PathError::EmptySegment),
            ("a/", PathError::EmptySegment),
            ("a\0b", PathError::ControlChar),
            ("a\nb", PathError::ControlChar),
            ("a\\b", PathError::Backslash),
            ("C:/x", PathError::DriveLetter),
            ("c:x", PathError::DriveLetter),
        ];
        for (p, want) in cases {
            assert_eq!(normalize(p), Err(want(p.to_string())), "{p:?}");
        }
        assert_eq!(normalize(""), Err(PathError::Empty));
        let long_seg = "a".repeat(256);
        assert!(matches!(
            normalize(&long_seg),
            Err(PathError::SegmentTooLong(_))
        ));
        let long = vec!["abcdefgh"; 600].join("/");
        assert!(matches!(normalize(&long), Err(PathError::TooLong(_))));
    }

    #[test]
    fn error_message_names_path_and_reason() {
        let msg = normalize("a/../b").unwrap_err().to_string();
        assert!(msg.contains("\"a/../b\"") && msg.contains(".."), "{msg}");
    }

    #[test]
    fn to_rel_joins_with_slash_and_refuses_outside_paths() {
        let root = Path::new("/srv/data");
        assert_eq!(
            to_rel(root, Path::new("/srv/data/workspaces/ws/a b.xml")).as_deref(),
            Some("workspaces/ws/a b.xml")
        );
        assert_eq!(to_rel(root, Path::new("/srv/other/x")), None);
        assert_eq!(to_rel(root, root), None);
    }

    #[test]
    fn to_rel_skips_non_utf8_names() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let root = Path::new("/d");
        let abs = root.join(OsStr::from_bytes(b"bad\xff.xml"));
        assert_eq!(to_rel(root, &abs), None);
    }

    proptest! {
        #[test]
        fn never_accepts_parent_segments(segs in prop::collection::vec("[a-z.]{0,4}|\\.\\.", 1..6)) {
            let p = segs.join("/");
            if let Ok(ok) = normalize(&p) {
                prop_assert!(!ok.split('/').any(|s| s == ".." || s == "." || s.is_empty()));
                prop_assert_eq!(ok, p);
            }
        }

        #[test]
        fn never_panics_and_accepted_paths_are_relative(p in any::<String>()) {
            if let Ok(ok) = normalize(&p) {
                prop_assert!(!ok.starts_with('/'));
                prop_assert!(!ok.contains('\\'));
                prop_assert!(!ok.split('/').any(|s| s == ".."));
            }
        }
    }
}
