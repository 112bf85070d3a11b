//! The wire format: one Delta type, one encode, one decode, used by every sender and receiver.
//!
//! A [`Delta`] is the set of file changes one origin node detected in one quiet window. On the
//! wire it travels as one or more MQTT messages, each a CBOR [`Frame`] holding a [`Part`]: the
//! Delta's header plus a slice of the CBOR-encoded change list. A Delta is applied only when all
//! its parts have arrived ([`Assembler`]). DOCS: docs/wire-format.md describes every field.

use crate::hlc::Version;
use crate::security::Auth;
use crate::update_sequence::{self, Merged};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

/// Version of the frame layout. A receiver rejects frames with a version it does not know.
pub const FORMAT_VERSION: u16 = 1;

/// Largest MQTT payload gscluster publishes: well under the 256 KiB that common brokers accept.
pub const MAX_MESSAGE_SIZE: usize = 192 * 1024;

/// Room left in a message for the frame and part header around a body slice.
const HEADER_ROOM: usize = 4 * 1024;

/// Largest single file that is replicated; larger files are skipped with a warning. GeoServer
/// configuration files are kilobytes; this bound keeps a Delta within the broker's in-flight
/// window (see docs/wire-format.md, "Limits").
pub const MAX_FILE_SIZE: u64 = 8 * 1024 * 1024;

/// A master starts a new Delta once the change list of the current one reaches this size.
pub const SPLIT_DELTA_AT: usize = 4 * 1024 * 1024;

/// Largest reassembled change list a receiver accepts (one maximal file plus the split size).
pub const MAX_DELTA_BODY: usize = MAX_FILE_SIZE as usize + SPLIT_DELTA_AT + 64 * 1024;

/// Largest MQTT packet this node accepts from a broker. rumqttc cannot skip a packet above its limit:
/// it drops the connection, and the broker sends the same packet again after the reconnect — one
/// oversized message from anyone who can publish would stall the node forever. So the limit is
/// generous (the message is then rejected by the decoder, acknowledged and forgotten), and
/// brokers are configured to refuse anything larger (`[broker] max_packet_size` is capped at
/// this value; docs/brokers.md for external brokers).
pub const MAX_INCOMING_PACKET: usize = 16 * 1024 * 1024;

/// The changes one origin made in one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta {
    pub group: String,
    pub origin: String,
    /// Changes when the origin's state is lost; (origin, epoch, seq) identifies a Delta.
    pub epoch: u64,
    /// Per origin and epoch, gap-free from 1.
    pub seq: u64,
    pub changes: Vec<Change>,
    /// Catalog references the origin itself could not resolve when it sent this Delta (ids or
    /// paths). A receiver does not hold its reload back waiting for these.
    pub dangling: Vec<String>,
}

/// One change to one path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Relative, `/`-separated, normalised.
    pub path: String,
    pub version: Version,
    pub op: Op,
    /// For a path merged field by field (`global.xml`, see `merge`): the settings version and
    /// counter the change carries. Absent for every other path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<Merged>,
}

/// What happens to the path.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// New content of the file and its SHA-256.
    Write {
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        #[serde(with = "serde_bytes")]
        sha256: Vec<u8>,
    },
    /// The file is gone.
    Delete,
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Write { bytes, .. } => write!(f, "Write({} bytes)", bytes.len()),
            Op::Delete => f.write_str("Delete"),
        }
    }
}

impl Op {
    pub fn write(bytes: Vec<u8>) -> Op {
        let sha256 = Sha256::digest(&bytes).to_vec();
        Op::Write { bytes, sha256 }
    }
}

