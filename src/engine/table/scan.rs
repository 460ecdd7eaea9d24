//! Reading a table in (hash, key) order from a given hash on: the writer's merges, `verify`
//! and the reader's scan. Pages are read one after another through the directory
//! and checked (magic, checksum, epoch against the directory item, the range of slots the
//! directory gives them); the segments ahead are asked of the kernel in advance, so a table
//! larger than the page cache streams at the device's pace.

use super::super::array::{self, Shape};
use super::super::sets::{self, Change};
use super::super::source::{Fault, Res, Source};
use crate::error::Error;
use crate::format::bucket::{self, Body, Span};
use crate::format::hash::{dir_index, Range};
use crate::format::layout::{PAGE, SEGMENT};
use crate::format::page::{check, epoch as page_epoch, Check, Page, MAGIC_BUCKET};
use crate::format::table::{dir_item_parts, TableRef};
use crate::{Key, Value};

/// Bytes of segments a scan asks the kernel for ahead of where it reads.
const AHEAD: u64 = 32 * SEGMENT;

/// An entry as a scan yields it.
#[derive(Clone, Debug)]
pub struct Item {
    pub hash: u64,
    pub key: Key,
    pub body: Body,
}

pub struct Scan<'a> {
    src: &'a dyn Source,
    t: TableRef,
    max_epoch: u64,
    shape: Shape,
    /// The directory leaf loaded: its index and items.
    leaf: Option<(usize, Vec<u64>)>,
    /// The next slot whose page has not been read.
    slot: u64,
    /// Entries of the page read last (at `page_off`), from `at` on.
    page: Box<Page>,
    page_off: u64,
    spans: Vec<Span>,
    at: usize,
    from: u64,
    /// The table's segments (offset, last hash), and how far they have been asked for.
    segs: Vec<(u64, u64)>,
    asked: usize,
    /// Optional hint callback for segments (the writer's file); None for mappings.
    will_need: Option<&'a dyn Fn(u64, u64)>,
    /// With the hint: the segment read last, whole (see `Window`).
    window: Option<Window>,
}

/// Two segments of a table held whole: a scan in hash order reads the pages of one segment
/// and the extents of another one after another (a table writer streams its pages and its
/// extents into segments of their own), so reading each segment at once costs one system call
/// where reading each page and extent took one each. Only ranges inside one of the table's
/// segments are served from it; those never change while the table is in use.
struct Window {
    /// The table's segment offsets, ascending.
    segs: Vec<u64>,
    /// The segments held (`u64::MAX`: none) with their bytes, the one read last first.
    held: std::cell::RefCell<[(u64, Vec<u8>); 2]>,
}

impl Window {
    fn new(segs: &[(u64, u64)]) -> Window {
        let mut offs: Vec<u64> = segs.iter().map(|s| s.0).collect();
        offs.sort_unstable();
        Window {
            segs: offs,
            held: std::cell::RefCell::new([(u64::MAX, Vec::new()), (u64::MAX, Vec::new())]),
        }
    }

    /// Reads `out.len()` bytes at `off`, through the window when they lie in one segment.
    fn read(&self, src: &dyn Source, off: u64, out: &mut [u8]) -> Res<()> {
        let i = self.segs.partition_point(|&s| s <= off);
        let seg = match i.checked_sub(1).map(|i| self.segs[i]) {
            Some(seg) if off + out.len() as u64 <= seg + SEGMENT => seg,
            _ => return src.read(off, out),
        };
        let mut held = self.held.borrow_mut();
        if held[0].0 != seg {
            held.swap(0, 1);
        }
        if held[0].0 != seg {
            let h = &mut held[0];
            h.0 = u64::MAX;
            let len = SEGMENT.min(src.size().saturating_sub(seg));
            h.1.resize(len as usize, 0);
            src.read(seg, &mut h.1)?;
            h.0 = seg;
        }
        let from = (off - seg) as usize;
        match held[0].1.get(from..from + out.len()) {
            Some(b) => {
                out.copy_from_slice(b);
                Ok(())
            }
            None => src.read(off, out), // past the end of the file: the file says so
        }
    }
}

/// Reads through the window when there is one.
fn read(window: &Option<Window>, src: &dyn Source, off: u64, out: &mut [u8]) -> Res<()> {
    match window {
        Some(w) => w.read(src, off, out),
        None => src.read(off, out),
    }
}

/// A scan reads its table's extents the way it reads its pages.
impl Source for Scan<'_> {
    fn read(&self, off: u64, out: &mut [u8]) -> Res<()> {
        read(&self.window, self.src, off, out)
    }

    fn size(&self) -> u64 {
        self.src.size()
    }
}

