//! CBOR, the one encoding of everything gscluster writes: Deltas and resync messages on the
//! wire, statuses, bundles, the journal and the outbox. One encode and one decode, so every
//! reader reports a malformed input the same way.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;

/// Why bytes are not the CBOR of the expected type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CborError(pub String);

impl fmt::Display for CborError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CborError {}

/// The CBOR of `value`. Encoding into memory cannot fail for the types gscluster writes (no
/// maps with non-string keys that serde refuses, no I/O).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("CBOR encoding into memory cannot fail");
    out
}

/// Decode one value from the start of `bytes` (trailing bytes are left unread; see
/// [`decode_prefix`] to know where the value ended).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CborError> {
    with_scratch(|scratch| ciborium::from_reader_with_buffer(bytes, scratch)).map_err(in_words)
}

/// Decode one value from the start of `bytes` and return it with the bytes after it.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, &[u8]), CborError> {
    let mut rest = bytes;
    let value = with_scratch(|scratch| ciborium::from_reader_with_buffer(&mut rest, scratch))
        .map_err(in_words)?;
    Ok((value, rest))
}

/// The decoder's room for names and short strings, one per thread: a fresh one is 4 KiB to
/// zero on every decode, and a rescan decodes a manifest entry per file (330,000 at 100,000
/// layers).
fn with_scratch<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 4096]);
    }
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut buf) => f(&mut buf),
        // A decode within a decode (none today): its own room.
        Err(_) => f(&mut [0; 4096]),
    })
}

/// A decoding error in words: input cut off (a truncated file or message) is the common case.
fn in_words(e: ciborium::de::Error<std::io::Error>) -> CborError {
    use ciborium::de::Error;
    CborError(match e {
        Error::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the input ends before the value does (an incomplete copy?)".to_string()
        }
        Error::Io(e) => e.to_string(),
        Error::Syntax(at) => format!("invalid encoding at byte {at}"),
        Error::Semantic(at, what) => match at {
            Some(at) => format!("{what} at byte {at}"),
            None => what,
        },
        Error::RecursionLimitExceeded => "nested too deeply".to_string(),
    })
}
