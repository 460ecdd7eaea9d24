//! The writer's memtable: committed ops in commit order, appended without any lookup, sorted by
//! key hash and folded into one delta per key only when a checkpoint merges them.

use super::memtable::Delta;
use crate::format::hash::key_hash;
use crate::format::wal::Op;
use crate::{Key, Value};

const INSERT: u8 = 0;
const DELETE_PAIR: u8 = 1;
const DELETE_KEY: u8 = 2;

#[derive(Clone, Copy)]
struct Rec {
    hash: u64,
    key: Key,
    val: Value,
    op: u8,
}

/// Below this many ops a second thread costs more than it saves.
const PARALLEL_SORT: usize = 1 << 16;

/// Sorts each window `bounds[i]..bounds[i + 1]` of `recs`; a large sort's upper half on a
/// second thread (the checkpoint's other threads are idle while it runs).
fn sort_windows(recs: &mut [Rec], bounds: &[usize]) {
    fn sort(part: &mut [Rec], bounds: &[usize], base: usize) {
        for w in bounds.windows(2) {
            part[w[0] - base..w[1] - base].sort_by_key(|r| (r.hash, r.key));
        }
    }
    let half = bounds.len() / 2;
    if recs.len() < PARALLEL_SORT || half == 0 {
        return sort(recs, bounds, 0);
    }
    let mid = bounds[half];
    let (lo, hi) = recs.split_at_mut(mid);
    let upper_sorted = std::thread::scope(|s| {
        let upper = std::thread::Builder::new()
            .name("hashdir-sort".to_owned())
            .spawn_scoped(s, || sort(hi, &bounds[half..], mid));
        sort(lo, &bounds[..=half], 0);
        match upper.map(|h| h.join()) {
            Ok(Ok(())) => true,
            Ok(Err(p)) => std::panic::resume_unwind(p),
            Err(_) => false,
        }
    });
    if !upper_sorted {
        sort(hi, &bounds[half..], mid); // no thread to be had: sort it here
    }
}

#[derive(Default)]
pub struct OpLog {
    recs: Vec<Rec>,
}

impl OpLog {
    pub fn apply(&mut self, op: &Op) {
        let (key, val, op) = match *op {
            Op::Insert(k, v) => (k, v, INSERT),
            Op::DeletePair(k, v) => (k, v, DELETE_PAIR),
            Op::DeleteKey(k) => (k, [0; 16], DELETE_KEY),
        };
        self.recs.push(Rec {
            hash: key_hash(&key),
            key,
            val,
            op,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    pub fn clear(&mut self) {
        self.recs = Vec::new();
    }

    /// Orders the ops by (hash, key), keeping commit order within a key: a stable counting
    /// sort on the leading hash bits, then a stable sort of each (small) bucket.
    pub fn sort(&mut self) {
        let n = self.recs.len();
        let bits = (usize::BITS - (n / 16).leading_zeros()).min(16);
        if bits == 0 {
            self.recs.sort_by_key(|r| (r.hash, r.key));
            return;
        }
        let shift = 64 - bits;
        let mut starts = vec![0usize; (1 << bits) + 1];
        for r in &self.recs {
            starts[(r.hash >> shift) as usize + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let bounds = starts.clone();
        // Every slot is overwritten below; the clone only sizes the vector without unsafe.
        let mut out = self.recs.clone();
        for r in &self.recs {
            let b = (r.hash >> shift) as usize;
            out[starts[b]] = *r;
            starts[b] += 1;
        }
        sort_windows(&mut out, &bounds);
        self.recs = out;
    }

    /// The ops' key hashes, ascending once sorted.
    pub fn hashes(&self) -> impl Iterator<Item = u64> + '_ {
        self.recs.iter().map(|r| r.hash)
    }

    /// Each key's ops folded into a delta, in (hash, key) order once sorted.
    pub fn deltas(&self) -> impl Iterator<Item = (u64, Key, Delta)> + '_ {
        debug_assert!(self.recs.is_sorted_by_key(|r| (r.hash, r.key)));
        let mut at = 0;
        let recs = &self.recs;
        std::iter::from_fn(move || {
            let first = recs.get(at)?;
            let mut d = Delta::default();
            while let Some(r) = recs
                .get(at)
                .filter(|r| r.hash == first.hash && r.key == first.key)
            {
                match r.op {
                    INSERT => d.insert(r.val),
                    DELETE_PAIR => d.delete_pair(r.val),
                    _ => d.delete_key(),
                }
                at += 1;
            }
            Some((first.hash, first.key, d))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Large enough for the radix pass and the two-thread sort; few keys, so each has many
    /// ops whose commit order must survive the sort.
    #[test]
    fn sorted_deltas_keep_commit_order_within_a_key() {
        let seed = 0x5851_f42d_4c95_7f2du64;
        println!("seed {seed:#x}");
        let mut next = crate::engine::xorshift(seed);
        let mut log = OpLog::default();
        let mut model: HashMap<Key, Delta> = HashMap::new();
        for _ in 0..200_000 {
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&(next() % 5000).to_le_bytes());
            let v = [(next() % 4) as u8; 16];
            let op = match next() % 7 {
                0 => Op::DeleteKey(k),
                1 => Op::DeletePair(k, v),
                _ => Op::Insert(k, v),
            };
            log.apply(&op);
            model.entry(k).or_default().apply(&op);
        }
        log.sort();
        let hashes: Vec<u64> = log.hashes().collect();
        assert!(hashes.is_sorted());
        let mut seen = 0;
        for (h, k, d) in log.deltas() {
            assert_eq!(h, key_hash(&k));
            let want = &model[&k];
            let base = [[0u8; 16], [2u8; 16]];
            let (mut a, mut b) = (d.resolve(&base), want.resolve(&base));
            a.sort();
            b.sort();
            assert_eq!(a, b, "key {k:?}");
            seen += 1;
        }
        assert_eq!(seen, model.len());
    }
}
