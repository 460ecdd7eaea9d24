//! The ops of a range of a log, per key, as a delta over the state before them:
//! final(k) = (cleared ? ∅ : before(k)) − dels ∪ adds, with adds and dels disjoint.

use crate::format::hash::key_hash;
use crate::format::wal::Op;
use crate::{Key, Value};
use std::borrow::Cow;
use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};

/// Hashes keys and values with the format's key hash (already well mixed; no SipHash cost),
/// and log positions with one multiply.
#[derive(Clone, Copy, Default)]
pub struct KeyBuild;

pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Keys and values are [u8; 16]: std hashes them as one 16-byte write.
        if let Ok(k) = <&[u8; 16]>::try_from(bytes) {
            self.0 = key_hash(k);
        } else {
            for chunk in bytes.chunks(16) {
                let mut k = [0u8; 16];
                k[..chunk.len()].copy_from_slice(chunk);
                self.0 = key_hash(&k) ^ self.0.rotate_left(5);
            }
        }
    }
    fn write_u32(&mut self, n: u32) {
        // Log positions in a reader's index of its log.
        self.0 = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_usize(&mut self, _: usize) {
        // The length prefix std writes for slices carries no information for fixed arrays.
    }
}

impl BuildHasher for KeyBuild {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

pub type KeyMap<V> = HashMap<Key, V, KeyBuild>;
pub type ValueHashSet = HashSet<Value, KeyBuild>;

/// One value without allocating (the common case), small sets as a vector, large ones hashed.
#[derive(Clone, Debug, Default)]
pub enum ValSet {
    #[default]
    Empty,
    One(Value),
    Small(Vec<Value>),
    /// Boxed: a hash set is twice a vector's size, and every delta of every reader's overlay
    /// pays for the largest variant twice (adds and dels).
    Big(Box<ValueHashSet>),
}

const _: () = assert!(std::mem::size_of::<ValSet>() <= 32);

const SMALL_MAX: usize = 16;

impl ValSet {
    pub fn insert(&mut self, v: Value) {
        match self {
            ValSet::Empty => *self = ValSet::One(v),
            ValSet::One(x) if *x == v => {}
            ValSet::One(x) => *self = ValSet::Small(vec![*x, v]),
            ValSet::Small(s) if s.contains(&v) => {}
            ValSet::Small(s) if s.len() < SMALL_MAX => s.push(v),
            ValSet::Small(s) => {
                let mut big: ValueHashSet = s.drain(..).collect();
                big.insert(v);
                *self = ValSet::Big(Box::new(big));
            }
            ValSet::Big(s) => {
                s.insert(v);
            }
        }
    }

    pub fn remove(&mut self, v: &Value) {
        match self {
            ValSet::Empty => {}
            ValSet::One(x) if x == v => *self = ValSet::Empty,
            ValSet::One(_) => {}
            ValSet::Small(s) => s.retain(|x| x != v),
            ValSet::Big(s) => {
                s.remove(v);
            }
        }
    }

    pub fn len(&self) -> usize {
        match self {
            ValSet::Empty => 0,
            ValSet::One(_) => 1,
            ValSet::Small(s) => s.len(),
            ValSet::Big(s) => s.len(),
        }
    }

    pub fn iter(&self) -> Box<dyn Iterator<Item = &Value> + '_> {
        match self {
            ValSet::Empty => Box::new(std::iter::empty()),
            ValSet::One(x) => Box::new(std::iter::once(x)),
            ValSet::Small(s) => Box::new(s.iter()),
            ValSet::Big(s) => Box::new(s.iter()),
        }
    }

