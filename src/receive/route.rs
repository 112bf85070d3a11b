//! From a received payload to a whole message: frame decoding and authentication
//! (`delta::decode_part`), the check that the sender is who the topic says, and the assembly of
//! chunked messages (`delta::Assembler`). Pure: decoding yields a result or the reason for
//! refusing; [`reject`] is where a refusal is counted, logged and shown in the status.

use crate::context::Shared;
use crate::delta::{self, Assembled, Assembler, Delta, DeltaId, Part};
use crate::security::Auth;
use crate::status::Status;
use std::sync::atomic::Ordering;

/// What one message of a Delta topic made of its Delta.
pub enum Received {
    /// A part of a Delta whose other parts have not all arrived.
    Incomplete(DeltaId),
    /// A whole Delta, ready to apply.
    Ready(DeltaId, Delta),
    /// The parts arrived but do not make a readable Delta: refused (the reason), and a resync
    /// fills the gap.
    Unreadable(DeltaId, String),
    /// Not a part of anyone's Delta (the reason): refused.
    Bad(String),
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
        Ok(p) => return Received::Bad(format!("it claims origin {:?}", p.origin)),
        Err(e) => return Received::Bad(e.to_string()),
    };
    let id = DeltaId::of(&part);
    match asm.push(part).and_then(|a| match a {
        Assembled::Incomplete => Ok(None),
        Assembled::Complete(header, body) => delta::decode_body(&header, &body).map(Some),
    }) {
        Ok(None) => Received::Incomplete(id),
        Ok(Some(d)) => Received::Ready(id, d),
        Err(e) => {
            let why = format!("delta {}/{}: {e}", id.epoch, id.seq);
            Received::Unreadable(id, why)
        }
    }
}

/// Decode a part of another kind of message (resync asks and answers) and return the whole
/// message once complete; `sender` must match the origin the part claims.
pub fn whole(
    asm: &mut Assembler,
    group: &str,
    auth: &Auth,
    sender: &str,
    payload: &[u8],
) -> Result<Option<(Part, Vec<u8>)>, String> {
    let part = match delta::decode_part(payload, group, auth) {
        Ok(p) if p.origin == sender => p,
        Ok(p) => return Err(format!("it claims to come from {:?}", p.origin)),
        Err(e) => return Err(e.to_string()),
    };
    match asm.push(part).map_err(|e| e.to_string())? {
        Assembled::Complete(header, body) => Ok(Some((header, body))),
        Assembled::Incomplete => Ok(None),
    }
}

/// The origin a frame claims, if it decodes (resync answers arrive on the asker's topic).
pub fn claimed_origin(group: &str, auth: &Auth, payload: &[u8]) -> String {
    delta::decode_part(payload, group, auth)
        .map(|p| p.origin)
        .unwrap_or_default()
}

/// Decode a status frame published on `node`'s status topic.
pub fn status(group: &str, auth: &Auth, node: &str, payload: &[u8]) -> Result<Status, String> {
    let p = delta::decode_part(payload, group, auth).map_err(|e| e.to_string())?;
    if p.origin != node || p.count != 1 {
        return Err(format!(
            "status frame of {:?} on the topic of {node}",
            p.origin
        ));
    }
    Status::decode(&p, &p.body).map_err(|e| e.to_string())
}

/// A refused message: counted, logged once, and shown as the node's last error.
pub fn reject(sh: &Shared, from: &str, why: &str) {
    sh.rejected.fetch_add(1, Ordering::Relaxed);
    crate::telemetry::record_rejected();
    log::warn!("rejected a message from {from}: {why}");
    sh.board
        .error(&format!("rejected a message from {from}: {why}"));
}
