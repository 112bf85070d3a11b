//! From a received payload to a whole message: frame decoding and authentication
//! (`delta::decode_part`), the check that the sender is who the topic says, and the assembly of
//! chunked messages (`delta::Assembler`). Pure: decoding yields a result or a [`Refusal`];
//! [`reject`] is where a refusal is counted, logged and shown in the status.

use crate::context::Shared;
use crate::delta::{self, Assembled, Assembler, DecodeError, Delta, DeltaId, Part};
use crate::security::Auth;
use crate::status::Status;
use std::sync::atomic::Ordering;

/// Why a received message is refused.
#[derive(Debug)]
pub enum Refusal {
    /// The frame, its authentication, its parts or its content are not valid.
    Decode(DecodeError),
    /// The frame names another sender than the topic it came on.
    Impostor { claims: String },
    /// A status frame that is not one node's single-part status.
    Status(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Decode(e) => write!(f, "{e}"),
            Refusal::Impostor { claims } => write!(f, "it claims to come from {claims:?}"),
            Refusal::Status(e) => f.write_str(e),
        }
    }
}

impl From<DecodeError> for Refusal {
    fn from(e: DecodeError) -> Self {
        Refusal::Decode(e)
    }
}

/// What one message of a Delta topic made of its Delta.
pub enum Received {
    /// A part of a Delta whose other parts have not all arrived.
    Incomplete(DeltaId),
    /// A whole Delta, ready to apply.
    Ready(DeltaId, Delta),
    /// The parts arrived but do not make a readable Delta: refused, and a resync fills the gap.
    Unreadable(DeltaId, Refusal),
    /// Not a part of anyone's Delta: refused.
    Bad(Refusal),
}

/// Decode one message of `topic_origin`'s Delta topic; the Delta once all its parts are here.
pub fn delta(
    asm: &mut Assembler,
    group: &str,
    auth: &Auth,
    topic_origin: &str,
    payload: &[u8],
) -> Received {
    let part = match delta::decode_part(payload, group, auth) {
        Ok(p) if p.origin == topic_origin => p,
        Ok(p) => return Received::Bad(Refusal::Impostor { claims: p.origin }),
        Err(e) => return Received::Bad(e.into()),
    };
    let id = DeltaId::of(&part);
    match asm.push(part).and_then(|a| match a {
        Assembled::Incomplete => Ok(None),
        Assembled::Complete(header, body) => delta::decode_body(&header, &body).map(Some),
    }) {
        Ok(None) => Received::Incomplete(id),
        Ok(Some(d)) => Received::Ready(id, d),
        Err(e) => Received::Unreadable(id, e.into()),
    }
}

/// What a part of a resync ask or answer made.
pub enum Whole {
    /// The whole message.
    Complete(Part, Vec<u8>),
    /// A part of message `epoch`/`seq` (a resync round and its request) arrived; more follow.
    Partial { epoch: u64, seq: u64 },
}

/// Decode a part of another kind of message (resync asks and answers) and return the whole
/// message once complete; `sender` must match the origin the part claims.
pub fn whole(
    asm: &mut Assembler,
    group: &str,
    auth: &Auth,
    sender: &str,
    payload: &[u8],
) -> Result<Whole, Refusal> {
    let part = delta::decode_part(payload, group, auth)?;
    if part.origin != sender {
        return Err(Refusal::Impostor {
            claims: part.origin,
        });
    }
    let (epoch, seq) = (part.epoch, part.seq);
    match asm.push(part)? {
        Assembled::Complete(header, body) => Ok(Whole::Complete(header, body)),
        Assembled::Incomplete => Ok(Whole::Partial { epoch, seq }),
    }
}

/// The origin a frame claims, if it decodes (resync answers arrive on the asker's topic).
pub fn claimed_origin(group: &str, auth: &Auth, payload: &[u8]) -> String {
    delta::decode_part(payload, group, auth)
        .map(|p| p.origin)
        .unwrap_or_default()
}

/// Decode a status frame published on `node`'s status topic.
pub fn status(group: &str, auth: &Auth, node: &str, payload: &[u8]) -> Result<Status, Refusal> {
    let p = delta::decode_part(payload, group, auth)?;
    if p.origin != node || p.count != 1 {
        return Err(Refusal::Status(format!(
            "status frame of {:?} on the topic of {node}",
            p.origin
        )));
    }
    Ok(Status::decode(p)?)
}

/// A refused message: counted, logged once, and shown as the node's last error.
pub fn reject(sh: &Shared, from: &str, why: &str) {
    sh.rejected.fetch_add(1, Ordering::Relaxed);
    crate::telemetry::record_rejected();
    log::warn!("rejected a message from {from}: {why}");
    sh.board
        .error(&format!("rejected a message from {from}: {why}"));
}