impl Change {
    /// For a path merged field by field (`update_sequence`): the side this change brings —
    /// its settings version (its own version when it carries none) and the higher of the
    /// counter it carries and the one in its bytes.
    pub fn side(&self) -> update_sequence::Side<'_> {
        let doc = match &self.op {
            Op::Write { bytes, .. } => Some(bytes.as_slice()),
            Op::Delete => None,
        };
        let in_doc = doc
            .and_then(update_sequence::counter)
            .map(|(_, n)| n)
            .unwrap_or(0);
        update_sequence::Side {
            version: &self.version,
            settings: self.merged.as_ref().map_or(&self.version, |m| &m.settings),
            counter: self.merged.as_ref().map_or(0, |m| m.counter).max(in_doc),
            doc,
        }
    }

    /// The manifest entry this change leaves behind (the file's stat is not known here).
    pub fn entry(&self) -> crate::datadir::Entry {
        use crate::datadir::Entry;
        let entry = match &self.op {
            Op::Write { bytes, sha256 } => Entry::live(
                sha256.as_slice().try_into().unwrap_or([0; 32]),
                bytes.len() as u64,
                self.version.clone(),
            ),
            Op::Delete => Entry::tombstone(self.version.clone()),
        };
        entry.with_merged(self.merged.clone())
    }

    /// The change of `path` that carries a joined state.
    pub fn joined(path: &str, j: update_sequence::Joined) -> Change {
        Change {
            path: path.to_string(),
            version: j.version,
            op: match j.bytes {
                Some(b) => Op::write(b),
                None => Op::Delete,
            },
            merged: Some(j.merged),
        }
    }
}

/// One MQTT message: a versioned frame around a part. `tag` is reserved for message
/// authentication and must be absent in format version 1 from nodes without a key.
#[derive(Debug, Serialize, Deserialize)]
pub struct Frame {
    pub v: u16,
    #[serde(with = "serde_bytes")]
    pub part: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    pub tag: Option<Vec<u8>>,
}

/// Header of a Delta plus one slice of its encoded body.
#[derive(Debug, Serialize, Deserialize)]
pub struct Part {
    pub group: String,
    pub origin: String,
    pub epoch: u64,
    pub seq: u64,
    /// 0-based index of this part.
    pub index: u32,
    pub count: u32,
    /// Length of the whole body, so a receiver can bound what it buffers up front.
    pub body_len: u64,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// The body of a Delta: what the parts' slices concatenate to.
#[derive(Serialize, Deserialize)]
struct Body {
    changes: Vec<Change>,
    #[serde(default)]
    dangling: Vec<String>,
}

/// Why a message was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Cbor(String),
    Version(u16),
    Group { expected: String, got: String },
    Auth(String),
    Part(String),
    Change { path: String, reason: String },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Cbor(e) => write!(f, "not a valid gscluster message: {e}"),
            DecodeError::Version(v) => write!(
                f,
                "format version {v} not supported (this node speaks {FORMAT_VERSION}); upgrade it"
            ),
            DecodeError::Group { expected, got } => {
                write!(f, "message for group {got:?}, this node is in {expected:?}")
            }
            DecodeError::Part(e) => write!(f, "bad part: {e}"),
            DecodeError::Auth(e) => write!(f, "not authenticated: {e}"),
            DecodeError::Change { path, reason } => write!(f, "change of {path:?}: {reason}"),
        }
    }
}

impl std::error::Error for DecodeError {}

use crate::cbor::encode as to_cbor;

fn from_cbor<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    crate::cbor::decode(bytes).map_err(|e| DecodeError::Cbor(e.0))
}

/// Decode a CBOR body of any message type gscluster frames (resync asks and answers,
/// statuses), with the Delta decoder's error.
pub fn decode_cbor<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    from_cbor(bytes)
}

/// Encode a Delta into MQTT payloads of at most [`MAX_MESSAGE_SIZE`] bytes each, each
/// authenticated with `auth`'s key when there is one.
pub fn encode(delta: &Delta, auth: &Auth) -> Vec<Vec<u8>> {
    let body = to_cbor(&Body {
        changes: delta.changes.clone(),
        dangling: delta.dangling.clone(),
    });
    encode_parts(
        &delta.group,
        &delta.origin,
        delta.epoch,
        delta.seq,
        &body,
        auth,
    )
}

/// Cut any encoded body into framed parts of at most [`MAX_MESSAGE_SIZE`] bytes. Deltas and
/// resync answers share this framing; the topic says which body a receiver should expect.
pub fn encode_parts(
    group: &str,
    origin: &str,
    epoch: u64,
    seq: u64,
    body: &[u8],
    auth: &Auth,
) -> Vec<Vec<u8>> {
    let slice = MAX_MESSAGE_SIZE - HEADER_ROOM - group.len() - origin.len();
    let chunks: Vec<&[u8]> = if body.is_empty() {
        vec![&[][..]]
    } else {
        body.chunks(slice).collect()
    };
    let count = chunks.len() as u32;
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let part = Part {
                group: group.to_string(),
                origin: origin.to_string(),
                epoch,
                seq,
                index: i as u32,
                count,
                body_len: body.len() as u64,
                body: chunk.to_vec(),
            };
            let part = to_cbor(&part);
            to_cbor(&Frame {
                v: FORMAT_VERSION,
                tag: auth.tag(&part),
                part,
            })
        })
        .collect()
}

