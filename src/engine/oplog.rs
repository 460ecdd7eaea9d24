//! The writer's op log: committed ops in commit order, appended without any lookup, sorted by
//! key hash and folded into one delta per key only when a flush turns them into a delta table.

use super::core::ALL_DONE;
use super::delta::Delta;
use crate::format::hash::key_hash;
use crate::format::wal::Op;
use crate::store::huge_pages;
use crate::{Key, Value};

const INSERT: u8 = 0;
const DELETE_PAIR: u8 = 1;
const DELETE_KEY: u8 = 2;

/// One op, packed without padding: key hash (big-endian, so bytes 0..24 order as (hash, key)),
/// key, value, op code. 41 bytes where a struct would take 48.
type Rec = [u8; REC];
const REC: usize = 41;

fn rec_hash(r: &Rec) -> u64 {
    u64::from_be_bytes(r[..8].try_into().expect("8 bytes"))
}

fn rec_key(r: &Rec) -> Key {
    r[8..24].try_into().expect("16 bytes")
}

fn rec_val(r: &Rec) -> Value {
    r[24..40].try_into().expect("16 bytes")
}

/// Ops a block holds: 43 MB, above glibc's largest mmap threshold (32 MiB), so each block is a
/// mapping of its own, and the sort gives each one back to the OS as soon as it has moved it.
/// (Small under test, so that the unit tests move many blocks.)
const BLOCK: usize = if cfg!(test) { 1 << 12 } else { 1 << 20 };

/// The counting sort's windows are at most 2^16, so that a full 1 GiB log's windows (500 ops)
/// sort fast (2^13 windows sort 45 % slower). Their write fronts touch at most one page
/// each (256 MiB) beyond the ops moved so far.
const WINDOW_BITS: u32 = 16;

/// Below this many ops a second thread costs more than it saves.
const PARALLEL_SORT: usize = 1 << 16;

/// Sorts each window `bounds[i]..bounds[i + 1]` of `recs` by (hash, key), stably; a large
/// sort's upper half on a second thread.
/// `done(i, n)` hears that `i` of the `n` windows of the lower half are sorted.
fn sort_windows(recs: &mut [Rec], bounds: &[usize], done: &dyn Fn(usize, usize)) {
    fn sort(part: &mut [Rec], bounds: &[usize], base: usize, done: &dyn Fn(usize, usize)) {
        let n = bounds.len() - 1;
        for (i, w) in bounds.windows(2).enumerate() {
            part[w[0] - base..w[1] - base].sort_by(|a, b| {
                (rec_hash(a).cmp(&rec_hash(b))).then_with(|| a[8..24].cmp(&b[8..24]))
            });
            if i % 256 == 0 {
                done(i, n);
            }
        }
    }
    let half = bounds.len() / 2;
    if recs.len() < PARALLEL_SORT || half == 0 {
        return sort(recs, bounds, 0, done);
    }
    let mid = bounds[half];
    let (lo, hi) = recs.split_at_mut(mid);
    let upper_sorted = std::thread::scope(|s| {
        let upper = std::thread::Builder::new()
            .name("hashdir-sort".to_owned())
            .spawn_scoped(s, || sort(hi, &bounds[half..], mid, &|_, _| {}));
        sort(lo, &bounds[..=half], 0, done);
        match upper.map(|h| h.join()) {
            Ok(Ok(())) => true,
            Ok(Err(p)) => std::panic::resume_unwind(p),
            Err(_) => false,
        }
    });
    if !upper_sorted {
        sort(hi, &bounds[half..], mid, &|_, _| {}); // no thread to be had: sort it here
    }
}

/// Committed ops in blocks, in commit order; after `sort`, in one buffer by (hash, key).
#[derive(Default)]
pub struct OpLog {
    blocks: Vec<Vec<Rec>>,
    /// Whole records: bytes, not `Vec<Rec>`, because only a zeroed byte vector is allocated
    /// without being written (the OS maps its pages in as the sort writes them).
    sorted: Vec<u8>,
    /// Ops by the leading `WINDOW_BITS` bits of their hash, counted as they come, so that the
    /// sort need not read them all once more to size its windows.
    counts: Vec<u32>,
}

impl OpLog {
    pub fn apply(&mut self, op: &Op) {
        let (key, val, code) = match *op {
            Op::Insert(k, v) => (k, v, INSERT),
            Op::DeletePair(k, v) => (k, v, DELETE_PAIR),
            Op::DeleteKey(k) => (k, [0; 16], DELETE_KEY),
        };
        let mut r: Rec = [0; REC];
        r[..8].copy_from_slice(&key_hash(&key).to_be_bytes());
        r[8..24].copy_from_slice(&key);
        r[24..40].copy_from_slice(&val);
        r[40] = code;
        if self.counts.is_empty() {
            self.counts = vec![0; 1 << WINDOW_BITS];
        }
        self.counts[(rec_hash(&r) >> (64 - WINDOW_BITS)) as usize] += 1;
        if self.blocks.last().is_none_or(|b| b.len() == BLOCK) {
            let mut block = Vec::with_capacity(BLOCK);
            huge_pages(&mut block);
            self.blocks.push(block);
        }
        self.blocks.last_mut().expect("pushed").push(r);
    }

