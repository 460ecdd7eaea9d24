//! Sharded stores: a directory of ordinary files (`shard_000.h5`, ...), a manifest, and a set
//! log. A key lives in shard `shard_of(key, n)`; a set commit commits every shard at once.
//!
//! Atomicity: a set commit appends each shard's frame (in parallel), then a done record to the
//! set log naming, for every shard, the LSN below which its batches are committed. Opening
//! takes the newest done record that every shard reaches and cuts every shard back to it,
//! wiping the frames of a set commit that did not reach all of them. Frames are cut only while
//! they are in a shard's log: before any shard seals its log (after which its frames become a
//! table) every shard and the set log are synced, so a table never holds a batch that a power
//! cut could make the newest reachable done record miss.
//!
//! Groups: the shards may be split among the members of a group of processes (MPI ranks),
//! each writing its own shards, that run every step above together through a [`Collective`]
//! (an all-reduce): member 0 keeps the set log and writes the done record once every member's
//! frames are appended; every step's outcome is agreed, so all members succeed or all fail.
//! One process writing every shard is the group of one ([`Alone`]).

use super::options::{Options, Stats};
use super::recovery::{self, RecoveryReport};
use super::verify::{verify, VerifyReport};
use super::writer::same_len;
use super::{GcReport, Reader, Writer};
use crate::error::{Error, Result};
use crate::format::shard::{shard_of, Manifest, SetRecord, MAX_SHARDS};
use crate::store::{
    read_manifest, shard_path, unfinished_store, write_manifest, SetLog, WriterFile, MANIFEST,
};
use crate::{Key, Value};
use std::path::{Path, PathBuf};

/// The set log is cut back to one record when it grows past this at a sync point.
const SET_LOG_MAX: u64 = 4 << 20;

/// Whether `path` names a sharded store (a directory) rather than a file.
pub fn is_store(path: &Path) -> bool {
    path.is_dir()
}

