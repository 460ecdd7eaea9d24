//! A reader's overlay: the deltas of the log that followed its root, in layers (oldest first,
//! sizes shrinking geometrically) so that a refresh adds only what it read. A layer is a copy of
//! the ops, or — for a pinned root whose log stays in place — an index into the mapped log.

use super::delta::{Delta, LogDeltas};
use super::logindex::{LogIndex, OpAt};
use super::source::{Fault, Res, Source};
use super::wal::{self, Cursor};
use crate::Key;
use std::borrow::Cow;
use std::sync::Arc;

/// The log a snapshot's overlay reads: its chunks through the snapshot's mapping.
pub struct Log<'a> {
    pub src: &'a dyn Source,
    pub chunks: &'a [u64],
}

impl OpAt for Log<'_> {
    fn op_at(&self, pos: u32) -> Res<crate::format::wal::Op> {
        wal::op(self.src, self.chunks, pos as u64)
    }
}

/// Layers of at least this many keys index the log when the snapshot may read it in place;
/// smaller ones copy it. A copy answers faster (no read of the log, a composed delta per key)
/// and the recent, small layers are where a reader that follows the writer looks most; the
/// large ones are where the memory is.
const INDEX_FROM: usize = 1 << 16;

#[derive(Clone)]
enum Kind {
    Copy(LogDeltas),
    Index(LogIndex),
}

/// The deltas of the frames in the log range `from..to`.
#[derive(Clone)]
pub struct Layer {
    kind: Kind,
    from: Cursor,
    to: Cursor,
}

impl Layer {
    /// The indexed layer of the frames from `from` on, up to position `until`.
    fn index(log: &Log, from: Cursor, until: u64) -> crate::error::Result<Layer> {
        let mut x = LogIndex::default();
        let mut failed = None;
        let to = wal::scan_until(log.src, log.chunks, from, until, |at, mut ops| {
            while let Some((off, op)) = ops.next_at() {
                let pos = (at + off as u64) as u32;
                if let Err(f) = x.add(op.key(), pos, log) {
                    failed.get_or_insert(f);
                }
            }
        })?;
        match failed {
            Some(f) => Err(fault_error(f)),
            None => Ok(Layer {
                kind: Kind::Index(x),
                from,
                to,
            }),
        }
    }

    /// The copied layer of the frames from `from` on, or None once it reaches `most` keys.
    fn copy(log: &Log, from: Cursor, most: usize) -> crate::error::Result<Option<Layer>> {
        let mut m = LogDeltas::default();
        let to = wal::scan(log.src, log.chunks, from, |_, ops| {
            if m.len() < most {
                ops.for_each(|op| m.apply(&op));
            }
        })?;
        Ok((m.len() < most).then_some(Layer {
            kind: Kind::Copy(m),
            from,
            to,
        }))
    }

    fn len(&self) -> usize {
        match &self.kind {
            Kind::Copy(m) => m.len(),
            Kind::Index(x) => x.len(),
        }
    }

    fn indexed(&self) -> bool {
        matches!(self.kind, Kind::Index(_))
    }

    fn delta(&self, key: &Key, log: &Log) -> Res<Option<Cow<'_, Delta>>> {
        match &self.kind {
            Kind::Copy(m) => Ok(m.get(key)),
            Kind::Index(x) => Ok(x.get(key, log)?.map(Cow::Owned)),
        }
    }

    fn keys(&self, log: &Log) -> Res<Vec<Key>> {
        match &self.kind {
            Kind::Copy(m) => Ok(m.keys().copied().collect()),
            Kind::Index(x) => x.keys(log),
        }
    }

    /// This layer followed by `later` (the frames right after it) as one layer: an index when
    /// `index` allows and the result is large, else a copy.
    fn merged(older: Arc<Layer>, later: &Layer, log: &Log, index: bool) -> Res<Layer> {
        let big = older.len() + later.len() >= INDEX_FROM;
        let (from, to) = (older.from, later.to);
        let kind = match (Arc::unwrap_or_clone(older).kind, &later.kind) {
            (Kind::Index(mut x), Kind::Index(l)) => {
                x.absorb(l, log)?;
                Kind::Index(x)
            }
            (Kind::Copy(mut m), Kind::Copy(l)) if !(index && big) => {
                m.absorb(l);
                Kind::Copy(m)
            }
            // Reading the log range again builds the index without a copy of it.
            _ => Layer::index(log, from, to.pos).map_err(Fault::Fail)?.kind,
        };
        Ok(Layer { kind, from, to })
    }
}

