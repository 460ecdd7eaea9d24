//! Value extents: runs of 16-byte value slots in the value shard datasets. Allocation by
//! power-of-two size with buddy alignment (so an extent never straddles a chunk unless it spans
//! whole, file-contiguous chunks), reading with CRC validation, and the free list.

use super::pages::Held;
use super::source::{Fault, Res, Source};
use crate::error::{Error, Result};
use crate::format::layout::{BLOB_CHUNK, VALUE_SHARDS};
use crate::store::{Ds, WriterFile};
use crate::Value;
use std::collections::HashMap;

/// Smallest extent, in values.
pub const MIN_CAP: u32 = 8;

/// Capacity for a set of `n` values: room to grow before the next copy.
pub fn cap_for(n: usize) -> u32 {
    let cap = (n as u64 + 1).next_power_of_two().max(MIN_CAP as u64);
    u32::try_from(cap).unwrap_or(u32::MAX)
}

pub fn shard_of(hash: u64) -> usize {
    (hash % VALUE_SHARDS as u64) as usize
}

const GROW_MIN: u64 = 1;
const GROW_MAX: u64 = 1024;

#[derive(Default)]
pub struct ExtentAlloc {
    /// Reusable extents by (shard, byte length).
    pub free: HashMap<(usize, u64), Vec<u64>>,
    /// Freed by the running checkpoint: held for readers after its root is published.
    pub freed: Vec<(usize, u64, u64)>,
    /// Freed by published checkpoints, until no pinned reader can read them (see `Held`).
    pub held: Held<(usize, u64, u64)>,
    /// Bytes handed out from the end of each shard.
    pub hw: [u64; VALUE_SHARDS],
}

impl ExtentAlloc {
    /// Rebuilds the allocator from the free list items (offset, shard << 56 | length) of root
    /// `epoch`: all held, as readers of older roots may still read them.
    pub fn from_items(items: &[u64], hw: [u64; VALUE_SHARDS], epoch: u64) -> Result<ExtentAlloc> {
        let mut held = Vec::with_capacity(items.len() / 2);
        for pair in items.chunks_exact(2) {
            let (shard, len) = ((pair[1] >> 56) as usize, pair[1] & ((1 << 56) - 1));
            if shard >= VALUE_SHARDS || !len.is_power_of_two() {
                return Err(Error::corrupt("free extent list", pair[0], "bad entry"));
            }
            held.push((shard, pair[0], len));
        }
        let mut a = ExtentAlloc {
            hw,
            ..ExtentAlloc::default()
        };
        a.held.hold(epoch, held);
        Ok(a)
    }

    /// The free list as root items, what this checkpoint freed included.
    pub fn items(&self) -> Vec<u64> {
        let mut out = Vec::new();
        for ((shard, len), offs) in &self.free {
            for off in offs {
                out.extend([*off, (*shard as u64) << 56 | len]);
            }
        }
        for (shard, off, len) in self.held.iter().chain(&self.freed) {
            out.extend([*off, (*shard as u64) << 56 | len]);
        }
        out
    }

    pub fn alloc(&mut self, file: &mut WriterFile, shard: usize, cap: u32) -> Result<u64> {
        let len = cap as u64 * 16;
        if let Some(off) = self.free.get_mut(&(shard, len)).and_then(Vec::pop) {
            return Ok(off);
        }
        for _ in 0..4 {
            if let Some(off) = self.bump(file, shard, len)? {
                return Ok(off);
            }
        }
        Err(Error::Hdf5 {
            op: "allocate value extent",
            detail: format!("no file-contiguous run of {len} bytes in value shard {shard}"),
        })
    }