    pub fn to_vec(&self) -> Vec<Value> {
        match self {
            ValSet::Empty => Vec::new(),
            ValSet::One(x) => vec![*x],
            ValSet::Small(s) => s.clone(),
            ValSet::Big(s) => s.iter().copied().collect(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Delta {
    /// The key was deleted: the values it had before the delta no longer count.
    pub cleared: bool,
    pub adds: ValSet,
    pub dels: ValSet,
}

impl Delta {
    /// The delta of inserting `v` alone.
    pub fn added(v: Value) -> Delta {
        Delta {
            cleared: false,
            adds: ValSet::One(v),
            dels: ValSet::Empty,
        }
    }

    pub fn insert(&mut self, v: Value) {
        self.dels.remove(&v);
        self.adds.insert(v);
    }

    pub fn delete_pair(&mut self, v: Value) {
        self.adds.remove(&v);
        if !self.cleared {
            self.dels.insert(v);
        }
    }

    pub fn delete_key(&mut self) {
        *self = Delta {
            cleared: true,
            ..Delta::default()
        };
    }

    /// Applies one op of this delta's key.
    pub fn apply(&mut self, op: &Op) {
        match *op {
            Op::Insert(_, v) => self.insert(v),
            Op::DeletePair(_, v) => self.delete_pair(v),
            Op::DeleteKey(_) => self.delete_key(),
        }
    }

    /// Applies `later` on top of this delta, as if its ops had been applied here.
    pub fn then(&mut self, later: &Delta) {
        if later.cleared {
            self.delete_key();
        }
        for v in later.dels.iter() {
            self.delete_pair(*v);
        }
        for v in later.adds.iter() {
            self.insert(*v);
        }
    }
}

/// A key's delta as a layer holds it. Most keys of a log tail only get values inserted, most
/// of them one: that case is kept in 16 bytes instead of a `Delta`'s 72, which halves a
/// reader's memory for its overlay.
#[derive(Clone, Debug)]
enum Slim {
    /// Only this value was inserted.
    Added(Value),
    Full(Box<Delta>),
}

impl Slim {
    fn empty() -> Slim {
        Slim::Full(Box::default())
    }

    fn insert(&mut self, v: Value) {
        match self {
            Slim::Added(x) if *x == v => {}
            _ => self.full().insert(v),
        }
    }

    /// The delta, turned into a full one first if it is not.
    fn full(&mut self) -> &mut Delta {
        if let Slim::Added(v) = *self {
            *self = Slim::Full(Box::new(Delta::added(v)));
        }
        match self {
            Slim::Full(d) => d,
            Slim::Added(_) => unreachable!("made full above"),
        }
    }

    fn delta(&self) -> Cow<'_, Delta> {
        match self {
            Slim::Added(v) => Cow::Owned(Delta::added(*v)),
            Slim::Full(d) => Cow::Borrowed(d),
        }
    }
}

/// A reader's copy of a WAL tail: each key's delta.
#[derive(Clone, Default)]
pub struct LogDeltas {
    map: KeyMap<Slim>,
}

impl LogDeltas {
    pub fn apply(&mut self, op: &Op) {
        match *op {
            Op::Insert(k, v) => match self.map.entry(k) {
                MapEntry::Vacant(e) => {
                    e.insert(Slim::Added(v));
                }
                MapEntry::Occupied(mut e) => e.get_mut().insert(v),
            },
            Op::DeletePair(k, _) | Op::DeleteKey(k) => self.slot(k).full().apply(op),
        }
    }

    fn slot(&mut self, k: Key) -> &mut Slim {
        self.map.entry(k).or_insert_with(Slim::empty)
    }

    /// Applies every delta of `later` on top of these.
    pub fn absorb(&mut self, later: &LogDeltas) {
        for (k, s) in &later.map {
            match (self.map.entry(*k), s) {
                (MapEntry::Vacant(e), s) => {
                    e.insert(s.clone());
                }
                (MapEntry::Occupied(mut e), Slim::Added(v)) => e.get_mut().insert(*v),
                (MapEntry::Occupied(mut e), Slim::Full(d)) => e.get_mut().full().then(d),
            }
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.map.keys()
    }

    pub fn get(&self, k: &Key) -> Option<Cow<'_, Delta>> {
        self.map.get(k).map(Slim::delta)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[Value]) -> Vec<Value> {
        let mut v = v.to_vec();
        v.sort();
        v
    }

    /// The set after `d`, given the set before.
    fn resolve(d: &Delta, base: &[Value]) -> Vec<Value> {
        crate::engine::sets::Change::of(d).apply(&set(base))
    }

    #[test]
    fn ops_compose_like_the_model() {
        let (a, b, c) = ([1u8; 16], [2u8; 16], [3u8; 16]);
        let mut d = Delta::default();
        d.insert(a);
        d.delete_pair(b);
        assert_eq!(set(&resolve(&d, &[b, c])), set(&[a, c]));
        d.delete_key();
        d.insert(c);
        assert_eq!(resolve(&d, &[a, b]), vec![c]);
        let mut e = Delta::default();
        e.delete_pair(c);
        let mut f = d.clone();
        f.then(&e);
        assert!(resolve(&f, &[a]).is_empty());
    }

    #[test]
    fn slim_layers_compose_like_full_deltas() {
        // Few keys and values, so that every change between the slim and full forms happens.
        let seed = 0x9e37_79b9_7f4a_7c15u64;
        println!("seed {seed:#x}");
        let mut next = crate::engine::xorshift(seed);
        let (mut older, mut newer, mut whole) = (
            LogDeltas::default(),
            LogDeltas::default(),
            LogDeltas::default(),
        );
        let mut model: HashMap<Key, Delta> = HashMap::new();
        for i in 0..4000 {
            let (k, v) = ([(next() % 8) as u8; 16], [(next() % 4) as u8; 16]);
            let d = model.entry(k).or_default();
            let op = match next() % 6 {
                0 => Op::DeleteKey(k),
                1 => Op::DeletePair(k, v),
                _ => Op::Insert(k, v),
            };
            match op {
                Op::DeleteKey(_) => d.delete_key(),
                Op::DeletePair(_, v) => d.delete_pair(v),
                Op::Insert(_, v) => d.insert(v),
            }
            let layer = if i < 2000 { &mut older } else { &mut newer };
            layer.apply(&op);
            whole.apply(&op);
        }
        older.absorb(&newer);
        let base = [[0u8; 16], [1u8; 16]];
        for (k, want) in &model {
            let want = resolve(want, &base);
            for t in [&older, &whole] {
                assert_eq!(resolve(&t.get(k).unwrap(), &base), want, "key {k:?}");
            }
        }
    }

    #[test]
    fn big_sets_switch_representation() {
        let mut s = ValSet::default();
        for i in 0..100u8 {
            s.insert([i; 16]);
            s.insert([i; 16]);
        }
        assert_eq!(s.to_vec().len(), 100);
        assert!(matches!(s, ValSet::Big(_)));
        s.remove(&[5; 16]);
        assert!(!s.to_vec().contains(&[5; 16]));
    }
}
