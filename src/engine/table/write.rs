//! Writing a table as a stream: entries arrive in (hash, key) order; they are packed into pages
//! cut at directory-slot boundaries (each page as full as whole slots allow), large value
//! lists go to extents, and both are appended to segments in order, so a table is written
//! sequentially however large it is. The directory and the segment list are streamed arrays.
//! A writer can publish its prefix at a slot boundary (`checkpoint`) and carry on, also after
//! a restart (`resume`).

use super::super::array::{ArrayWriter, Sink};
use super::super::sets::ChangeRef;
use crate::error::{Error, Result};
use crate::format::bucket::{self, body_size, Body, DeltaRef, ExtentRef, Span, INLINE_MAX};
use crate::format::filter::{FilterBuilder, MIN_DEPTH};
use crate::format::hash::{dir_index, Range};
use crate::format::layout::{PAGE, SEGMENT};
use crate::format::page::{seal, Page, HEADER, MAGIC_BUCKET};
use crate::format::table::{dir_item, Kind, TableRef};
use crate::store::Positional;
use crate::Value;

/// Where a table writer gets its space: runs of segments and single pages, each with the epoch
/// that what is written into it carries (every write at an offset carries a larger epoch than
/// any earlier write there).
pub trait Alloc {
    fn segments(&mut self, n: u64) -> Result<(u64, u64)>;
    fn page(&mut self) -> Result<(u64, u64)>;
}

/// The last hash of a segment that a published prefix lists while it is still being filled:
/// a later merge frees it only when it is done with the whole table.
const OPEN_SEGMENT: u64 = u64::MAX;
/// The least room left at the end of a segment that its table gives back to the filesystem.
const UNUSED_TAIL: u64 = 64 << 10;

/// Appends bytes to segments, one after another, and lists each segment with the last hash of
/// the entries whose bytes are in it.
#[derive(Default)]
struct Stream {
    /// The segment being filled: offset, epoch, bytes used.
    seg: Option<(u64, u64, u64)>,
    /// Bytes of the segment not yet written, and where they start in it.
    buf: Vec<u8>,
    buf_at: u64,
    /// The last hash of data in the segment.
    hi: u64,
    /// The segment is already in the list (as open) from a published prefix.
    listed: bool,
}

impl Stream {
    /// Room for `len` more bytes, as one contiguous piece; returns its file offset and epoch.
    fn reserve(&mut self, len: u64, hash: u64, io: &mut Io) -> Result<(u64, u64)> {
        *io.bytes += len;
        if self.seg.is_some_and(|(_, _, used)| used + len > SEGMENT) {
            self.close(io)?;
        }
        if len > SEGMENT {
            // A run of segments for this piece alone, listed now; the last one's spare room
            // becomes the segment being filled.
            let n = len.div_ceil(SEGMENT);
            let (off, epoch) = io.alloc.segments(n)?;
            for i in 0..n - 1 {
                io.list_segment(off + i * SEGMENT, hash)?;
            }
            self.seg = Some((off + (n - 1) * SEGMENT, epoch, len - (n - 1) * SEGMENT));
            self.buf_at = len - (n - 1) * SEGMENT;
            self.hi = hash;
            self.listed = false;
            return Ok((off, epoch));
        }
        let (seg, epoch, used) = match self.seg {
            Some(s) => s,
            None => {
                let (off, epoch) = io.alloc.segments(1)?;
                self.buf_at = 0;
                self.listed = false;
                (off, epoch, 0)
            }
        };
        self.seg = Some((seg, epoch, used + len));
        self.hi = hash;
        Ok((seg + used, epoch))
    }

