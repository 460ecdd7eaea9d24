//! Bucket pages: the leaves of the extendible hash.
//!
//! Kind fields (page bytes 16..32): depth u8 | 0 u8 | n u16 | 0 u32 | prefix u64 (the `depth`
//! leading hash bits every key of the page shares, left-aligned).
//! Body (from byte 32): tags [u16; n] (low 16 hash bits, for a fast scan), offsets [u16; n]
//! (page offset of each entry), then the entries, in hash order:
//!   key [16] | c u8 | c = 1..=INLINE_MAX: c values [16] each
//!                   | c = EXTENT: count u64 | first value [16] | offset u64 | cap u32 | crc u32
//! An extent is `cap` 16-byte value slots at file `offset`; the first `count` hold the set and
//! `crc` is the CRC32C of those `count * 16` bytes.

use super::bytes::*;
use super::hash::{key_hash, prefix as hash_prefix};
use super::layout::PAGE;
use super::page::{seal, Page, HEADER, MAGIC_BUCKET};
use crate::error::{Error, Result};
use crate::{Key, Value};

pub const INLINE_MAX: usize = 8;
pub const EXTENT: u8 = 0xFF;
const EXTENT_BODY: usize = 8 + 16 + 8 + 4 + 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtentRef {
    pub count: u64,
    pub first: Value,
    pub offset: u64,
    pub cap: u32,
    pub crc: u32,
}

/// A key's value set as a page entry holds it. Decoded entries are moved and copied a lot by
/// a checkpoint, so they are kept small (72 bytes): one value needs no allocation, and a few
/// are boxed rather than held in a fixed `INLINE_MAX` array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Set {
    /// One value, in the page.
    One(Value),
    /// 2..=INLINE_MAX values, in the page.
    Few(Box<[Value]>),
    /// More, in an extent.
    Extent(ExtentRef),
}

impl Set {
    /// The set of 1..=INLINE_MAX `values`, held in the page.
    pub fn inline(values: &[Value]) -> Set {
        debug_assert!(!values.is_empty() && values.len() <= INLINE_MAX);
        match values {
            [v] => Set::One(*v),
            _ => Set::Few(values.into()),
        }
    }

    /// The values held in the page; `None` for an extent.
    pub fn inline_values(&self) -> Option<&[Value]> {
        match self {
            Set::One(v) => Some(std::slice::from_ref(v)),
            Set::Few(vs) => Some(vs),
            Set::Extent(_) => None,
        }
    }

    pub fn count(&self) -> u64 {
        match self {
            Set::Extent(e) => e.count,
            inline => inline.inline_values().map_or(0, |v| v.len() as u64),
        }
    }

    pub fn first(&self) -> Value {
        match self {
            Set::One(v) => *v,
            Set::Few(vs) => vs[0],
            Set::Extent(e) => e.first,
        }
    }

    fn body_size(&self) -> usize {
        match self.inline_values() {
            Some(vs) => vs.len() * 16,
            None => EXTENT_BODY,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub hash: u64,
    pub key: Key,
    pub set: Set,
}

impl Entry {
    /// Bytes the entry takes in a page, its tag and offset included.
    pub fn size(&self) -> usize {
        4 + 16 + 1 + self.set.body_size()
    }
}

/// Encodes entries (sorted by hash, all under `prefix`/`depth`) into a sealed page.
pub fn encode(entries: &[Entry], depth: u32, prefix: u64, epoch: u64) -> Box<Page> {
    let mut fresh = Vec::new();
    let spans: Vec<Span> = entries
        .iter()
        .map(|e| put_fresh(&mut fresh, 0, e))
        .collect();
    let mut p = build(&spans, &[&fresh], depth, prefix);
    seal(&mut p, MAGIC_BUCKET, epoch);
    p
}

/// An entry during a rebuild: its hash, and its bytes (key, count byte, body) at `at..at + len`
/// of source `src` — an old page or a buffer of new entries. Rebuilding a page from spans
/// copies unchanged entries byte for byte instead of decoding and re-encoding them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub hash: u64,
    pub at: u32,
    pub len: u16,
    pub src: u8,
}

impl Span {
    /// Bytes the entry takes in a page, its tag and offset included.
    pub fn size(&self) -> usize {
        4 + self.len as usize
    }

    /// The entry's key, from its source's bytes.
    pub fn key(&self, srcs: &[&[u8]]) -> Key {
        get_16(srcs[self.src as usize], self.at as usize)
    }

    /// The entry's bytes.
    pub fn bytes<'a>(&self, srcs: &[&'a [u8]]) -> &'a [u8] {
        let at = self.at as usize;
        &srcs[self.src as usize][at..at + self.len as usize]
    }
}

