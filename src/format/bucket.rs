//! Bucket pages: the leaves of the hash directory. A page holds the keys of one contiguous
//! range of the hash space, a run of whole directory slots.
//!
//! Kind fields (page bytes 16..32): n u16 | 0 u16 | 0 u32 | lo u32 | hi u32: the page covers
//! the hashes whose leading 32 bits lie in `lo..=hi`.
//! Body (from byte 32): tag words [u16; n], then the entries in (hash, key) order, back to back.
//! A tag word is `hash & 0xFFF0 | code`: twelve hash bits for a fast scan, and the entry's
//! shape, from which its length follows:
//!   code 1..=INLINE_MAX: key [16] | code values [16] each
//!   code EXTENT:         key [16] | count u64 | first value [16] | offset u64 | cap u32 | crc u32
//! An extent is `cap` 16-byte value slots at file `offset`; the first `count` hold the set and
//! `crc` is the CRC32C of those `count * 16` bytes.

use super::bytes::*;
use super::hash::key_hash;
pub use super::hash::Range;
use super::layout::PAGE;
use super::page::{seal, Page, HEADER, MAGIC_BUCKET};
use crate::error::{Error, Result};
use crate::{Key, Value};

pub const INLINE_MAX: usize = 8;
/// Tag-word code of an entry whose set lives in an extent.
pub const EXTENT: u8 = 0xF;
const EXTENT_BODY: usize = 8 + 16 + 8 + 4 + 4;
/// The hash bits a tag word keeps.
const TAG_BITS: u16 = 0xFFF0;

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

    /// The entry's code in its tag word.
    fn code(&self) -> u8 {
        match self.inline_values() {
            Some(vs) => vs.len() as u8,
            None => EXTENT,
        }
    }
}

/// Length of an entry (key and body) with tag-word code `code`; None for a code no entry has.
fn code_len(code: u8) -> Option<usize> {
    match code {
        EXTENT => Some(16 + EXTENT_BODY),
        c if (1..=INLINE_MAX as u8).contains(&c) => Some(16 + 16 * c as usize),
        _ => None,
    }
}

fn tag_word(hash: u64, code: u8) -> u16 {
    hash as u16 & TAG_BITS | code as u16
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub hash: u64,
    pub key: Key,
    pub set: Set,
}

impl Entry {
    /// Bytes the entry takes in a page, its tag word included.
    pub fn size(&self) -> usize {
        2 + code_len(self.set.code()).expect("sets have valid codes")
    }
}

/// Encodes entries (sorted by hash, all within `range`) into a sealed page.
pub fn encode(entries: &[Entry], range: Range, epoch: u64) -> Box<Page> {
    let mut fresh = Vec::new();
    let spans: Vec<Span> = entries
        .iter()
        .map(|e| put_fresh(&mut fresh, 0, e))
        .collect();
    let mut p = build(&spans, &[&fresh], range);
    seal(&mut p, MAGIC_BUCKET, epoch);
    p
}

/// An entry during a rebuild: its hash, its tag-word code, and its bytes (key, body) at
/// `at..at + len` of source `src` — an old page or a buffer of new entries. Rebuilding a page
/// from spans copies unchanged entries byte for byte instead of decoding and re-encoding them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub hash: u64,
    pub at: u32,
    pub len: u16,
    pub src: u8,
    pub code: u8,
}