impl<'a> Scan<'a> {
    /// A scan of table `t` from hash `from` on, read under a root of epoch `max_epoch`.
    pub fn new(
        src: &'a dyn Source,
        t: TableRef,
        max_epoch: u64,
        from: u64,
        will_need: Option<&'a dyn Fn(u64, u64)>,
    ) -> Res<Scan<'a>> {
        let shape = array::shape(src, t.dir, max_epoch)?;
        let segs = match will_need {
            Some(_) => pairs(&array::load(src, t.segs, max_epoch)?.0),
            None => Vec::new(),
        };
        let window = will_need.map(|_| Window::new(&segs));
        Ok(Scan {
            src,
            t,
            max_epoch,
            shape,
            leaf: None,
            slot: dir_index(from, t.depth),
            page: Box::new([0; PAGE]),
            page_off: 0,
            spans: Vec::new(),
            at: 0,
            from,
            segs,
            asked: 0,
            will_need,
            window,
        })
    }

    /// A scan of no table: it yields nothing.
    pub fn empty(src: &'a dyn Source) -> Res<Scan<'a>> {
        Ok(Scan {
            src,
            t: TableRef::default(),
            max_epoch: 0,
            shape: Shape::default(),
            leaf: None,
            slot: 1,
            page: Box::new([0; PAGE]),
            page_off: 0,
            spans: Vec::new(),
            at: 0,
            from: 0,
            segs: Vec::new(),
            asked: 0,
            will_need: None,
            window: None,
        })
    }

    fn slots(&self) -> u64 {
        1u64 << self.t.depth
    }

    fn item(&mut self, slot: u64) -> Res<u64> {
        let i = (slot / crate::format::array::LEAF as u64) as usize;
        if self.leaf.as_ref().is_none_or(|(j, _)| *j != i) {
            let items = array::read_leaf(
                self.src,
                self.t.dir.len,
                i,
                self.shape.leaves[i],
                self.max_epoch,
            )?;
            self.leaf = Some((i, items));
        }
        let (_, items) = self.leaf.as_ref().expect("loaded");
        Ok(items[(slot % crate::format::array::LEAF as u64) as usize])
    }

    /// Reads the next page (if any) into `page`/`spans`.
    fn next_page(&mut self) -> Res<bool> {
        while self.slot < self.slots() {
            let item = self.item(self.slot)?;
            if item == 0 {
                self.slot += 1;
                continue;
            }
            let (off, stamp) = dir_item_parts(item);
            read(&self.window, self.src, off, &mut self.page[..])?;
            match check(&self.page, MAGIC_BUCKET, self.max_epoch) {
                Check::Ok => {}
                Check::Stale => return Err(Fault::Stale),
                Check::Bad(why) => {
                    return Err(Fault::Suspect(Error::corrupt("table page", off, why)))
                }
            }
            if page_epoch(&self.page) as u32 != stamp {
                return Err(Fault::Stale);
            }
            let (_, range) = bucket::header(&self.page[..]);
            let start = Range::slots(self.slot, self.slot, self.t.depth).lo;
            let last = dir_index(range.hi, self.t.depth);
            if !range.contains(start) || range.hi < start {
                return Err(Fault::Suspect(Error::corrupt(
                    "table page",
                    off,
                    "its range does not hold the directory slot that leads to it",
                )));
            }
            for s in self.slot..=last {
                if self.item(s)? != item {
                    return Err(Fault::Suspect(Error::corrupt(
                        "table page",
                        off,
                        "the directory sends other slots of its range elsewhere",
                    )));
                }
            }
            self.spans.clear();
            bucket::spans(&self.page, 0, off, &mut self.spans)?;
            self.page_off = off;
            self.at = self.spans.partition_point(|s| s.hash < self.from);
            self.slot = last + 1;
            self.ask_ahead(range.hi);
            return Ok(true);
        }
        Ok(false)
    }

    /// Asks for the segments after the one holding hash `h`, up to `AHEAD` bytes.
    fn ask_ahead(&mut self, h: u64) {
        let Some(f) = self.will_need else { return };
        let here = self
            .segs
            .iter()
            .position(|s| s.1 >= h)
            .unwrap_or(self.segs.len());
        let want = (here + (AHEAD / SEGMENT) as usize).min(self.segs.len());
        while self.asked < want {
            f(self.segs[self.asked].0, SEGMENT);
            self.asked += 1;
        }
    }

    /// The file offset of the page the last entry came from.
    pub fn page_offset(&self) -> u64 {
        self.page_off
    }

    /// The hash and key of the entry at the scan's position (None at the end of the table),
    /// reading the next page when the last one is done. Allocates nothing.
    pub fn head(&mut self) -> Res<Option<(u64, Key)>> {
        while self.at >= self.spans.len() {
            if !self.next_page()? {
                return Ok(None);
            }
        }
        let s = &self.spans[self.at];
        Ok(Some((s.hash, s.key(&[&self.page[..]]))))
    }

    /// The head entry's tag code and its bytes after the key, as the page holds them
    /// (`head` returned it).
    pub fn raw(&self) -> (u8, &[u8]) {
        let s = &self.spans[self.at];
        (s.code, &s.bytes(&[&self.page[..]])[16..])
    }

    /// The head entry decoded (`head` returned it).
    pub fn body(&self) -> Res<Body> {
        let s = self.spans[self.at];
        Ok(bucket::span_entry(&s, &[&self.page[..]], self.page_off)?.1)
    }

    /// Moves past the head entry.
    pub fn advance(&mut self) {
        self.at += 1;
    }

    /// The next entry, or None at the end of the table.
    pub fn next(&mut self) -> Res<Option<Item>> {
        let Some((hash, key)) = self.head()? else {
            return Ok(None);
        };
        let body = self.body()?;
        self.advance();
        Ok(Some(Item { hash, key, body }))
    }
}