/// Runs `f` on every item, on up to one thread per core; results in item order.
fn each<T: Send, R: Send>(items: &mut [T], f: impl Fn(usize, &mut T) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = items.len().div_ceil(cores.max(1)).max(1);
    if items.len() <= 1 || per >= items.len() {
        return items.iter_mut().enumerate().map(|(i, t)| f(i, t)).collect();
    }
    std::thread::scope(|s| {
        let f = &f;
        let jobs: Vec<_> = items
            .chunks_mut(per)
            .enumerate()
            .map(|(c, chunk)| {
                s.spawn(move || {
                    let at = c * per;
                    let out: Vec<R> = chunk
                        .iter_mut()
                        .enumerate()
                        .map(|(i, t)| f(at + i, t))
                        .collect();
                    out
                })
            })
            .collect();
        jobs.into_iter()
            .flat_map(|j| j.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// The first error of `results` (one for each shard of `ids`), naming its shard.
fn first_error<T>(dir: &Path, ids: &[u32], results: Vec<Result<T>>) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(results.len());
    for (r, &i) in results.into_iter().zip(ids) {
        out.push(r.map_err(|e| in_shard(dir, i, e))?);
    }
    Ok(out)
}

/// `e` with the shard's file named where the error has no path of its own.
fn in_shard(dir: &Path, i: u32, e: Error) -> Error {
    match e {
        Error::Hdf5 { op, detail } => Error::Hdf5 {
            op,
            detail: format!("{}: {detail}", shard_path(dir, i).display()),
        },
        Error::Corrupt {
            what,
            offset,
            detail,
        } => Error::Corrupt {
            what,
            offset,
            detail: format!("{}: {detail}", shard_path(dir, i).display()),
        },
        Error::Unusable { why, errno } => Error::Unusable {
            why: format!("{}: {why}", shard_path(dir, i).display()),
            errno,
        },
        e => e,
    }
}

/// Key indices grouped by shard, keeping the caller's order within each shard.
fn route(keys: &[Key], shards: u32) -> Vec<Vec<usize>> {
    let mut by = vec![Vec::new(); shards as usize];
    for (i, k) in keys.iter().enumerate() {
        by[shard_of(k, shards) as usize].push(i);
    }
    by
}

fn pick<T: Copy>(items: &[T], at: &[usize]) -> Vec<T> {
    at.iter().map(|&i| items[i]).collect()
}

fn manifest_of(dir: &Path) -> Result<u32> {
    if !dir.exists() {
        return Err(Error::NotFound {
            path: dir.to_owned(),
        });
    }
    Ok(read_manifest(dir)?.shards)
}

fn check_count(opts: &Options, have: u32, dir: &Path) -> Result<()> {
    if opts.shards > 1 && opts.shards != have {
        return Err(Error::InvalidArgument(format!(
            "{} has {have} shards, not the {} asked for",
            dir.display(),
            opts.shards
        )));
    }
    Ok(())
}

/// How the members of a group agree: one all-reduce. Member 0 keeps the store's set log.
pub trait Collective: Send {
    /// This member's index, below [`Collective::members`].
    fn member(&self) -> u32;
    /// How many members the group has.
    fn members(&self) -> u32;
    /// Collective: every member calls it at the same step with as many values; on return each
    /// holds the largest any member passed at its place.
    fn max(&mut self, values: &mut [u64]) -> Result<()>;
}

/// The group of one process that writes every shard.
pub struct Alone;

impl Collective for Alone {
    fn member(&self) -> u32 {
        0
    }
    fn members(&self) -> u32 {
        1
    }
    fn max(&mut self, _: &mut [u64]) -> Result<()> {
        Ok(())
    }
}

/// One step's agreement: every member's outcome and `flags` (each the largest any member
/// passed on return). A failure of any member fails the step on every member.
fn agree(
    group: &mut dyn Collective,
    dir: &Path,
    mine: Result<()>,
    flags: &mut [u64],
) -> Result<()> {
    let m = group.members() as usize;
    let mut v = vec![0u64; m + flags.len()];
    v[group.member() as usize] = u64::from(mine.is_err());
    v[m..].copy_from_slice(flags);
    group.max(&mut v)?;
    mine?;
    if let Some(k) = v[..m].iter().position(|&x| x != 0) {
        return Err(Error::Unusable {
            why: format!("member {k} of the group writing {} failed", dir.display()),
            errno: None,
        });
    }
    flags.copy_from_slice(&v[m..]);
    Ok(())
}

/// The shard a done record leaves `shard` at, unless a single-shard writer took it over since.
fn owned(recs: &[SetRecord], done: usize, shard: u32) -> bool {
    !recs[done + 1..]
        .iter()
        .any(|r| matches!(r, SetRecord::Detach { shard: s, .. } if *s == shard))
}

/// The writer of a sharded store: of every shard, or of a group member's shards.
pub struct ShardedWriter {
    dir: PathBuf,
    /// The shards this writer writes (ascending) and their writers.
    ids: Vec<u32>,
    shards: Vec<Writer>,
    /// The store's shard count.
    total: u32,
    /// The set log, kept by member 0 only.
    log: Option<SetLog>,
    /// The newest set commit and (member 0) the marks of its done record.
    seq: u64,
    marks: Vec<u64>,
    sync: bool,
    /// Why the store refuses work: a set commit failed after some shards took its batch.
    broken: Option<String>,
    recovered: RecoveryReport,
    group: Box<dyn Collective>,
}

impl ShardedWriter {
    /// Opens the store at `dir`, creating it with `opts.shards` files if asked and missing.
    pub fn open(dir: &Path, opts: &Options) -> Result<ShardedWriter> {
        if opts.create && opts.shards > 1 && !dir.join(MANIFEST).exists() {
            create(dir, opts)?;
        }
        let n = manifest_of(dir)?;
        check_count(opts, n, dir)?;
        let plain = Options {
            create: false,
            ..opts.clone()
        };
        let files = (0..n)
            .map(|i| Writer::lock(&shard_path(dir, i), &plain))
            .collect::<Result<Vec<WriterFile>>>()?;
        let (log, recs) = SetLog::open(dir, n)?;
        let mut files: Vec<Option<WriterFile>> = files.into_iter().map(Some).collect();
        let lsns = each(&mut files, |_, f| {
            recovery::log_lsns(f.as_ref().expect("locked"))
        });
        let ids: Vec<u32> = (0..n).collect();
        let lsns = first_error(dir, &ids, lsns)?;
        let (seq, below) = resolve(dir, &recs, &lsns)?;
        let writers = each(&mut files, |i, f| {
            let file = f.take().expect("locked");
            Writer::start(file, &plain, below[i])
        });
        let shards = first_error(dir, &ids, writers)?;
        let recovered = merged_reports(dir, &ids, &shards);
        let marks: Vec<u64> = shards.iter().map(Writer::next_lsn).collect();
        let mut w = ShardedWriter {
            dir: dir.to_owned(),
            ids,
            shards,
            total: n,
            log: Some(log),
            seq,
            marks,
            sync: opts.sync_commit,
            broken: None,
            recovered,
            group: Box::new(Alone),
        };
        // The set log starts afresh from the state the shards were opened at, once that state
        // is durable: a record naming frames a power cut could still take from a shard (those
        // an abandoned writer left unsynced) would leave no set commit every shard reaches.
        w.each_shard(Writer::sync)?;
        w.rewrite_log()?;
        Ok(w)
    }

    /// The writer of shards `ids` of the store at `dir` for one member of `group`. Collective:
    /// every member calls it, each with its own shards, which together name every shard
    /// once. Member 0 first opens the store whole (creating it if `opts` asks), which cuts
    /// the batches of any set commit a crash left in some shards only, and closes it; then
    /// every member opens its shards, and member 0 the set log. `commit`, `sync`,
    /// `checkpoint`, `gc` and `close` are then collective too, and a failure on any member
    /// fails the call on all of them (and the writers refuse work until reopened).
    pub fn open_group(
        dir: &Path,
        ids: &[u32],
        opts: &Options,
        mut group: Box<dyn Collective>,
    ) -> Result<ShardedWriter> {
        let g = group.as_mut();
        let member = u64::from(g.member());
        let whole = match member {
            0 => ShardedWriter::open(dir, opts).and_then(ShardedWriter::close),
            _ => Ok(()),
        };
        agree(g, dir, whole, &mut [])?;
        let read = manifest_of(dir);
        let mut count = [*read.as_ref().unwrap_or(&0) as u64];
        agree(g, dir, read.map(drop), &mut count)?;
        let n = count[0] as u32;
        let named = check_ids(ids, n);
        // Each shard's largest member and, as u64::MAX - m, smallest: equal when one member
        // named it.
        let mut owners = vec![0u64; 2 * n as usize];
        if named.is_ok() {
            for &i in ids {
                owners[i as usize] = member + 1;
                owners[(n + i) as usize] = u64::MAX - (member + 1);
            }
        }
        agree(g, dir, named, &mut owners)?;
        owned_once(&owners, n)?;
        let opened = open_members(dir, ids, n, opts, member == 0);
        let mut seq = [opened.as_ref().map_or(0, |o| o.seq)];
        let (opened, outcome) = match opened {
            Ok(o) => (Some(o), Ok(())),
            Err(e) => (None, Err(e)),
        };
        agree(g, dir, outcome, &mut seq)?;
        let o = opened.expect("agreed");
        let recovered = merged_reports(dir, ids, &o.shards);
        Ok(ShardedWriter {
            dir: dir.to_owned(),
            ids: ids.to_vec(),
            shards: o.shards,
            total: n,
            log: o.log,
            seq: seq[0],
            marks: o.marks,
            sync: opts.sync_commit,
            broken: None,
            recovered,
            group,
        })
    }

    /// A plain writer of shard `shard` of the store at `dir`, for a process that owns that
    /// shard: batches of an unfinished set commit are cut from it first, and the set log
    /// records that the shard's later batches belong to no set commit.
    pub fn open_shard(dir: &Path, shard: u32, opts: &Options) -> Result<Writer> {
        let n = manifest_of(dir)?;
        if shard >= n {
            return Err(Error::InvalidArgument(format!(
                "shard {shard} does not exist: {} has {n} shards",
                dir.display()
            )));
        }
        let plain = Options {
            create: false,
            ..opts.clone()
        };
        let file = Writer::lock(&shard_path(dir, shard), &plain)?;
        let (mut log, recs) = SetLog::open(dir, n)?;
        let last = recs.iter().rev().find_map(|r| match r {
            SetRecord::Done { lsns, .. } => Some(Some(lsns[shard as usize])),
            SetRecord::Detach { shard: s, .. } if *s == shard => Some(None),
            SetRecord::Detach { .. } => None,
        });
        let (_, end) = recovery::log_lsns(&file)?;
        // A shard behind the done record lost batches to a power cut: keep what it has.
        let below = last.flatten().filter(|b| *b < end);
        let w = Writer::start(file, &plain, below).map_err(|e| in_shard(dir, shard, e))?;
        log.append(&SetRecord::Detach {
            shard,
            lsn: w.next_lsn(),
        })?;
        log.sync()?;
        Ok(w)
    }

    /// Inserts pairs, each into its key's shard.
    pub fn insert(&mut self, keys: &[Key], values: &[Value]) -> Result<()> {
        same_len(keys, values)?;
        self.scatter(keys, |w, at| w.insert(&pick(keys, at), &pick(values, at)))
    }

    /// Inserts values of one key into its shard.
    pub fn insert_values(&mut self, key: &Key, values: &[Value]) -> Result<()> {
        self.scatter(std::slice::from_ref(key), |w, _| {
            w.insert_values(key, values)
        })
    }

    /// Deletes keys, each in its shard.
    pub fn delete_keys(&mut self, keys: &[Key]) -> Result<()> {
        self.scatter(keys, |w, at| w.delete_keys(&pick(keys, at)))
    }

    /// Deletes pairs, each in its key's shard.
    pub fn delete_pairs(&mut self, keys: &[Key], values: &[Value]) -> Result<()> {
        same_len(keys, values)?;
        self.scatter(keys, |w, at| {
            w.delete_pairs(&pick(keys, at), &pick(values, at))
        })
    }

    /// Hands each shard the indices of its keys. A shard that refuses its part leaves the
    /// other parts pending in theirs: the store then refuses work until reopened. So does a
    /// key of another member's shard, refused before any shard takes a part.
    fn scatter(
        &mut self,
        keys: &[Key],
        mut f: impl FnMut(&mut Writer, &[usize]) -> Result<()>,
    ) -> Result<()> {
        self.usable()?;
        let by = route(keys, self.total);
        if let Some(s) = (0..self.total).find(|s| !by[*s as usize].is_empty() && !self.writes(*s)) {
            // The others would commit their parts of the set without this member's.
            return self.fail(Error::InvalidArgument(format!(
                "a key of shard {s}, which another member of the group writes"
            )));
        }
        let mut refused = None;
        for (w, &id) in self.shards.iter_mut().zip(&self.ids) {
            let at = &by[id as usize];
            if !at.is_empty() {
                if let Err(e) = f(w, at) {
                    refused = Some(e);
                    break;
                }
            }
        }
        match refused {
            None => Ok(()),
            Some(e) => self.fail(e),
        }
    }

    /// Whether this writer writes shard `s`.
    fn writes(&self, s: u32) -> bool {
        self.ids.binary_search(&s).is_ok()
    }

    fn usable(&self) -> Result<()> {
        match &self.broken {
            None => Ok(()),
            Some(why) => Err(Error::Unusable {
                why: why.clone(),
                errno: None,
            }),
        }
    }

    /// A failure after which the shards may disagree: only a reopen (which cuts them back to
    /// the last whole set commit) makes the store usable again.
    fn fail<T>(&mut self, e: Error) -> Result<T> {
        self.broken = Some(e.to_string());
        Err(e)
    }

    /// One collective step's agreement (see [`agree`]); a failure breaks the writer.
    fn agree(&mut self, mine: Result<()>, flags: &mut [u64]) -> Result<()> {
        match agree(self.group.as_mut(), &self.dir, mine, flags) {
            Ok(()) => Ok(()),
            Err(e) => self.fail(e),
        }
    }

    /// The first error of a step run on every shard of this writer, naming its shard.
    fn each_shard(&mut self, f: impl Fn(&mut Writer) -> Result<()> + Sync) -> Result<()> {
        self.each_shard_where(&vec![true; self.shards.len()], f)
    }

    /// Every shard's pending batch, as one set commit: in every shard or, after a crash, in
    /// none.
    pub fn commit(&mut self) -> Result<()> {
        let mut due = [
            u64::from(self.shards.iter().any(Writer::pending)),
            u64::from(self.shards.iter().any(Writer::switch_due)),
        ];
        self.agree(self.usable(), &mut due)?;
        if due[0] == 0 {
            return Ok(());
        }
        if due[1] != 0 {
            self.sync_point()?;
        }
        let appended = self.each_shard(Writer::append);
        // Only the shards found due seal: a shard whose previous flush ended after this look
        // would otherwise seal frames that no sync point covered when none was due.
        let full: Vec<bool> = self.shards.iter().map(Writer::nearly_full).collect();
        let mut marks = vec![0u64; self.total as usize + 1];
        for (w, &id) in self.shards.iter().zip(&self.ids) {
            marks[id as usize] = w.next_lsn();
        }
        marks[self.total as usize] = u64::from(full.contains(&true));
        self.agree(appended, &mut marks)?;
        let seal = marks.pop() == Some(1);
        let recorded = self.record(marks);
        self.agree(recorded, &mut [])?;
        self.seq += 1;
        if seal {
            self.sync_point()?;
            let sealed = self.each_shard_where(&full, Writer::seal_full);
            self.agree(sealed, &mut [])?;
        }
        Ok(())
    }

    /// Member 0: appends the done record of the next set commit (durably with `sync_commit`).
    fn record(&mut self, marks: Vec<u64>) -> Result<()> {
        let Some(log) = &mut self.log else {
            return Ok(());
        };
        let done = SetRecord::Done {
            seq: self.seq + 1,
            lsns: marks.clone(),
        };
        log.append(&done)?;
        if self.sync {
            log.sync()?;
        }
        self.marks = marks;
        Ok(())
    }

    /// [`ShardedWriter::each_shard`] on the shards whose `pick` is true.
    fn each_shard_where(
        &mut self,
        pick: &[bool],
        f: impl Fn(&mut Writer) -> Result<()> + Sync,
    ) -> Result<()> {
        let done = each(&mut self.shards, |i, w| match pick[i] {
            true => f(w),
            false => Ok(()),
        });
        first_error(&self.dir, &self.ids, done).map(drop)
    }

    /// Every shard and the set log durable: the point before which a shard may seal a log
    /// (its frames then go into tables, where recovery can no longer cut them).
    fn sync_point(&mut self) -> Result<()> {
        let synced = self.usable().and_then(|()| self.each_shard(Writer::sync));
        let logged = synced.and_then(|()| self.sync_log());
        self.agree(logged, &mut [])
    }

    /// Member 0: the set log durable, and cut back to one record when it has grown long.
    fn sync_log(&mut self) -> Result<()> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        log.sync()?;
        if log.len()? > SET_LOG_MAX {
            self.rewrite_log()?;
        }
        Ok(())
    }

    /// Replaces the set log by the done record of the newest set commit.
    fn rewrite_log(&mut self) -> Result<()> {
        let rec = SetRecord::Done {
            seq: self.seq,
            lsns: self.marks.clone(),
        };
        match &mut self.log {
            Some(log) => log.rewrite(&rec),
            None => Ok(()),
        }
    }

    /// Makes every committed set durable: every shard, then the set log.
    pub fn sync(&mut self) -> Result<()> {
        self.sync_point()
    }

    /// Checkpoints every shard (after a sync point).
    pub fn checkpoint(&mut self) -> Result<()> {
        self.sync_point()?;
        let done = self.each_shard(Writer::checkpoint);
        self.agree(done, &mut [])
    }

    /// Runs [`Writer::gc`] on every shard; the reports summed (this member's shards').
    pub fn gc(&mut self) -> Result<GcReport> {
        self.sync_point()?;
        let reports = each(&mut self.shards, |_, w| w.gc());
        let (mut pages, mut segments) = (0, 0);
        let done = first_error(&self.dir, &self.ids, reports).map(|all| {
            pages = all.iter().map(|r| r.pages_reclaimed).sum();
            segments = all.iter().map(|r| r.segments_reclaimed).sum();
        });
        self.agree(done, &mut [])?;
        Ok(GcReport {
            pages_reclaimed: pages,
            segments_reclaimed: segments,
        })
    }

    /// The shards' statistics, summed (depth: the largest; epoch: the sum).
    pub fn stats(&self) -> Result<Stats> {
        let each = self.shards.iter().map(Writer::stats);
        Ok(sum_stats(&each.collect::<Result<Vec<_>>>()?))
    }

    /// What opening recovered, over all shards (the notes name their shard).
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovered
    }

    /// Commits, then closes every shard (in parallel).
    pub fn close(mut self) -> Result<()> {
        self.commit()?;
        self.sync_point()?;
        let mut shards: Vec<Option<Writer>> = self.shards.drain(..).map(Some).collect();
        let closed = each(&mut shards, |_, w| w.take().expect("open").close());
        let closed = first_error(&self.dir, &self.ids, closed).map(drop);
        agree(self.group.as_mut(), &self.dir, closed, &mut [])
    }

    /// The number of shards of the store.
    pub fn shard_count(&self) -> u32 {
        self.total
    }
}

/// What a group member opens: its shards' writers and, for member 0, the set log with the
/// newest set commit it records.
struct Opened {
    shards: Vec<Writer>,
    log: Option<SetLog>,
    seq: u64,
    marks: Vec<u64>,
}

/// Opens a member's shards (recovered whole already by member 0's open of the store) and,
/// for member 0, the set log.
fn open_members(dir: &Path, ids: &[u32], n: u32, opts: &Options, lead: bool) -> Result<Opened> {
    let plain = Options {
        create: false,
        ..opts.clone()
    };
    let files = ids
        .iter()
        .map(|&i| Writer::lock(&shard_path(dir, i), &plain))
        .collect::<Result<Vec<WriterFile>>>()?;
    let (mut log, mut seq, mut marks) = (None, 0, Vec::new());
    if lead {
        let (l, recs) = SetLog::open(dir, n)?;
        if let Some(SetRecord::Done { seq: s, lsns }) = recs
            .iter()
            .rev()
            .find(|r| matches!(r, SetRecord::Done { .. }))
        {
            (seq, marks) = (*s, lsns.clone());
        }
        log = Some(l);
    }
    let mut files: Vec<Option<WriterFile>> = files.into_iter().map(Some).collect();
    let writers = each(&mut files, |_, f| {
        Writer::start(f.take().expect("locked"), &plain, None)
    });
    let shards = first_error(dir, ids, writers)?;
    Ok(Opened {
        shards,
        log,
        seq,
        marks,
    })
}

/// A member's shards: ascending, each below the store's count `n`.
fn check_ids(ids: &[u32], n: u32) -> Result<()> {
    if let Some(&bad) = ids.iter().find(|&&i| i >= n) {
        return Err(Error::InvalidArgument(format!(
            "shard {bad} does not exist: the store has {n} shards"
        )));
    }
    if ids.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::InvalidArgument(
            "a member's shards must be named in ascending order, each once".into(),
        ));
    }
    Ok(())
}

