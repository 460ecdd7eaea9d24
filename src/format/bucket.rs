//! Table pages: the leaves of a table's hash directory. A page holds the entries of one
//! contiguous range of the hash space, a run of whole directory slots. The base table's
//! entries are keys' sets; a delta table's entries are changes to keys' sets.
//!
//! Kind fields (page bytes 16..32): n u16 | 0 u16 | 0 u32 | lo u32 | hi u32: the page covers
//! the hashes whose leading 32 bits lie in `lo..=hi`.
//! Body (from byte 32): tag words [u16; n], then the entries in (hash, key) order, back to back.
//! A tag word is `hash & 0xFFF0 | code`: twelve hash bits for a fast scan, and the entry's
//! shape, from which its length follows:
//!   code 1..=INLINE_MAX: key [16] | code values [16] each, ascending
//!   code EXTENT:         key [16] | count u64 | first value [16] | offset u64 | 0 u32 | crc u32
//!   code DELTA:          key [16] | flags u32 | 0 u32 | adds u64 | dels u64 | offset u64 |
//!                        crc u32 | 0 u32
//! An extent is `count` 16-byte values, ascending, at file `offset`; `crc` is the CRC32C of its
//! `count * 16` bytes and `first` its first (least) value. In a base table codes 1..=8 and
//! EXTENT are the key's whole set; in a delta table they are values added to it, and DELTA is
//! the general change: the key's earlier values are dropped first when flag bit 0 (cleared) is
//! set, then `dels` values are removed and `adds` added; the extent at `offset` holds the adds
//! then the dels, each ascending (offset and crc 0 when both counts are 0).

use super::bytes::*;
use super::hash::key_hash;
pub use super::hash::Range;
use super::layout::PAGE;
#[cfg(test)]
use super::page::{seal, MAGIC_BUCKET};
use super::page::{Page, HEADER};
use crate::error::{Error, Result};
use crate::{Key, Value};

pub const INLINE_MAX: usize = 8;
/// Tag-word code of an entry whose values live in an extent.
pub const EXTENT: u8 = 0xF;
/// Tag-word code of a general change (delta tables only).
pub const DELTA: u8 = 0xE;
/// Bytes after the key of an EXTENT or DELTA entry.
const REF_BODY: usize = 40;
/// The hash bits a tag word keeps.
const TAG_BITS: u16 = 0xFFF0;
/// Flag bit of a DELTA entry: the key's earlier values are dropped.
const CLEARED: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtentRef {
    pub count: u64,
    pub first: Value,
    pub offset: u64,
    pub crc: u32,
}

/// A general change: earlier values dropped (`cleared`), `dels` removed, `adds` added; the
/// extent at `offset` holds the adds, then the dels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeltaRef {
    pub cleared: bool,
    pub adds: u64,
    pub dels: u64,
    pub offset: u64,
    pub crc: u32,
}

impl DeltaRef {
    /// Values in its extent.
    pub fn values(&self) -> u64 {
        self.adds.saturating_add(self.dels)
    }
}

/// What a page entry holds for its key. Decoded entries are moved and copied a lot by a
/// merge, so they are kept small: one value needs no allocation, and a few are boxed rather
/// than held in a fixed `INLINE_MAX` array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// One value, in the page.
    One(Value),
    /// 2..=INLINE_MAX values, ascending, in the page.
    Few(Box<[Value]>),
    /// Values in an extent.
    Extent(ExtentRef),
    /// A general change (delta tables only).
    Delta(DeltaRef),
}

impl Body {
    /// The body of 1..=INLINE_MAX ascending `values`, held in the page.
    pub fn inline(values: &[Value]) -> Body {
        debug_assert!(!values.is_empty() && values.len() <= INLINE_MAX);
        match values {
            [v] => Body::One(*v),
            _ => Body::Few(values.into()),
        }
    }

    /// The values held in the page; `None` for an extent or a general change.
    pub fn inline_values(&self) -> Option<&[Value]> {
        match self {
            Body::One(v) => Some(std::slice::from_ref(v)),
            Body::Few(vs) => Some(vs),
            Body::Extent(_) | Body::Delta(_) => None,
        }
    }

    /// The extent its values are in, as (file offset, values); none when they are inline.
    pub fn extent(&self) -> Option<(u64, u64)> {
        match self {
            Body::Extent(e) => Some((e.offset, e.count)),
            Body::Delta(d) if d.values() > 0 => Some((d.offset, d.values())),
            _ => None,
        }
    }