/// Item pairs of a segment list.
pub fn pairs(items: &[u64]) -> Vec<(u64, u64)> {
    items.chunks_exact(2).map(|c| (c[0], c[1])).collect()
}

/// The values of an extent: `count` values at `offset`, checked against `crc`.
pub fn read_values(src: &dyn Source, offset: u64, count: u64, crc: u32) -> Res<Vec<Value>> {
    let mut vals = Vec::new();
    extent_into(src, offset, count, crc, &mut vals)?;
    Ok(vals)
}

/// Appends the `count` values of the extent at `offset` to `out`, checked against `crc`; a
/// count the file cannot hold is refused before anything is allocated.
fn extent_into(
    src: &dyn Source,
    offset: u64,
    count: u64,
    crc: u32,
    out: &mut Vec<Value>,
) -> Res<()> {
    if offset.saturating_add(count.saturating_mul(16)) > src.size() {
        return Err(Fault::Suspect(Error::corrupt(
            "value extent",
            offset,
            format!("{count} values would end past the file"),
        )));
    }
    let at = out.len();
    out.resize(at + count as usize, [0; 16]);
    read_values_into(src, offset, crc, &mut out[at..])
}

/// The values of an extent at `offset` read into `dst` (its length is their count), checked
/// against `crc` there: one copy out of the file or mapping, no allocation.
pub fn read_values_into(src: &dyn Source, offset: u64, crc: u32, dst: &mut [Value]) -> Res<()> {
    let len = dst.len() as u64 * 16;
    if offset.saturating_add(len) > src.size() {
        return Err(Fault::Suspect(Error::corrupt(
            "value extent",
            offset,
            format!("{} values would end past the file", dst.len()),
        )));
    }
    src.read(offset, dst.as_flattened_mut())?;
    if crc32c::crc32c(dst.as_flattened()) != crc {
        return Err(Fault::Suspect(Error::corrupt(
            "value extent",
            offset,
            "checksum mismatch",
        )));
    }
    Ok(())
}

/// A base entry's set, ascending.
pub fn set_of(src: &dyn Source, body: &Body) -> Res<Vec<Value>> {
    let mut vals = Vec::new();
    set_into(src, body, &mut vals)?;
    Ok(vals)
}

/// A base entry's set, ascending, in `out` (what it held is dropped).
pub fn set_into(src: &dyn Source, body: &Body, out: &mut Vec<Value>) -> Res<()> {
    out.clear();
    match body {
        Body::Extent(x) => extent_into(src, x.offset, x.count, x.crc, out)?,
        Body::Delta(_) => {
            return Err(Fault::Fail(Error::corrupt(
                "table page",
                0,
                "a change entry in a base table",
            )))
        }
        inline => out.extend_from_slice(inline.inline_values().unwrap_or_default()),
    }
    ordered(out)
}

/// A delta entry's change.
pub fn change_of(src: &dyn Source, body: &Body) -> Res<Change> {
    let mut vals = Vec::new();
    let (cleared, adds) = change_into(src, body, &mut vals)?;
    let dels = vals.split_off(adds);
    Ok(Change {
        cleared,
        adds: vals,
        dels,
    })
}

/// A delta entry's change in `out`, adds then dels (what it held is dropped): whether it
/// drops the earlier values, and how many values it adds.
pub fn change_into(src: &dyn Source, body: &Body, out: &mut Vec<Value>) -> Res<(bool, usize)> {
    let Body::Delta(d) = body else {
        set_into(src, body, out)?;
        return Ok((false, out.len()));
    };
    out.clear();
    if d.values() > 0 {
        extent_into(src, d.offset, d.values(), d.crc, out)?;
    }
    let adds = d.adds as usize;
    ordered(&out[..adds])?;
    ordered(&out[adds..])?;
    Ok((d.cleared, adds))
}

fn ordered(vals: &[Value]) -> Res<()> {
    match sets::is_set(vals) {
        true => Ok(()),
        false => Err(Fault::Suspect(Error::corrupt(
            "value set",
            0,
            "values out of order",
        ))),
    }
}
