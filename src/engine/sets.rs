//! Value sets as ascending, duplicate-free vectors (how tables store them), and the changes a
//! delta table holds, applied by linear merges.

use super::delta::Delta;
use crate::Value;

/// A change to a key's set, with both lists ascending and disjoint: the earlier values are
/// dropped first when `cleared`, then `dels` removed and `adds` added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub cleared: bool,
    pub adds: Vec<Value>,
    pub dels: Vec<Value>,
}

/// A change whose lists are borrowed.
#[derive(Clone, Copy, Debug)]
pub struct ChangeRef<'a> {
    pub cleared: bool,
    pub adds: &'a [Value],
    pub dels: &'a [Value],
}

impl ChangeRef<'_> {
    /// Whether it only adds values.
    pub fn is_adds_only(&self) -> bool {
        !self.cleared && self.dels.is_empty()
    }
}

impl Change {
    /// A writer's or reader's delta, sorted.
    pub fn of(d: &Delta) -> Change {
        let mut adds = d.adds.to_vec();
        let mut dels = if d.cleared {
            Vec::new()
        } else {
            d.dels.to_vec()
        };
        adds.sort_unstable();
        dels.sort_unstable();
        Change {
            cleared: d.cleared,
            adds,
            dels,
        }
    }

    pub fn as_ref(&self) -> ChangeRef<'_> {
        ChangeRef {
            cleared: self.cleared,
            adds: &self.adds,
            dels: &self.dels,
        }
    }

    /// `self` followed by `later`, as one change.
    #[cfg(test)]
    pub fn then(&self, later: &Change) -> Change {
        if later.cleared {
            return later.clone();
        }
        // Values `later` deletes are gone from what `self` adds (and, unless `self` dropped
        // the earlier values, from those too); what it adds is no longer deleted.
        let adds = union(&minus(&self.adds, &later.dels), &later.adds);
        let dels = match self.cleared {
            true => Vec::new(),
            false => union(&minus(&self.dels, &later.adds), &later.dels),
        };
        Change {
            cleared: self.cleared,
            adds,
            dels,
        }
    }

    /// The set after this change, given the set before (ascending, duplicate-free).
    pub fn apply(&self, base: &[Value]) -> Vec<Value> {
        if self.cleared || base.is_empty() {
            return self.adds.clone();
        }
        if self.dels.is_empty() {
            return union(base, &self.adds);
        }
        union(&minus(base, &self.dels), &self.adds)
    }
}

/// Values compared as big-endian 128-bit numbers: the order of their bytes, in two word
/// compares instead of a `memcmp` call.
#[inline]
pub fn num(v: &Value) -> u128 {
    u128::from_be_bytes(*v)
}

/// The ascending union of two ascending, duplicate-free lists.
pub fn union(a: &[Value], b: &[Value]) -> Vec<Value> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    union_into(a, b, &mut out);
    out
}

