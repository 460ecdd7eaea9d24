//! Everything committed since the last checkpoint, per key, as a delta over the checkpointed
//! state: final(k) = (cleared ? ∅ : base(k)) − dels ∪ adds, with adds and dels disjoint.

use crate::format::hash::key_hash;
use crate::format::wal::Op;
use crate::{Key, Value};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};

/// Hashes keys and values with the format's key hash (already well mixed; no SipHash cost).
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
    pub fn len(&self) -> usize {
        match self {
            ValSet::Empty => 0,
            ValSet::One(_) => 1,
            ValSet::Small(v) => v.len(),
            ValSet::Big(s) => s.len(),
        }
    }

    pub fn contains(&self, v: &Value) -> bool {
        match self {
            ValSet::Empty => false,
            ValSet::One(x) => x == v,
            ValSet::Small(s) => s.contains(v),
            ValSet::Big(s) => s.contains(v),
        }
    }

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

    pub fn iter(&self) -> Box<dyn Iterator<Item = &Value> + '_> {
        match self {
            ValSet::Empty => Box::new(std::iter::empty()),
            ValSet::One(x) => Box::new(std::iter::once(x)),
            ValSet::Small(s) => Box::new(s.iter()),
            ValSet::Big(s) => Box::new(s.iter()),
        }
    }

    pub fn first(&self) -> Option<Value> {
        match self {
            ValSet::Empty => None,
            ValSet::One(x) => Some(*x),
            _ => self.iter().next().copied(),
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
    /// The key was deleted: the checkpointed values no longer count.
    pub cleared: bool,
    pub adds: ValSet,
    pub dels: ValSet,
}

impl Delta {
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

    /// The final set given the checkpointed one; `base` must be duplicate-free.
    pub fn resolve(&self, base: &[Value]) -> Vec<Value> {
        if base.is_empty() || self.cleared {
            return self.adds.to_vec();
        }
        let mut out: Vec<Value> = if self.cleared {
            Vec::new()
        } else {
            base.iter()
                .filter(|v| !self.dels.contains(v))
                .copied()
                .collect()
        };
        let fresh: Vec<Value> = if self.cleared || self.adds.len() * base.len() <= 4096 {
            self.adds
                .iter()
                .filter(|v| self.cleared || !base.contains(v))
                .copied()
                .collect()
        } else {
            let have: ValueHashSet = base.iter().copied().collect();
            self.adds
                .iter()
                .filter(|v| !have.contains(*v))
                .copied()
                .collect()
        };
        out.extend(fresh);
        out
    }
}

/// The writer's memtable (and a reader's copy of a WAL tail).
#[derive(Clone, Default)]
pub struct Memtable {
    map: KeyMap<Delta>,
}

impl Memtable {
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Insert(k, v) => self.map.entry(*k).or_default().insert(*v),
            Op::DeletePair(k, v) => self.map.entry(*k).or_default().delete_pair(*v),
            Op::DeleteKey(k) => self.map.entry(*k).or_default().delete_key(),
        }
    }

    /// Applies every delta of `later` on top of this table.
    pub fn absorb(&mut self, later: &Memtable) {
        for (k, d) in &later.map {
            self.map.entry(*k).or_default().then(d);
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.map.keys()
    }

    pub fn get(&self, k: &Key) -> Option<&Delta> {
        self.map.get(k)
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

    #[test]
    fn ops_compose_like_the_model() {
        let (a, b, c) = ([1u8; 16], [2u8; 16], [3u8; 16]);
        let mut d = Delta::default();
        d.insert(a);
        d.delete_pair(b);
        assert_eq!(set(&d.resolve(&[b, c])), set(&[a, c]));
        d.delete_key();
        d.insert(c);
        assert_eq!(d.resolve(&[a, b]), vec![c]);
        let mut e = Delta::default();
        e.delete_pair(c);
        let mut f = d.clone();
        f.then(&e);
        assert!(f.resolve(&[a]).is_empty());
    }

    #[test]
    fn big_sets_switch_representation() {
        let mut s = ValSet::default();
        for i in 0..100u8 {
            s.insert([i; 16]);
            s.insert([i; 16]);
        }
        assert_eq!(s.len(), 100);
        assert!(matches!(s, ValSet::Big(_)));
        s.remove(&[5; 16]);
        assert!(!s.contains(&[5; 16]));
    }
}