/// Every shard named by exactly one member (`owners` from [`ShardedWriter::open_group`]).
fn owned_once(owners: &[u64], n: u32) -> Result<()> {
    for s in 0..n as usize {
        let (high, low) = (owners[s], u64::MAX - owners[n as usize + s]);
        if high == 0 {
            return Err(Error::InvalidArgument(format!(
                "no member of the group writes shard {s}"
            )));
        }
        if high != low {
            return Err(Error::InvalidArgument(format!(
                "shard {s} is named by members {} and {}",
                low - 1,
                high - 1
            )));
        }
    }
    Ok(())
}

/// Creates the store's directory, its shard files and, last, its first set record and its
/// manifest: a directory without a manifest is a creation that did not finish, which a
/// creating open finishes when the directory holds nothing else.
fn create(dir: &Path, opts: &Options) -> Result<()> {
    if opts.shards > MAX_SHARDS {
        return Err(Error::InvalidArgument(format!(
            "shards {} is above the maximum {MAX_SHARDS}",
            opts.shards
        )));
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {
            if !unfinished_store(dir)? {
                return Err(Error::NotHashdir {
                    path: dir.to_owned(),
                    reason: format!(
                        "a directory without a shard manifest ({MANIFEST}) that holds other files"
                    ),
                });
            }
        }
        Err(e) => return Err(Error::io("mkdir", dir, e)),
    }
    let mut lsns = Vec::new();
    for i in 0..opts.shards {
        let w = Writer::open(&shard_path(dir, i), opts)?;
        lsns.push(w.next_lsn());
        w.close()?;
    }
    let (mut log, _) = SetLog::open(dir, opts.shards)?;
    log.rewrite(&SetRecord::Done { seq: 0, lsns })?;
    write_manifest(
        dir,
        &Manifest {
            shards: opts.shards,
        },
    )
}