/// Bytes a page holding `spans` needs.
pub fn spans_bytes(spans: &[Span]) -> usize {
    HEADER + spans.iter().map(Span::size).sum::<usize>()
}

/// The entries of a validated bucket page as spans of source `src`, appended to `out`; each
/// entry is checked as [`decode`] checks it, its tag against its key included.
pub fn spans(p: &Page, src: u8, offset: u64, out: &mut Vec<Span>) -> Result<()> {
    let n = count_checked(p, offset)?;
    out.reserve(n);
    for i in 0..n {
        let at = get_u16(p, HEADER + 2 * n + 2 * i) as usize;
        let len = entry_len(p.get(at..).unwrap_or(&[]), offset)?;
        let hash = key_hash(&get_16(p, at));
        if get_u16(p, HEADER + 2 * i) != hash as u16 {
            return Err(bad(offset, "entry tag does not match its key"));
        }
        out.push(Span {
            hash,
            at: at as u32,
            len: len as u16,
            src,
        });
    }
    Ok(())
}

/// Length of the entry at the start of `b`, checked to lie within `b` (and an extent's count
/// to lie within its capacity, as [`decode`] checks it).
fn entry_len(b: &[u8], offset: u64) -> Result<usize> {
    let len = match b.get(16) {
        None => return Err(bad(offset, "entry beyond page end")),
        Some(&EXTENT) => 17 + EXTENT_BODY,
        Some(&c) if (1..=INLINE_MAX as u8).contains(&c) => 17 + 16 * c as usize,
        Some(_) => return Err(bad(offset, "bad value count byte")),
    };
    if len > b.len() {
        return Err(bad(offset, "entry beyond page end"));
    }
    if b[16] == EXTENT {
        let (count, cap) = (get_u64(b, 17), get_u32(b, 17 + 32));
        if count == 0 || count > cap as u64 {
            return Err(bad(offset, "extent count outside 1..=cap"));
        }
    }
    Ok(len)
}

/// The key and set of the entry a span of a validated page points at.
pub fn span_entry(span: &Span, srcs: &[&[u8]], offset: u64) -> Result<(Key, Set)> {
    entry_from(span.bytes(srcs), offset)
}

/// Appends `e`'s bytes to `fresh`, the buffer that is source `src`, and returns its span.
pub fn put_fresh(fresh: &mut Vec<u8>, src: u8, e: &Entry) -> Span {
    let at = fresh.len();
    fresh.resize(at + e.size() - 4, 0);
    let end = put_entry(fresh, at, e);
    debug_assert_eq!(end, fresh.len());
    Span {
        hash: e.hash,
        at: at as u32,
        len: (end - at) as u16,
        src,
    }
}

/// An unsealed bucket page holding `spans`, as [`build_into`] makes it.
pub fn build(spans: &[Span], srcs: &[&[u8]], depth: u32, prefix: u64) -> Box<Page> {
    let mut p = Box::new([0u8; PAGE]);
    build_into(&mut p, spans, srcs, depth, prefix);
    p
}

