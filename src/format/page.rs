//! Pages in `/data` (table pages, array pages): a 32-byte header shared by all kinds, then a
//! kind-specific body.
//!
//! Header: magic u32 | crc32c u32 (of bytes 8..PAGE) | epoch u64 (larger than that of any page
//! written before at the same offset) |
//! 16 bytes of kind-specific fields. A reader accepts a page only if magic and CRC match and its
//! epoch is not newer than the root it reads under: a page rewritten after reuse is then seen as
//! stale, never as data.

use super::bytes::*;
use super::layout::PAGE;

pub const HEADER: usize = 32;
pub const MAGIC_BUCKET: u32 = u32::from_le_bytes(*b"HDBK");
pub const MAGIC_ARRAY: u32 = u32::from_le_bytes(*b"HDAR");

pub type Page = [u8; PAGE];

/// Seals a page: writes magic and epoch, then the CRC over everything after the CRC field.
pub fn seal(page: &mut Page, magic: u32, epoch: u64) {
    put_u32(page, 0, magic);
    put_u64(page, 8, epoch);
    let crc = crc32c::crc32c(&page[8..]);
    put_u32(page, 4, crc);
}

/// Why a page failed validation; `Stale` means "reread under a newer root", the rest is damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Ok,
    Stale,
    Bad(&'static str),
}

/// Validates magic, CRC and epoch (`epoch <= max_epoch`).
pub fn check(page: &Page, magic: u32, max_epoch: u64) -> Check {
    if get_u32(page, 0) != magic {
        return Check::Bad("page magic");
    }
    if crc32c::crc32c(&page[8..]) != get_u32(page, 4) {
        return Check::Bad("page checksum");
    }
    if get_u64(page, 8) > max_epoch {
        return Check::Stale;
    }
    Check::Ok
}

pub fn epoch(page: &Page) -> u64 {
    get_u64(page, 8)
}
