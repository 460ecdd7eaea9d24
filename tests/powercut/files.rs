//! Crash images of a directory of files (a sharded store): each file built from its own
//! operations with the one-file model of image.rs, and the directory's entries from its
//! creations and renames.
//!
//! The model, on top of image.rs:
//! - a file is the object a name points to (an inode): its operations are the trace's records
//!   on the path that named it when they were made, and a sync (`S`) of it makes durable only
//!   its own earlier operations;
//! - the directory's entries change by creations (`C` of a path that names nothing: a new,
//!   empty file) and renames (`R`: the name `to` then points to the renamed file, whatever it
//!   pointed to before, and the old name to nothing). A directory sync (`D`) makes the earlier
//!   ones durable; of those after the last one before the crash point, a prefix in trace order
//!   survives (a journaling file system commits them in order). So before the `D` that
//!   follows an atomic replace's rename, an image shows the old file or the new one;
//! - a creation of a path that names a file already cuts that file to length 0 (an operation
//!   on the file, like a length change).

use super::image::{self, Built, Chooser, FailedSync};
use super::trace::{Rec, Trace};
use std::collections::BTreeMap;

/// Files by their path relative to the traced directory.
pub type Files = BTreeMap<String, Vec<u8>>;

/// One file's own history.
struct Inode {
    /// Its bytes before the trace (empty if the trace creates it).
    base: Vec<u8>,
    /// Its operations, and the index of each in the whole trace.
    recs: Vec<Rec>,
    at: Vec<usize>,
}

#[derive(Clone, Debug)]
enum Entry {
    Link { name: String, inode: usize },
    Rename { from: String, to: String },
}

/// A directory's base and trace, split into files and entry changes.
pub struct Dir {
    inodes: Vec<Inode>,
    names: BTreeMap<String, usize>,
    /// Creations and renames, with their index in the trace.
    entries: Vec<(usize, Entry)>,
    /// Indices of the completed directory syncs.
    dir_syncs: Vec<usize>,
}

/// What went into a directory image.
#[derive(Clone, Debug, Default)]
pub struct DirBuilt {
    /// The files' `Built`s summed (`last_sync`: the latest of them).
    pub files: Built,
    /// Creations and renames after the last directory sync before the crash point, and how
    /// many of them (a prefix) survived.
    pub entries_unsynced: u32,
    pub entries_applied: u32,
}

impl DirBuilt {
    pub fn nothing_lost(&self) -> bool {
        self.files.nothing_lost() && self.entries_applied == self.entries_unsynced
    }
}

impl Dir {
    /// Splits trace `t` of the directory whose files were `base` when it began. The empty path
    /// is the directory itself.
    pub fn of(base: &Files, t: &Trace) -> Result<Dir, String> {
        let mut d = Dir {
            inodes: Vec::new(),
            names: BTreeMap::new(),
            entries: Vec::new(),
            dir_syncs: Vec::new(),
        };
        for (name, bytes) in base {
            d.names.insert(name.clone(), d.inodes.len());
            d.inodes.push(Inode {
                base: bytes.clone(),
                recs: Vec::new(),
                at: Vec::new(),
            });
        }
        let mut now = d.names.clone();
        for (i, r) in t.recs.iter().enumerate() {
            let path = || t.paths[t.file[i] as usize].clone();
            let on = |now: &BTreeMap<String, usize>| {
                now.get(&path()).copied().ok_or_else(|| {
                    format!("record {i} ({r:?}) on {:?}, which does not exist", path())
                })
            };
            match r {
                Rec::Mark(_) | Rec::Fault { .. } => {}
                Rec::Write { .. } | Rec::Punch { .. } | Rec::SetLen { .. } | Rec::Sync => {
                    let n = on(&now)?;
                    d.inodes[n].recs.push(r.clone());
                    d.inodes[n].at.push(i);
                }
                Rec::Create => match now.get(&path()) {
                    Some(&n) => {
                        d.inodes[n].recs.push(Rec::SetLen { len: 0 });
                        d.inodes[n].at.push(i);
                    }
                    None => {
                        let n = d.inodes.len();
                        d.inodes.push(Inode {
                            base: Vec::new(),
                            recs: Vec::new(),
                            at: Vec::new(),
                        });
                        now.insert(path(), n);
                        d.entries.push((
                            i,
                            Entry::Link {
                                name: path(),
                                inode: n,
                            },
                        ));
                    }
                },
                Rec::Rename { to } => {
                    let n = on(&now)?;
                    let to = t.paths[*to as usize].clone();
                    now.remove(&path());
                    now.insert(to.clone(), n);
                    d.entries.push((i, Entry::Rename { from: path(), to }));
                }
                Rec::SyncDir => {
                    if !path().is_empty() {
                        return Err(format!(
                            "record {i}: a sync of directory {:?}, not the traced one",
                            path()
                        ));
                    }
                    d.dir_syncs.push(i);
                }
            }
        }
        Ok(d)
    }

    /// The directory after a power cut when the first `crash` records had completed: every
    /// file built by `image::build` from its own operations, the entries up to the last
    /// directory sync exactly, and of the later ones the first `keep(n)` of the `n`.
    pub fn build(
        &self,
        crash: usize,
        choose: &mut dyn Chooser,
        keep: &mut dyn FnMut(u32) -> u32,
    ) -> (Files, DirBuilt) {
        let mut built = DirBuilt::default();
        let synced = self.dir_syncs.iter().rev().find(|&&s| s < crash);
        let mut names = self.names.clone();
        let mut unsynced = Vec::new();
        for (at, e) in self.entries.iter().take_while(|(at, _)| *at < crash) {
            if synced.is_some_and(|s| at < s) {
                link(&mut names, e);
            } else {
                unsynced.push(e);
            }
        }
        built.entries_unsynced = unsynced.len() as u32;
        let applied = match unsynced.len() {
            0 => 0,
            n => keep(n as u32).min(n as u32),
        };
        built.entries_applied = applied;
        for e in &unsynced[..applied as usize] {
            link(&mut names, e);
        }
        let mut files = Files::new();
        for (name, &n) in &names {
            let f = &self.inodes[n];
            let local = f.at.partition_point(|&at| at < crash);
            let (bytes, b) = image::build(
                &f.base,
                &f.recs,
                local,
                FailedSync::KeepsDirty,
                &mut *choose,
            );
            let s = &mut built.files;
            s.last_sync = s.last_sync.max(b.last_sync.map(|l| f.at[l]));
            s.unsynced += b.unsynced;
            s.kept += b.kept;
            s.lost += b.lost;
            s.torn += b.torn;
            s.meta_applied += b.meta_applied;
            s.meta_skipped += b.meta_skipped;
            files.insert(name.clone(), bytes);
        }
        (files, built)
    }
}

fn link(names: &mut BTreeMap<String, usize>, e: &Entry) {
    match e {
        Entry::Link { name, inode } => {
            names.insert(name.clone(), *inode);
        }
        Entry::Rename { from, to } => {
            if let Some(n) = names.remove(from) {
                names.insert(to.clone(), n);
            }
        }
    }
}
