//! A reader's overlay: the deltas of the log that followed its root, in layers (oldest first,
//! sizes shrinking geometrically) so that a refresh adds only what it read. A layer is a copy of
//! the ops, or — for a pinned root whose log stays in place — an index into the mapped log.

use super::logindex::{LogIndex, OpAt};
use super::memtable::{Delta, Memtable};
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

#[derive(Clone)]
pub enum Layer {
    Copy(Memtable),
    Index(LogIndex),
}

impl Layer {
    fn len(&self) -> usize {
        match self {
            Layer::Copy(m) => m.len(),
            Layer::Index(x) => x.len(),
        }
    }

    fn delta(&self, key: &Key, log: &Log) -> Res<Option<Cow<'_, Delta>>> {
        match self {
            Layer::Copy(m) => Ok(m.get(key)),
            Layer::Index(x) => Ok(x.get(key, log)?.map(Cow::Owned)),
        }
    }

    fn keys(&self, log: &Log) -> Res<Vec<Key>> {
        match self {
            Layer::Copy(m) => Ok(m.keys().copied().collect()),
            Layer::Index(x) => x.keys(log),
        }
    }

    fn absorb(&mut self, later: &Layer, log: &Log) -> Res<()> {
        match (self, later) {
            (Layer::Copy(m), Layer::Copy(l)) => m.absorb(l),
            (Layer::Index(x), Layer::Index(l)) => x.absorb(l, log)?,
            _ => unreachable!("a snapshot's layers are all of one kind"),
        }
        Ok(())
    }
}

#[derive(Clone, Default)]
pub struct Overlay {
    layers: Vec<Arc<Layer>>,
    /// Layers index the log in place (else they copy it).
    indexed: bool,
}

impl Overlay {
    pub fn new(indexed: bool) -> Overlay {
        Overlay {
            layers: Vec::new(),
            indexed,
        }
    }

    pub fn indexed(&self) -> bool {
        self.indexed
    }

    /// This overlay with the frames from `from` on added; returns it and the log's new end.
    pub fn extended(&self, log: &Log, from: Cursor) -> crate::error::Result<(Overlay, Cursor)> {
        let mut layer = if self.indexed {
            Layer::Index(LogIndex::default())
        } else {
            Layer::Copy(Memtable::default())
        };
        let mut failed = None;
        let end = wal::scan(log.src, log.chunks, from, |at, mut ops| match &mut layer {
            Layer::Copy(m) => ops.for_each(|op| m.apply(&op)),
            Layer::Index(x) => {
                while let Some((off, op)) = ops.next_at() {
                    let pos = (at + off as u64) as u32;
                    if let Err(f) = x.add(op.key(), pos, log) {
                        failed.get_or_insert(f);
                    }
                }
            }
        })?;
        if let Some(f) = failed {
            return Err(fault_error(f));
        }
        let mut next = self.clone();
        if end != from {
            next.layers.push(Arc::new(layer));
            next.compact(log).map_err(fault_error)?;
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
            let mut merged = Arc::unwrap_or_clone(older);
            merged.absorb(&newer, log)?;
            layers.push(Arc::new(merged));
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
