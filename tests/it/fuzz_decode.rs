//! A bounded fuzz run of everything a received message goes through: frame decoding, the
//! authentication check, part assembly and body decoding. Valid messages (random Deltas and
//! resync answers, signed and unsigned) are mutated — bytes flipped, cut, duplicated, spliced —
//! and fed to the decoder, which must never panic, never accept an unauthenticated or
//! tampered message when a key is set, and only ever hand out normalised paths with matching
//! hashes. Half the contents compress, so compressed frames (format version 2) are mutated
//! too. Runs for GSCLUSTER_FUZZ_SECS seconds (default 10) and prints how many inputs it tried.

use gscluster::datadir::normalize;
use gscluster::delta::{self, Assembled, Assembler, Change, Delta, Op};
use gscluster::hlc::Version;
use gscluster::security::Auth;
use gscluster::update_sequence::Merged;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

/// xorshift64*: fast, deterministic from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SEGMENTS: &[&str] = &[
    "workspaces",
    "styles",
    "ws",
    "..",
    ".",
    "",
    "a b",
    "é",
    "x\\y",
    "C:",
    "layer.xml",
    "/",
];

fn random_delta(rng: &mut Rng) -> Delta {
    let n = rng.below(6);
    let changes = (0..n)
        .map(|_| {
            let depth = 1 + rng.below(4);
            let path: Vec<&str> = (0..depth)
                .map(|_| SEGMENTS[rng.below(SEGMENTS.len())])
                .collect();
            let size = [0, 10, 1000, 5000, 300_000][rng.below(5).min(rng.below(5))];
            // Half of them XML-like, which travels compressed (docs/wire-format.md).
            let bytes: Vec<u8> = if rng.below(2) == 0 {
                let line = format!("<entry key=\"{}\">value</entry>\n", rng.below(50));
                line.bytes().cycle().take(size).collect()
            } else {
                (0..size).map(|_| rng.next() as u8).collect()
            };
            Change {
                path: path.join("/"),
                version: Version::new(rng.next(), "gs-a"),
                op: if rng.below(4) == 0 {
                    Op::Delete
                } else {
                    Op::write(bytes)
                },
                merged: (rng.below(8) == 0).then(|| Merged {
                    settings: Version::new(0, "gs-a"),
                    counter: rng.next(),
                }),
            }
        })
        .collect();
    Delta {
        group: "g".into(),
        origin: "gs-a".into(),
        epoch: rng.next(),
        seq: 1 + rng.below(1000) as u64,
        changes,
        dangling: vec![],
    }
}

fn mutate(rng: &mut Rng, msg: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..1 + rng.below(4) {
        if msg.is_empty() {
            msg.push(rng.next() as u8);
            continue;
        }
        let at = rng.below(msg.len());
        match rng.below(6) {
            0 => msg[at] ^= 1 << rng.below(8),
            1 => msg[at] = rng.next() as u8,
            2 => msg.truncate(at),
            3 => {
                let len = rng.below(64).min(msg.len() - at);
                let chunk = msg[at..at + len].to_vec();
                msg.splice(at..at, chunk);
            }
            4 => {
                let from = rng.below(other.len().max(1));
                let len = rng.below(64).min(other.len().saturating_sub(from));
                msg.splice(at..at, other[from..from + len].iter().copied());
            }
            _ => msg.insert(at, [0xff, 0x00, 0x1b, 0x5b, 0x7f][rng.below(5)]),
        }
    }
}

/// Whatever the decoder accepted must satisfy what the slave relies on.
fn check_accepted(d: &Delta) {
    for c in &d.changes {
        assert_eq!(
            normalize(&c.path).as_deref(),
            Ok(c.path.as_str()),
            "accepted a bad path"
        );
        if let Op::Write { bytes, sha256 } = &c.op {
            assert_eq!(
                Sha256::digest(bytes).as_slice(),
                sha256.as_slice(),
                "accepted a bad hash"
            );
        }
    }
}

#[test]
fn decoder_survives_mutated_messages_and_accepts_only_what_is_safe() {
    let secs: u64 = std::env::var("GSCLUSTER_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let seed = std::env::var("GSCLUSTER_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("fuzz seed {seed} (GSCLUSTER_FUZZ_SEED={seed} repeats this run) for {secs} s");
    let mut rng = Rng(seed);
    let key = Auth::with_keys(vec![9; 32], vec![]);
    let none = Auth::none();
    let end = Instant::now() + Duration::from_secs(secs);
    let (mut runs, mut accepted, mut verified) = (0u64, 0u64, 0u64);
    let mut previous: Vec<u8> = Vec::new();
    while Instant::now() < end {
        let d = random_delta(&mut rng);
        let signed = rng.below(2) == 0;
        let auth = if signed { &key } else { &none };
        let mut parts = delta::encode(&d, auth);
        // What was really signed: (index, body) of every part of a signed message.
        let genuine: Vec<(u32, Vec<u8>)> = if signed {
            parts
                .iter()
                .map(|p| delta::decode_part(p, "g", &key).expect("own message"))
                .map(|p| (p.index, p.body))
                .collect()
        } else {
            Vec::new()
        };
        let mutated = rng.below(8) != 0;
        if mutated {
            let i = rng.below(parts.len());
            mutate(&mut rng, &mut parts[i], &previous);
        }
        if rng.below(10) == 0 {
            parts.reverse();
        }
        previous = parts[0].clone();
        // Decode with the key (a protected node) and without (an open one).
        for (verifier, protected) in [(&key, true), (&none, false)] {
            let mut asm = Assembler::default();
            for p in &parts {
                runs += 1;
                let Ok(part) = delta::decode_part(p, "g", verifier) else {
                    continue;
                };
                if protected {
                    // A part that passed the key check must be one that was really signed.
                    let really = genuine.iter().any(|(i, b)| {
                        *i == part.index
                            && *b == part.body
                            && part.epoch == d.epoch
                            && part.seq == d.seq
                    });
                    assert!(
                        really,
                        "a forged or altered part passed the key check (seed {seed})"
                    );
                    verified += 1;
                }
                if let Ok(Assembled::Complete(h, body)) = asm.push(part) {
                    if let Ok(got) = delta::decode_body(&h, &body) {
                        accepted += 1;
                        check_accepted(&got);
                    }
                }
            }
        }
    }
    println!("fuzz: {runs} decodes, {verified} parts passed the key check (all genuine), {accepted} deltas accepted (all with safe paths and matching hashes)");
    assert!(runs > 1000, "the fuzz loop barely ran");
}
