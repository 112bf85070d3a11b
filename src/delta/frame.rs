//! One MQTT message: a versioned, authenticated frame around one part of a message's body.
//! Deltas, resync asks and answers and statuses share this framing; the topic says which body
//! a receiver should expect.

use super::limits::{FORMAT_VERSION, HEADER_ROOM, MAX_DELTA_BODY, MAX_MESSAGE_SIZE};
use crate::security::Auth;
use serde::{Deserialize, Serialize};
use std::fmt;

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
    /// Length of the whole body as sent, so a receiver can bound what it buffers up front.
    pub body_len: u64,
    /// Present when the body travels compressed (format version 2, [`super::pack`]): the
    /// length it decompresses to. Absent in version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_len: Option<u64>,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
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
                "format version {v} not supported (this node reads 1 to {FORMAT_VERSION}): \
                 upgrade this node to the sender's gscluster version"
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

pub(super) use crate::cbor::encode as to_cbor;

pub(super) fn from_cbor<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    crate::cbor::decode(bytes).map_err(|e| DecodeError::Cbor(e.0))
}

/// Decode a CBOR body of any message type gscluster frames (resync asks and answers,
/// statuses), with the Delta decoder's error.
pub fn decode_cbor<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    from_cbor(bytes)
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
    // Compressed before it is cut and each part authenticated. A body sent as it is goes in
    // a version 1 frame, which nodes before compression read too.
    let packed = super::pack::pack(body);
    let raw_len = packed.as_ref().map(|_| body.len() as u64);
    let body = packed.as_deref().unwrap_or(body);
    let chunks: Vec<&[u8]> = if body.is_empty() {
        vec![&[][..]]
    } else {
        body.chunks(slice).collect()
    };
    let count = chunks.len() as u32;
    let version = if raw_len.is_some() { FORMAT_VERSION } else { 1 };
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
                raw_len,
                body: chunk.to_vec(),
            };
            let part = to_cbor(&part);
            to_cbor(&Frame {
                v: version,
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
    if frame.v == 0 || frame.v > FORMAT_VERSION {
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
    match (frame.v, part.raw_len) {
        (1, Some(_)) => {
            return Err(DecodeError::Part(
                "a compressed body in a format version 1 frame".into(),
            ))
        }
        (2, None) => {
            return Err(DecodeError::Part(
                "a format version 2 frame without its body's length".into(),
            ))
        }
        (_, Some(n)) if n > MAX_DELTA_BODY as u64 => {
            return Err(DecodeError::Part(super::pack::too_large(
                n,
                MAX_DELTA_BODY as u64,
            )))
        }
        _ => {}
    }
    Ok(part)
}

/// The body of a complete message (its parts' slices joined), decompressed when it travelled
/// compressed; `header` then describes the body as it is returned.
pub fn whole_body(header: &mut Part, body: Vec<u8>) -> Result<Vec<u8>, DecodeError> {
    let Some(raw_len) = header.raw_len.take() else {
        return Ok(body);
    };
    let body = super::pack::unpack(&body, raw_len).map_err(DecodeError::Part)?;
    header.body_len = raw_len;
    Ok(body)
}