    /// Takes `len` bytes from the end of the shard, aligned to min(len, chunk). The skipped
    /// alignment gap goes to the free list as aligned power-of-two pieces.
    fn bump(&mut self, file: &mut WriterFile, shard: usize, len: u64) -> Result<Option<u64>> {
        let ds = Ds::Values(shard as u8);
        let align = len.min(BLOB_CHUNK);
        let start = self.hw[shard].next_multiple_of(align);
        let end = start + len;
        let have = file.chunks(ds).len() as u64;
        let need = end.div_ceil(BLOB_CHUNK);
        if need > have {
            let step = (have / 4).clamp(GROW_MIN, GROW_MAX);
            file.grow(ds, need.max(have + step))?;
        }
        let chunks = file.chunks(ds);
        let first = (start / BLOB_CHUNK) as usize;
        let last = ((end - 1) / BLOB_CHUNK) as usize;
        let contiguous = (first..last).all(|c| chunks[c] + BLOB_CHUNK == chunks[c + 1]);
        let gap = (self.hw[shard], start);
        self.hw[shard] = end;
        self.free_range(chunks, shard, gap);
        if !contiguous {
            // Keep the run usable by smaller extents; try again past it.
            self.free_range(chunks, shard, (start, end));
            return Ok(None);
        }
        Ok(Some(chunks[first] + start % BLOB_CHUNK))
    }

    /// Frees the logical byte range [from, to) of a shard (multiples of the smallest extent)
    /// as aligned power-of-two pieces, reusable at once: nothing a root references is in it.
    pub fn free_range(&mut self, chunks: &[u64], shard: usize, (mut from, to): (u64, u64)) {
        while from < to {
            let mut piece = from & from.wrapping_neg();
            if from == 0 {
                piece = BLOB_CHUNK;
            }
            while from + piece > to || piece > BLOB_CHUNK {
                piece /= 2;
            }
            let phys = chunks[(from / BLOB_CHUNK) as usize] + from % BLOB_CHUNK;
            self.free.entry((shard, piece)).or_default().push(phys);
            from += piece;
        }
    }

    pub fn free(&mut self, shard: usize, off: u64, cap: u32) {
        self.freed.push((shard, off, cap as u64 * 16));
    }

    /// After root `epoch` is published: what its checkpoint freed is held for readers.
    pub fn publish(&mut self, epoch: u64) {
        let freed = std::mem::take(&mut self.freed);
        self.held.hold(epoch, freed);
    }

    /// Makes reusable what no reader under root `oldest` or later can read.
    pub fn release(&mut self, oldest: u64) {
        let free = &mut self.free;
        self.held.release(oldest, |(shard, off, len)| {
            free.entry((shard, len)).or_default().push(off)
        });
    }
}

/// Converts bytes to values (the byte length is a multiple of 16).
pub fn to_values(bytes: &[u8]) -> Vec<Value> {
    bytes
        .chunks_exact(16)
        .map(|c| c.try_into().unwrap())
        .collect()
}

pub fn to_bytes(values: &[Value]) -> Vec<u8> {
    values.iter().flatten().copied().collect()
}

/// The `count` values of an extent, checked against the CRC its bucket entry holds. A mismatch
/// is `Suspect`: damage, or an extent reused after a reader's root.
pub fn read(src: &dyn Source, off: u64, count: u64, crc: u32) -> Res<Vec<Value>> {
    let bytes_len = count.saturating_mul(16);
    if off.saturating_add(bytes_len) > src.size() {
        return Err(Fault::Suspect(Error::corrupt(
            "value extent",
            off,
            format!("{count} values would end past the file"),
        )));
    }
    let bytes_len = bytes_len as usize;
    let mut bytes = vec![0u8; bytes_len];
    src.read(off, &mut bytes)?;
    if crc32c::crc32c(&bytes) != crc {
        return Err(Fault::Suspect(Error::corrupt(
            "value extent",
            off,
            "checksum mismatch",
        )));
    }
    Ok(to_values(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_leaves_room() {
        assert_eq!(cap_for(1), 8);
        assert_eq!(cap_for(8), 16);
        assert_eq!(cap_for(1000), 1024);
        assert!(cap_for(1023) > 1023);
    }
}