/// The set commit to keep: the newest done record every shard still owned by set commits
/// reaches, and per shard the LSN to cut back to (None: keep all).
fn resolve(dir: &Path, recs: &[SetRecord], lsns: &[(u64, u64)]) -> Result<(u64, Vec<Option<u64>>)> {
    let n = lsns.len() as u32;
    for (at, rec) in recs.iter().enumerate().rev() {
        let SetRecord::Done { seq, lsns: want } = rec else {
            continue;
        };
        let reached = (0..n).all(|i| !owned(recs, at, i) || lsns[i as usize].1 >= want[i as usize]);
        if reached {
            let below = (0..n)
                .map(|i| owned(recs, at, i).then_some(want[i as usize]))
                .collect();
            return Ok((*seq, below));
        }
    }
    Err(Error::corrupt(
        "set log",
        0,
        format!(
            "{}: no set commit it records is in every shard",
            dir.display()
        ),
    ))
}

fn merged_reports(dir: &Path, ids: &[u32], shards: &[Writer]) -> RecoveryReport {
    let mut all = RecoveryReport::default();
    for (&i, w) in ids.iter().zip(shards) {
        let r = w.recovery();
        all.root_epoch += r.root_epoch;
        all.frames += r.frames;
        all.log_bytes += r.log_bytes;
        all.micros = all.micros.max(r.micros);
        let name = shard_name(dir, i);
        all.notes
            .extend(r.notes.iter().map(|n| format!("{name}: {n}")));
    }
    all
}

