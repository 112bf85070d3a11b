//! Air-gapped transfer: `gscluster export` writes a bundle, `gscluster import` applies it on a
//! node of another site (docs/airgap.md).
//!
//! A bundle is one file: an 8-byte magic, then one CBOR envelope holding the encoded body
//! (zstd-compressed in format 2, like a message's: `delta::pack`), the body's SHA-256 and,
//! when the exporting node has a group key, an HMAC-SHA256 tag over the body as stored. The
//! body carries a header (group, exporting node, position, base) and the same [`Change`] list
//! Deltas carry. Decoding checks, in this order, the magic, the envelope (a truncated file
//! fails here), the format version, the checksum (damage), the tag (tampering by someone
//! without the key), the declared size, then the body's group and every change (paths,
//! hashes, sizes): nothing of a bundle is used before all of it is verified.
//!
//! Positions: every export is numbered per exporting node (1, 2, …) and remembered in
//! `state_dir/exports/` as the list of files and hashes it held, so `--since N` can carry
//! exactly what changed between export N and now — including deletions and changes that
//! arrived late from other masters. The importing node records per exporting node the last
//! position it imported: a bundle "since N" is refused unless export N (or a later one) was
//! imported there, so a forgotten bundle in a series is noticed instead of silently skipped.
//! A random series number, drawn when `exports/` is created, tells a restarted numbering (the
//! exporting node's state dir was replaced) from old bundles.

pub mod export;
pub mod import;
pub mod progress;
pub mod spool;

use crate::delta::{self, Change, Op};
use crate::security::Auth;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// First bytes of every bundle file.
pub const MAGIC: &[u8; 8] = b"GSCBNDL\n";

/// Version of the envelope and body layout: 2 is a compressed body (with `raw_len`), 1 a
/// plain one (what bundles were before compression; still read).
pub const BUNDLE_FORMAT: u16 = 2;

/// The most a bundle's body may decompress to: a 100,000-layer snapshot is ~350 MB, and the
/// import holds it in memory.
pub const MAX_BUNDLE_BODY: u64 = 2 << 30;

/// What a bundle says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub group: String,
    /// The exporting node.
    pub origin: String,
    /// The exporting node's series of exports: positions restart with a new series when its
    /// `state_dir/exports` is lost, and the importing node must not take them for old ones.
    pub series: u64,
    /// This export's number in the series.
    pub position: u64,
    /// `Some(n)`: the changes since export `n`; `None`: the whole replicated tree.
    pub base: Option<u64>,
    pub created_unix_ms: u64,
    /// gscluster version that wrote the bundle.
    pub tool: String,
}

impl Header {
    /// "snapshot 3 of gs-a" / "changes 2→3 of gs-a", for messages.
    pub fn describe(&self) -> String {
        match self.base {
            None => format!("snapshot {} of {}", self.position, self.origin),
            Some(b) => format!("changes {b}→{} of {}", self.position, self.origin),
        }
    }
}

/// A decoded, verified bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    pub header: Header,
    /// Writes (and, in a bundle of changes, deletions) of replicated paths.
    pub changes: Vec<Change>,
    /// Catalog references the exporting node itself could not resolve: the importing node
    /// does not refuse the bundle over these.
    pub dangling: Vec<String>,
}

impl Bundle {
    /// Files written and deleted, and the bytes written.
    pub fn counts(&self) -> (usize, usize, u64) {
        let mut counts = (0, 0, 0);
        for c in &self.changes {
            match &c.op {
                Op::Write { bytes, .. } => {
                    counts.0 += 1;
                    counts.2 += bytes.len() as u64;
                }
                Op::Delete => counts.1 += 1,
            }
        }
        counts
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u16,
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
    #[serde(with = "serde_bytes")]
    sha256: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    tag: Option<Vec<u8>>,
    /// Format 2: the length the compressed body decompresses to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    raw_len: Option<u64>,
}

/// Why a bundle is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleError {
    NotABundle,
    Damaged(String),
    Version(u16),
    Checksum,
    Auth(String),
    Group { expected: String, got: String },
    Change(String),
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleError::NotABundle => f.write_str("not a gscluster bundle (wrong magic bytes)"),
            BundleError::Damaged(e) => write!(f, "truncated or damaged: {e}"),
            BundleError::Version(v) => write!(
                f,
                "bundle format {v} not supported (this gscluster reads formats 1 to {BUNDLE_FORMAT}); upgrade it"
            ),
            BundleError::Checksum => {
                f.write_str("checksum does not match: the bundle was damaged or altered")
            }
            BundleError::Auth(e) => write!(f, "not authenticated: {e}"),
            BundleError::Group { expected, got } => write!(
                f,
                "bundle of group {got:?}, this node is in group {expected:?}"
            ),
            BundleError::Change(e) => write!(f, "bad content: {e}"),
        }
    }
}

