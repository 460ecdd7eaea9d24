//! Which merge to run next.
//!
//! Each flush adds a delta table; every delta table costs a lookup one more probe, and a delta
//! table stores each key it changes with its own key bytes, so many small ones also cost disk.
//! Two kinds of merge keep both bounded while rewriting each pair few times:
//! - *into the base*, when the delta tables hold as many bytes as the base (or someone waits
//!   for a full merge): it rewrites the whole base, so starting it only when the deltas have
//!   grown to the base's size costs about two rewrites of each pair over a load that doubles
//!   the table many times;
//! - *of delta tables*, size-tiered: the newest delta tables of about the same size are merged
//!   into one once there are `WIDTH` of them, so equal flushes merge 4 into 1, those 4 into 1,
//!   and so on, and the number of delta tables grows with the logarithm of their bytes. Past
//!   `ALL_RUNS` tables (merges could not keep up) every delta table is merged into one.

use crate::format::layout::MAX_RUNS;
use crate::format::root::Root;
use crate::format::table::TableRef;

/// What the merge thread does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Makes the oldest delta table the base without rewriting it (`merge::adopt`).
    Adopt,
    /// Merges the base and every delta table into a new base (or carries on such a merge).
    Base,
    /// Merges `deltas[from..to]` into one delta table.
    Deltas(usize, usize),
}

/// Delta tables of about the same size merged into one.
pub const WIDTH: usize = 4;
/// A delta table joins the newer ones in a merge when it is at most this many times their
/// bytes together (a little over 1, so that flushes of about the same size count as equal).
const RATIO: f64 = 1.25;
/// Delta tables past which all of them are merged into one, whatever their sizes.
pub const ALL_RUNS: usize = MAX_RUNS / 2;

/// The next merge, if one is due.
pub fn plan(root: &Root, compact: bool) -> Option<Plan> {
    if root.merging.is_some() {
        return Some(Plan::Base);
    }
    let d = &root.deltas;
    if d.is_empty() {
        return None;
    }
    if root.base.entries == 0 && d[0].changes == 0 {
        return Some(Plan::Adopt);
    }
    let bytes: u64 = d.iter().map(|t| t.bytes).sum();
    if compact || bytes >= root.base.bytes {
        return Some(Plan::Base);
    }
    tiers(d, 0)
}

/// The merge of delta tables due among `d` (which start at `deltas[at]`), size-tiered.
fn tiers(d: &[TableRef], at: usize) -> Option<Plan> {
    if d.is_empty() {
        return None;
    }
    if d.len() >= ALL_RUNS {
        return Some(Plan::Deltas(at, at + d.len()));
    }
    let mut from = d.len() - 1;
    let mut sum = d[from].bytes;
    while from > 0 && d[from - 1].bytes as f64 <= sum as f64 * RATIO {
        from -= 1;
        sum += d[from].bytes;
    }
    (d.len() - from >= WIDTH).then_some(Plan::Deltas(at + from, at + d.len()))
}

