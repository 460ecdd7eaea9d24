//! A key's value set across a checkpoint: inline while it fits the bucket entry, promoted to an
//! extent beyond that, appended in place while the extent has room, copied to a larger extent
//! when it has not, demoted back inline when it shrinks.

use super::extents::{self, cap_for, shard_of, to_bytes, ExtentAlloc};
use super::failpoint;
use super::memtable::{Delta, ValSet};
use super::source::settled;
use crate::error::Result;
use crate::format::bucket::{ExtentRef, Set, INLINE_MAX};
use crate::store::{Positional, WriterFile};
use crate::Value;

/// What a checkpoint needs to touch value storage.
pub struct Values<'a> {
    pub file: &'a mut WriterFile,
    pub alloc: &'a mut ExtentAlloc,
}

/// The stored values of a set (reads and checks an extent).
pub fn stored(file: &WriterFile, set: &Set) -> Result<Vec<Value>> {
    match set {
        Set::Extent(x) => settled(extents::read(file, x.offset, x.count, x.crc)),
        inline => Ok(inline.inline_values().unwrap_or_default().to_vec()),
    }
}

impl Values<'_> {
    /// The set after `d`, or None when it is empty. Frees what the old set no longer uses.
    pub fn apply(&mut self, hash: u64, old: Option<&Set>, d: &Delta) -> Result<Option<Set>> {
        if let (None, ValSet::One(v)) = (old, &d.adds) {
            return Ok(Some(Set::One(*v))); // a new key with one value: most of a bulk load
        }
        let shard = shard_of(hash);
        let base = match old {
            Some(Set::Extent(_)) if d.cleared => Vec::new(),
            Some(set) => stored(self.file, set)?,
            None => Vec::new(),
        };
        let new = d.resolve(&base);
        if let Some(Set::Extent(x)) = old {
            if let Some(kept) = self.append(x, &base, &new)? {
                return Ok(Some(kept));
            }
            self.alloc.free(shard, x.offset, x.cap);
            if !new.is_empty() && new.len() <= INLINE_MAX {
                failpoint::hit("checkpoint.demote");
            }
        }
        self.place(shard, &new, matches!(old, Some(Set::Extent(_))))
    }

    /// Writes only the new values into the extent's spare room, when nothing was removed.
    fn append(&mut self, x: &ExtentRef, base: &[Value], new: &[Value]) -> Result<Option<Set>> {
        let grows = new.len() > INLINE_MAX && new.len() <= x.cap as usize;
        if !grows || base.is_empty() || new[..base.len().min(new.len())] != *base {
            return Ok(None);
        }
        failpoint::hit("checkpoint.append");
        let tail = to_bytes(&new[base.len()..]);
        self.file
            .write_at(x.offset + base.len() as u64 * 16, &tail)?;
        Ok(Some(Set::Extent(ExtentRef {
            count: new.len() as u64,
            crc: crc32c::crc32c_append(x.crc, &tail),
            ..*x
        })))
    }

    fn place(&mut self, shard: usize, new: &[Value], was_extent: bool) -> Result<Option<Set>> {
        if new.is_empty() {
            return Ok(None);
        }
        if new.len() <= INLINE_MAX {
            return Ok(Some(Set::inline(new)));
        }
        failpoint::hit(if was_extent {
            "checkpoint.copy"
        } else {
            "checkpoint.promote"
        });
        let cap = cap_for(new.len());
        let offset = self.alloc.alloc(self.file, shard, cap)?;
        let bytes = to_bytes(new);
        self.file.write_at(offset, &bytes)?;
        Ok(Some(Set::Extent(ExtentRef {
            count: new.len() as u64,
            first: new[0],
            offset,
            cap,
            crc: crc32c::crc32c(&bytes),
        })))
    }
}
