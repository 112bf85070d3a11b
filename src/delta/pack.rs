//! Compression of message bodies (docs/wire-format.md, "Compression"): a body is sent as one
//! zstd frame when that makes it smaller, before it is cut into parts and each part is
//! authenticated; a receiver decompresses only the whole body of a complete message, after
//! every part's tag was verified, and only up to the length the parts declared, itself within
//! [`MAX_DELTA_BODY`]: a frame that would decompress to more (a decompression bomb) is refused
//! without the memory being taken.
//!
//! Air-gap bundles use the same compression (`airgap`), with their own bound.
//!
//! GeoServer's XML compresses 8–9 times in the 2,000-file batches of a resync at zstd's level
//! 3, and a single layer's files about twice (measured on the real data directories of the
//! test fixtures: 2.0 MB → 228 KB; deflate, already in the build for the history, made 373 KB
//! at level 1 and 269 KB at its much slower level 6).

use super::limits::MAX_DELTA_BODY;
use std::cell::RefCell;
use std::sync::OnceLock;

/// zstd's level: 3 compresses 2 MB of XML at ~600 MB/s on the static build; 6 gains 8 % for a
/// third of the speed.
const LEVEL: i32 = 3;
/// Bodies shorter than this are sent as they are: a status or an ask, a few hundred bytes,
/// shrinks by less than a frame's header costs.
pub const PACK_FROM: usize = 128;

/// Whether this node compresses what it sends: yes, unless `GSCLUSTER_WIRE_COMPRESSION=off`
/// (a diagnostic: the bench compares the bytes on the wire with and without). Receivers read
/// both forms whatever this says.
fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        let off = std::env::var("GSCLUSTER_WIRE_COMPRESSION").is_ok_and(|v| v == "off");
        if off {
            log::warn!("GSCLUSTER_WIRE_COMPRESSION=off: messages are sent uncompressed");
        }
        !off
    })
}

/// `body` compressed, when this node compresses and that makes it smaller.
pub fn pack(body: &[u8]) -> Option<Vec<u8>> {
    if body.len() < PACK_FROM || !enabled() {
        return None;
    }
    thread_local! {
        // A compression context holds ~1 MB of tables at level 3: made once per thread.
        static CONTEXT: RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { RefCell::new(None) };
    }
    CONTEXT.with_borrow_mut(|c| {
        if c.is_none() {
            let mut new = zstd::bulk::Compressor::new(LEVEL).ok()?;
            // The frame's own checksum (4 bytes): a body damaged on its way never decompresses
            // into something else.
            new.include_checksum(true).ok()?;
            *c = Some(new);
        }
        let packed = c.as_mut()?.compress(body).ok()?;
        (packed.len() < body.len()).then_some(packed)
    })
}

/// The body `packed` holds, which must be exactly `raw_len` bytes (at most
/// [`MAX_DELTA_BODY`]): anything else is refused (why, in words), and at most `raw_len` bytes
/// are ever taken.
pub fn unpack(packed: &[u8], raw_len: u64) -> Result<Vec<u8>, String> {
    unpack_within(packed, raw_len, MAX_DELTA_BODY as u64)
}

/// [`unpack`] with another bound than a message's (an air-gap bundle's).
pub fn unpack_within(packed: &[u8], raw_len: u64, limit: u64) -> Result<Vec<u8>, String> {
    if raw_len > limit {
        return Err(too_large(raw_len, limit));
    }
    let body = zstd::bulk::decompress(packed, raw_len as usize).map_err(|e| {
        format!("compressed body does not decompress to the {raw_len} bytes it declares: {e}")
    })?;
    if body.len() as u64 != raw_len {
        return Err(format!(
            "compressed body decompresses to {} bytes, not the {raw_len} it declares",
            body.len()
        ));
    }
    Ok(body)
}

pub fn too_large(raw_len: u64, limit: u64) -> String {
    format!(
        "compressed body declares {raw_len} bytes, over the limit of {limit} \
         (a decompression bomb?)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_round_trips_and_small_or_incompressible_ones_are_sent_as_they_are() {
        let xml = "<layer><name>roads</name><enabled>true</enabled></layer>\n".repeat(40);
        let packed = pack(xml.as_bytes()).expect("compressible");
        assert!(packed.len() * 4 < xml.len(), "{} bytes", packed.len());
        assert_eq!(unpack(&packed, xml.len() as u64).unwrap(), xml.as_bytes());
        assert_eq!(pack(b"<short/>"), None);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        assert_eq!(pack(&noise), None, "random bytes do not shrink");
    }

    #[test]
    fn a_bomb_or_a_lying_length_is_refused() {
        // 64 MiB of zeros is a few KB compressed; declared as such it is over the limit.
        let zeros = vec![0u8; 64 << 20];
        let bomb = pack(&zeros).unwrap();
        assert!(bomb.len() < 64 << 10);
        let e = unpack(&bomb, zeros.len() as u64).unwrap_err();
        assert!(e.contains("over the limit") && e.contains("bomb"), "{e}");
        // Declared small: zstd stops at the declared length, nothing bigger is taken.
        let e = unpack(&bomb, 1024).unwrap_err();
        assert!(e.contains("does not decompress to the 1024 bytes"), "{e}");
        // Declared longer than it is.
        let small = pack(&[7u8; 4096]).unwrap();
        assert!(unpack(&small, 5000).is_err());
        assert!(unpack(b"not zstd at all", 10).is_err());
    }
}
