//! Message authentication: HMAC-SHA256 with a key shared by the nodes of a group.
//!
//! Whoever can publish on a delta topic can write XML into every GeoServer of the group, so with
//! `[security] key_file` set every frame carries a tag over the exact bytes of its part, and a
//! frame without a valid tag is rejected before anything in it is looked at. HMAC rather than
//! signatures: every node both sends and verifies, all of them hold the same secret anyway
//! (the GeoServer keystore must be shared too), and a shared key is one file to copy and rotate.
//! `previous_key_files` are still accepted (never used to sign) during a rotation; see
//! docs/security.md.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

type HmacSha256 = Hmac<Sha256>;

/// Shortest key accepted, in bytes (the HMAC-SHA256 block of security).
pub const MIN_KEY_LEN: usize = 32;

/// The keys of this node: one to sign with, any number to verify with.
#[derive(Clone, Default)]
pub struct Auth {
    sign: Option<Vec<u8>>,
    accept: Vec<Vec<u8>>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Auth {{ on: {}, keys: {} }}",
            self.sign.is_some(),
            self.accept.len()
        )
    }
}

impl Auth {
    /// No key: frames go out untagged and are accepted untagged.
    pub fn none() -> Auth {
        Auth::default()
    }

    /// Sign with `key`, verify with it and with `previous`.
    pub fn with_keys(key: Vec<u8>, previous: Vec<Vec<u8>>) -> Auth {
        let mut accept = vec![key.clone()];
        accept.extend(previous);
        Auth {
            sign: Some(key),
            accept,
        }
    }

    pub fn is_on(&self) -> bool {
        self.sign.is_some()
    }

    /// The tag for `bytes`, when a key is configured.
    pub fn tag(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let key = self.sign.as_ref()?;
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(bytes);
        Some(mac.finalize().into_bytes().to_vec())
    }

    /// Whether `tag` authenticates `bytes` under any accepted key (constant-time compare).
    /// Without a key every frame is accepted: the node runs unauthenticated, and said so at
    /// start.
    pub fn verify(&self, bytes: &[u8], tag: Option<&[u8]>) -> Result<(), &'static str> {
        if !self.is_on() {
            return Ok(());
        }
        let tag =
            tag.ok_or("no authentication tag (is the sender missing [security] key_file?)")?;
        for key in &self.accept {
            let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
            mac.update(bytes);
            if mac.verify_slice(tag).is_ok() {
                return Ok(());
            }
        }
        Err("authentication tag does not match any configured key")
    }
}

/// Read a key file: hex (64 or more hex digits, whitespace ignored) or raw bytes (32 or more).
/// A file others can read is refused; one the group can read is accepted with a warning.
pub fn load_key(key: &str, path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("{key} {}: cannot read: {e}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o004 != 0 {
        return Err(format!(
            "{key} {}: readable by every user (mode {:o}); run chmod 600 on it",
            path.display(),
            mode & 0o777
        ));
    }
    if mode & 0o040 != 0 {
        log::warn!(
            "{key} {}: readable by its group (mode {:o}); chmod 600 is safer",
            path.display(),
            mode & 0o777
        );
    }
    let raw =
        std::fs::read(path).map_err(|e| format!("{key} {}: cannot read: {e}", path.display()))?;
    let text: String = String::from_utf8_lossy(&raw)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let bytes = if !text.is_empty()
        && text.len().is_multiple_of(2)
        && text.chars().all(|c| c.is_ascii_hexdigit())
    {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digits"))
            .collect()
    } else {
        raw
    };
    if bytes.len() < MIN_KEY_LEN {
        return Err(format!(
            "{key} {}: key of {} bytes is too short (at least {MIN_KEY_LEN} bytes, or {} hex digits; e.g. `openssl rand -hex 32 > FILE`)",
            path.display(),
            bytes.len(),
            MIN_KEY_LEN * 2
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::Permissions;

    fn key_file(content: &[u8], mode: u32) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), content).unwrap();
        std::fs::set_permissions(f.path(), Permissions::from_mode(mode)).unwrap();
        f
    }

    #[test]
    fn hex_and_raw_keys_load_and_short_or_world_readable_ones_are_refused() {
        let hex = "ab".repeat(32) + "\n";
        assert_eq!(
            load_key("k", key_file(hex.as_bytes(), 0o600).path()).unwrap(),
            vec![0xab; 32]
        );
        assert_eq!(
            load_key("k", key_file(&[7u8; 40], 0o600).path()).unwrap(),
            vec![7u8; 40]
        );
        let e = load_key("k", key_file(b"abcd", 0o600).path()).unwrap_err();
        assert!(e.contains("too short"), "{e}");
        let e = load_key("k", key_file(hex.as_bytes(), 0o644).path()).unwrap_err();
        assert!(e.contains("readable by every user"), "{e}");
    }

    #[test]
    fn tags_verify_with_current_and_previous_keys_only() {
        let old = Auth::with_keys(vec![1; 32], vec![]);
        let new = Auth::with_keys(vec![2; 32], vec![vec![1; 32]]);
        let other = Auth::with_keys(vec![3; 32], vec![]);
        let msg = b"part bytes";
        assert!(new.verify(msg, new.tag(msg).as_deref()).is_ok());
        assert!(new.verify(msg, old.tag(msg).as_deref()).is_ok(), "rotation");
        assert!(old.verify(msg, new.tag(msg).as_deref()).is_err());
        assert!(new.verify(msg, other.tag(msg).as_deref()).is_err());
        assert!(new.verify(msg, None).is_err());
        assert!(new.verify(b"part bytez", new.tag(msg).as_deref()).is_err());
        assert!(Auth::none().verify(msg, None).is_ok());
        assert!(Auth::none().tag(msg).is_none());
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let a = Auth::with_keys(vec![0x41; 32], vec![]);
        assert!(!format!("{a:?}").contains("65"));
    }
}