    /// Appends bytes at the place `reserve` gave (contiguous with what is buffered).
    fn append(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Writes what is buffered.
    fn write_out(&mut self, io: &mut Io) -> Result<()> {
        if let Some((seg, _, _)) = self.seg {
            if !self.buf.is_empty() {
                io.file.write_at(seg + self.buf_at, &self.buf)?;
                self.buf_at += self.buf.len() as u64;
                self.buf.clear();
            }
        }
        Ok(())
    }

    /// Writes the segment out and lists it.
    fn close(&mut self, io: &mut Io) -> Result<()> {
        self.write_out(io)?;
        if let Some((seg, _, used)) = self.seg.take() {
            if SEGMENT - used >= UNUSED_TAIL {
                // Reused space keeps its old blocks until punched: the tail would hold them.
                io.file.unused(seg + used, SEGMENT - used);
            }
            io.file.written(seg, SEGMENT);
            if !self.listed {
                io.list_segment(seg, self.hi)?;
            }
        }
        Ok(())
    }

    /// Writes what is buffered and lists the segment being filled as open, for a published
    /// prefix (it keeps being filled).
    fn publish(&mut self, io: &mut Io) -> Result<()> {
        self.write_out(io)?;
        if let (Some((seg, _, _)), false) = (self.seg, self.listed) {
            io.list_segment(seg, OPEN_SEGMENT)?;
            self.listed = true;
        }
        Ok(())
    }
}

/// What the streams share: the file, the allocator, the segment list and pages for arrays.
struct Io<'a> {
    file: &'a dyn Positional,
    alloc: &'a mut dyn Alloc,
    segs: &'a mut ArrayWriter,
    arrays: &'a mut Vec<(u64, Box<Page>)>,
    bytes: &'a mut u64,
    listed: &'a mut Vec<u64>,
}

impl Io<'_> {
    fn list_segment(&mut self, seg: u64, hi: u64) -> Result<()> {
        let alloc = &mut *self.alloc;
        let mut page = || alloc.page();
        let mut sink = Sink {
            alloc: &mut page,
            out: self.arrays,
        };
        self.segs.push(seg, &mut sink)?;
        self.segs.push(hi, &mut sink)?;
        self.listed.push(seg);
        Ok(())
    }
}