/// Decode one MQTT payload into a part, checking size, format version, authentication tag and
/// group — in that order, so nothing of an unauthenticated frame is parsed beyond its envelope.
pub fn decode_part(payload: &[u8], group: &str, auth: &Auth) -> Result<Part, DecodeError> {
    if payload.len() > MAX_MESSAGE_SIZE + HEADER_ROOM {
        return Err(DecodeError::Part(format!(
            "message of {} bytes exceeds the limit of {MAX_MESSAGE_SIZE}",
            payload.len()
        )));
    }
    let frame: Frame = from_cbor(payload)?;
    if frame.v != FORMAT_VERSION {
        return Err(DecodeError::Version(frame.v));
    }
    auth.verify(&frame.part, frame.tag.as_deref())
        .map_err(|e| DecodeError::Auth(e.to_string()))?;
    let part: Part = from_cbor(&frame.part)?;
    if part.group != group {
        return Err(DecodeError::Group {
            expected: group.into(),
            got: part.group,
        });
    }
    if part.count == 0 || part.index >= part.count {
        return Err(DecodeError::Part(format!(
            "index {} of {} parts",
            part.index, part.count
        )));
    }
    if part.body_len > MAX_DELTA_BODY as u64 {
        return Err(DecodeError::Part(format!(
            "body of {} bytes exceeds the limit of {MAX_DELTA_BODY}",
            part.body_len
        )));
    }
    if part.seq == 0 {
        return Err(DecodeError::Part("sequence number 0".into()));
    }
    Ok(part)
}

/// Check what every change list must satisfy: paths normalised, hashes matching the content.
pub fn verify_changes(changes: &[Change]) -> Result<(), DecodeError> {
    for c in changes {
        let bad = |reason: String| DecodeError::Change {
            path: c.path.clone(),
            reason,
        };
        match crate::datadir::normalize(&c.path) {
            Ok(p) if p == c.path => {}
            Ok(_) => return Err(bad("path is not in normal form".into())),
            Err(e) => return Err(bad(e.to_string())),
        }
        if c.merged.as_ref().is_some_and(|m| m.settings > c.version) {
            return Err(bad("settings version is above the change's version".into()));
        }
        if let Op::Write { bytes, sha256 } = &c.op {
            if bytes.len() as u64 > MAX_FILE_SIZE {
                return Err(bad(format!(
                    "{} bytes is over the {MAX_FILE_SIZE} byte limit for one file",
                    bytes.len()
                )));
            }
            if Sha256::digest(bytes).as_slice() != sha256.as_slice() {
                return Err(bad("SHA-256 does not match the content".into()));
            }
        }
    }
    Ok(())
}

/// Decode and verify a complete Delta body: every path normalised, every hash checked.
pub fn decode_body(header: &Part, body: &[u8]) -> Result<Delta, DecodeError> {
    let body: Body = from_cbor(body)?;
    verify_changes(&body.changes)?;
    Ok(Delta {
        group: header.group.clone(),
        origin: header.origin.clone(),
        epoch: header.epoch,
        seq: header.seq,
        changes: body.changes,
        dangling: body.dangling,
    })
}

/// Identity of one Delta on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeltaId {
    pub origin: String,
    pub epoch: u64,
    pub seq: u64,
}

impl DeltaId {
    /// The Delta a part belongs to.
    pub fn of(part: &Part) -> DeltaId {
        DeltaId {
            origin: part.origin.clone(),
            epoch: part.epoch,
            seq: part.seq,
        }
    }
}

impl Delta {
    pub fn id(&self) -> DeltaId {
        DeltaId {
            origin: self.origin.clone(),
            epoch: self.epoch,
            seq: self.seq,
        }
    }
}

impl fmt::Display for DeltaId {
    /// "delta E/S from O", as log lines name a Delta.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "delta {}/{} from {}", self.epoch, self.seq, self.origin)
    }
}

