//! The writer's image of the newest root: directory, allocators, WAL map; loaded at open.

use super::array::{self, Shape};
use super::extents::ExtentAlloc;
use super::pages::PageAlloc;
use super::source::settled;
use super::wal::Spare;
use crate::error::{Error, Result};
use crate::format::array::ArrayRef;
use crate::format::layout::{PAGES_PER_CHUNK, ROOT_SLOT};
use crate::format::root::{self, Root};
use crate::store::{Ds, Positional, WriterFile};

pub struct State {
    pub root: Root,
    /// 2^global_depth entries: the offset of the page covering the slot, 0 for none.
    pub dir: Vec<u64>,
    pub dir_shape: Shape,
    /// Per directory leaf: changed since the last checkpoint.
    pub dir_dirty: Vec<bool>,
    pub pages: PageAlloc,
    pub extents: ExtentAlloc,
    pub free_pages_shape: Shape,
    pub free_extents_shape: Shape,
    pub wal_map_shape: Shape,
    /// File address of each WAL chunk the root lists.
    pub wal_chunks: Vec<u64>,
    pub wal_spare: Spare,
}

/// The root a new file starts with: one empty slot, nothing allocated.
pub fn initial_root() -> Root {
    Root {
        epoch: 0,
        global_depth: 0,
        dir: ArrayRef {
            len: 1,
            top: 0,
            levels: 1,
        },
        wal_gen: 1,
        wal_lsn: 1,
        ..Root::default()
    }
}

/// The newest valid root of a writer's file.
pub fn read_root(file: &WriterFile) -> Result<Root> {
    let mut slots = vec![0u8; 2 * ROOT_SLOT];
    file.read_at(file.root_offset(), &mut slots)?;
    root::newest(&slots[..ROOT_SLOT], &slots[ROOT_SLOT..])
        .map_err(|why| Error::corrupt("root", file.root_offset(), why))
}

impl State {
    pub fn load(file: &WriterFile) -> Result<State> {
        let root = read_root(file)?;
        let max = root.epoch;
        let (dir, dir_shape) = settled(array::load(file, root.dir, max))?;
        let (free_pages, free_pages_shape) = settled(array::load(file, root.free_pages, max))?;
        let (free_ext, free_extents_shape) = settled(array::load(file, root.free_extents, max))?;
        let (wal_chunks, wal_map_shape) = settled(array::load(file, root.wal_map, max))?;
        let page_room = file.chunks(Ds::Pages).len() as u64 * PAGES_PER_CHUNK;
        if root.pages_hw > page_room {
            return Err(Error::corrupt(
                "root",
                file.root_offset(),
                format!(
                    "{} pages in use but the file has {page_room}",
                    root.pages_hw
                ),
            ));
        }
        let dir_dirty = vec![false; dir_shape.leaves.len()];
        // Readers of older roots may still read what this root lists as free.
        let mut pages = PageAlloc {
            hw: root.pages_hw,
            ..PageAlloc::default()
        };
        pages.held.hold(root.epoch, free_pages);
        let wal_spare = Spare::load(file.chunks(Ds::Wal), &wal_chunks, root.epoch);
        Ok(State {
            wal_spare,
            pages,
            extents: ExtentAlloc::from_items(&free_ext, root.values_hw, root.epoch)?,
            root,
            dir,
            dir_shape,
            dir_dirty,
            free_pages_shape,
            free_extents_shape,
            wal_map_shape,
            wal_chunks,
        })
    }
}