/// The counters of a store: sums over its shards; the deepest directory; the sum of epochs,
/// which grows whenever any shard publishes.
pub fn sum_stats(all: &[Stats]) -> Stats {
    let mut s = Stats::default();
    for t in all {
        s.global_depth = s.global_depth.max(t.global_depth);
        s.keys += t.keys;
        s.values += t.values;
        s.buckets += t.buckets;
        s.file_bytes += t.file_bytes;
        s.disk_bytes += t.disk_bytes;
        s.epoch += t.epoch;
        s.extents += t.extents;
        s.wal_bytes += t.wal_bytes;
        s.delta_tables += t.delta_tables;
        s.delta_bytes += t.delta_bytes;
        s.merging |= t.merging;
    }
    s
}

/// The file name of shard `i`, which notes and problems start with.
fn shard_name(dir: &Path, i: u32) -> String {
    let path = shard_path(dir, i);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    name.unwrap_or_default()
}

/// A reader of a sharded store: one reader a shard; lookups go to the keys' shards and come
/// back in the caller's order. Each shard's view is one of its commits; a refresh moves the
/// shards one after another, so a set commit made meanwhile may show in some shards first.
pub struct ShardedReader {
    shards: Vec<Reader>,
}

impl ShardedReader {
    pub fn open(dir: &Path, opts: &Options) -> Result<ShardedReader> {
        let n = manifest_of(dir)?;
        let shards = (0..n)
            .map(|i| Reader::open(&shard_path(dir, i), opts).map_err(|e| in_shard(dir, i, e)))
            .collect::<Result<Vec<_>>>()?;
        Ok(ShardedReader { shards })
    }

