//! Sharded stores: the routing rule, the manifest and the records of the set log. Bytes only.
//!
//! Manifest (`hashdir.shards`, 32 bytes, little-endian):
//! magic "HDSHARDS" | version u32 (1) | shards u32 | rule u32 (1 = `shard_of`) | reserved u32
//! (0) | reserved u32 (0) | crc32c u32 of bytes 0..28.
//!
//! Set log (`sets.log`): fixed-size records of `16 + 8 * shards` bytes:
//! crc32c u32 of bytes 4..len | kind u32 (1 = done, 2 = detach) | seq u64 | lsn u64 per shard.
//! A done record says set commit `seq` is whole: shard i holds the batches below LSN `lsn[i]`.
//! A detach record (seq = the shard's index) says a single-shard writer took over that shard:
//! its batches from then on are not part of any set commit.

use super::bytes::*;
use super::hash::fmix64;
use crate::Key;

pub const MANIFEST_LEN: usize = 32;
pub const MAGIC: [u8; 8] = *b"HDSHARDS";
pub const VERSION: u32 = 1;
/// The only routing rule: [`shard_of`].
pub const RULE_JUMP: u32 = 1;
/// Most shards a store may have.
pub const MAX_SHARDS: u32 = 4096;

/// The shard of `key` among `shards` (0 and 1 both mean one shard). Part of the format.
///
/// `h = fmix64(fmix64(lo ^ 0x6a09e667f3bcc908) ^ hi)` with `lo`/`hi` the key's bytes 0..8 and
/// 8..16 as little-endian u64 and `fmix64` murmur3's finaliser — a hash independent of the
/// directory's `key_hash` — then Lamping and Veach's jump consistent hash of `h`, so that going
/// from n to n + 1 shards moves only 1/(n + 1) of the keys.
pub fn shard_of(key: &Key, shards: u32) -> u32 {
    let lo = get_u64(key, 0);
    let hi = get_u64(key, 8);
    let mut h = fmix64(fmix64(lo ^ 0x6a09_e667_f3bc_c908) ^ hi);
    let (mut b, mut j) = (0i64, 0i64);
    while j < i64::from(shards.max(1)) {
        b = j;
        h = h.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((h >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

/// What a manifest says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub shards: u32,
}

impl Manifest {
    pub fn encode(&self) -> [u8; MANIFEST_LEN] {
        let mut b = [0u8; MANIFEST_LEN];
        b[..8].copy_from_slice(&MAGIC);
        put_u32(&mut b, 8, VERSION);
        put_u32(&mut b, 12, self.shards);
        put_u32(&mut b, 16, RULE_JUMP);
        let crc = crc32c::crc32c(&b[..28]);
        put_u32(&mut b, 28, crc);
        b
    }

    pub fn decode(b: &[u8]) -> Result<Manifest, String> {
        if b.len() != MANIFEST_LEN || b[..8] != MAGIC {
            return Err(format!(
                "not a shard manifest ({} bytes, magic {:?})",
                b.len(),
                String::from_utf8_lossy(&b[..b.len().min(8)])
            ));
        }
        if crc32c::crc32c(&b[..28]) != get_u32(b, 28) {
            return Err("manifest checksum mismatch".into());
        }
        let (version, shards, rule) = (get_u32(b, 8), get_u32(b, 12), get_u32(b, 16));
        if version != VERSION {
            return Err(format!(
                "manifest version {version}; this library reads {VERSION}"
            ));
        }
        if rule != RULE_JUMP {
            return Err(format!("unknown routing rule {rule}"));
        }
        if !(1..=MAX_SHARDS).contains(&shards) {
            return Err(format!("shard count {shards} outside 1..={MAX_SHARDS}"));
        }
        Ok(Manifest { shards })
    }
}

/// A record of the set log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetRecord {
    /// Set commit `seq` is in every shard: shard i holds the batches below LSN `lsns[i]`.
    Done { seq: u64, lsns: Vec<u64> },
    /// A single-shard writer took over `shard` when it held the batches below LSN `lsn`.
    Detach { shard: u32, lsn: u64 },
}

const DONE: u32 = 1;
const DETACH: u32 = 2;

pub fn record_len(shards: u32) -> usize {
    16 + 8 * shards as usize
}

impl SetRecord {
    pub fn encode(&self, shards: u32) -> Vec<u8> {
        let mut b = vec![0u8; record_len(shards)];
        match self {
            SetRecord::Done { seq, lsns } => {
                put_u32(&mut b, 4, DONE);
                put_u64(&mut b, 8, *seq);
                for (i, lsn) in lsns.iter().enumerate() {
                    put_u64(&mut b, 16 + 8 * i, *lsn);
                }
            }
            SetRecord::Detach { shard, lsn } => {
                put_u32(&mut b, 4, DETACH);
                put_u64(&mut b, 8, u64::from(*shard));
                put_u64(&mut b, 16 + 8 * *shard as usize, *lsn);
            }
        }
        let crc = crc32c::crc32c(&b[4..]);
        put_u32(&mut b, 0, crc);
        b
    }

    /// None for a record that is not whole (a torn append) or not valid for `shards`.
    pub fn decode(b: &[u8], shards: u32) -> Option<SetRecord> {
        if b.len() != record_len(shards) || crc32c::crc32c(&b[4..]) != get_u32(b, 0) {
            return None;
        }
        let seq = get_u64(b, 8);
        let lsn = |i: usize| get_u64(b, 16 + 8 * i);
        match get_u32(b, 4) {
            DONE => Some(SetRecord::Done {
                seq,
                lsns: (0..shards as usize).map(lsn).collect(),
            }),
            DETACH if seq < u64::from(shards) => Some(SetRecord::Detach {
                shard: seq as u32,
                lsn: lsn(seq as usize),
            }),
            _ => None,
        }
    }
}

/// The valid records at the start of a set log, and the byte length they take (what follows
/// is a torn append).
pub fn records(log: &[u8], shards: u32) -> (Vec<SetRecord>, usize) {
    let len = record_len(shards);
    let recs: Vec<SetRecord> = log
        .chunks_exact(len)
        .map_while(|c| SetRecord::decode(c, shards))
        .collect();
    let bytes = recs.len() * len;
    (recs, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> Key {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&i.to_le_bytes());
        k
    }

    #[test]
    fn routing_is_pinned() {
        // These values are the format: a change here moves keys between shards.
        let got: Vec<u32> = (0..8).map(|i| shard_of(&key(i), 7)).collect();
        assert_eq!(got, PINNED);
        assert_eq!(shard_of(&key(5), 0), 0);
        assert_eq!(shard_of(&key(5), 1), 0);
    }
    const PINNED: [u32; 8] = [0, 1, 5, 4, 5, 4, 1, 3];

    #[test]
    fn routing_spreads_and_moves_little() {
        let n = 100_000u64;
        let mut hits = [0u32; 4];
        let mut moved = 0;
        for i in 0..n {
            let s = shard_of(&key(i), 4);
            hits[s as usize] += 1;
            let t = shard_of(&key(i), 5);
            if t != s {
                assert_eq!(t, 4, "a key leaves its shard only for the new one");
                moved += 1;
            }
        }
        assert!(
            hits.iter().all(|h| (23_500..26_500).contains(h)),
            "{hits:?}"
        );
        assert!((18_000..22_000).contains(&moved), "{moved}");
    }

    #[test]
    fn routing_is_independent_of_directory_bits() {
        // Keys of one shard still spread over the directory's slots.
        let mut slots = [0u32; 16];
        for i in 0..64_000u64 {
            if shard_of(&key(i), 2) == 0 {
                let h = super::super::hash::key_hash(&key(i));
                slots[super::super::hash::dir_index(h, 4) as usize] += 1;
            }
        }
        assert!(
            slots.iter().all(|s| (1_700..2_300).contains(s)),
            "{slots:?}"
        );
    }

    #[test]
    fn manifest_round_trips_and_rejects_damage() {
        let m = Manifest { shards: 3 };
        let mut b = m.encode();
        assert_eq!(Manifest::decode(&b), Ok(m));
        b[12] = 4;
        assert_eq!(
            Manifest::decode(&b),
            Err("manifest checksum mismatch".to_string())
        );
        assert!(Manifest::decode(&b[..20]).is_err());
    }

    #[test]
    fn set_log_stops_at_a_torn_record() {
        let done = SetRecord::Done {
            seq: 9,
            lsns: vec![3, 4, 5],
        };
        let detach = SetRecord::Detach { shard: 1, lsn: 7 };
        let mut log = done.encode(3);
        log.extend(detach.encode(3));
        let whole = log.len();
        log.extend(&done.encode(3)[..20]);
        let (recs, bytes) = records(&log, 3);
        assert_eq!(recs, vec![done.clone(), detach]);
        assert_eq!(bytes, whole);
        log[whole - 1] ^= 1;
        assert_eq!(records(&log, 3).0, vec![done]);
    }
}