/// Makes `p` (whatever it held) an unsealed bucket page holding `spans` (sorted by hash, all
/// under `prefix`/`depth`), their bytes copied from `srcs`; neighbours that are neighbours in
/// their source too are copied in one piece.
pub fn build_into(p: &mut Page, spans: &[Span], srcs: &[&[u8]], depth: u32, prefix: u64) {
    assert!(
        spans_bytes(spans) <= PAGE,
        "bucket overflow passed to build"
    );
    let n = spans.len();
    p[..HEADER].fill(0);
    p[16] = depth as u8;
    put_u16(&mut p[..], 18, n as u16);
    put_u64(&mut p[..], 24, prefix);
    let mut at = HEADER + 4 * n;
    let mut i = 0;
    while i < n {
        let first = spans[i];
        let mut end = first.at as usize + first.len as usize;
        let mut j = i;
        while j < n {
            let s = spans[j];
            if j > i && (s.src != first.src || s.at as usize != end) {
                break;
            }
            debug_assert_eq!(hash_prefix(s.hash, depth), prefix);
            end = s.at as usize + s.len as usize;
            put_u16(&mut p[..], HEADER + 2 * j, s.hash as u16);
            put_u16(
                &mut p[..],
                HEADER + 2 * n + 2 * j,
                (at + s.at as usize - first.at as usize) as u16,
            );
            j += 1;
        }
        let bytes = &srcs[first.src as usize][first.at as usize..end];
        p[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
        i = j;
    }
    p[at..].fill(0);
}

fn put_entry(p: &mut [u8], mut at: usize, e: &Entry) -> usize {
    p[at..at + 16].copy_from_slice(&e.key);
    at += 16;
    match &e.set {
        Set::One(_) | Set::Few(_) => {
            let vals = e.set.inline_values().unwrap_or_default();
            p[at] = vals.len() as u8;
            at += 1;
            for v in vals {
                p[at..at + 16].copy_from_slice(v);
                at += 16;
            }
        }
        Set::Extent(x) => {
            p[at] = EXTENT;
            put_u64(p, at + 1, x.count);
            p[at + 9..at + 25].copy_from_slice(&x.first);
            put_u64(p, at + 25, x.offset);
            put_u32(p, at + 33, x.cap);
            put_u32(p, at + 37, x.crc);
            at += 1 + EXTENT_BODY;
        }
    }
    at
}

/// Depth, entry count and prefix of a (validated) bucket page.
pub fn header(p: &Page) -> (u32, usize, u64) {
    (p[16] as u32, get_u16(p, 18) as usize, get_u64(p, 24))
}

fn bad(offset: u64, why: &str) -> Error {
    Error::corrupt("bucket page", offset, why.to_string())
}

/// Longest entry: key, count byte and `INLINE_MAX` values (an extent entry is shorter).
const ENTRY_MAX: usize = 17 + 16 * INLINE_MAX;

/// Reads the entry at `at`; `offset` (the page's file offset) only labels errors.
fn entry_at(p: &Page, at: usize, offset: u64) -> Result<(Key, Set)> {
    entry_from(p.get(at..).unwrap_or(&[]), offset)
}

/// Decodes the entry at the start of `b`, the page's bytes from the entry on (or the first
/// `ENTRY_MAX` of them).
fn entry_from(b: &[u8], offset: u64) -> Result<(Key, Set)> {
    if b.len() < 17 {
        return Err(bad(offset, "entry beyond page end"));
    }
    let key = get_16(b, 0);
    let c = b[16];
    let body = 17;
    let set = match c {
        EXTENT => {
            if body + EXTENT_BODY > b.len() {
                return Err(bad(offset, "extent entry beyond page end"));
            }
            let x = ExtentRef {
                count: get_u64(b, body),
                first: get_16(b, body + 8),
                offset: get_u64(b, body + 24),
                cap: get_u32(b, body + 32),
                crc: get_u32(b, body + 36),
            };
            if x.count == 0 || x.count > x.cap as u64 {
                return Err(bad(offset, "extent count outside 1..=cap"));
            }
            Set::Extent(x)
        }
        c if (1..=INLINE_MAX as u8).contains(&c) => {
            let n = c as usize;
            if body + 16 * n > b.len() {
                return Err(bad(offset, "inline values beyond page end"));
            }
            match n {
                1 => Set::One(get_16(b, body)),
                _ => Set::Few((0..n).map(|i| get_16(b, body + 16 * i)).collect()),
            }
        }
        _ => return Err(bad(offset, "bad value count byte")),
    };
    Ok((key, set))
}

/// The entry count of a page (or of its header alone), checked to fit the page.
fn count_checked(p: &[u8], offset: u64) -> Result<usize> {
    let n = get_u16(p, 18) as usize;
    if HEADER + 4 * n > PAGE {
        return Err(bad(offset, "entry count too large"));
    }
    Ok(n)
}

/// Decodes every entry of a validated bucket page.
pub fn decode(p: &Page, offset: u64) -> Result<Vec<Entry>> {
    let n = count_checked(p, offset)?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let at = get_u16(p, HEADER + 2 * n + 2 * i) as usize;
        let (key, set) = entry_at(p, at, offset)?;
        let hash = key_hash(&key);
        // `find` trusts the tags: an entry with a wrong one would be invisible to lookups.
        if get_u16(p, HEADER + 2 * i) != hash as u16 {
            return Err(bad(offset, "entry tag does not match its key"));
        }
        out.push(Entry { hash, key, set });
    }
    Ok(out)
}

/// Finds `key` (whose hash is `hash`) in a validated bucket page without decoding the rest.
pub fn find(p: &Page, hash: u64, key: &Key, offset: u64) -> Result<Option<Set>> {
    let mut read = |at: usize, out: &mut [u8]| {
        out.copy_from_slice(&p[at..at + out.len()]);
        Ok(())
    };
    find_in(&mut read, hash, key, offset)
}

/// Tags read per step of [`find_in`].
const TAG_STEP: usize = 64;