    /// Values it adds (all of a base set).
    pub fn count(&self) -> u64 {
        match self {
            Body::Extent(e) => e.count,
            Body::Delta(d) => d.adds,
            inline => inline.inline_values().map_or(0, |v| v.len() as u64),
        }
    }

    /// Its least added value (none for a general change).
    pub fn first(&self) -> Option<Value> {
        match self {
            Body::One(v) => Some(*v),
            Body::Few(vs) => Some(vs[0]),
            Body::Extent(e) => Some(e.first),
            Body::Delta(_) => None,
        }
    }

    /// The entry's code in its tag word.
    fn code(&self) -> u8 {
        match self {
            Body::Extent(_) => EXTENT,
            Body::Delta(_) => DELTA,
            inline => inline.inline_values().map_or(0, |v| v.len() as u8),
        }
    }
}

/// Length of an entry (key and body) with tag-word code `code`; None for a code no entry has.
const fn code_len(code: u8) -> Option<usize> {
    match code {
        EXTENT | DELTA => Some(16 + REF_BODY),
        c if c >= 1 && c <= INLINE_MAX as u8 => Some(16 + 16 * c as usize),
        _ => None,
    }
}

fn tag_word(hash: u64, code: u8) -> u16 {
    hash as u16 & TAG_BITS | code as u16
}

#[cfg(any(test, feature = "testing"))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub hash: u64,
    pub key: Key,
    pub body: Body,
}

#[cfg(test)]
impl Entry {
    /// Bytes the entry takes in a page, its tag word included.
    pub fn size(&self) -> usize {
        2 + code_len(self.body.code()).expect("bodies have valid codes")
    }
}

/// Bytes an entry with this body takes in a page, its tag word included.
pub fn body_size(body: &Body) -> usize {
    2 + code_len(body.code()).expect("bodies have valid codes")
}

#[cfg(test)]
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
        ref_checked(b, code, offset)?;
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

/// The key and body of the entry a span of a validated page points at.
pub fn span_entry(span: &Span, srcs: &[&[u8]], offset: u64) -> Result<(Key, Body)> {
    entry_from(span.bytes(srcs), span.code, offset)
}

#[cfg(test)]
/// Appends `e`'s bytes to `fresh`, the buffer that is source `src`, and returns its span.
pub fn put_fresh(fresh: &mut Vec<u8>, src: u8, e: &Entry) -> Span {
    put_body(fresh, src, e.hash, &e.key, &e.body)
}

/// Appends the bytes of the entry (`key`, `body`) to `fresh`, the buffer that is source
/// `src`, and returns its span.
pub fn put_body(fresh: &mut Vec<u8>, src: u8, hash: u64, key: &Key, body: &Body) -> Span {
    let at = fresh.len();
    fresh.extend_from_slice(key);
    match body {
        Body::Extent(x) => {
            fresh.extend_from_slice(&x.count.to_le_bytes());
            fresh.extend_from_slice(&x.first);
            fresh.extend_from_slice(&x.offset.to_le_bytes());
            fresh.extend_from_slice(&0u32.to_le_bytes());
            fresh.extend_from_slice(&x.crc.to_le_bytes());
        }
        Body::Delta(d) => {
            fresh.extend_from_slice(&u32::from(d.cleared).to_le_bytes());
            fresh.extend_from_slice(&0u32.to_le_bytes());
            fresh.extend_from_slice(&d.adds.to_le_bytes());
            fresh.extend_from_slice(&d.dels.to_le_bytes());
            fresh.extend_from_slice(&d.offset.to_le_bytes());
            fresh.extend_from_slice(&d.crc.to_le_bytes());
            fresh.extend_from_slice(&0u32.to_le_bytes());
        }
        inline => inline
            .inline_values()
            .unwrap_or_default()
            .iter()
            .for_each(|v| fresh.extend_from_slice(v)),
    }
    debug_assert_eq!(fresh.len() - at + 2, body_size(body));
    Span {
        hash,
        at: at as u32,
        len: (fresh.len() - at) as u16,
        src,
        code: body.code(),
    }
}

