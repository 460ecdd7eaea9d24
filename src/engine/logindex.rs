//! A pinned reader's overlay: where each key's ops lie in the log, not a copy of them. The
//! segments of a log a pinned root lists are not reused while the pin holds them (a log is
//! freed by a root, like any other space), so a reader keeps one 8-byte slot per key (32 hash
//! bits, position of the key's newest op) and, for an op that follows an earlier one of the
//! same key, that op's position — about 12 bytes per op where a copy takes over 40. A lookup
//! that hits reads the key's ops from the mapped log.

use super::delta::{Delta, KeyBuild, KeyMap};
use super::source::{Fault, Res};
use crate::format::hash::key_hash;
use crate::format::wal::Op;
use crate::Key;
use hashbrown::HashTable;
use std::cell::Cell;
use std::collections::HashMap;

/// Reads the op at a log position of the index's log.
pub trait OpAt {
    fn op_at(&self, pos: u32) -> Res<Op>;
}

/// Ops of one key a chain holds before its older ones are folded into one delta: a lookup
/// reads at most this many ops from the log, however hot the key.
const CHAIN: usize = 16;

#[derive(Clone, Default)]
pub struct LogIndex {
    /// Per key: `tag << 32 | position of its newest op`, the tag being the key hash's top 32
    /// bits (all a slot keeps of its key; the key itself is read from the log).
    slots: HashTable<u64>,
    /// An op's position → the position of the same key's previous op.
    prev: HashMap<u32, u32, KeyBuild>,
    /// Keys whose chains grew past `CHAIN`: their ops before the chain, composed.
    folded: KeyMap<Delta>,
}

fn tag(h: u64) -> u64 {
    h >> 32
}

/// The table hash of a tag: bucket from its low bits, control byte from its top ones.
fn spread(tag: u64) -> u64 {
    tag.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn rehash(s: &u64) -> u64 {
    spread(s >> 32)
}

/// Log reads inside a table probe, which cannot fail: the first fault is kept for after it.
struct Reads<'a, S> {
    src: &'a S,
    fault: Cell<Option<Fault>>,
}

impl<'a, S: OpAt> Reads<'a, S> {
    fn new(src: &'a S) -> Self {
        Reads {
            src,
            fault: Cell::new(None),
        }
    }

    fn op(&self, pos: u32) -> Option<Op> {
        match self.src.op_at(pos) {
            Ok(op) => Some(op),
            Err(f) => {
                self.fault.set(Some(f));
                None
            }
        }
    }

    fn key(&self, pos: u32) -> Option<Key> {
        self.op(pos).map(|op| *op.key())
    }

    fn done<T>(self, v: T) -> Res<T> {
        match self.fault.into_inner() {
            Some(f) => Err(f),
            None => Ok(v),
        }
    }
}

impl LogIndex {
    /// Keys indexed.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Positions of the key's chain whose newest op is at `newest`, newest first.
    fn chain(&self, newest: u32) -> Vec<u32> {
        let mut out = vec![newest];
        while let Some(p) = self.prev.get(out.last().expect("not empty")) {
            out.push(*p);
        }
        out
    }

    /// Folds all but the newest op of a chain longer than `CHAIN` into `folded`.
    fn trim(&mut self, key: &Key, newest: u32, src: &impl OpAt) -> Res<()> {
        let mut len = 1;
        let mut at = newest;
        while let Some(p) = self.prev.get(&at) {
            (at, len) = (*p, len + 1);
        }
        if len <= CHAIN {
            return Ok(());
        }
        let older = self.prev.remove(&newest).expect("a chain of several ops");
        self.fold(key, older, src)
    }

    /// Moves the chain from `newest` back into the key's folded delta.
    fn fold(&mut self, key: &Key, newest: u32, src: &impl OpAt) -> Res<()> {
        let chain = self.chain(newest);
        let mut d = self.folded.remove(key).unwrap_or_default();
        for pos in chain.iter().rev() {
            d.apply(&src.op_at(*pos)?);
            self.prev.remove(pos);
        }
        self.folded.insert(*key, d);
        Ok(())
    }

