//! Reading validated pages from the writer's fd or a reader's mapping.

use crate::error::{Error, Result};
use crate::format::layout::PAGE;
use crate::format::page::{check, Check, Page};
use crate::store::{Mmap, Positional};

/// A failed read: `Stale` (the page was reused after the caller's root; refresh and retry),
/// `Suspect` (a check failed: damage, or for a reader a torn read of space the writer is
/// reusing — a reader retries after refreshing and reports it only if it persists) or a real
/// error.
#[derive(Debug)]
pub enum Fault {
    Stale,
    Suspect(Error),
    Fail(Error),
}

impl Fault {
    /// Whether a reader may cure it by refreshing.
    pub fn retryable(&self) -> bool {
        !matches!(self, Fault::Fail(_))
    }
}

impl From<Error> for Fault {
    fn from(e: Error) -> Fault {
        Fault::Fail(e)
    }
}

pub type Res<T> = std::result::Result<T, Fault>;

/// Positional reads of file bytes.
pub trait Source {
    fn read(&self, off: u64, buf: &mut [u8]) -> Res<()>;

    /// Bytes readable: reads that would end past it are refused before anything is allocated.
    fn size(&self) -> u64;

    /// Says that `[off, off + len)` will be read soon (the source may start reading it).
    fn will_need(&self, _off: u64, _len: u64) {}

    /// Reads the page at `off` into `p`, checked against `magic` and `max_epoch`.
    fn page_into(
        &self,
        off: u64,
        magic: u32,
        max_epoch: u64,
        what: &'static str,
        p: &mut Page,
    ) -> Res<()> {
        self.read(off, &mut p[..])?;
        match check(p, magic, max_epoch) {
            Check::Ok => Ok(()),
            Check::Stale => Err(Fault::Stale),
            Check::Bad(why) => Err(Fault::Suspect(Error::corrupt(what, off, why))),
        }
    }

    /// The page at `off`, checked as `page_into` does.
    fn page(&self, off: u64, magic: u32, max_epoch: u64, what: &'static str) -> Res<Box<Page>> {
        let mut p = Box::new([0u8; PAGE]);
        self.page_into(off, magic, max_epoch, what, &mut p)?;
        Ok(p)
    }
}

impl<T: Positional> Source for T {
    fn read(&self, off: u64, buf: &mut [u8]) -> Res<()> {
        Ok(self.read_at(off, buf)?)
    }

    fn size(&self) -> u64 {
        self.data_end()
    }

    fn will_need(&self, off: u64, len: u64) {
        Positional::will_need(self, off, len);
    }
}

impl Source for Mmap {
    /// Bytes past the mapping were put to use after it was made (the segments in use grew):
    /// refreshing maps them, so the read is stale, not damaged.
    fn read(&self, off: u64, buf: &mut [u8]) -> Res<()> {
        match Mmap::read(self, off, buf) {
            Err(Error::Corrupt {
                what: "file range", ..
            }) => Err(Fault::Stale),
            r => Ok(r?),
        }
    }

    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn will_need(&self, off: u64, len: u64) {
        Mmap::will_need(self, off, usize::try_from(len).unwrap_or(usize::MAX));
    }
}

/// For the writer, which never reads under an old root: a stale page is damage.
pub fn settled<T>(r: Res<T>) -> Result<T> {
    r.map_err(|f| match f {
        Fault::Stale => Error::corrupt("page", 0, "page newer than the newest root"),
        Fault::Suspect(e) | Fault::Fail(e) => e,
    })
}