struct Pending {
    header: Part,
    body: Vec<u8>,
    next: u32,
    started: Instant,
}

/// Collects the parts of chunked Deltas. Parts of one Delta arrive in order on one topic
/// (MQTT keeps per-topic order from one publisher); anything else restarts that Delta.
#[derive(Default)]
pub struct Assembler {
    pending: HashMap<DeltaId, Pending>,
}

/// What pushing a part produced.
pub enum Assembled {
    /// More parts are needed.
    Incomplete,
    /// All parts arrived: the header (with an empty `body`) and the whole body.
    Complete(Part, Vec<u8>),
}

impl Assembler {
    /// Add a part. Errors mean the whole message is unusable (its parts are dropped).
    pub fn push(&mut self, mut part: Part) -> Result<Assembled, DecodeError> {
        let id = DeltaId::of(&part);
        if part.count == 1 {
            self.pending.remove(&id);
            let body = std::mem::take(&mut part.body);
            if body.len() as u64 != part.body_len {
                return Err(DecodeError::Part(
                    "body length differs from the announced one".into(),
                ));
            }
            return Ok(Assembled::Complete(part, body));
        }
        if part.index == 0 {
            // A restart of this Delta (redelivery after a reconnect) replaces any old attempt.
            let body = Vec::with_capacity(part.body_len as usize);
            self.pending.insert(
                id.clone(),
                Pending {
                    body,
                    next: 0,
                    started: Instant::now(),
                    header: Part {
                        body: Vec::new(),
                        ..part_header(&part)
                    },
                },
            );
        }
        let Some(p) = self.pending.get_mut(&id) else {
            return Err(DecodeError::Part(format!(
                "part {} of {} arrived without part 0",
                part.index + 1,
                part.count
            )));
        };
        if part.index != p.next
            || part.count != p.header.count
            || part.body_len != p.header.body_len
        {
            self.pending.remove(&id);
            return Err(DecodeError::Part(format!(
                "part {} of {} out of order or inconsistent",
                part.index + 1,
                part.count
            )));
        }
        if p.body.len() + part.body.len() > p.header.body_len as usize {
            self.pending.remove(&id);
            return Err(DecodeError::Part(
                "parts longer than the announced body".into(),
            ));
        }
        p.body.extend_from_slice(&part.body);
        p.next += 1;
        if p.next < p.header.count {
            return Ok(Assembled::Incomplete);
        }
        let p = self.pending.remove(&id).expect("present");
        if p.body.len() as u64 != p.header.body_len {
            return Err(DecodeError::Part(
                "parts shorter than the announced body".into(),
            ));
        }
        Ok(Assembled::Complete(p.header, p.body))
    }