#[cfg(test)]
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
fn entry_from(b: &[u8], code: u8, offset: u64) -> Result<(Key, Body)> {
    if code_len(code) != Some(b.len()) {
        return Err(bad(offset, "entry beyond page end"));
    }
    ref_checked(b, code, offset)?;
    let key = get_16(b, 0);
    let body = match code {
        EXTENT => Body::Extent(ExtentRef {
            count: get_u64(b, 16),
            first: get_16(b, 24),
            offset: get_u64(b, 40),
            crc: get_u32(b, 52),
        }),
        DELTA => Body::Delta(DeltaRef {
            cleared: get_u32(b, 16) & CLEARED != 0,
            adds: get_u64(b, 24),
            dels: get_u64(b, 32),
            offset: get_u64(b, 40),
            crc: get_u32(b, 48),
        }),
        1 => Body::One(get_16(b, 16)),
        c => Body::Few((0..c as usize).map(|i| get_16(b, 16 + 16 * i)).collect()),
    };
    Ok((key, body))
}

/// Checks the fields an EXTENT or DELTA entry `b` must have: an extent holds at least one
/// value; a change either drops the earlier values or has values, and its unused fields are
/// zero.
fn ref_checked(b: &[u8], code: u8, offset: u64) -> Result<()> {
    match code {
        EXTENT if get_u64(b, 16) == 0 => Err(bad(offset, "extent of no values")),
        DELTA => {
            let flags = get_u32(b, 16);
            let values = get_u64(b, 24).checked_add(get_u64(b, 32));
            let no_extent = get_u64(b, 40) == 0 && get_u32(b, 48) == 0;
            match values {
                _ if flags & !CLEARED != 0 || get_u32(b, 20) != 0 || get_u32(b, 52) != 0 => {
                    Err(bad(offset, "unknown bits in a change entry"))
                }
                None => Err(bad(offset, "change entry counts overflow")),
                Some(0) if flags & CLEARED == 0 || !no_extent => {
                    Err(bad(offset, "empty change entry"))
                }
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// The entry count of a page (or of its header alone), checked to fit the page.
fn count_checked(p: &[u8], offset: u64) -> Result<usize> {
    let n = header(p).0;
    if HEADER + 2 * n > PAGE {
        return Err(bad(offset, "entry count too large"));
    }
    Ok(n)
}

#[cfg(any(test, feature = "testing"))]
/// Decodes every entry of a validated bucket page.
pub fn decode(p: &Page, offset: u64) -> Result<Vec<Entry>> {
    let mut spans_out = Vec::new();
    spans(p, 0, offset, &mut spans_out)?;
    let srcs: &[&[u8]] = &[&p[..]];
    spans_out
        .iter()
        .map(|s| {
            let (key, body) = span_entry(s, srcs, offset)?;
            Ok(Entry {
                hash: s.hash,
                key,
                body,
            })
        })
        .collect()
}

/// Finds `key` (whose hash is `hash`) in a validated bucket page without decoding the rest.
pub fn find(p: &Page, hash: u64, key: &Key, offset: u64) -> Result<Option<Body>> {
    let mut read = |at: usize, out: &mut [u8]| {
        out.copy_from_slice(&p[at..at + out.len()]);
        Ok(())
    };
    find_in(&mut read, hash, key, offset)
}

/// Where a search of a page stands: tag word `i`, whose entry starts at byte `at` and has
/// tag-word code `code` (`i` is the entry count and `code` 0 when no tag word from there on
/// matches). Kept small (a page's counts and places fit 16 bits), as batches keep one per key
/// in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    i: u16,
    at: u16,
    pub code: u8,
}

impl Mark {
    fn new(i: usize, at: usize, code: u8) -> Mark {
        debug_assert!(i <= PAGE && at <= PAGE);
        Mark {
            i: i as u16,
            at: at as u16,
            code,
        }
    }

    /// The entry's place in the page.
    pub fn at(&self) -> usize {
        usize::from(self.at)
    }

    /// Bytes of the entry it points at (0 at the end).
    pub fn len(&self) -> usize {
        code_len(self.code).unwrap_or(0)
    }
}

/// The entry count of a page that `read` copies out piecewise, checked.
fn count_in(read: &mut impl FnMut(usize, &mut [u8]) -> Result<()>, offset: u64) -> Result<usize> {
    let mut hdr = [0u8; HEADER];
    read(0, &mut hdr)?;
    count_checked(&hdr, offset)
}

/// Tag words read per step of [`find_in`].
const TAG_STEP: usize = 64;

/// One in each 16-bit lane of a u64: the scan reads four tag words at a time as one.
const LANES: u64 = 0x0001_0001_0001_0001;

/// Four tag words `q` against `tags` ([`LANES`] × the tag): the lowest lane whose twelve hash
/// bits match has its top bit set in the result (higher lanes may be set falsely; only the
/// lowest is used).
fn lane_hits(q: u64, tags: u64) -> u64 {
    let v = (q ^ tags) & (u64::from(TAG_BITS) * LANES);
    v.wrapping_sub(LANES) & !v & (0x8000 * LANES)
}

/// Running sums over tag words' codes, four lanes at a time, added up at the end of a step.
/// A lane's sums stay below 16 × 16 per step, so lanes never carry into each other.
#[derive(Default)]
struct Lengths {
    /// Tag words counted.
    words: usize,
    /// Codes, per lane.
    codes: u64,
    /// Ones in the lanes of EXTENT or DELTA codes.
    refs: u64,
    /// The codes of those lanes.
    ref_codes: u64,
    /// Ones in the lanes of codes no entry has.
    bad: u64,
}

impl Lengths {
    /// Counts the `lanes` lanes of `q` that `keep` (0xFFFF per lane) selects.
    fn add(&mut self, q: u64, keep: u64, lanes: usize) {
        let c = q & keep & (0xF * LANES);
        // Per lane, without a carry out of it (c ≤ 15): c + 2 ≥ 16 for codes 14 and 15,
        // c + 15 ≥ 16 for c ≥ 1, c + 7 ≥ 16 for c ≥ 9.
        let refs = (c + 2 * LANES) >> 4 & LANES & keep;
        let some = (c + 15 * LANES) >> 4 & LANES;
        let above_inline = (c + 7 * LANES) >> 4 & LANES;
        self.bad |= LANES & keep & !(some & (!above_inline | refs));
        self.words += lanes;
        self.codes += c;
        self.refs += refs;
        self.ref_codes += c & (refs * 0xF);
    }

    /// Bytes of the entries counted ([`code_len`] of each code); None when one has a code no
    /// entry has.
    fn bytes(&self) -> Option<usize> {
        let total = |x: u64| (x.wrapping_mul(LANES) >> 48) as usize;
        if self.bad != 0 {
            return None;
        }
        let inline_codes = total(self.codes) - total(self.ref_codes);
        Some(16 * self.words + 16 * inline_codes + REF_BODY * total(self.refs))
    }
}

/// The first tag word from `i` on (its entry at `at`) that carries `hash`'s tag. Four tag
/// words are matched at a time, without a branch per word; the entries before the match are
/// measured at once when their codes are all alike (as in most pages), else four at a time.
fn next_tag(
    read: &mut impl FnMut(usize, &mut [u8]) -> Result<()>,
    n: usize,
    hash: u64,
    mut i: usize,
    mut at: usize,
    offset: u64,
) -> Result<Mark> {
    let tags = u64::from(hash as u16 & TAG_BITS) * LANES;
    let mut words = [0u8; 2 * TAG_STEP];
    while i < n {
        let m = (n - i).min(TAG_STEP);
        // A whole step's bytes when the page has them (a copy of known size, no call): the
        // lanes past the tag words are left out below.
        let from = HEADER + 2 * i;
        match PAGE - from >= words.len() {
            true => read(from, &mut words)?,
            false => read(from, &mut words[..2 * m])?,
        }
        let first = u64::from(words[0] & 0xF);
        // The last four-word group filled up with words that match nothing and have the
        // first word's code, so that every group is scanned alike.
        let filler = (!(hash as u16) & TAG_BITS | first as u16).to_le_bytes();
        for k in m..m.next_multiple_of(4) {
            words[2 * k..2 * k + 2].copy_from_slice(&filler);
        }
        let codes = first * LANES;
        let (mut unlike, mut hit) = (0, None);
        for (g, q) in words.chunks_exact(8).take(m.div_ceil(4)).enumerate() {
            let q = u64::from_le_bytes(q.try_into().expect("8 bytes"));
            let hits = lane_hits(q, tags);
            if hits != 0 {
                let lane = hits.trailing_zeros() as usize / 16;
                unlike |= (q ^ codes) & (u64::MAX >> (48 - 16 * lane)) & (0xF * LANES);
                hit = Some((4 * g + lane, (q >> (16 * lane)) as u8 & 0xF));
                break;
            }
            unlike |= (q ^ codes) & (0xF * LANES);
        }
        let counted = hit.map_or(m, |(j, _)| j + 1);
        let sum = match (unlike, code_len(first as u8)) {
            (0, Some(len)) => counted * len,
            _ => measure(&words[..2 * counted]).ok_or_else(|| bad(offset, "bad entry code"))?,
        };
        if at + sum > PAGE {
            return Err(bad(offset, "entry beyond page end"));
        }
        if let Some((j, code)) = hit {
            let len = code_len(code).expect("measured");
            return Ok(Mark::new(i + j, at + sum - len, code));
        }
        at += sum;
        i += m;
    }
    Ok(Mark::new(n, at, 0))
}

/// Bytes of the entries whose tag words are `words`; None when one has a code no entry has.
fn measure(words: &[u8]) -> Option<usize> {
    let mut lens = Lengths::default();
    for q in words.chunks(8) {
        let mut b = [0u8; 8];
        b[..q.len()].copy_from_slice(q);
        let lanes = q.len() / 2;
        lens.add(u64::from_le_bytes(b), u64::MAX >> (64 - 16 * lanes), lanes);
    }
    lens.bytes()
}

/// The first entry of a validated page whose tag matches `hash`'s: where [`find_in_from`]
/// starts. Found while the entry's lines are not yet needed, so that a batch can load them
/// for many keys at once.
pub fn mark_in(
    read: &mut impl FnMut(usize, &mut [u8]) -> Result<()>,
    hash: u64,
    offset: u64,
) -> Result<Mark> {
    let n = count_in(read, offset)?;
    next_tag(read, n, hash, 0, HEADER + 2 * n, offset)
}

/// [`find`] on a validated page that `read(at, out)` copies out piecewise (page bytes
/// `at..at + out.len()`, always within the page): only the header, the tag words and the
/// entries whose tag matches are read, a few cache lines instead of the page. An entry's
/// place is the sum of the lengths its predecessors' codes give.
pub fn find_in(
    read: &mut impl FnMut(usize, &mut [u8]) -> Result<()>,
    hash: u64,
    key: &Key,
    offset: u64,
) -> Result<Option<Body>> {
    find_in_from(read, hash, key, offset, None)
}

/// [`find_in`] from `from`, the [`mark_in`] of the same page and hash (from the start
/// without one).
pub fn find_in_from(
    read: &mut impl FnMut(usize, &mut [u8]) -> Result<()>,
    hash: u64,
    key: &Key,
    offset: u64,
    from: Option<Mark>,
) -> Result<Option<Body>> {
    // The entry count is needed to go on past a colliding tag: a search from a mark reads the
    // mark's entry first, and the count only after a collision.
    let mut n = None;
    let mut m = match from {
        Some(m) => m,
        None => {
            let count = *n.insert(count_in(read, offset)?);
            next_tag(read, count, hash, 0, HEADER + 2 * count, offset)?
        }
    };
    // Code 0 marks the end: a match has the code of an entry (`next_tag` checks it).
    while m.code != 0 {
        let (len, at) = (m.len(), m.at());
        if len == 0 || at + len > PAGE {
            return Err(bad(offset, "search mark outside the page"));
        }
        let mut entry = [0u8; ENTRY_MAX];
        // The common lengths as fixed-size copies (no call to copy a few bytes).
        match len {
            32 => read(at, &mut entry[..32])?,
            56 => read(at, &mut entry[..56])?,
            _ => read(at, &mut entry[..len])?,
        }
        let (k, body) = entry_from(&entry[..len], m.code, offset)?;
        if &k == key {
            return Ok(Some(body));
        }
        let count = match n {
            Some(count) => count,
            None => *n.insert(count_in(read, offset)?),
        };
        m = next_tag(read, count, hash, usize::from(m.i) + 1, at + len, offset)?;
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
            body: Body::inline(&vals),
        }
    }

    /// A full page of mixed entries read piecewise, against a scan of the whole page: every key
    /// is found, absent keys whose tag collides with a stored one are not, and a damaged code
    /// anywhere gives the match before the damage, else an error.
    #[test]
    fn the_scan_knows_every_code_length() {
        for code in 0..16u64 {
            for lane in 0..4 {
                let q = 0xABC0_ABC0_ABC0_ABC0 | code << (16 * lane);
                let mut lens = Lengths::default();
                lens.add(q, 0xFFFF << (16 * lane), 1);
                assert_eq!(
                    lens.bytes(),
                    code_len(code as u8),
                    "code {code} lane {lane}"
                );
            }
        }
        // Lanes of codes 1..=8 with extents between them, as the scan adds them up.
        let mut lens = Lengths::default();
        lens.add(0x000F_0008_0001_000E, u64::MAX, 4);
        lens.add(0x0000_0000_0003_000F, 0xFFFF_FFFF, 2);
        assert_eq!(lens.bytes(), Some(56 + 144 + 32 + 56 + 64 + 56));
    }

    #[test]
    fn search_agrees_with_a_scan_of_the_page() {
        search_agrees(&[1, 1, 1, 99, 2, 1, 1, 1, 1, 8, 1, 0]);
    }

    /// Pages whose entries all have one shape: the search measures them at once.
    #[test]
    fn search_agrees_on_pages_of_one_shape() {
        search_agrees(&[1]);
        search_agrees(&[2]);
    }

    /// Searches a page of entries with values `shapes[i % len]` (0: an extent, 99: a change)
    /// against a scan of it, whole and with each kind of bad code at several places.
    fn search_agrees(shapes: &[usize]) {
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
            let nvals = shapes[i % shapes.len()];
            let body = match nvals {
                0 => Body::Extent(ExtentRef {
                    count: 9,
                    first: k,
                    offset: 4096,
                    crc: 1,
                }),
                99 => Body::Delta(DeltaRef {
                    cleared: true,
                    adds: 3,
                    dels: 2,
                    offset: 8192,
                    crc: 7,
                }),
                n => Body::inline(&vec![k; n]),
            };
            let e = Entry {
                hash: key_hash(&k),
                key: k,
                body,
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
        let scan = |p: &Page, k: &Key| -> Result<Option<Body>> {
            let n = get_u16(p, 16) as usize;
            let mut at = HEADER + 2 * n;
            for i in 0..n {
                let tw = get_u16(p, HEADER + 2 * i);
                let len = code_len((tw & !TAG_BITS) as u8).ok_or_else(|| bad(0, "code"))?;
                if at + len > PAGE {
                    return Err(bad(0, "end"));
                }
                if tw & TAG_BITS == key_hash(k) as u16 & TAG_BITS {
                    let (ek, body) = entry_from(&p[at..at + len], (tw & !TAG_BITS) as u8, 0)?;
                    if &ek == k {
                        return Ok(Some(body));
                    }
                }
                at += len;
            }
            Ok(None)
        };
        // The search from a mark taken first, as a batch searches.
        let marked = |p: &Page, k: &Key| -> Result<Option<Body>> {
            let mut read = |at: usize, out: &mut [u8]| {
                out.copy_from_slice(&p[at..at + out.len()]);
                Ok(())
            };
            let m = mark_in(&mut read, key_hash(k), 0)?;
            find_in_from(&mut read, key_hash(k), k, 0, Some(m))
        };
        let agree = |p: &Page| {
            for k in &probes {
                let want = scan(p, k);
                for got in [find(p, key_hash(k), k, 0), marked(p, k)] {
                    match (&got, &want) {
                        (Ok(a), Ok(b)) => assert_eq!(a, b),
                        (Err(_), Err(_)) => {}
                        _ => panic!("search {got:?} against scan {want:?}"),
                    }
                }
            }
        };
        agree(&page);
        for (i, e) in es.iter().enumerate() {
            assert_eq!(
                find(&page, e.hash, &e.key, 0).unwrap(),
                Some(e.body.clone()),
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
            for code in [0u16, 9, 0xD, DELTA as u16, EXTENT as u16, INLINE_MAX as u16] {
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
            body: Body::Extent(ExtentRef {
                count: 100,
                first: [7; 16],
                offset: 1 << 40,
                crc: 0xabcd,
            }),
        });
        es.push(Entry {
            hash: key_hash(&[10; 16]),
            key: [10; 16],
            body: Body::Delta(DeltaRef {
                cleared: false,
                adds: 0,
                dels: 12,
                offset: 1 << 33,
                crc: 0x1234,
            }),
        });
        es.push(Entry {
            hash: key_hash(&[11; 16]),
            key: [11; 16],
            body: Body::Delta(DeltaRef {
                cleared: true,
                adds: 0,
                dels: 0,
                offset: 0,
                crc: 0,
            }),
        });
        es.sort_by_key(|e| e.hash);
        let p = encode(&es, Range::ALL, 5);
        assert_eq!(check(&p, MAGIC_BUCKET, 5), Check::Ok);
        assert_eq!(check(&p, MAGIC_BUCKET, 4), Check::Stale);
        assert_eq!(header(&p[..]), (es.len(), Range::ALL));
        assert_eq!(decode(&p, 0).unwrap(), es);
        for e in &es {
            assert_eq!(find(&p, e.hash, &e.key, 0).unwrap(), Some(e.body.clone()));
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
            assert_eq!(span_entry(s, &srcs, 0).unwrap(), (e.key, e.body.clone()));
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