    /// Adds the op of `key` at `pos`, which follows every op indexed so far.
    pub fn add(&mut self, key: &Key, pos: u32, src: &impl OpAt) -> Res<()> {
        let t = tag(key_hash(key));
        let s = t << 32 | pos as u64;
        let reads = Reads::new(src);
        let slot = self.slots.find_mut(spread(t), |x| {
            x >> 32 == t && reads.key(*x as u32) == Some(*key)
        });
        let last = slot.map(|x| std::mem::replace(x, s) as u32);
        match reads.done(last)? {
            Some(last) => {
                self.prev.insert(pos, last);
                self.trim(key, pos, src)
            }
            None => {
                self.slots.insert_unique(spread(t), s, rehash);
                Ok(())
            }
        }
    }

    /// Adds every op of `later`, an index of the log after this one's.
    pub fn absorb(&mut self, later: &LogIndex, src: &impl OpAt) -> Res<()> {
        self.slots.reserve(later.slots.len(), rehash);
        self.prev.extend(later.prev.iter().map(|(a, b)| (*a, *b)));
        for &s in later.slots.iter() {
            let (t, newest) = (s >> 32, s as u32);
            let reads = Reads::new(src);
            let mut key = None;
            let mut key_of_later = || *key.get_or_insert_with(|| reads.key(newest));
            let slot = self.slots.find_mut(spread(t), |x| {
                x >> 32 == t && {
                    let k = key_of_later();
                    k.is_some() && reads.key(*x as u32) == k
                }
            });
            let mine = slot.map(|x| std::mem::replace(x, s) as u32);
            // Folded ops of `later` come before its chain: they need the key.
            let folded = match later.folded.is_empty() {
                true => None,
                false => key_of_later().and_then(|k| Some((k, later.folded.get(&k)?))),
            };
            let (mine, key) = reads.done((mine, key))?;
            match (mine, folded) {
                (None, None) => {
                    self.slots.insert_unique(spread(t), s, rehash);
                }
                (None, Some((k, d))) => {
                    self.slots.insert_unique(spread(t), s, rehash);
                    self.folded.insert(k, d.clone());
                }
                (Some(mine), Some((k, d))) => {
                    self.fold(&k, mine, src)?;
                    self.folded.get_mut(&k).expect("just folded").then(d);
                }
                (Some(mine), None) => {
                    let k = key.flatten().expect("read to find the slot");
                    let mut oldest = newest;
                    while let Some(p) = later.prev.get(&oldest) {
                        oldest = *p;
                    }
                    self.prev.insert(oldest, mine);
                    self.trim(&k, newest, src)?;
                }
            }
        }
        Ok(())
    }

    /// The key's ops composed into one delta, oldest first.
    pub fn get(&self, key: &Key, src: &impl OpAt) -> Res<Option<Delta>> {
        let t = tag(key_hash(key));
        let reads = Reads::new(src);
        let mut hit = None;
        let slot = self.slots.find(spread(t), |x| {
            x >> 32 == t && {
                hit = reads.op(*x as u32).filter(|op| op.key() == key);
                hit.is_some()
            }
        });
        let Some(newest) = reads.done(slot.map(|x| *x as u32))? else {
            return Ok(None);
        };
        let mut d = match self.folded.is_empty() {
            true => Delta::default(),
            false => self.folded.get(key).cloned().unwrap_or_default(),
        };
        match (self.prev.contains_key(&newest), hit) {
            (false, Some(op)) => d.apply(&op),
            _ => {
                for pos in self.chain(newest).into_iter().rev() {
                    d.apply(&src.op_at(pos)?);
                }
            }
        }
        Ok(Some(d))
    }