impl Span {
    /// Bytes the entry takes in a page, its tag word included.
    pub fn size(&self) -> usize {
        2 + self.len as usize
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
    let mut at = HEADER + 2 * n;
    for i in 0..n {
        let tw = get_u16(p, HEADER + 2 * i);
        let code = (tw & !TAG_BITS) as u8;
        let len = code_len(code).ok_or_else(|| bad(offset, "bad entry code"))?;
        let b = p
            .get(at..at + len)
            .ok_or_else(|| bad(offset, "entry beyond page end"))?;
        if code == EXTENT {
            extent_count_checked(b, offset)?;
        }
        let hash = key_hash(&get_16(b, 0));
        if tw & TAG_BITS != hash as u16 & TAG_BITS {
            return Err(bad(offset, "entry tag does not match its key"));
        }
        out.push(Span {
            hash,
            at: at as u32,
            len: len as u16,
            src,
            code,
        });
        at += len;
    }
    Ok(())
}

/// The key and set of the entry a span of a validated page points at.
pub fn span_entry(span: &Span, srcs: &[&[u8]], offset: u64) -> Result<(Key, Set)> {
    entry_from(span.bytes(srcs), span.code, offset)
}

/// Appends `e`'s bytes to `fresh`, the buffer that is source `src`, and returns its span.
pub fn put_fresh(fresh: &mut Vec<u8>, src: u8, e: &Entry) -> Span {
    let at = fresh.len();
    fresh.extend_from_slice(&e.key);
    match &e.set {
        Set::Extent(x) => {
            fresh.extend_from_slice(&x.count.to_le_bytes());
            fresh.extend_from_slice(&x.first);
            fresh.extend_from_slice(&x.offset.to_le_bytes());
            fresh.extend_from_slice(&x.cap.to_le_bytes());
            fresh.extend_from_slice(&x.crc.to_le_bytes());
        }
        inline => inline
            .inline_values()
            .unwrap_or_default()
            .iter()
            .for_each(|v| fresh.extend_from_slice(v)),
    }
    debug_assert_eq!(fresh.len() - at + 2, e.size());
    Span {
        hash: e.hash,
        at: at as u32,
        len: (fresh.len() - at) as u16,
        src,
        code: e.set.code(),
    }
}

/// An unsealed bucket page holding `spans`, as [`build_into`] makes it.
pub fn build(spans: &[Span], srcs: &[&[u8]], range: Range) -> Box<Page> {
    let mut p = Box::new([0u8; PAGE]);
    build_into(&mut p, spans, srcs, range);
    p
}

/// Makes `p` (whatever it held) an unsealed bucket page covering `range` and holding `spans`
/// (sorted by hash, all within the range), their bytes copied from `srcs`; neighbours that are
/// neighbours in their source too are copied in one piece.
pub fn build_into(p: &mut Page, spans: &[Span], srcs: &[&[u8]], range: Range) {
    assert!(
        spans_bytes(spans) <= PAGE,
        "bucket overflow passed to build"
    );
    debug_assert!(range.aligned(), "{range:x?}");
    let n = spans.len();
    p[..HEADER].fill(0);
    put_u16(&mut p[..], 16, n as u16);
    put_u32(&mut p[..], 24, (range.lo >> 32) as u32);
    put_u32(&mut p[..], 28, (range.hi >> 32) as u32);
    let mut at = HEADER + 2 * n;
    let mut i = 0;
    while i < n {
        let first = spans[i];
        let mut end = first.at as usize;
        let mut j = i;
        while let Some(s) = spans.get(j) {
            if j > i && (s.src != first.src || s.at as usize != end) {
                break;
            }
            debug_assert!(range.contains(s.hash));
            end = s.at as usize + s.len as usize;
            put_u16(&mut p[..], HEADER + 2 * j, tag_word(s.hash, s.code));
            j += 1;
        }
        let bytes = &srcs[first.src as usize][first.at as usize..end];
        p[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
        i = j;
    }
    p[at..].fill(0);
}

/// Entry count and range of a (validated) bucket page.
pub fn header(p: &[u8]) -> (usize, Range) {
    let range = Range {
        lo: (get_u32(p, 24) as u64) << 32,
        hi: (get_u32(p, 28) as u64) << 32 | u32::MAX as u64,
    };
    (get_u16(p, 16) as usize, range)
}

fn bad(offset: u64, why: &str) -> Error {
    Error::corrupt("bucket page", offset, why.to_string())
}

/// Longest entry: key and `INLINE_MAX` values (an extent entry is shorter).
const ENTRY_MAX: usize = 16 + 16 * INLINE_MAX;

/// Decodes an entry's bytes `b` (exactly its length) given its tag-word code.
fn entry_from(b: &[u8], code: u8, offset: u64) -> Result<(Key, Set)> {
    if code_len(code) != Some(b.len()) {
        return Err(bad(offset, "entry beyond page end"));
    }
    let key = get_16(b, 0);
    let set = match code {
        EXTENT => {
            let x = ExtentRef {
                count: get_u64(b, 16),
                first: get_16(b, 24),
                offset: get_u64(b, 40),
                cap: get_u32(b, 48),
                crc: get_u32(b, 52),
            };
            extent_count_checked(b, offset)?;
            Set::Extent(x)
        }
        1 => Set::One(get_16(b, 16)),
        c => Set::Few((0..c as usize).map(|i| get_16(b, 16 + 16 * i)).collect()),
    };
    Ok((key, set))
}

/// Checks that the extent entry `b` counts 1..=cap values.
fn extent_count_checked(b: &[u8], offset: u64) -> Result<()> {
    let (count, cap) = (get_u64(b, 16), get_u32(b, 48));
    if count == 0 || count > cap as u64 {
        return Err(bad(offset, "extent count outside 1..=cap"));
    }
    Ok(())
}

/// The entry count of a page (or of its header alone), checked to fit the page.
fn count_checked(p: &[u8], offset: u64) -> Result<usize> {
    let n = header(p).0;
    if HEADER + 2 * n > PAGE {
        return Err(bad(offset, "entry count too large"));
    }
    Ok(n)
}

/// Decodes every entry of a validated bucket page.
pub fn decode(p: &Page, offset: u64) -> Result<Vec<Entry>> {
    let mut spans_out = Vec::new();
    spans(p, 0, offset, &mut spans_out)?;
    let srcs: &[&[u8]] = &[&p[..]];
    spans_out
        .iter()
        .map(|s| {
            let (key, set) = span_entry(s, srcs, offset)?;
            Ok(Entry {
                hash: s.hash,
                key,
                set,
            })
        })
        .collect()
}

/// Finds `key` (whose hash is `hash`) in a validated bucket page without decoding the rest.
pub fn find(p: &Page, hash: u64, key: &Key, offset: u64) -> Result<Option<Set>> {
    let mut read = |at: usize, out: &mut [u8]| {
        out.copy_from_slice(&p[at..at + out.len()]);
        Ok(())
    };
    find_in(&mut read, hash, key, offset)
}

/// Tag words read per step of [`find_in`].
const TAG_STEP: usize = 64;

/// [`find`] on a validated page that `read(at, out)` copies out piecewise (page bytes
/// `at..at + out.len()`, always within the page): only the header, the tag words and the
/// entries whose tag matches are read, a few cache lines instead of the page. An entry's
/// place is the sum of the lengths its predecessors' codes give.
pub fn find_in(
    read: &mut impl FnMut(usize, &mut [u8]) -> Result<()>,
    hash: u64,
    key: &Key,
    offset: u64,
) -> Result<Option<Set>> {
    let mut hdr = [0u8; HEADER];
    read(0, &mut hdr)?;
    let n = count_checked(&hdr, offset)?;
    let tag = hash as u16 & TAG_BITS;
    let mut words = [0u8; 2 * TAG_STEP];
    let mut at = HEADER + 2 * n;
    for from in (0..n).step_by(TAG_STEP) {
        let m = (n - from).min(TAG_STEP);
        read(HEADER + 2 * from, &mut words[..2 * m])?;
        for i in 0..m {
            let tw = get_u16(&words, 2 * i);
            let code = (tw & !TAG_BITS) as u8;
            let len = code_len(code).ok_or_else(|| bad(offset, "bad entry code"))?;
            if at + len > PAGE {
                return Err(bad(offset, "entry beyond page end"));
            }
            if tw & TAG_BITS == tag {
                let mut entry = [0u8; ENTRY_MAX];
                read(at, &mut entry[..len])?;
                let (k, set) = entry_from(&entry[..len], code, offset)?;
                if &k == key {
                    return Ok(Some(set));
                }
            }
            at += len;
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

    /// A full page of mixed entries read piecewise, against a scan of the whole page: every key
    /// is found, absent keys whose tag collides with a stored one are not, and a damaged code
    /// anywhere gives the match before the damage, else an error.
    #[test]
    fn search_agrees_with_a_scan_of_the_page() {
        let seed = 0x2545_f491_4f6c_dd1du64;
        println!("seed {seed:#x}");
        let mut next = crate::engine::xorshift(seed);
        let mut key = || {
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&next().to_le_bytes());
            k[8..].copy_from_slice(&next().to_le_bytes());
            k
        };
        // Eight keys share one tag, so that a search must go on past colliding entries.
        let shared = key_hash(&key()) as u16 & TAG_BITS;
        let mut same = std::iter::repeat_with(&mut key)
            .filter(|k| key_hash(k) as u16 & TAG_BITS == shared)
            .take(8)
            .collect::<Vec<_>>();
        let mut es: Vec<Entry> = Vec::new();
        let mut used = HEADER;
        for i in 0usize.. {
            let k = same.pop().unwrap_or_else(&mut key);
            let nvals = [1, 1, 1, 1, 2, 1, 1, 1, 1, 8, 1, 0][i % 12];
            let set = if nvals == 0 {
                Set::Extent(ExtentRef {
                    count: 9,
                    first: k,
                    offset: 4096,
                    cap: 16,
                    crc: 1,
                })
            } else {
                Set::inline(&vec![k; nvals])
            };
            let e = Entry {
                hash: key_hash(&k),
                key: k,
                set,
            };
            if used + e.size() > PAGE {
                break;
            }
            used += e.size();
            es.push(e);
        }
        assert!(es.len() > TAG_STEP + 16, "the page spans several steps");
        es.sort_by_key(|e| (e.hash, e.key));
        let page = encode(&es, Range::ALL, 1);
        // Absent keys whose twelve tag bits equal a stored key's.
        let tags: std::collections::HashSet<u16> =
            es.iter().map(|e| e.hash as u16 & TAG_BITS).collect();
        let mut probes: Vec<Key> = es.iter().map(|e| e.key).collect();
        while probes.len() < es.len() + 20 {
            let k = key();
            if tags.contains(&(key_hash(&k) as u16 & TAG_BITS)) {
                probes.push(k);
            }
        }
        let scan = |p: &Page, k: &Key| -> Result<Option<Set>> {
            let n = get_u16(p, 16) as usize;
            let mut at = HEADER + 2 * n;
            for i in 0..n {
                let tw = get_u16(p, HEADER + 2 * i);
                let len = code_len((tw & !TAG_BITS) as u8).ok_or_else(|| bad(0, "code"))?;
                if at + len > PAGE {
                    return Err(bad(0, "end"));
                }
                if tw & TAG_BITS == key_hash(k) as u16 & TAG_BITS {
                    let (ek, set) = entry_from(&p[at..at + len], (tw & !TAG_BITS) as u8, 0)?;
                    if &ek == k {
                        return Ok(Some(set));
                    }
                }
                at += len;
            }
            Ok(None)
        };
        let agree = |p: &Page| {
            for k in &probes {
                let (got, want) = (find(p, key_hash(k), k, 0), scan(p, k));
                match (&got, &want) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b),
                    (Err(_), Err(_)) => {}
                    _ => panic!("search {got:?} against scan {want:?}"),
                }
            }
        };
        agree(&page);
        for (i, e) in es.iter().enumerate() {
            assert_eq!(
                find(&page, e.hash, &e.key, 0).unwrap(),
                Some(e.set.clone()),
                "entry {i}"
            );
        }
        for k in &probes[es.len()..] {
            assert_eq!(
                find(&page, key_hash(k), k, 0).unwrap(),
                None,
                "a colliding tag"
            );
        }
        for i in [0, 5, 15, 16, 40, TAG_STEP - 1, TAG_STEP, es.len() - 1] {
            for code in [0u16, 9, 0xE, EXTENT as u16, INLINE_MAX as u16] {
                let mut p = page.clone();
                let tw = get_u16(&p[..], HEADER + 2 * i) & TAG_BITS | code;
                p[HEADER + 2 * i..HEADER + 2 * i + 2].copy_from_slice(&tw.to_le_bytes());
                agree(&p);
            }
        }
    }

    #[test]
    fn round_trip_inline_and_extent() {
        let mut es = vec![entry(1, 1), entry(2, 4), entry(3, 2), entry(4, INLINE_MAX)];
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
        let p = encode(&es, Range::ALL, 5);
        assert_eq!(check(&p, MAGIC_BUCKET, 5), Check::Ok);
        assert_eq!(check(&p, MAGIC_BUCKET, 4), Check::Stale);
        assert_eq!(header(&p[..]), (es.len(), Range::ALL));
        assert_eq!(decode(&p, 0).unwrap(), es);
        for e in &es {
            assert_eq!(find(&p, e.hash, &e.key, 0).unwrap(), Some(e.set.clone()));
        }
        assert_eq!(find(&p, key_hash(&[5; 16]), &[5; 16], 0).unwrap(), None);
        let used = HEADER + es.iter().map(Entry::size).sum::<usize>();
        assert!(p[used..].iter().all(|b| *b == 0), "bytes past the entries");
        assert_eq!(entry(1, 1).size(), 34, "a one-value entry");
    }

    #[test]
    fn a_page_records_its_range() {
        let range = Range {
            lo: 0x1234_5678 << 32,
            hi: 0x2000_0000 << 32 | u32::MAX as u64,
        };
        let mut es: Vec<Entry> = (0..=255u8)
            .map(|i| entry(i, 1))
            .filter(|e| range.contains(e.hash))
            .collect();
        es.sort_by_key(|e| e.hash);
        assert!(!es.is_empty());
        let p = encode(&es, range, 1);
        assert_eq!(header(&p[..]), (es.len(), range));
        assert_eq!(decode(&p, 0).unwrap(), es);
    }

    #[test]
    fn pages_built_from_spans_of_two_sources_match_encode() {
        let mut es: Vec<Entry> = (1..40).map(|i| entry(i, 1 + i as usize % 3)).collect();
        es.sort_by_key(|e| e.hash);
        let pick = |r: usize| -> Vec<Entry> { es.iter().skip(r).step_by(2).cloned().collect() };
        let old = encode(&pick(0), Range::ALL, 3);
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
        let mut built = build(&all, &srcs, Range::ALL);
        seal(&mut built, MAGIC_BUCKET, 3);
        assert_eq!(built[..], encode(&es, Range::ALL, 3)[..]);
    }

    #[test]
    fn spans_refuse_a_bad_code_and_a_wrong_tag() {
        let es = vec![entry(1, 2)];
        let p = encode(&es, Range::ALL, 1);
        let mut bad_code = p.clone();
        bad_code[HEADER] = bad_code[HEADER] & 0xF0 | 9;
        let mut bad_tag = p.clone();
        bad_tag[HEADER] ^= 0x10;
        for (p, why) in [
            (bad_code, "bad entry code"),
            (bad_tag, "tag does not match"),
        ] {
            let err = spans(&p, 0, 0, &mut Vec::new()).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn flipped_bit_fails_the_check() {
        let es = vec![entry(1, 1)];
        let mut p = encode(&es, Range::ALL, 1);
        p[40] ^= 1;
        assert_eq!(check(&p, MAGIC_BUCKET, 9), Check::Bad("page checksum"));
    }
}