/// [`find`] on a validated page that `read(at, out)` copies out piecewise (page bytes
/// `at..at + out.len()`, always within the page): only the header, the tags and the entries
/// whose tag matches are read, a few cache lines instead of the page.
pub fn find_in(
    read: &mut impl FnMut(usize, &mut [u8]) -> Result<()>,
    hash: u64,
    key: &Key,
    offset: u64,
) -> Result<Option<Set>> {
    let mut hdr = [0u8; HEADER];
    read(0, &mut hdr)?;
    let n = count_checked(&hdr, offset)?;
    let tag = hash as u16;
    let mut tags = [0u8; 2 * TAG_STEP];
    for from in (0..n).step_by(TAG_STEP) {
        let m = (n - from).min(TAG_STEP);
        read(HEADER + 2 * from, &mut tags[..2 * m])?;
        for i in (0..m).filter(|&i| get_u16(&tags, 2 * i) == tag) {
            let mut at = [0u8; 2];
            read(HEADER + 2 * n + 2 * (from + i), &mut at)?;
            let at = (u16::from_le_bytes(at) as usize).min(PAGE);
            let mut entry = [0u8; ENTRY_MAX];
            let len = ENTRY_MAX.min(PAGE.saturating_sub(at));
            read(at, &mut entry[..len])?;
            let (k, set) = entry_from(&entry[..len], offset)?;
            if &k == key {
                return Ok(Some(set));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::page::{check, Check};

    fn entry(i: u8, nvals: usize) -> Entry {
        let key = [i; 16];
        let vals: Vec<Value> = (0..nvals).map(|j| [j as u8 + 1; 16]).collect();
        Entry {
            hash: key_hash(&key),
            key,
            set: Set::inline(&vals),
        }
    }

    #[test]
    fn round_trip_inline_and_extent() {
        let mut es = vec![entry(1, 1), entry(2, 4), entry(3, 2)];
        es.push(Entry {
            hash: key_hash(&[9; 16]),
            key: [9; 16],
            set: Set::Extent(ExtentRef {
                count: 100,
                first: [7; 16],
                offset: 1 << 40,
                cap: 128,
                crc: 0xabcd,
            }),
        });
        es.sort_by_key(|e| e.hash);
        let p = encode(&es, 0, 0, 5);
        assert_eq!(check(&p, MAGIC_BUCKET, 5), Check::Ok);
        assert_eq!(check(&p, MAGIC_BUCKET, 4), Check::Stale);
        assert_eq!(decode(&p, 0).unwrap(), es);
        for e in &es {
            assert_eq!(find(&p, e.hash, &e.key, 0).unwrap(), Some(e.set.clone()));
        }
        assert_eq!(find(&p, key_hash(&[5; 16]), &[5; 16], 0).unwrap(), None);
    }

    #[test]
    fn pages_built_from_spans_of_two_sources_match_encode() {
        let mut es: Vec<Entry> = (1..40).map(|i| entry(i, 1 + i as usize % 3)).collect();
        es.sort_by_key(|e| e.hash);
        let pick = |r: usize| -> Vec<Entry> { es.iter().skip(r).step_by(2).cloned().collect() };
        let old = encode(&pick(0), 0, 0, 3);
        let mut spans_old = Vec::new();
        spans(&old, 0, 0, &mut spans_old).unwrap();
        let mut fresh = Vec::new();
        let mut all: Vec<Span> = pick(1)
            .iter()
            .map(|e| put_fresh(&mut fresh, 1, e))
            .chain(spans_old)
            .collect();
        all.sort_by_key(|s| s.hash);
        let srcs: [&[u8]; 2] = [&old[..], &fresh];
        assert_eq!(
            spans_bytes(&all),
            HEADER + es.iter().map(Entry::size).sum::<usize>()
        );
        for (s, e) in all.iter().zip(&es) {
            assert_eq!(span_entry(s, &srcs, 0).unwrap(), (e.key, e.set.clone()));
        }
        let mut built = build(&all, &srcs, 0, 0);
        seal(&mut built, MAGIC_BUCKET, 3);
        assert_eq!(built[..], encode(&es, 0, 0, 3)[..]);
    }

    #[test]
    fn spans_refuse_a_bad_count_byte_and_a_wrong_tag() {
        let es = vec![entry(1, 2)];
        let p = encode(&es, 0, 0, 1);
        let at = get_u16(&p[..], HEADER + 2) as usize;
        let mut bad_count = p.clone();
        bad_count[at + 16] = 9;
        let mut bad_tag = p.clone();
        bad_tag[HEADER] ^= 1;
        for (p, why) in [
            (bad_count, "bad value count byte"),
            (bad_tag, "tag does not match"),
        ] {
            let err = spans(&p, 0, 0, &mut Vec::new()).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn flipped_bit_fails_the_check() {
        let es = vec![entry(1, 1)];
        let mut p = encode(&es, 0, 0, 1);
        p[40] ^= 1;
        assert_eq!(check(&p, MAGIC_BUCKET, 9), Check::Bad("page checksum"));
    }
}
