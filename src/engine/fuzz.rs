//! Fuzzing entry points: the file and WAL decoders run on arbitrary bytes (`fuzz/` drives them
//! with libFuzzer; `tests/fuzz.rs` replays the corpus and mutates it). Each target must return
//! for any input — no panic, no hang, no huge allocation — and checks what it can: a key that
//! `bucket::decode` lists must be found by `bucket::find` with the same set.
//!
//! A file image is a sparse copy of a file: `root_at u64 | file_len u64` then records
//! `offset u64 | len u32 | len bytes`, all little-endian. [`image_of`] makes one from a real file.
//!
//! Every target runs twice: on the bytes as given (checksums must reject the damage), and after
//! re-sealing every page, root slot and WAL frame so the parsers behind the checksums see the
//! damage too — what a checksum collision or a writer bug would hand them.

use super::source::{Fault, Res, Source};
use super::verify::check as verify_check;
use super::wal::{self, Cursor};
use super::walk::walk;
use crate::error::{Error, Result};
use crate::format::bucket;
use crate::format::bytes::{get_u32, get_u64, put_u32};
use crate::format::hash::key_hash;
use crate::format::layout::{PAGE, ROOT_SLOT, SEGMENT as BLOB_CHUNK};
use crate::format::page::{seal, Page, MAGIC_ARRAY, MAGIC_BUCKET};
use crate::format::root::{self, LogRef};
use crate::format::wal::{chained_crc, HEADER as WAL_HEADER, MAGIC as WAL_MAGIC};
use crate::store::ReadFile;
use std::collections::BTreeMap;
use std::path::Path;

/// Byte runs at file offsets; reads outside them fail like reads past a file's end.
struct Image {
    root_at: u64,
    file_len: u64,
    runs: BTreeMap<u64, Vec<u8>>,
}

