//! Tables: a directory of hash slots over pages of entries, with large value lists in
//! extents, written as a stream (`write`) and read in hash order (`scan`).

pub mod scan;
pub mod write;