    pub fn refresh(&self) -> Result<()> {
        self.shards.iter().try_for_each(Reader::refresh)
    }

    fn shard(&self, key: &Key) -> &Reader {
        &self.shards[shard_of(key, self.shards.len() as u32) as usize]
    }

    pub fn lookup(&self, keys: &[Key], first: &mut [Value], found: &mut [u8]) -> Result<()> {
        if first.len() < keys.len() || found.len() < keys.len() {
            return Err(Error::InvalidArgument(
                "output arrays shorter than keys".into(),
            ));
        }
        if let [key] = keys {
            return self.shard(key).lookup(keys, first, found);
        }
        let by = route(keys, self.shards.len() as u32);
        let (mut f, mut v) = (Vec::new(), Vec::new());
        for (r, at) in self.shards.iter().zip(&by) {
            if at.len() == keys.len() {
                return r.lookup(keys, first, found);
            }
            f.resize(at.len(), 0);
            v.resize(at.len(), Value::default());
            r.lookup(&pick(keys, at), &mut v, &mut f)?;
            for (j, &i) in at.iter().enumerate() {
                first[i] = v[j];
                found[i] = f[j];
            }
        }
        Ok(())
    }

    /// All values of each key, in the caller's key order (`Reader::get`).
    pub fn get(&self, keys: &[Key], values: &mut [Value], counts: &mut [u64]) -> Result<usize> {
        if counts.len() < keys.len() {
            return Err(Error::InvalidArgument("counts shorter than keys".into()));
        }
        if let [key] = keys {
            return self.shard(key).get(keys, values, counts);
        }
        let by = route(keys, self.shards.len() as u32);
        // Each shard's values, then the caller's order: key i's values start at `starts[i]`
        // of its shard's buffer.
        let mut bufs: Vec<Vec<Value>> = Vec::with_capacity(by.len());
        let mut starts = vec![0usize; keys.len()];
        let mut c = Vec::new();
        for (r, at) in self.shards.iter().zip(&by) {
            if at.len() == keys.len() {
                return r.get(keys, values, counts);
            }
            let mine = pick(keys, at);
            c.resize(at.len(), 0u64);
            let mut buf = vec![Value::default(); at.len()];
            let total = loop {
                match r.get(&mine, &mut buf, &mut c) {
                    Ok(total) => break total,
                    Err(Error::BufferTooSmall { needed, .. }) => {
                        buf.resize(needed, Value::default())
                    }
                    Err(e) => return Err(e),
                }
            };
            buf.truncate(total);
            let mut at_value = 0;
            for (j, &i) in at.iter().enumerate() {
                counts[i] = c[j];
                starts[i] = at_value;
                at_value += c[j] as usize;
            }
            bufs.push(buf);
        }
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        if total > values.len() {
            return Err(Error::BufferTooSmall {
                needed: total,
                capacity: values.len(),
            });
        }
        let n = self.shards.len() as u32;
        let mut out = 0;
        for (i, k) in keys.iter().enumerate() {
            let buf = &bufs[shard_of(k, n) as usize];
            let len = counts[i] as usize;
            values[out..out + len].copy_from_slice(&buf[starts[i]..starts[i] + len]);
            out += len;
        }
        Ok(total)
    }

