//! The wire format: one Delta type, one encode, one decode, used by every sender and receiver.
//!
//! A [`Delta`] is the set of file changes one origin node detected in one quiet window
//! (`change`). On the wire it travels as one or more MQTT messages, each a CBOR [`Frame`]
//! holding a [`Part`] (`frame`): the Delta's header plus a slice of the CBOR-encoded change
//! list. A Delta is applied only when all its parts have arrived ([`Assembler`], `assemble`).
//! The sizes are in `limits`. DOCS: docs/wire-format.md describes every field.

mod assemble;
mod change;
mod frame;
mod limits;
pub mod pack;

pub use assemble::{Assembled, Assembler};
pub use change::{verify_change, verify_changes, Change, Delta, DeltaId, Op};
pub use frame::{decode_cbor, decode_part, encode_parts, whole_body, DecodeError, Frame, Part};
pub use limits::{
    FORMAT_VERSION, MAX_DELTA_BODY, MAX_FILE_SIZE, MAX_INCOMING_PACKET, MAX_MESSAGE_SIZE,
    SPLIT_DELTA_AT,
};

use crate::security::Auth;
use frame::{from_cbor, to_cbor};
use serde::{Deserialize, Serialize};

/// The body of a Delta: what the parts' slices concatenate to.
#[derive(Serialize, Deserialize)]
struct Body {
    changes: Vec<Change>,
    #[serde(default)]
    dangling: Vec<String>,
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
    use super::assemble::part_header;
    use super::*;
    use crate::hlc::Version;
    use proptest::prelude::*;
    use std::time::Duration;

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
        let d = delta(vec![write("styles/big.sld", noise(700_000))]);
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

    /// Bytes that do not compress (xorshift).
    fn noise(n: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn xml(n: usize) -> Vec<u8> {
        let line = "<featureType><name>roads</name><enabled>true</enabled></featureType>\n";
        line.bytes().cycle().take(n).collect()
    }

    #[test]
    fn a_compressible_delta_travels_compressed_in_version_2_frames_and_round_trips() {
        let d = delta(vec![
            write("workspaces/ws/a/featuretype.xml", xml(3_000_000)),
            write("global.xml", xml(2_000)),
        ]);
        let msgs = encode(&d, &Auth::none());
        let total: usize = msgs.iter().map(Vec::len).sum();
        assert!(total < 100_000, "3 MB of XML in {total} bytes");
        for m in &msgs {
            let frame: Frame = from_cbor(m).unwrap();
            assert_eq!(frame.v, 2);
            let part = decode_part(m, "g", &Auth::none()).unwrap();
            assert!(part.raw_len.is_some_and(|n| n > 3_000_000));
        }
        assert_eq!(decode(&msgs, "g", &Auth::none()).unwrap(), d);
        // Incompressible content goes as it is, in a frame older nodes read.
        let msgs = encode(
            &delta(vec![write("styles/x.png", noise(5000))]),
            &Auth::none(),
        );
        let frame: Frame = from_cbor(&msgs[0]).unwrap();
        assert_eq!(frame.v, 1);
    }

    /// Re-frame `msg`'s part after `change` (no key: the tag is not checked).
    fn reframed(msg: &[u8], v: u16, change: impl FnOnce(&mut Part)) -> Vec<u8> {
        let frame: Frame = from_cbor(msg).unwrap();
        let mut part: Part = from_cbor(&frame.part).unwrap();
        change(&mut part);
        to_cbor(&Frame {
            v,
            part: to_cbor(&part),
            tag: None,
        })
    }

    #[test]
    fn a_bomb_a_lying_length_a_damaged_body_or_a_mixed_up_version_is_refused() {
        let d = delta(vec![write("styles/a.sld", xml(50_000))]);
        let msgs = encode(&d, &Auth::none());
        assert_eq!(msgs.len(), 1);
        let refused = |m: &[u8]| {
            let mut asm = Assembler::default();
            match decode_part(m, "g", &Auth::none()) {
                Err(e) => e.to_string(),
                Ok(p) => match asm.push(p) {
                    Err(e) => e.to_string(),
                    Ok(_) => panic!("accepted"),
                },
            }
        };
        let bomb = reframed(&msgs[0], 2, |p| p.raw_len = Some(1 << 40));
        assert!(
            refused(&bomb).contains("decompression bomb"),
            "{}",
            refused(&bomb)
        );
        let short = reframed(&msgs[0], 2, |p| p.raw_len = Some(1000));
        assert!(refused(&short).contains("does not decompress to the 1000 bytes"));
        let long = reframed(&msgs[0], 2, |p| p.raw_len = p.raw_len.map(|n| n + 1));
        assert!(refused(&long).contains("decompress"), "{}", refused(&long));
        let damaged = reframed(&msgs[0], 2, |p| {
            let mid = p.body.len() / 2;
            p.body[mid] ^= 0x20;
        });
        assert!(
            refused(&damaged).contains("decompress"),
            "{}",
            refused(&damaged)
        );
        let v1 = reframed(&msgs[0], 1, |_| {});
        assert!(refused(&v1).contains("version 1 frame"), "{}", refused(&v1));
        let plain = encode(&delta(vec![]), &Auth::none());
        let v2 = reframed(&plain[0], 2, |_| {});
        assert!(refused(&v2).contains("without its body's length"));
        let newer = reframed(&msgs[0], 3, |_| {});
        assert!(
            refused(&newer).contains("upgrade this node"),
            "{}",
            refused(&newer)
        );
    }

    #[test]
    fn parts_out_of_order_are_rejected_and_expire() {
        let msgs = encode(&delta(vec![write("a.sld", noise(500_000))]), &Auth::none());
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
        fn round_trip_any_compressible_delta(files in proptest::collection::btree_map("[a-z]{1,8}(/[a-z]{1,8}){0,3}", ("[a-z<>/= ]{1,40}", 1..400usize), 0..12)) {
            let changes = files.into_iter()
                .map(|(p, (unit, times))| write(&p, unit.repeat(times).into_bytes()))
                .collect();
            let d = delta(changes);
            prop_assert_eq!(decode(&encode(&d, &Auth::none()), "g", &Auth::none()).unwrap(), d);
        }

        #[test]
        fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_part(&bytes, "g", &Auth::none());
        }
    }
}