/// Appends the ascending union of `a` and `b` to `out`.
pub fn union_into(a: &[Value], b: &[Value], out: &mut Vec<Value>) {
    out.reserve(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (num(&a[i]), num(&b[j]));
        out.push(if x <= y { a[i] } else { b[j] });
        i += (x <= y) as usize;
        j += (y <= x) as usize;
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
}

/// The values of ascending `a` that ascending `b` lacks.
pub fn minus(a: &[Value], b: &[Value]) -> Vec<Value> {
    let mut out = a.to_vec();
    remove_all(&mut out, b);
    out
}

/// Removes from ascending `a` the values of ascending `b`.
fn remove_all(a: &mut Vec<Value>, b: &[Value]) {
    if b.is_empty() {
        return;
    }
    let mut j = 0;
    a.retain(|v| {
        while j < b.len() && num(&b[j]) < num(v) {
            j += 1;
        }
        j >= b.len() || b[j] != *v
    });
}

/// Folds a key's set and the changes after it, oldest first, into the key's set, keeping its
/// buffers from key to key. Runs of changes that only add are gathered and merged with the set
/// once, so the k delta tables of a merge cost one pass over a large set, not k.
#[derive(Default)]
pub struct Fold {
    set: Vec<Value>,
    adds: Vec<Value>,
    tmp: Vec<Value>,
}

impl Fold {
    /// Starts a key with no values.
    pub fn clear(&mut self) {
        self.set.clear();
        self.adds.clear();
    }

    /// The buffer a set is read into: the key's set from then on.
    pub fn set_mut(&mut self) -> &mut Vec<Value> {
        self.adds.clear();
        &mut self.set
    }

    /// Applies a change: earlier values dropped when `cleared`, `dels` removed, `adds` added.
    pub fn change(&mut self, cleared: bool, adds: &[Value], dels: &[Value]) {
        if cleared {
            self.clear();
        }
        if !dels.is_empty() {
            self.settle();
            remove_all(&mut self.set, dels);
        }
        self.adds.extend_from_slice(adds);
    }

    /// The key's set after every change.
    pub fn finish(&mut self) -> &[Value] {
        self.settle();
        &self.set
    }

    fn settle(&mut self) {
        if self.adds.is_empty() {
            return;
        }
        self.adds.sort_unstable_by_key(num);
        self.adds.dedup();
        self.tmp.clear();
        union_into(&self.set, &self.adds, &mut self.tmp);
        std::mem::swap(&mut self.set, &mut self.tmp);
        self.adds.clear();
    }
}

/// Whether a list is ascending without duplicates.
pub fn is_set(v: &[Value]) -> bool {
    v.windows(2).all(|w| num(&w[0]) < num(&w[1]))
}

/// Composes the changes of one key in several delta tables, oldest first, into the one
/// change they make together (for merging delta tables into one): what a change deletes is
/// no longer added, what it adds is no longer deleted, and one that drops the earlier values
/// drops every change before it.
#[derive(Default)]
pub struct Compose {
    cleared: bool,
    adds: Fold,
    dels: Vec<Value>,
    tmp: Vec<Value>,
}

impl Compose {
    /// Starts a key with no change.
    pub fn clear(&mut self) {
        self.cleared = false;
        self.adds.clear();
        self.dels.clear();
    }

    /// The change after the ones given so far.
    pub fn change(&mut self, cleared: bool, adds: &[Value], dels: &[Value]) {
        if cleared {
            self.clear();
            self.cleared = true;
        }
        self.adds.change(false, adds, dels);
        if !self.cleared {
            remove_all(&mut self.dels, adds);
            if !dels.is_empty() {
                self.tmp.clear();
                union_into(&self.dels, dels, &mut self.tmp);
                std::mem::swap(&mut self.dels, &mut self.tmp);
            }
        }
    }

    /// The composed change.
    pub fn finish(&mut self) -> ChangeRef<'_> {
        ChangeRef {
            cleared: self.cleared,
            adds: self.adds.finish(),
            dels: &self.dels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn v(i: u8) -> Value {
        [i; 16]
    }

    /// Random changes composed and applied agree with a model of sets.
    #[test]
    fn changes_compose_and_apply_like_sets() {
        let seed = 0x1357_9bdf_2468_ace0u64;
        println!("seed {seed:#x}");
        let mut rnd = crate::engine::xorshift(seed);
        let mut pick = |n: u64| -> Vec<Value> {
            let mut s = BTreeSet::new();
            for _ in 0..rnd() % n {
                s.insert(v((rnd() % 12) as u8));
            }
            s.into_iter().collect()
        };
        // Kept from case to case, as a merge keeps them.
        let (mut fold, mut compose) = (Fold::default(), Compose::default());
        for _ in 0..2000 {
            let base = pick(10);
            let mut changes = Vec::new();
            for _ in 0..3 {
                let adds = pick(6);
                let dels = minus(&pick(6), &adds);
                let cleared = pick(8).len() > 6;
                changes.push(Change {
                    cleared,
                    adds,
                    dels,
                });
            }
            let mut model: BTreeSet<Value> = base.iter().copied().collect();
            let mut step = base.clone();
            let mut composed = Change::default();
            for c in &changes {
                if c.cleared {
                    model.clear();
                }
                c.dels.iter().for_each(|d| {
                    model.remove(d);
                });
                model.extend(c.adds.iter().copied());
                step = c.apply(&step);
                composed = composed.then(c);
                assert!(is_set(&step) && is_set(&composed.adds) && is_set(&composed.dels));
            }
            let want: Vec<Value> = model.into_iter().collect();
            assert_eq!(step, want);
            fold.clear();
            fold.set_mut().extend_from_slice(&base);
            for c in &changes {
                fold.change(c.cleared, &c.adds, &c.dels);
            }
            assert_eq!(fold.finish(), &want[..], "folded {changes:?}");
            compose.clear();
            for c in &changes {
                compose.change(c.cleared, &c.adds, &c.dels);
            }
            let c = compose.finish();
            let c = Change {
                cleared: c.cleared,
                adds: c.adds.to_vec(),
                dels: c.dels.to_vec(),
            };
            assert_eq!(c.apply(&base), want, "composed {changes:?}");
            assert_eq!(composed.apply(&base), want, "{changes:?}");
        }
    }
}