impl std::error::Error for BundleError {}

/// Encode `bundle` into the bytes of a bundle file, tagged with `auth`'s key when it has one.
pub fn encode(bundle: &Bundle, auth: &Auth) -> Vec<u8> {
    let plain = crate::cbor::encode(bundle);
    // Compressed before the checksum and the tag, which cover the bytes stored.
    let (body, raw_len) = match delta::pack::pack(&plain) {
        Some(packed) => (packed, Some(plain.len() as u64)),
        None => (plain, None),
    };
    let envelope = Envelope {
        v: if raw_len.is_some() { BUNDLE_FORMAT } else { 1 },
        sha256: Sha256::digest(&body).to_vec(),
        tag: auth.tag(&body),
        body,
        raw_len,
    };
    [MAGIC.as_slice(), &crate::cbor::encode(&envelope)].concat()
}

/// Decode and verify a bundle file's bytes for a node of `group` with `auth`'s keys.
pub fn decode(bytes: &[u8], group: &str, auth: &Auth) -> Result<Bundle, BundleError> {
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or(BundleError::NotABundle)?;
    let (envelope, reader): (Envelope, _) = crate::cbor::decode_prefix(rest).map_err(damaged)?;
    if !reader.is_empty() {
        return Err(BundleError::Damaged(format!(
            "{} unexpected bytes after the end",
            reader.len()
        )));
    }
    if envelope.v == 0 || envelope.v > BUNDLE_FORMAT {
        return Err(BundleError::Version(envelope.v));
    }
    if Sha256::digest(&envelope.body).as_slice() != envelope.sha256.as_slice() {
        return Err(BundleError::Checksum);
    }
    auth.verify(&envelope.body, envelope.tag.as_deref())
        .map_err(|e| BundleError::Auth(e.to_string()))?;
    let body = match (envelope.v, envelope.raw_len) {
        (1, None) => envelope.body,
        (2, Some(n)) => delta::pack::unpack_within(&envelope.body, n, MAX_BUNDLE_BODY)
            .map_err(BundleError::Damaged)?,
        (v, _) => {
            return Err(BundleError::Damaged(format!(
                "a format {v} envelope {} a decompressed length",
                if v == 1 { "with" } else { "without" }
            )))
        }
    };
    let bundle: Bundle = crate::cbor::decode(&body).map_err(damaged)?;
    if bundle.header.group != group {
        return Err(BundleError::Group {
            expected: group.to_string(),
            got: bundle.header.group,
        });
    }
    delta::verify_changes(&bundle.changes).map_err(|e| BundleError::Change(e.to_string()))?;
    let mut seen = std::collections::HashSet::new();
    if let Some(c) = bundle.changes.iter().find(|c| !seen.insert(&c.path)) {
        return Err(BundleError::Change(format!("{}: listed twice", c.path)));
    }
    Ok(bundle)
}

fn damaged(e: crate::cbor::CborError) -> BundleError {
    BundleError::Damaged(e.0)
}