    /// Every key with its values, shard after shard, until `f` returns false.
    pub fn scan(&self, mut f: impl FnMut(&Key, &[Value]) -> bool) -> Result<()> {
        let mut go = true;
        for r in &self.shards {
            r.scan(|k, v| {
                go = f(k, v);
                go
            })?;
            if !go {
                break;
            }
        }
        Ok(())
    }

    pub fn evict(&self) -> Result<()> {
        self.shards.iter().try_for_each(Reader::evict)
    }

    pub fn reads_log_in_place(&self) -> bool {
        self.shards.iter().all(Reader::reads_log_in_place)
    }

    pub fn stats(&self) -> Result<Stats> {
        let each = self.shards.iter().map(Reader::stats);
        Ok(sum_stats(&each.collect::<Result<Vec<_>>>()?))
    }
}

/// Verifies every shard; problems name their shard, counts are summed.
pub fn verify_store(dir: &Path) -> Result<VerifyReport> {
    let n = manifest_of(dir)?;
    let mut all = VerifyReport::default();
    for i in 0..n {
        let r = verify(&shard_path(dir, i))?;
        let name = shard_name(dir, i);
        all.problems
            .extend(r.problems.iter().map(|p| format!("{name}: {p}")));
        all.epoch += r.epoch;
        all.keys += r.keys;
        all.values += r.values;
        all.buckets += r.buckets;
        all.pages += r.pages;
        all.extents += r.extents;
    }
    Ok(all)
}