    /// Whether a Delta is partly here, its other parts still to come.
    pub fn receiving(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Drop Deltas whose parts stopped arriving; returns their ids so the caller can resync.
    pub fn expire(&mut self, older_than: Duration) -> Vec<DeltaId> {
        let now = Instant::now();
        let old: Vec<DeltaId> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.started) > older_than)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &old {
            self.pending.remove(id);
        }
        old
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

fn part_header(p: &Part) -> Part {
    Part {
        group: p.group.clone(),
        origin: p.origin.clone(),
        epoch: p.epoch,
        seq: p.seq,
        index: p.index,
        count: p.count,
        body_len: p.body_len,
        body: Vec::new(),
    }
}

/// Decode a whole Delta from its payloads (tests and tools; the slave uses [`Assembler`]).
pub fn decode(payloads: &[Vec<u8>], group: &str, auth: &Auth) -> Result<Delta, DecodeError> {
    let mut asm = Assembler::default();
    for p in payloads {
        if let Assembled::Complete(header, body) = asm.push(decode_part(p, group, auth)?)? {
            return decode_body(&header, &body);
        }
    }
    Err(DecodeError::Part("missing parts".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn delta(changes: Vec<Change>) -> Delta {
        Delta {
            group: "g".into(),
            origin: "gs-a".into(),
            epoch: 7,
            seq: 3,
            changes,
            dangling: vec![],
        }
    }

    fn write(path: &str, bytes: Vec<u8>) -> Change {
        Change {
            path: path.into(),
            version: Version::new(42, "gs-a"),
            op: Op::write(bytes),
            merged: None,
        }
    }

    #[test]
    fn small_delta_is_one_message_and_round_trips() {
        let d = delta(vec![
            write("workspaces/ws/workspace.xml", b"<workspace/>".to_vec()),
            Change {
                path: "styles/old.sld".into(),
                version: Version::new(43, "gs-a"),
                op: Op::Delete,
                merged: None,
            },
        ]);
        let msgs = encode(&d, &Auth::none());
        assert_eq!(msgs.len(), 1);
        assert_eq!(decode(&msgs, "g", &Auth::none()).unwrap(), d);
    }

    #[test]
    fn large_delta_is_split_under_the_message_limit_and_reassembles() {
        let big: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        let d = delta(vec![write("styles/big.sld", big)]);
        let msgs = encode(&d, &Auth::none());
        assert!(msgs.len() >= 4, "{} parts", msgs.len());
        assert!(msgs.iter().all(|m| m.len() <= MAX_MESSAGE_SIZE));
        assert_eq!(decode(&msgs, "g", &Auth::none()).unwrap(), d);
    }

    #[test]
    fn wrong_group_is_rejected() {
        let msgs = encode(&delta(vec![]), &Auth::none());
        assert!(matches!(
            decode(&msgs, "other", &Auth::none()),
            Err(DecodeError::Group { .. })
        ));
    }

    #[test]
    fn unknown_format_version_is_rejected() {
        let msgs = encode(&delta(vec![]), &Auth::none());
        let mut frame: Frame = from_cbor(&msgs[0]).unwrap();
        frame.v = 99;
        assert_eq!(
            decode_part(&to_cbor(&frame), "g", &Auth::none()).unwrap_err(),
            DecodeError::Version(99)
        );
    }

    #[test]
    fn tampered_content_fails_its_hash() {
        let d = delta(vec![write("global.xml", b"<global/>".to_vec())]);
        let mut body = Body {
            changes: d.changes.clone(),
            dangling: vec![],
        };
        if let Op::Write { bytes, .. } = &mut body.changes[0].op {
            bytes[1] = b'G';
        }
        let header = Part {
            body: vec![],
            ..part_header(&decode_part(&encode(&d, &Auth::none())[0], "g", &Auth::none()).unwrap())
        };
        let err = decode_body(&header, &to_cbor(&body)).unwrap_err();
        assert!(err.to_string().contains("SHA-256"), "{err}");
    }

    #[test]
    fn traversal_path_is_rejected() {
        let d = delta(vec![write("../etc/passwd", b"x".to_vec())]);
        let err = decode(&encode(&d, &Auth::none()), "g", &Auth::none()).unwrap_err();
        assert!(matches!(err, DecodeError::Change { .. }), "{err}");
    }

    #[test]
    fn parts_out_of_order_are_rejected_and_expire() {
        let big: Vec<u8> = vec![7; 500_000];
        let msgs = encode(&delta(vec![write("a.sld", big)]), &Auth::none());
        let mut asm = Assembler::default();
        assert!(matches!(
            asm.push(decode_part(&msgs[0], "g", &Auth::none()).unwrap()),
            Ok(Assembled::Incomplete)
        ));
        assert!(asm
            .push(decode_part(&msgs[2], "g", &Auth::none()).unwrap())
            .is_err());
        asm.push(decode_part(&msgs[0], "g", &Auth::none()).unwrap())
            .unwrap();
        assert_eq!(asm.expire(Duration::ZERO).len(), 1);
        assert!(asm.is_empty());
    }

    #[test]
    fn garbage_never_panics() {
        for bytes in [&b""[..], b"\xff\xff", b"\xa1\x61v\x18\x01", &[0x5b; 40]] {
            assert!(decode_part(bytes, "g", &Auth::none()).is_err());
        }
    }

    proptest! {
        #[test]
        fn round_trip_any_delta(files in proptest::collection::btree_map("[a-z]{1,8}(/[a-z]{1,8}){0,3}", proptest::collection::vec(any::<u8>(), 0..3000), 0..20)) {
            let changes = files.into_iter().map(|(p, b)| write(&p, b)).collect();
            let d = delta(changes);
            prop_assert_eq!(decode(&encode(&d, &Auth::none()), "g", &Auth::none()).unwrap(), d);
        }

        #[test]
        fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_part(&bytes, "g", &Auth::none());
        }
    }
}
