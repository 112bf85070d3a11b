//! Durable file writes: temp file in the same directory, fsync, rename, fsync the directory.
//!
//! After [`write_file`] returns, the new content is on disk under its final name and a crash at
//! any instant leaves either the old file or the new one, never a torn mix. Both the state
//! directory and the slave's writes into GeoServer's data directory go through here.

use crate::file_error::Context;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// gscluster's temporary files are `.gscluster-<random>.tmp` beside their target: a scan never
/// takes them for changes, and a start-up removes those an interrupted run left.
const TEMP_PREFIX: &str = ".gscluster-";
const TEMP_SUFFIX: &str = ".tmp";

/// Whether a file name is one of gscluster's temporary files.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)
}

/// Whether the last component of a `/`-separated relative path is one of gscluster's
/// temporary files.
pub fn is_temp_path(rel: &str) -> bool {
    rel.rsplit('/').next().is_some_and(is_temp_name)
}

/// Mode for files that did not exist before: readable by the GeoServer user whoever owns them.
const NEW_FILE_MODE: u32 = 0o644;

/// Atomically replace `path` with `bytes`. An existing file keeps its permission bits.
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    persist(stage(path, bytes)?, path)?;
    fsync_dir(path.parent().expect("stage checked the parent"))
}

/// Write `bytes` to a new temporary file beside `path` (same folder, so the final rename is
/// atomic), with `path`'s permission bits if it exists, and fsync it. The caller renames it
/// into place (`TempPath::persist`) and fsyncs the folder — for many files at once, one folder
/// fsync serves them all.
pub fn stage(path: &Path, bytes: &[u8]) -> io::Result<tempfile::TempPath> {
    write_temp(path, bytes, true)
}

/// [`stage`] without the fsync, for a caller that makes many files durable at once with
/// [`sync_filesystem`].
pub fn stage_unsynced(path: &Path, bytes: &[u8]) -> io::Result<tempfile::TempPath> {
    write_temp(path, bytes, false)
}

fn write_temp(path: &Path, bytes: &[u8], sync: bool) -> io::Result<tempfile::TempPath> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))
        .at("write", path)?;
    let mode = match fs::metadata(path) {
        Ok(m) => m.permissions().mode() & 0o7777,
        Err(_) => NEW_FILE_MODE,
    };
    // Errors name the target: the temporary file's random name tells an administrator nothing.
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)
        .at("write", path)?;
    tmp.write_all(bytes).at("write", path)?;
    (tmp.as_file())
        .set_permissions(Permissions::from_mode(mode))
        .at("set the permissions of", path)?;
    if sync {
        tmp.as_file().sync_all().at("fsync", path)?;
    }
    Ok(tmp.into_temp_path())
}

/// Rename a staged file (see [`stage`]) over `path`.
pub fn persist(staged: tempfile::TempPath, path: &Path) -> io::Result<()> {
    staged
        .persist(path)
        .map_err(|e| e.error)
        .at("rename into", path)
}

/// Flush everything written on the filesystem that holds `dir` (syncfs): for a batch of
/// thousands of files, one flush instead of one fsync each.
pub fn sync_filesystem(dir: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = File::open(dir).at("open", dir)?;
    // SAFETY: syncfs takes an open descriptor and touches no memory of ours.
    if unsafe { libc::syncfs(f.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error()).at("flush the filesystem of", dir)
    }
}

/// Make a rename or unlink in `dir` durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .at("fsync the folder", dir)
}

/// Create `dir` and any missing parents, fsyncing each parent whose entry list changed.
pub fn create_dirs(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e).at("create the folder", dir),
    }
    if let Some(parent) = dir.parent() {
        fsync_dir(parent)?;
    }
    Ok(())
}

/// Remove a file durably; a file that is already gone is not an error.
pub fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).at("remove", path),
    }
    if let Some(dir) = path.parent() {
        fsync_dir(dir)?;
    }
    Ok(())
}

/// Append `bytes` to `path` and fsync (journal records).
pub fn append(file: &mut File, bytes: &[u8]) -> io::Result<()> {
    file.write_all(bytes)?;
    file.sync_data()
}

/// Open a file for appending, creating it.
pub fn open_append(path: &Path) -> io::Result<File> {
    (OpenOptions::new().create(true).append(true))
        .open(path)
        .at("open", path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_replaces_content_and_keeps_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.xml");
        write_file(&p, b"one").unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        fs::set_permissions(&p, Permissions::from_mode(0o640)).unwrap();
        write_file(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
    }

    #[test]
    fn create_dirs_and_remove_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b c/d");
        create_dirs(&deep).unwrap();
        create_dirs(&deep).unwrap();
        remove_file(&deep.join("missing")).unwrap();
    }
}