    /// Orders the ops by (hash, key), keeping commit order within a key: a stable counting
    /// sort on the leading hash bits, then a stable sort of each (small) window. Once: a
    /// flush sorts a sealed log, then drops it (or, if it failed, recovery rebuilds it).
    ///
    /// The counting sort moves the ops block by block into a zeroed vector that the OS maps
    /// in only as it is written, and frees each block once moved, so the ops are held about
    /// once throughout, not twice.
    /// `progress` hears how far it has come, of `ALL_DONE`.
    pub fn sort(&mut self, progress: &dyn Fn(u32)) {
        debug_assert!(self.sorted.is_empty(), "sorted once");
        let blocks = std::mem::take(&mut self.blocks);
        let n: usize = blocks.iter().map(Vec::len).sum();
        let bits = (usize::BITS - (n / 16).leading_zeros()).min(WINDOW_BITS);
        // No bits (under 16 ops): one window.
        let window = |r: &Rec| rec_hash(r).checked_shr(64 - bits).unwrap_or(0) as usize;
        // The ops each window gets, from the counts `apply` kept at the finest windows.
        let mut starts = vec![0usize; (1 << bits) + 1];
        let fold = WINDOW_BITS - bits;
        for (w, c) in self.counts.iter().enumerate() {
            starts[(w >> fold) + 1] += *c as usize;
        }
        self.counts = Vec::new();
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let bounds = starts.clone();
        // Not on huge pages: the windows' write fronts would then make it all resident at once.
        let mut bytes = vec![0u8; n * REC];
        let out = bytes.as_chunks_mut::<REC>().0;
        let half = ALL_DONE as usize / 2;
        let blocks_n = blocks.len().max(1);
        for (i, block) in blocks.into_iter().enumerate() {
            for r in &block {
                let w = window(r);
                out[starts[w]] = *r;
                starts[w] += 1;
            }
            progress((half * (i + 1) / blocks_n) as u32);
        }
        sort_windows(out, &bounds, &|i, n| {
            progress((half + half * i / n.max(1)) as u32)
        });
        self.sorted = bytes;
    }

    /// How many ops it holds.
    pub fn len(&self) -> usize {
        self.blocks.iter().map(Vec::len).sum::<usize>() + self.recs().len()
    }

    fn recs(&self) -> &[Rec] {
        self.sorted.as_chunks::<REC>().0
    }

    /// The ops' key hashes, ascending once sorted.
    #[cfg(test)]
    pub fn hashes(&self) -> impl Iterator<Item = u64> + '_ {
        debug_assert!(self.blocks.is_empty(), "sorted first");
        self.recs().iter().map(rec_hash)
    }

    /// Each key's hash and how many ops it has, in (hash, key) order once sorted (to size a
    /// table).
    pub fn key_sizes(&self) -> impl Iterator<Item = (u64, usize)> + '_ {
        debug_assert!(self.blocks.is_empty(), "sorted first");
        let recs = self.recs();
        let mut at = 0;
        std::iter::from_fn(move || {
            let first = recs.get(at)?;
            let n = recs[at..]
                .iter()
                .take_while(|r| r[..24] == first[..24])
                .count();
            at += n;
            Some((rec_hash(first), n))
        })
    }

    /// Each key's ops folded into a delta, in (hash, key) order once sorted.
    pub fn deltas(&self) -> impl Iterator<Item = (u64, Key, Delta)> + '_ {
        debug_assert!(self.blocks.is_empty(), "sorted first");
        let recs = self.recs();
        debug_assert!(recs.is_sorted_by_key(|r| (rec_hash(r), rec_key(r))));
        let mut at = 0;
        std::iter::from_fn(move || {
            let first = recs.get(at)?;
            let (hash, key) = (rec_hash(first), rec_key(first));
            let mut d = Delta::default();
            while let Some(r) = (recs.get(at)).filter(|r| rec_hash(r) == hash && rec_key(r) == key)
            {
                match r[40] {
                    INSERT => d.insert(rec_val(r)),
                    DELETE_PAIR => d.delete_pair(rec_val(r)),
                    _ => d.delete_key(),
                }
                at += 1;
            }
            Some((hash, key, d))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Large enough for the radix pass, the two-thread sort and many blocks; few keys, so each
    /// has many ops whose commit order must survive the sort.
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
        log.sort(&|_| {});
        assert!(log.blocks.is_empty() && log.recs().len() == 200_000);
        let hashes: Vec<u64> = log.hashes().collect();
        assert!(hashes.is_sorted());
        let mut seen = 0;
        for (h, k, d) in log.deltas() {
            assert_eq!(h, key_hash(&k));
            let want = &model[&k];
            let base = [[0u8; 16], [2u8; 16]];
            let apply = |d: &Delta| crate::engine::sets::Change::of(d).apply(&base);
            assert_eq!(apply(&d), apply(want), "key {k:?}");
            seen += 1;
        }
        assert_eq!(seen, model.len());
    }

    /// Under 16 ops the sort has one window.
    #[test]
    fn a_few_ops_sort_too() {
        let mut log = OpLog::default();
        for i in (0..10u8).rev() {
            log.apply(&Op::Insert([i; 16], [i; 16]));
        }
        log.sort(&|_| {});
        let hashes: Vec<u64> = log.hashes().collect();
        assert!(hashes.is_sorted() && hashes.len() == 10);
    }
}