/// An entry on its way into a table: its values (a base table's set, or a delta table's
/// change), already in table order.
pub enum Values<'a> {
    /// A whole set (base tables), or values added (delta tables), ascending.
    Set(&'a [Value]),
    /// A general change (delta tables).
    Change(ChangeRef<'a>),
    /// An entry's bytes as another table holds them, inline: copied as they are.
    Raw(u8, &'a [u8]),
}

pub struct TableWriter {
    depth: u32,
    pages: Stream,
    values: Stream,
    dir: ArrayWriter,
    segs: ArrayWriter,
    /// Array pages written and not yet flushed.
    arrays: Vec<(u64, Box<Page>)>,
    /// The slot being filled and its entries (bytes, spans into them).
    slot: u64,
    slot_bytes: Vec<u8>,
    slot_spans: Vec<Span>,
    /// The page being filled: its entries, first and last slot, bytes it takes.
    page_bytes: Vec<u8>,
    page_spans: Vec<Span>,
    page_slots: Option<(u64, u64)>,
    page_used: usize,
    /// Directory slots whose items are pushed.
    next_item: u64,
    t: TableRef,
    buf: Box<Page>,
    /// Segments listed so far.
    listed: Vec<u64>,
    /// The key filter written after the directory items (delta tables).
    filter: Option<FilterBuilder>,
}

/// Directory depth for a table of about `bytes` bytes of entries: slots of a quarter page on
/// average, so pages can be cut close to full at slot boundaries.
pub fn depth_for(bytes: u64) -> u32 {
    let slots = bytes / (PAGE as u64 / 4);
    (u64::BITS - slots.leading_zeros()).min(32)
}

impl TableWriter {
    /// A writer of a table of directory depth `depth`, with a key filter for up to about
    /// `filter` keys when given (a delta table's: written whole by `finish`, as such a table
    /// is never published in part).
    pub fn new(kind: Kind, id: u64, depth: u32, filter: Option<u64>) -> TableWriter {
        let filter = filter
            .filter(|&keys| kind == Kind::Delta && depth >= MIN_DEPTH && keys > 0)
            .map(FilterBuilder::new);
        let words = filter.as_ref().map_or(0, |f| f.words().len() as u64);
        TableWriter {
            depth,
            pages: Stream::default(),
            values: Stream::default(),
            dir: ArrayWriter::new(Some((1u64 << depth) + words)),
            segs: ArrayWriter::new(None),
            arrays: Vec::new(),
            slot: 0,
            slot_bytes: Vec::new(),
            slot_spans: Vec::new(),
            page_bytes: Vec::new(),
            page_spans: Vec::new(),
            page_slots: None,
            page_used: HEADER,
            next_item: 0,
            t: TableRef {
                id,
                kind,
                depth,
                ..TableRef::default()
            },
            buf: Box::new([0; PAGE]),
            listed: Vec::new(),
            filter,
        }
    }

    /// Carries on writing the table `t`, whose prefix up to hash `cursor` (a slot boundary)
    /// was published, with its arrays' writers resumed by the caller.
    pub fn resume(t: &TableRef, cursor: u64, dir: ArrayWriter, segs: ArrayWriter) -> TableWriter {
        let mut w = TableWriter::new(t.kind, t.id, t.depth, None);
        w.dir = dir;
        w.segs = segs;
        w.next_item = dir_index(cursor, t.depth);
        w.slot = w.next_item;
        w.t = *t;
        w
    }

    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// Bytes of pages and extents written so far.
    pub fn bytes(&self) -> u64 {
        self.t.bytes
    }

    /// Adds the entry of `key` (hash `hash`, after every entry added before).
    pub fn add(
        &mut self,
        file: &dyn Positional,
        alloc: &mut dyn Alloc,
        hash: u64,
        key: &[u8; 16],
        v: Values,
    ) -> Result<()> {
        let s = dir_index(hash, self.depth);
        if s != self.slot {
            self.close_slot(file, alloc)?;
            self.slot = s;
        }
        if let Some(f) = &mut self.filter {
            f.add(hash);
        }
        let body = match v {
            Values::Raw(code, bytes) => {
                let at = self.slot_bytes.len() as u32;
                self.slot_bytes.extend_from_slice(key);
                self.slot_bytes.extend_from_slice(bytes);
                self.slot_spans.push(Span {
                    hash,
                    at,
                    len: (16 + bytes.len()) as u16,
                    src: 0,
                    code,
                });
                self.t.entries += 1;
                self.t.values += (bytes.len() / 16) as u64;
                return Ok(());
            }
            Values::Set(vals) => self.set_body(file, alloc, hash, vals)?,
            Values::Change(c) if c.is_adds_only() => self.set_body(file, alloc, hash, c.adds)?,
            Values::Change(c) => {
                self.t.changes += 1;
                self.change_body(file, alloc, hash, c)?
            }
        };
        self.t.entries += 1;
        self.t.values += body.count();
        let span = bucket::put_body(&mut self.slot_bytes, 0, hash, key, &body);
        self.slot_spans.push(span);
        Ok(())
    }

    fn set_body(
        &mut self,
        file: &dyn Positional,
        alloc: &mut dyn Alloc,
        hash: u64,
        vals: &[Value],
    ) -> Result<Body> {
        debug_assert!(!vals.is_empty());
        if vals.len() <= INLINE_MAX {
            return Ok(Body::inline(vals));
        }
        let (offset, crc) = self.extent(file, alloc, hash, &[vals])?;
        Ok(Body::Extent(ExtentRef {
            count: vals.len() as u64,
            first: vals[0],
            offset,
            crc,
        }))
    }

    fn change_body(
        &mut self,
        file: &dyn Positional,
        alloc: &mut dyn Alloc,
        hash: u64,
        c: ChangeRef,
    ) -> Result<Body> {
        let (offset, crc) = match c.adds.len() + c.dels.len() {
            0 => (0, 0),
            _ => self.extent(file, alloc, hash, &[c.adds, c.dels])?,
        };
        Ok(Body::Delta(DeltaRef {
            cleared: c.cleared,
            adds: c.adds.len() as u64,
            dels: c.dels.len() as u64,
            offset,
            crc,
        }))
    }

    /// Writes `parts` one after another as one extent; returns its offset and CRC.
    fn extent(
        &mut self,
        file: &dyn Positional,
        alloc: &mut dyn Alloc,
        hash: u64,
        parts: &[&[Value]],
    ) -> Result<(u64, u32)> {
        let len: u64 = parts.iter().map(|p| p.len() as u64 * 16).sum();
        let mut io = Io {
            file,
            alloc,
            segs: &mut self.segs,
            arrays: &mut self.arrays,
            bytes: &mut self.t.bytes,
            listed: &mut self.listed,
        };
        let values = &mut self.values;
        let (offset, _) = values.reserve(len, hash, &mut io)?;
        let mut crc = 0;
        for p in parts {
            let b = p.as_flattened();
            crc = crc32c::crc32c_append(crc, b);
            if len > SEGMENT {
                continue; // written below, in place
            }
            values.append(b);
        }
        if len > SEGMENT {
            let mut at = offset;
            for p in parts {
                file.write_at(at, p.as_flattened())?;
                at += p.len() as u64 * 16;
            }
        }
        self.t.extents += 1;
        Ok((offset, crc))
    }

    /// Moves the finished slot into the page, cutting the page first if the slot does not fit.
    fn close_slot(&mut self, file: &dyn Positional, alloc: &mut dyn Alloc) -> Result<()> {
        if self.slot_spans.is_empty() {
            return Ok(());
        }
        let size: usize = self.slot_spans.iter().map(Span::size).sum();
        if HEADER + size > PAGE {
            return Err(Error::InvalidArgument(format!(
                "{} keys share the leading {} bits of their hash and do not fit one page",
                self.slot_spans.len(),
                self.depth
            )));
        }
        if self.page_used + size > PAGE {
            self.cut_page(file, alloc)?;
        }
        let base = self.page_bytes.len() as u32;
        self.page_bytes.extend_from_slice(&self.slot_bytes);
        self.page_spans.extend(self.slot_spans.iter().map(|s| Span {
            at: s.at + base,
            ..*s
        }));
        self.page_used += size;
        let first = self.page_slots.map_or(self.slot, |p| p.0);
        self.page_slots = Some((first, self.slot));
        self.slot_bytes.clear();
        self.slot_spans.clear();
        Ok(())
    }

    /// Writes the page being filled and its directory items.
    fn cut_page(&mut self, file: &dyn Positional, alloc: &mut dyn Alloc) -> Result<()> {
        let Some((first, last)) = self.page_slots.take() else {
            return Ok(());
        };
        let range = Range::slots(first, last, self.depth);
        let hi = range.hi;
        bucket::build_into(&mut self.buf, &self.page_spans, &[&self.page_bytes], range);
        let mut io = Io {
            file,
            alloc,
            segs: &mut self.segs,
            arrays: &mut self.arrays,
            bytes: &mut self.t.bytes,
            listed: &mut self.listed,
        };
        let pages = &mut self.pages;
        let (off, epoch) = pages.reserve(PAGE as u64, hi, &mut io)?;
        seal(&mut self.buf, MAGIC_BUCKET, epoch);
        pages.append(&self.buf[..]);
        self.t.pages += 1;
        self.items_to(first, 0, alloc)?;
        self.items_to(last + 1, dir_item(off, epoch), alloc)?;
        self.page_bytes.clear();
        self.page_spans.clear();
        self.page_used = HEADER;
        Ok(())
    }

    /// Pushes directory item `item` for every slot from the next one up to `end` (exclusive).
    fn items_to(&mut self, end: u64, item: u64, alloc: &mut dyn Alloc) -> Result<()> {
        let mut page = || alloc.page();
        let mut sink = Sink {
            alloc: &mut page,
            out: &mut self.arrays,
        };
        while self.next_item < end {
            self.dir.push(item, &mut sink)?;
            self.next_item += 1;
        }
        Ok(())
    }

    /// Whether an entry of hash `hash` would start a new slot (a place `checkpoint` may cut).
    pub fn starts_slot(&self, hash: u64) -> bool {
        dir_index(hash, self.depth) != self.slot
    }

    /// Writes everything added so far and returns the table as published up to hash `upto`
    /// (the start of a slot no entry added so far falls into): the directory covers the slots
    /// before it, the rest stay zero. Writing can go on afterwards.
    pub fn checkpoint(
        &mut self,
        file: &dyn Positional,
        alloc: &mut dyn Alloc,
        upto: u64,
    ) -> Result<TableRef> {
        debug_assert!(
            self.filter.is_none(),
            "a table with a filter is published whole"
        );
        self.close_slot(file, alloc)?;
        self.cut_page(file, alloc)?;
        let end = dir_index(upto, self.depth);
        self.items_to(end, 0, alloc)?;
        self.slot = end;
        let (pages, values) = (&mut self.pages, &mut self.values);
        let mut io = Io {
            file,
            alloc,
            segs: &mut self.segs,
            arrays: &mut self.arrays,
            bytes: &mut self.t.bytes,
            listed: &mut self.listed,
        };
        pages.publish(&mut io)?;
        values.publish(&mut io)?;
        self.snapshot(file, alloc)
    }

    /// Writes the rest of the table and returns it.
    pub fn finish(&mut self, file: &dyn Positional, alloc: &mut dyn Alloc) -> Result<TableRef> {
        self.close_slot(file, alloc)?;
        self.cut_page(file, alloc)?;
        self.items_to(1u64 << self.depth, 0, alloc)?;
        if let Some(f) = &self.filter {
            let mut page = || alloc.page();
            let mut sink = Sink {
                alloc: &mut page,
                out: &mut self.arrays,
            };
            for &w in f.words() {
                self.dir.push(w, &mut sink)?;
            }
        }
        let (pages, values) = (&mut self.pages, &mut self.values);
        let mut io = Io {
            file,
            alloc,
            segs: &mut self.segs,
            arrays: &mut self.arrays,
            bytes: &mut self.t.bytes,
            listed: &mut self.listed,
        };
        pages.close(&mut io)?;
        values.close(&mut io)?;
        self.snapshot(file, alloc)
    }

    /// Snapshots both arrays and writes the array pages gathered.
    fn snapshot(&mut self, file: &dyn Positional, alloc: &mut dyn Alloc) -> Result<TableRef> {
        let mut page = || alloc.page();
        let mut sink = Sink {
            alloc: &mut page,
            out: &mut self.arrays,
        };
        self.t.dir = self.dir.snapshot(&mut sink)?;
        self.t.segs = self.segs.snapshot(&mut sink)?;
        for (off, p) in self.arrays.drain(..) {
            file.write_at(off, &p[..])?;
        }
        Ok(self.t)
    }

    /// The segments and array pages this writer has put to use (to free a table not kept).
    pub fn written_space(&mut self) -> (Vec<u64>, Vec<u64>) {
        let mut pages = std::mem::take(&mut self.dir.written);
        pages.append(&mut self.segs.written);
        (std::mem::take(&mut self.listed), pages)
    }

    /// The key filter of the table written (none if it has none).
    pub fn take_filter(&mut self) -> Option<FilterBuilder> {
        self.filter.take()
    }

    /// Array pages replaced by the last snapshot (to be freed by the root that publishes it).
    pub fn take_retired(&mut self) -> Vec<u64> {
        let mut r = std::mem::take(&mut self.dir.retired);
        r.append(&mut self.segs.retired);
        r
    }
}

/// Bytes an entry of this many values takes in a page (to size a table's directory).
pub fn entry_bytes(values: usize) -> usize {
    match values {
        0 => body_size(&Body::Delta(DeltaRef {
            cleared: true,
            adds: 0,
            dels: 0,
            offset: 0,
            crc: 0,
        })),
        n if n <= INLINE_MAX => 2 + 16 + 16 * n,
        _ => 2 + 16 + 40,
    }
}