/// Whether a delta table of `keys` keys gets a key filter: when it holds at most three
/// quarters of the keys the store is estimated to have, so that a search for another key is
/// worth sparing. The estimate is the largest table's keys, or the base's plus those of the
/// delta tables with filters if more (those got one for holding mostly keys no other table
/// had). A store whose every log touches every key (values arriving in rounds) writes delta
/// tables of about all its keys, which a filter would only slow down.
pub fn wants_filter(root: &Root, keys: u64) -> bool {
    let tables = || {
        [root.base, root.merging]
            .into_iter()
            .chain(root.deltas.iter().copied())
    };
    let largest = tables().map(|t| t.entries).max().unwrap_or(0);
    let filtered: u64 = root
        .deltas
        .iter()
        .filter(|t| t.filter_words() > 0)
        .map(|t| t.entries)
        .sum();
    let store = largest.max(root.base.entries + filtered);
    keys > 0 && keys.saturating_mul(4) <= store.saturating_mul(3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::table::{Kind, TableRef};

    fn root(base: u64, deltas: &[u64]) -> Root {
        let t = |kind, bytes| TableRef {
            id: 1,
            kind,
            bytes,
            entries: 1,
            ..TableRef::default()
        };
        Root {
            base: t(Kind::Base, base),
            deltas: deltas.iter().map(|b| t(Kind::Delta, *b)).collect(),
            ..Root::default()
        }
    }

    #[test]
    fn filters_for_tables_of_a_few_of_the_keys() {
        let keyed = |base: u64, deltas: &[u64]| {
            let mut r = root(1, &vec![1; deltas.len()]);
            r.base.entries = base;
            for (t, &n) in r.deltas.iter_mut().zip(deltas) {
                t.entries = n;
            }
            r
        };
        // One value per key: each log brings new keys, a fraction of the table's.
        assert!(wants_filter(&keyed(3_600_000, &[1_000_000]), 1_000_000));
        assert!(wants_filter(&keyed(1_000_000, &[4_000_000]), 1_000_000));
        // Four of those merged: the filtered tables' keys count beside the base's.
        let mut r = keyed(3_600_000, &[1_000_000; 4]);
        assert!(!wants_filter(&r, 4_000_000));
        for t in &mut r.deltas {
            t.dir.len = t.slots() + 4;
        }
        assert!(wants_filter(&r, 4_000_000));
        // Values in rounds: every log touches about every key.
        assert!(!wants_filter(&keyed(3_000_000, &[3_000_000]), 3_000_000));
        assert!(!wants_filter(&keyed(3_000_000, &[]), 2_500_000));
        assert!(!wants_filter(&keyed(0, &[]), 1000));
        assert!(!wants_filter(&keyed(1000, &[]), 0));
    }

    #[test]
    fn newest_tables_of_a_size_merge_into_one() {
        assert_eq!(plan(&root(100, &[]), false), None);
        assert_eq!(plan(&root(100, &[5, 5, 5]), false), None);
        assert_eq!(
            plan(&root(100, &[5, 5, 5, 5]), false),
            Some(Plan::Deltas(0, 4))
        );
        assert_eq!(plan(&root(100, &[20, 5, 5, 5]), false), None);
        assert_eq!(
            plan(&root(100, &[20, 5, 5, 5, 5]), false),
            Some(Plan::Deltas(0, 5))
        );
        assert_eq!(plan(&root(100, &[40, 20, 5, 5, 5]), false), None);
        assert_eq!(
            plan(&root(100, &[40, 20, 5, 5, 4, 5]), false),
            Some(Plan::Deltas(0, 6))
        );
        assert_eq!(
            plan(&root(1000, &[100, 50, 5, 5, 4, 5]), false),
            Some(Plan::Deltas(2, 6))
        );
    }

    #[test]
    fn the_base_merges_when_the_deltas_reach_its_size() {
        assert_eq!(plan(&root(10, &[5, 5]), false), Some(Plan::Base));
        assert_eq!(plan(&root(100, &[5]), true), Some(Plan::Base), "asked for");
        let mut r = root(100, &[5]);
        r.merging = r.base;
        assert_eq!(plan(&r, false), Some(Plan::Base), "one under way");
        let mut sizes = vec![1; ALL_RUNS];
        sizes[0] = 50;
        assert_eq!(
            plan(&root(1000, &sizes), false),
            Some(Plan::Deltas(0, ALL_RUNS))
        );
    }

    #[test]
    fn a_first_table_that_only_adds_becomes_the_base() {
        let mut r = root(0, &[5, 5]);
        r.base = TableRef::default();
        assert_eq!(plan(&r, false), Some(Plan::Adopt));
        r.deltas[0].changes = 1;
        assert_eq!(plan(&r, false), Some(Plan::Base));
    }
}