#[derive(Clone, Default)]
pub struct Overlay {
    layers: Vec<Arc<Layer>>,
    /// Large layers may index the log in place (else every layer copies it).
    in_place: bool,
    /// The layers hold at least `INDEX_FROM` keys: probing them likely misses the CPU caches.
    large: bool,
}

impl Overlay {
    pub fn new(in_place: bool) -> Overlay {
        Overlay {
            layers: Vec::new(),
            in_place,
            large: false,
        }
    }

    /// Whether probing the overlay likely misses the CPU caches (it is that large).
    pub fn large(&self) -> bool {
        self.large
    }

    /// Whether no frame has been applied: every probe misses.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Whether some layer reads the log in place.
    pub fn indexed(&self) -> bool {
        self.layers.iter().any(|l| l.indexed())
    }

    /// This overlay with the frames from `from` on added; returns it and the log's new end.
    pub fn extended(&self, log: &Log, from: Cursor) -> crate::error::Result<(Overlay, Cursor)> {
        // Copied, unless it turns out long (a reader opening on a full log): then read again
        // as an index, having copied no more than a small layer's worth.
        let most = if self.in_place {
            INDEX_FROM
        } else {
            usize::MAX
        };
        let layer = match Layer::copy(log, from, most)? {
            Some(copy) => copy,
            None => Layer::index(log, from, u64::MAX)?,
        };
        let end = layer.to;
        let mut next = self.clone();
        if end != from {
            next.layers.push(Arc::new(layer));
            next.compact(log).map_err(fault_error)?;
            next.large = next.layers.iter().map(|l| l.len()).sum::<usize>() >= INDEX_FROM;
        }
        Ok((next, end))
    }

    /// Merges the newest layers while a layer is at least half its predecessor's size, keeping
    /// the layer count logarithmic and each merge's cost proportional to what it merges.
    fn compact(&mut self, log: &Log) -> Res<()> {
        let layers = &mut self.layers;
        while layers.len() >= 2 {
            let n = layers.len();
            if layers[n - 1].len() * 2 < layers[n - 2].len() {
                break;
            }
            let newer = layers.pop().expect("two layers");
            let older = layers.pop().expect("two layers");
            layers.push(Arc::new(Layer::merged(older, &newer, log, self.in_place)?));
        }
        Ok(())
    }

    /// The key's delta over the root, all layers composed.
    pub fn delta(&self, key: &Key, log: &Log) -> Res<Option<Delta>> {
        let mut out: Option<Delta> = None;
        for layer in &self.layers {
            if let Some(d) = layer.delta(key, log)? {
                out.get_or_insert_with(Delta::default).then(&d);
            }
        }
        Ok(out)
    }

    /// Every key some layer changes.
    pub fn keys(&self, log: &Log) -> Res<std::collections::HashSet<Key>> {
        let mut out = std::collections::HashSet::new();
        for layer in &self.layers {
            out.extend(layer.keys(log)?);
        }
        Ok(out)
    }
}

/// A log the scan found whole and that fails when read again is damage, not staleness: its
/// chunks are held for this reader.
fn fault_error(f: Fault) -> crate::error::Error {
    match f {
        Fault::Stale => crate::error::Error::corrupt("WAL", 0, "log past the reader's mapping"),
        Fault::Suspect(e) | Fault::Fail(e) => e,
    }
}
