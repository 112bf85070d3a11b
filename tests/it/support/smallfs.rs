//! A small filesystem for full-disk tests: a tmpfs of a given size mounted on a temporary
//! folder (root only; `mount` is what an administrator's small partition is to gscluster).
//! `fill` takes all its free space with a ballast file, `free` gives it back.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    /// A tmpfs of `bytes` on a new folder, or why it cannot be had here (not root, no mount).
    pub fn mount(bytes: u64) -> Result<SmallFs, String> {
        let dir = tempfile::Builder::new()
            .prefix("smallfs-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes}"),
                "gscluster-test",
            ])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(SmallFs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn ballast(&self) -> PathBuf {
        self.dir.path().join(".ballast")
    }

    /// Fill every free byte (the write that fails with "No space left on device" ends it).
    pub fn fill(&self) {
        let mut f = File::create(self.ballast()).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        // The last partial block too.
        let byte = [0u8; 1];
        while f.write(&byte).is_ok_and(|n| n == 1) {}
    }

    /// Give the space back.
    pub fn free(&self) {
        let _ = fs::remove_file(self.ballast());
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        // Lazy: a process of the test may still hold a file open in it.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