impl Image {
    /// Parses as much of `data` as is well formed.
    fn parse(data: &[u8]) -> Option<Image> {
        let (root_at, file_len) = (word(data, 0)?, word(data, 8)?);
        let mut runs = BTreeMap::new();
        let mut at = 16;
        while let (Some(off), Some(len)) = (word(data, at), data.get(at + 8..at + 12)) {
            let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
            let Some(bytes) = data.get(at + 12..at + 12 + len) else {
                break;
            };
            runs.insert(off, bytes.to_vec());
            at += 12 + len;
        }
        Some(Image {
            root_at,
            file_len,
            runs,
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.root_at.to_le_bytes());
        out.extend_from_slice(&self.file_len.to_le_bytes());
        for (off, bytes) in &self.runs {
            out.extend_from_slice(&off.to_le_bytes());
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        out
    }

    fn slots(&self) -> Option<Vec<u8>> {
        let mut b = vec![0u8; 2 * ROOT_SLOT];
        self.read(self.root_at, &mut b).ok()?;
        Some(b)
    }

    /// Re-seals every page-aligned run's pages of a known kind and both root slots.
    fn reseal(&mut self) {
        for bytes in self.runs.values_mut() {
            for p in bytes.chunks_exact_mut(PAGE) {
                let p: &mut Page = p.try_into().expect("chunks_exact yields pages");
                let magic = get_u32(p, 0);
                if magic == MAGIC_BUCKET || magic == MAGIC_ARRAY {
                    let epoch = get_u64(p, 8);
                    seal(p, magic, epoch);
                }
            }
        }
        if let Some(run) = self.run_mut(self.root_at, 2 * ROOT_SLOT) {
            for slot in run.chunks_exact_mut(ROOT_SLOT) {
                let crc = crc32c::crc32c(&slot[16..]);
                put_u32(slot, 12, crc);
            }
        }
    }

    fn run_mut(&mut self, off: u64, len: usize) -> Option<&mut [u8]> {
        let (start, bytes) = self.runs.range_mut(..=off).next_back()?;
        let at = usize::try_from(off - start).ok()?;
        bytes.get_mut(at..at.checked_add(len)?)
    }
}

impl Source for Image {
    fn read(&self, off: u64, buf: &mut [u8]) -> Res<()> {
        let found = self
            .runs
            .range(..=off)
            .next_back()
            .and_then(|(start, bytes)| {
                let at = usize::try_from(off - start).ok()?;
                bytes.get(at..at.checked_add(buf.len())?)
            });
        match found {
            Some(b) => {
                buf.copy_from_slice(b);
                Ok(())
            }
            None => Err(Fault::Fail(Error::corrupt(
                "file range",
                off,
                format!("{} bytes not in the image", buf.len()),
            ))),
        }
    }

    fn size(&self) -> u64 {
        self.file_len
    }
}

fn word(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

/// Fuzz target: verify the newest root of a file image, then check `find` against `decode` on
/// every bucket page. Returns the number of problems verify reported (for the corpus tools).
pub fn image(data: &[u8]) -> usize {
    let Some(mut img) = Image::parse(data) else {
        return 0;
    };
    let raw = check_image(&img);
    img.reseal();
    raw + check_image(&img)
}

fn check_image(img: &Image) -> usize {
    buckets_agree(img);
    let Some(slots) = img.slots() else {
        return 0;
    };
    let Ok(root) = root::newest(&slots[..ROOT_SLOT], &slots[ROOT_SLOT..]) else {
        return 1;
    };
    let report = verify_check(img, img.file_len, &root);
    let live = walk(img, &root, false);
    if live.problems.is_empty() {
        wal_scan(img, &wal::chunks(&root.log), &root.log);
    }
    report.problems.len()
}

/// `find` must return, for every key `decode` lists, the set of the key's first entry.
fn buckets_agree(img: &Image) {
    for (off, bytes) in &img.runs {
        for (i, p) in bytes.chunks_exact(PAGE).enumerate() {
            let p: &Page = p.try_into().expect("chunks_exact yields pages");
            if get_u32(p, 0) != MAGIC_BUCKET {
                continue;
            }
            let at = off.saturating_add((i * PAGE) as u64); // a label; inputs may put runs anywhere
            let Ok(entries) = bucket::decode(p, at) else {
                continue;
            };
            for e in &entries {
                let first = entries.iter().find(|x| x.key == e.key).map(|x| &x.body);
                let found = bucket::find(p, key_hash(&e.key), &e.key, at);
                assert_eq!(
                    found.as_ref().ok().and_then(|s| s.as_ref()),
                    first,
                    "find disagrees with decode at page {at}"
                );
            }
        }
    }
}

fn wal_scan(src: &dyn Source, chunks: &[u64], log: &LogRef) -> u64 {
    let cur = Cursor::start(log);
    let mut ops = 0u64;
    if let Ok(end) = wal::scan(src, chunks, cur, |_, it| ops += it.count() as u64) {
        let _ = wal::torn_tail(src, chunks, end);
    }
    ops
}

/// Fuzz target: the WAL scan over one chunk holding `data` after `gen u64 | lsn u64`.
/// Returns the number of ops read.
pub fn wal(data: &[u8]) -> u64 {
    let (Some(gen), Some(lsn)) = (word(data, 0), word(data, 8)) else {
        return 0;
    };
    let mut chunk = data[16..].to_vec();
    chunk.truncate(BLOB_CHUNK as usize);
    let log = LogRef {
        gen,
        lsn,
        offset: 0,
        bytes: BLOB_CHUNK,
    };
    let mut img = Image {
        root_at: 0,
        file_len: BLOB_CHUNK,
        runs: BTreeMap::from([(0, chunk)]),
    };
    let raw = wal_scan(&img, &[0], &log);
    reseal_frames(img.runs.get_mut(&0).expect("the chunk"));
    raw + wal_scan(&img, &[0], &log)
}

/// Rewrites the CRC of every frame whose header says where it ends, chained from the first.
fn reseal_frames(log: &mut [u8]) {
    let mut pos = 0;
    let mut prev = 0;
    while pos + WAL_HEADER <= log.len() && get_u32(log, pos) == WAL_MAGIC {
        let len = get_u32(log, pos + 24) as usize;
        if len < WAL_HEADER || pos + len > log.len() {
            return;
        }
        prev = chained_crc(&log[pos..pos + len], prev);
        put_u32(log, pos + 4, prev);
        pos += len;
    }
}

/// A file image of `path` for the corpus: both root slots and every page, extent and used WAL
/// byte the newest root references.
pub fn image_of(path: &Path) -> Result<Vec<u8>> {
    let file = ReadFile::open(path)?;
    let map = file.map(u64::MAX)?;
    let root_at = file.root_offset();
    let mut slots = vec![0u8; 2 * ROOT_SLOT];
    map.read(root_at, &mut slots)?;
    let root = root::newest(&slots[..ROOT_SLOT], &slots[ROOT_SLOT..])
        .map_err(|why| Error::corrupt("root", root_at, why))?;
    let live = walk(&*map, &root, false);
    let mut runs = BTreeMap::from([(root_at, slots)]);
    let pages = live.pages.iter().map(|(o, _)| (*o, PAGE as u64));
    for (off, len) in pages.chain(live.data.iter().copied()) {
        let mut b = vec![0u8; len as usize];
        map.read(off, &mut b)?;
        runs.insert(off, b);
    }
    let cur = Cursor::start(&root.log);
    let chunks = wal::chunks(&root.log);
    let end = wal::scan(&*map, &chunks, cur, |_, _| {})?;
    if let Some(&first) = chunks.first() {
        let mut b = vec![0u8; end.pos.min(BLOB_CHUNK) as usize + WAL_HEADER];
        map.read(first, &mut b)?;
        runs.insert(first, b);
    }
    let img = Image {
        root_at,
        file_len: map.len() as u64,
        runs,
    };
    Ok(img.encode())
}

/// The WAL target's input for the frames at the start of `path`'s log (empty if there are none).
pub fn wal_of(path: &Path) -> Result<Vec<u8>> {
    let img = Image::parse(&image_of(path)?).expect("image_of encodes a whole image");
    let slots = img.slots().expect("image_of includes the root slots");
    let root = root::newest(&slots[..ROOT_SLOT], &slots[ROOT_SLOT..])
        .map_err(|why| Error::corrupt("root", img.root_at, why))?;
    let mut out = Vec::new();
    out.extend_from_slice(&root.log.gen.to_le_bytes());
    out.extend_from_slice(&root.log.lsn.to_le_bytes());
    if let Some(b) = img.runs.get(&root.log.offset) {
        out.extend_from_slice(b);
    }
    Ok(out)
}