    /// Every key indexed.
    pub fn keys(&self, src: &impl OpAt) -> Res<Vec<Key>> {
        let slots = self.slots.iter();
        slots.map(|s| Ok(*src.op_at(*s as u32)?.key())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::delta::LogDeltas;
    use super::*;

    /// A log as a list of ops; an op's position is 32 + 33 × its index.
    struct Log(Vec<Op>);

    impl OpAt for Log {
        fn op_at(&self, pos: u32) -> Res<Op> {
            Ok(self.0[(pos as usize - 32) / 33])
        }
    }

    fn pos(i: usize) -> u32 {
        (32 + 33 * i) as u32
    }

    #[test]
    fn layers_compose_like_a_copied_tail() {
        let seed = 0x2545_f491_4f6c_dd1du64;
        println!("seed {seed:#x}");
        let mut next = crate::engine::xorshift(seed);
        // Few keys and values, so that chains, deletes and collisions of slots all happen.
        let ops: Vec<Op> = (0..20_000)
            .map(|_| {
                let (k, v) = ([(next() % 300) as u8; 16], [(next() % 5) as u8; 16]);
                match next() % 8 {
                    0 => Op::DeleteKey(k),
                    1 => Op::DeletePair(k, v),
                    _ => Op::Insert(k, v),
                }
            })
            .collect();
        let log = Log(ops.clone());
        let mut copy = LogDeltas::default();
        // Layers of uneven sizes: small ones hold short chains, the big one folds.
        let cuts = [500, 1000, 11_000, 12_000];
        let mut layers: Vec<LogIndex> = vec![LogIndex::default()];
        for (i, op) in ops.iter().enumerate() {
            copy.apply(op);
            if cuts.contains(&i) {
                layers.push(LogIndex::default());
            }
            layers
                .last_mut()
                .unwrap()
                .add(op.key(), pos(i), &log)
                .unwrap();
        }
        // Merged oldest first, and newest first (as a reader's compaction does).
        let mut forward = layers[0].clone();
        for l in &layers[1..] {
            forward.absorb(l, &log).unwrap();
        }
        let mut backward = layers.pop().unwrap();
        while let Some(mut older) = layers.pop() {
            older.absorb(&backward, &log).unwrap();
            backward = older;
        }
        for whole in [forward, backward] {
            check_like(&whole, &copy, &log);
        }
    }

    fn check_like(whole: &LogIndex, copy: &LogDeltas, log: &Log) {
        let base = [[0u8; 16], [1u8; 16], [7u8; 16]];
        let mut keys = whole.keys(log).unwrap();
        keys.sort();
        let mut want: Vec<Key> = copy.keys().copied().collect();
        want.sort();
        assert_eq!(keys, want);
        for k in (0..=255u8).map(|b| [b; 16]) {
            let got = whole.get(&k, log).unwrap();
            let exp = copy.get(&k);
            assert_eq!(got.is_some(), exp.is_some(), "key {k:?}");
            if let (Some(g), Some(e)) = (got, exp) {
                let apply = |d: &Delta| crate::engine::sets::Change::of(d).apply(&base);
                assert_eq!(apply(&g), apply(&e), "key {k:?}");
            }
        }
    }

    #[test]
    fn many_keys_are_found_and_absent_ones_are_not() {
        let key = |i: u64| {
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&i.to_le_bytes());
            k
        };
        let ops: Vec<Op> = (0..200_000)
            .map(|i| Op::Insert(key(i), key(i + 1)))
            .collect();
        let log = Log(ops.clone());
        let (mut a, mut b) = (LogIndex::default(), LogIndex::default());
        for (i, op) in ops.iter().enumerate() {
            let layer = if i < 150_000 { &mut a } else { &mut b };
            layer.add(op.key(), pos(i), &log).unwrap();
        }
        a.absorb(&b, &log).unwrap();
        assert_eq!(a.len(), 200_000);
        for i in 0..200_000 {
            let d = a.get(&key(i), &log).unwrap().expect("indexed key");
            assert_eq!(d.adds.to_vec(), vec![key(i + 1)]);
            assert!(a.get(&key(i + 1_000_000), &log).unwrap().is_none());
        }
    }
}