/// Whether a signed bundle is read by a node that cannot check the signature (a warning).
pub fn signed(bytes: &[u8]) -> bool {
    let Some(rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
        return false;
    };
    crate::cbor::decode::<Envelope>(rest).is_ok_and(|e| e.tag.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Version;

    fn bundle(group: &str) -> Bundle {
        let v = Version::new(7 << 16, "gs-a");
        Bundle {
            header: Header {
                group: group.into(),
                origin: "gs-a".into(),
                series: 9,
                position: 2,
                base: Some(1),
                created_unix_ms: 1,
                tool: "test".into(),
            },
            changes: vec![
                Change {
                    path: "workspaces/w/workspace.xml".into(),
                    version: v.clone(),
                    op: Op::write(b"<workspace><id>w</id></workspace>".to_vec()),
                    merged: None,
                },
                Change {
                    path: "styles/old.sld".into(),
                    version: v,
                    op: Op::Delete,
                    merged: None,
                },
            ],
            dangling: vec![],
        }
    }

    #[test]
    fn a_bundle_round_trips_signed_and_unsigned() {
        let key = Auth::with_keys(vec![5; 32], vec![]);
        for auth in [Auth::none(), key] {
            let bytes = encode(&bundle("g"), &auth);
            assert_eq!(decode(&bytes, "g", &auth).unwrap(), bundle("g"));
            assert_eq!(signed(&bytes), auth.is_on());
        }
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let auth = Auth::with_keys(vec![5; 32], vec![]);
        let bytes = encode(&bundle("g"), &auth);
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len], "g", &auth).is_err(), "cut at {len}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(decode(&b, "g", &auth).is_err(), "byte {i} flipped");
        }
        // Unsigned: the checksum still catches damage of the body.
        let bytes = encode(&bundle("g"), &Auth::none());
        let mut b = bytes.clone();
        let at = bytes.len() - 60;
        b[at] ^= 0x20;
        assert!(decode(&b, "g", &Auth::none()).is_err());
    }

    #[test]
    fn wrong_group_wrong_key_and_missing_signature_are_refused_with_their_reason() {
        let auth = Auth::with_keys(vec![5; 32], vec![]);
        let bytes = encode(&bundle("other"), &auth);
        let e = decode(&bytes, "g", &auth).unwrap_err();
        assert!(matches!(e, BundleError::Group { .. }), "{e}");
        let e = decode(
            &encode(&bundle("g"), &auth),
            "g",
            &Auth::with_keys(vec![6; 32], vec![]),
        )
        .unwrap_err();
        assert!(matches!(e, BundleError::Auth(_)), "{e}");
        let e = decode(&encode(&bundle("g"), &Auth::none()), "g", &auth).unwrap_err();
        assert!(e.to_string().contains("no authentication tag"), "{e}");
        assert_eq!(
            decode(b"PK\x03\x04 a zip file", "g", &auth).unwrap_err(),
            BundleError::NotABundle
        );
    }

    #[test]
    fn a_bundle_is_stored_compressed_a_plain_one_of_format_1_is_still_read_and_a_bomb_is_refused() {
        let mut b = bundle("g");
        let xml = "<layer><name>roads</name><enabled>true</enabled></layer>\n".repeat(200);
        b.changes[0].op = Op::write(xml.clone().into_bytes());
        let bytes = encode(&b, &Auth::none());
        assert!(bytes.len() * 5 < xml.len(), "{} bytes", bytes.len());
        assert_eq!(decode(&bytes, "g", &Auth::none()).unwrap(), b);
        // What a gscluster before compression wrote.
        let old = [MAGIC.as_slice(), &crate::cbor::encode(&v1_like(&b))].concat();
        assert_eq!(decode(&old, "g", &Auth::none()).unwrap(), b);
        // A body declaring more than the bound, checksum and all in order.
        let zeros = delta::pack::pack(&vec![0u8; 1 << 20]).unwrap();
        let bomb = Envelope {
            v: 2,
            sha256: Sha256::digest(&zeros).to_vec(),
            tag: None,
            body: zeros,
            raw_len: Some(MAX_BUNDLE_BODY + 1),
        };
        let bomb = [MAGIC.as_slice(), &crate::cbor::encode(&bomb)].concat();
        let e = decode(&bomb, "g", &Auth::none()).unwrap_err().to_string();
        assert!(e.contains("decompression bomb"), "{e}");
        let newer = Envelope {
            v: 3,
            ..v1_like(&b)
        };
        let newer = [MAGIC.as_slice(), &crate::cbor::encode(&newer)].concat();
        let e = decode(&newer, "g", &Auth::none()).unwrap_err().to_string();
        assert!(e.contains("upgrade it"), "{e}");
    }

    /// The envelope of `b` as a gscluster before compression wrote it.
    fn v1_like(b: &Bundle) -> Envelope {
        let body = crate::cbor::encode(b);
        Envelope {
            v: 1,
            sha256: Sha256::digest(&body).to_vec(),
            tag: None,
            body,
            raw_len: None,
        }
    }

    #[test]
    fn content_that_a_delta_could_not_carry_is_refused() {
        let mut b = bundle("g");
        b.changes[0].path = "../etc/passwd".into();
        let e = decode(&encode(&b, &Auth::none()), "g", &Auth::none()).unwrap_err();
        assert!(matches!(e, BundleError::Change(_)), "{e}");
        let mut b = bundle("g");
        b.changes[1].path = b.changes[0].path.clone();
        let e = decode(&encode(&b, &Auth::none()), "g", &Auth::none()).unwrap_err();
        assert!(e.to_string().contains("listed twice"), "{e}");
    }
}
