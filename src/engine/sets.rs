//! Value sets as ascending, duplicate-free vectors (how tables store them), and the changes a
//! delta table holds, applied by linear merges.

use super::memtable::Delta;
use crate::Value;
use std::cmp::Ordering;

/// A change to a key's set, with both lists ascending and disjoint: the earlier values are
/// dropped first when `cleared`, then `dels` removed and `adds` added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub cleared: bool,
    pub adds: Vec<Value>,
    pub dels: Vec<Value>,
}

impl Change {
    /// Only values added.
    pub fn adds_only(adds: Vec<Value>) -> Change {
        Change {
            cleared: false,
            adds,
            dels: Vec::new(),
        }
    }

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

    /// Whether it only adds values.
    pub fn is_adds_only(&self) -> bool {
        !self.cleared && self.dels.is_empty()
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

/// The ascending union of two ascending, duplicate-free lists.
pub fn union(a: &[Value], b: &[Value]) -> Vec<Value> {
    if b.is_empty() {
        return a.to_vec();
    }
    if a.is_empty() {
        return b.to_vec();
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// The values of ascending `a` that ascending `b` lacks.
pub fn minus(a: &[Value], b: &[Value]) -> Vec<Value> {
    if b.is_empty() {
        return a.to_vec();
    }
    let mut out = Vec::with_capacity(a.len());
    let mut j = 0;
    for v in a {
        while j < b.len() && b[j] < *v {
            j += 1;
        }
        if j >= b.len() || b[j] != *v {
            out.push(*v);
        }
    }
    out
}

/// Whether a list is ascending without duplicates.
pub fn is_set(v: &[Value]) -> bool {
    v.windows(2).all(|w| w[0] < w[1])
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
            assert_eq!(composed.apply(&base), want, "{changes:?}");
        }
    }
}
