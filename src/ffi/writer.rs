//! `hashdir_writer`: the one writer of a file, behind a lock so C may call it from any
//! thread.

use super::abi::{
    hashdir_key, hashdir_options, hashdir_recovery, hashdir_stats, hashdir_status, hashdir_value,
};
use super::args::{self, field_ends, handle, out_init, slice_in, slice_out, write_versioned};
use super::call::{ffi_call, guard, CallResult, Failure};
use super::{options, stats};
use crate::engine::ShardedWriter;
use crate::{Key, StoreWriter, Value};
use parking_lot::Mutex;
use std::ffi::c_char;
use std::ptr;

/// An open writer. Opaque: create with `hashdir_writer_open`, free with
/// `hashdir_writer_close`.
pub struct hashdir_writer {
    slot: Mutex<Slot>,
}

struct Slot {
    writer: StoreWriter,
    /// Set when a call panicked mid-change: the writer's memory may then hold half an
    /// insert, which must never reach the file by a later commit.
    poisoned: bool,
}

/// Marks the slot poisoned if dropped during a panic (`parking_lot` locks do not poison).
struct PoisonOnUnwind<'a>(&'a mut bool);

impl Drop for PoisonOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            *self.0 = true;
        }
    }
}

const POISONED: &str = "the writer panicked earlier and refuses further calls; close it";
const POISONED_CLOSE: &str = "the writer had panicked earlier; closed without committing";

impl hashdir_writer {
    fn with<T>(&self, op: impl FnOnce(&mut StoreWriter) -> crate::Result<T>) -> CallResult<T> {
        let mut slot = self.slot.lock();
        let Slot { writer, poisoned } = &mut *slot;
        if *poisoned {
            return Err(Failure::panic(POISONED));
        }
        let _poison = PoisonOnUnwind(poisoned);
        Ok(op(writer)?)
    }
}

// Writer calls from several C threads are serialised by the lock above.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<hashdir_writer>();
};

/// Borrows the writer behind a handle argument.
///
/// # Safety
/// `w` is NULL or a live writer handle.
unsafe fn writer<'a>(w: *const hashdir_writer) -> CallResult<&'a hashdir_writer> {
    // SAFETY: passed on from this function's contract.
    unsafe { handle(w, "writer") }
}

/// Opens (or, with `HASHDIR_CREATE`, creates) the file at `path` for writing, and
/// recovers committed changes a crashed writer left in its WAL.
///
/// A directory at `path` (or, when creating, `opts->shards` > 1) is a sharded store: every
/// writer call works on it too, routing each key to its shard (`hashdir_shard_of`); a commit
/// commits every shard, in parallel (one thread per shard, up to the cores), as one set
/// commit: after a crash every shard holds it or none does. Opening cuts the batches of a set
/// commit that did not reach every shard. A failed commit of a sharded store leaves the
/// writer refusing work (`HASHDIR_ERR_IO`): reopen it.
///
/// `opts` may be NULL for the defaults (see `hashdir_options_init`); readers' fields are
/// ignored.
///
/// # Errors
/// `HASHDIR_ERR_INVALID_ARGUMENT` for a NULL/empty path, NULL `out`, bad `opts`;
/// `HASHDIR_ERR_NOT_FOUND` if the file is missing and `HASHDIR_CREATE` is not set;
/// `HASHDIR_ERR_NOT_HASHDIR` if the file is something else (it is left unchanged), or a
/// directory without a shard manifest; `HASHDIR_ERR_CORRUPT` for a damaged manifest;
/// `HASHDIR_ERR_LOCKED` if another writer, in this or another process, has it open;
/// `HASHDIR_ERR_IO`, `HASHDIR_ERR_CORRUPT`.
///
/// # Threads
/// Any thread. The returned handle may be used from any thread.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `opts` is NULL or points at
/// `opts->struct_size` readable bytes; `out` is NULL or writable. On success `*out` owns
/// a handle to pass to `hashdir_writer_close` exactly once; on failure `*out` is NULL.
#[no_mangle]
pub unsafe extern "C" fn hashdir_writer_open(
    path: *const c_char,
    opts: *const hashdir_options,
    out: *mut *mut hashdir_writer,
) -> hashdir_status {
    ffi_call("hashdir_writer_open", || {
        // SAFETY: `out` is NULL or writable, by contract.
        let out = unsafe { out_init(out, ptr::null_mut(), "out") }?;
        // SAFETY: `path` is NULL or NUL-terminated, by contract.
        let path = unsafe { args::path(path) }?;
        // SAFETY: `opts` is NULL or `struct_size` readable bytes, by contract.
        let options = unsafe { options::decode(opts) }?;
        *out = boxed(StoreWriter::open(path, &options)?);
        Ok(())
    })
}

pub(super) fn boxed(writer: StoreWriter) -> *mut hashdir_writer {
    let slot = Mutex::new(Slot {
        writer,
        poisoned: false,
    });
    Box::into_raw(Box::new(hashdir_writer { slot }))
}

/// Opens shard `shard` of the sharded store at `dir` as a plain writer of that one file, for
/// programs in which each process (or thread) owns some shards and routes keys itself with
/// `hashdir_shard_of`. Every writer call works on it as on a single file. The batches of a
/// set commit that a crashed store writer left in this shard only are cut first; the
/// shard's batches from then on belong to no set commit, so a later
/// `hashdir_writer_open` of the store keeps them.
///
/// # Errors
/// `HASHDIR_ERR_INVALID_ARGUMENT` for a NULL/empty `dir`, NULL `out`, bad `opts`, or a
/// `shard` the store does not have; `HASHDIR_ERR_NOT_FOUND` if `dir` is missing;
/// `HASHDIR_ERR_NOT_HASHDIR` if it is not a sharded store (no manifest);
/// `HASHDIR_ERR_CORRUPT` for a damaged manifest; `HASHDIR_ERR_LOCKED` if the shard, or the
/// store, has a writer; `HASHDIR_ERR_IO`.
///
/// # Threads
/// Any thread. The returned handle may be used from any thread.
///
/// # Safety
/// As `hashdir_writer_open`.
#[no_mangle]
pub unsafe extern "C" fn hashdir_shard_writer_open(
    dir: *const c_char,
    shard: u32,
    opts: *const hashdir_options,
    out: *mut *mut hashdir_writer,
) -> hashdir_status {
    ffi_call("hashdir_shard_writer_open", || {
        // SAFETY: `out` is NULL or writable, by contract.
        let out = unsafe { out_init(out, ptr::null_mut(), "out") }?;
        // SAFETY: `dir` is NULL or NUL-terminated, by contract.
        let dir = unsafe { args::path(dir) }?;
        // SAFETY: `opts` is NULL or `struct_size` readable bytes, by contract.
        let options = unsafe { options::decode(opts) }?;
        let writer = ShardedWriter::open_shard(dir, shard, &options)?;
        *out = boxed(StoreWriter::File(writer));
        Ok(())
    })
}

/// The shard of `*key` in a sharded store of `shards` shards (0 and 1 both mean one shard,
/// and give 0); the same in every version of the library and on every machine (the rule is
/// in docs/FORMAT.md). A NULL `key` gives 0.
///
/// # Threads
/// Any thread.
///
/// # Safety
/// `key` is NULL or readable.
#[no_mangle]
pub unsafe extern "C" fn hashdir_shard_of(key: *const hashdir_key, shards: u32) -> u32 {
    guard("hashdir_shard_of", 0, || {
        // SAFETY: `key` is NULL or readable, by contract; `hashdir_key` has `Key`'s layout.
        match unsafe { handle(key.cast::<Key>(), "key") } {
            Ok(k) => crate::shard_of(k, shards),
            Err(_) => 0,
        }
    })
}

/// Adds the pairs `(keys[i], values[i])`, `i < n`. A key maps to a set, so inserting a
/// pair that is already there changes nothing. Visible to readers after
/// `hashdir_writer_commit` and their next refresh.
///
/// # Errors
/// `HASHDIR_ERR_INVALID_ARGUMENT` for a NULL writer, or NULL arrays with `n > 0`;
/// `HASHDIR_ERR_IO`; `HASHDIR_ERR_PANIC` if this writer panicked before.
///
/// # Threads
/// Any thread; calls on one writer are serialised.
///
/// # Safety
/// `w` is NULL or a live writer handle; `keys` and `values` each hold `n` elements
/// (either may be NULL when `n == 0`). The arrays stay owned by the caller.
#[no_mangle]
pub unsafe extern "C" fn hashdir_writer_insert(
    w: *mut hashdir_writer,
    keys: *const hashdir_key,
    values: *const hashdir_value,
    n: usize,
) -> hashdir_status {
    ffi_call("hashdir_writer_insert", || {
        // SAFETY: `w` is NULL or live, by contract.
        let w = unsafe { writer(w) }?;
        // SAFETY: `n` keys by contract; `hashdir_key` has `Key`'s layout (abi.rs).
        let keys = unsafe { slice_in(keys.cast::<Key>(), n, "keys") }?;
        // SAFETY: `n` values by contract; `hashdir_value` has `Value`'s layout (abi.rs).
        let values = unsafe { slice_in(values.cast::<Value>(), n, "values") }?;
        w.with(|w| w.insert(keys, values))
    })
}

/// Adds the pairs `(*key, values[i])`, `i < n`: `hashdir_writer_insert` for one key and
/// many values, without repeating the key. Visible after commit, like
/// `hashdir_writer_insert`.
///
/// # Errors
/// `HASHDIR_ERR_INVALID_ARGUMENT` for a NULL writer or `key`, or NULL `values` with
/// `n > 0`; `HASHDIR_ERR_IO`; `HASHDIR_ERR_PANIC` if this writer panicked before.
///
/// # Threads
/// Any thread; calls on one writer are serialised.
///
/// # Safety
/// `w` is NULL or a live writer handle; `key` is NULL or readable; `values` holds `n`
/// elements (NULL when `n == 0`). Both stay owned by the caller.
#[no_mangle]
pub unsafe extern "C" fn hashdir_writer_insert_values(
    w: *mut hashdir_writer,
    key: *const hashdir_key,
    values: *const hashdir_value,
    n: usize,
) -> hashdir_status {
    ffi_call("hashdir_writer_insert_values", || {
        // SAFETY: `w` is NULL or live, by contract.
        let w = unsafe { writer(w) }?;
        // SAFETY: `key` is NULL or readable, by contract; `hashdir_key` has `Key`'s layout.
        let key = unsafe { handle(key.cast::<Key>(), "key") }?;
        // SAFETY: `n` values by contract; `hashdir_value` has `Value`'s layout (abi.rs).
        let values = unsafe { slice_in(values.cast::<Value>(), n, "values") }?;
        w.with(|w| w.insert_values(key, values))
    })
}

/// Removes the keys `keys[i]`, `i < n`, with all their values. Keys that are not there
/// are ignored. Visible after commit, like `hashdir_writer_insert`.
///
/// # Errors
/// As `hashdir_writer_insert`.
///
/// # Threads
/// Any thread; calls on one writer are serialised.
///
/// # Safety
/// `w` is NULL or a live writer handle; `keys` holds `n` elements (NULL when `n == 0`).
#[no_mangle]
pub unsafe extern "C" fn hashdir_writer_delete_keys(
    w: *mut hashdir_writer,
    keys: *const hashdir_key,
    n: usize,
) -> hashdir_status {
    ffi_call("hashdir_writer_delete_keys", || {
        // SAFETY: `w` is NULL or live, by contract.
        let w = unsafe { writer(w) }?;
        // SAFETY: `n` keys by contract; `hashdir_key` has `Key`'s layout (abi.rs).
        let keys = unsafe { slice_in(keys.cast::<Key>(), n, "keys") }?;
        w.with(|w| w.delete_keys(keys))
    })
}

/// Removes the pairs `(keys[i], values[i])`, `i < n`; a key whose last value goes is
/// removed. Pairs that are not there are ignored. Visible after commit.
///
/// # Errors
/// As `hashdir_writer_insert`.
///
/// # Threads
/// Any thread; calls on one writer are serialised.
///
/// # Safety
/// As `hashdir_writer_insert`.
#[no_mangle]
pub unsafe extern "C" fn hashdir_writer_delete_pairs(
    w: *mut hashdir_writer,
    keys: *const hashdir_key,
    values: *const hashdir_value,
    n: usize,
) -> hashdir_status {
    ffi_call("hashdir_writer_delete_pairs", || {
        // SAFETY: `w` is NULL or live, by contract.
        let w = unsafe { writer(w) }?;
        // SAFETY: `n` keys by contract; `hashdir_key` has `Key`'s layout (abi.rs).
        let keys = unsafe { slice_in(keys.cast::<Key>(), n, "keys") }?;
        // SAFETY: `n` values by contract; `hashdir_value` has `Value`'s layout (abi.rs).
        let values = unsafe { slice_in(values.cast::<Value>(), n, "values") }?;
        w.with(|w| w.delete_pairs(keys, values))
    })
}

/// Makes every change since the last commit one atomic batch in the WAL, visible to readers
/// at their next refresh. Durability: once it returns the batch survives a crash of the
/// process; a power cut, kernel crash or lost node may lose the batches committed since the
/// last durable point (the last background flush or merge step, `hashdir_writer_sync`,
/// `hashdir_writer_checkpoint` or `hashdir_writer_close`), never older data and never the
/// file. With `HASHDIR_SYNC_COMMIT` the batch is fsynced before the call returns and
/// survives a power cut as far as the file system keeps its promises (one `fdatasync` per
/// commit). When the WAL reaches `checkpoint_bytes` it is sealed and turned into a delta
/// table in the background. A commit is paced, never blocked for a whole flush or merge:
/// while the previous sealed log is still being turned into a table, or while merges of
/// delta tables fall behind, it sleeps in 1 ms steps until the background work has done its
/// share of the log the commit fills.
///
/// # Errors
/// `HASHDIR_ERR_INVALID_ARGUMENT` for a NULL writer; `HASHDIR_ERR_IO` (the batch is not
/// committed and stays pending; after a failed fsync, or a failure of the background work,
/// the writer refuses all calls and the file must be reopened, which recovers every durable
/// batch); `HASHDIR_ERR_CORRUPT` when background work met a damaged page;
/// `HASHDIR_ERR_PANIC` if this writer panicked before.
///
/// # Threads
/// Any thread; calls on one writer are serialised.
///
/// # Safety
/// `w` is NULL or a live writer handle.
#[no_mangle]
pub unsafe extern "C" fn hashdir_writer_commit(w: *mut hashdir_writer) -> hashdir_status {
    ffi_call("hashdir_writer_commit", || {
        // SAFETY: `w` is NULL or live, by contract.
        unsafe { writer(w) }?.with(StoreWriter::commit)
    })
}

/// Merges everything committed into the base table and waits until that root is durable, so
/// the WAL is empty and the counts in `hashdir_stats` are current. Changes not yet committed
/// stay pending: a checkpoint never splits or commits a batch. Its cost follows the whole
/// table (the writer does the same work in the background on its own); to make commits
/// durable at a point of your choosing, `hashdir_writer_sync` is far cheaper.
///
/// # Errors
/// As `hashdir_writer_commit`.
///
/// # Threads
/// Any thread; calls on one writer are serialised.
///
/// # Safety
/// `w` is NULL or a live writer handle.
#[no_mangle]
pub unsafe extern "C" fn hashdir_writer_checkpoint(w: *mut hashdir_writer) -> hashdir_status {
    ffi_call("hashdir_writer_checkpoint", || {
        // SAFETY: `w` is NULL or live, by contract.
        unsafe { writer(w) }?.with(StoreWriter::checkpoint)
    })
}

/// Makes every batch committed so far durable against a power cut, now: one `fdatasync`
/// of the file (which also makes the root listing the current log durable). For programs
/// that commit often in the default mode and want durability at points of their own;
/// cheaper than a checkpoint, which merges tables. Changes not yet committed stay pending.
///
/// # Errors
/// `HASHDIR_ERR_INVALID_ARGUMENT` for a NULL writer; `HASHDIR_ERR_IO` if the sync fails (the
/// writer then refuses all calls: reopen the file, which recovers every durable batch);
/// `HASHDIR_ERR_PANIC` if this writer panicked before.
///
/// # Threads
/// Any thread; calls on one writer are serialised.
///
/// # Safety
/// `w` is NULL or a live writer handle.
#[no_mangle]
pub unsafe extern "C" fn hashdir_writer_sync(w: *mut hashdir_writer) -> hashdir_status {
    ffi_call("hashdir_writer_sync", || {
        // SAFETY: `w` is NULL or live, by contract.
        unsafe { writer(w) }?.with(StoreWriter::sync)
    })
}

/// Fills `*out` with the writer's counters (see `hashdir_stats` for `struct_size`).
///
/// # Errors
/// `HASHDIR_ERR_INVALID_ARGUMENT` for a NULL writer or `out`, or a bad
/// `out->struct_size`; `HASHDIR_ERR_IO`; `HASHDIR_ERR_PANIC` if this writer panicked
/// before.
///
/// # Threads
/// Any thread; calls on one writer are serialised.
///
/// # Safety
/// `w` is NULL or a live writer handle; `out` is NULL or points at `out->struct_size`
/// writable bytes.
#[no_mangle]
pub unsafe extern "C" fn hashdir_writer_stats(
    w: *mut hashdir_writer,
    out: *mut hashdir_stats,
) -> hashdir_status {
    ffi_call("hashdir_writer_stats", || {
        // SAFETY: `w` is NULL or live, by contract.
        let s = unsafe { writer(w) }?.with(|w| w.stats())?;
        // SAFETY: `out` is NULL or `struct_size` writable bytes, by contract.
        unsafe { stats::write(&s, out) }
    })
}

/// What opening this writer recovered: the root it started from, the committed
/// batches it replayed from the WAL, the time that took, and what it dropped (a damaged
/// root slot whose other slot was used; an incomplete last batch, which was never
/// acknowledged). `out` (versioned: set `out->struct_size`) may be NULL; `report` gets one
/// NUL-terminated line per dropped thing (an empty string if none), cut to `report_len`
/// bytes, and may be NULL when `report_len` is 0.
///
/// # Errors
/// `HASHDIR_ERR_INVALID_ARGUMENT` for a NULL writer, a bad `out->struct_size`, or a NULL
/// `report` with `report_len > 0`; `HASHDIR_ERR_PANIC` if this writer panicked before.
///
/// # Threads
/// Any thread; calls on one writer are serialised.
///
/// # Safety
/// `w` is NULL or a live writer handle; `out` is NULL or points at `out->struct_size`
/// writable bytes; `report` is NULL or `report_len` writable bytes not overlapping `out`.
#[no_mangle]
pub unsafe extern "C" fn hashdir_writer_recovery(
    w: *mut hashdir_writer,
    out: *mut hashdir_recovery,
    report: *mut c_char,
    report_len: usize,
) -> hashdir_status {
    ffi_call("hashdir_writer_recovery", || {
        // SAFETY: `w` is NULL or live, by contract.
        let r = unsafe { writer(w) }?.with(|w| Ok(w.recovery().clone()))?;
        // SAFETY: `report` is NULL or `report_len` writable bytes, by contract; bytes are
        // plain data.
        let text = unsafe { slice_out(report.cast::<u8>(), report_len, "report") }?;
        args::write_text(text, &r.notes.join("\n"));
        if out.is_null() {
            return Ok(());
        }
        let full = hashdir_recovery {
            struct_size: 0,
            dropped: r.notes.len() as u32,
            root_epoch: r.root_epoch,
            batches_replayed: r.frames,
            log_bytes_replayed: r.log_bytes,
            micros: r.micros,
        };
        let fields = field_ends!(hashdir_recovery, full;
            dropped, root_epoch, batches_replayed, log_bytes_replayed, micros);
        // SAFETY: `out` is non-NULL and `struct_size` writable bytes, by contract.
        unsafe { write_versioned(&full, out, &fields, "out") }
    })
}

/// Commits, turns the log into a delta table (so the next open replays nothing), makes that
/// durable, stops the background work (a merge under way goes on at the next open), releases
/// the file lock and frees the handle. NULL is a no-op. Its cost follows the log, not the
/// table.
///
/// Closing also gives the file's free space back to the filesystem (it punches holes, on
/// filesystems that can), except what a reader's pinned root may still read; free segments
/// are given back as they free up while the writer runs. The file's length stays;
/// `disk_bytes` in `hashdir_stats` (and `du`) counts about the live data only.
///
/// The handle is freed even when this fails; the failure says what did not reach the
/// file. A writer that panicked earlier is closed without committing and reports
/// `HASHDIR_ERR_PANIC`.
///
/// # Errors
/// `HASHDIR_ERR_IO`, `HASHDIR_ERR_PANIC`.
///
/// # Threads
/// Any thread, once no other call on this writer is running or will start.
///
/// # Safety
/// `w` is NULL or a live writer handle, which this call consumes: do not use it again.
#[no_mangle]
pub unsafe extern "C" fn hashdir_writer_close(w: *mut hashdir_writer) -> hashdir_status {
    ffi_call("hashdir_writer_close", || {
        if w.is_null() {
            return Ok(());
        }
        // SAFETY: a live handle from `hashdir_writer_open`'s Box::into_raw, handed back
        // exactly once by this function's contract.
        let Slot { writer, poisoned } = unsafe { Box::from_raw(w) }.slot.into_inner();
        if poisoned {
            drop(writer);
            return Err(Failure::panic(POISONED_CLOSE));
        }
        Ok(writer.close()?)
    })
}

/// The full garbage-collection pass: checkpoints what is committed, recomputes live space
/// from the root, returns every page and segment that nothing references and no free list
/// holds to the free lists, and publishes them (`pages_reclaimed` counts pages,
/// `segment_bytes_reclaimed` the bytes of whole segments). Idempotent: a second pass reclaims
/// 0, and so does a first one unless something went wrong: a crash never leaks space. Then
/// gives the free space back to the filesystem (punching holes, as `hashdir_writer_close`
/// does). Either out-parameter may be NULL.
///
/// # Errors
/// `HASHDIR_ERR_INVALID_ARGUMENT` for a NULL writer; `HASHDIR_ERR_CORRUPT` when the file
/// fails verification (nothing is reclaimed then); `HASHDIR_ERR_IO`; `HASHDIR_ERR_PANIC`.
///
/// # Threads
/// Any thread; calls on one writer are serialised.
///
/// # Safety
/// `w` is NULL or a live writer handle; each out-parameter is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn hashdir_writer_gc(
    w: *mut hashdir_writer,
    pages_reclaimed: *mut u64,
    segment_bytes_reclaimed: *mut u64,
) -> hashdir_status {
    ffi_call("hashdir_writer_gc", || {
        // SAFETY: `w` is NULL or live, by contract.
        let report = unsafe { writer(w) }?.with(StoreWriter::gc)?;
        for (ptr, v) in [
            (pages_reclaimed, report.pages_reclaimed),
            (segment_bytes_reclaimed, report.segments_reclaimed << 20),
        ] {
            if !ptr.is_null() {
                // SAFETY: non-NULL out-parameters are writable, by contract.
                unsafe { out_init(ptr, v, "gc counter") }?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Options;

    #[test]
    fn a_panic_poisons_the_writer_until_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.h5");
        let opened = StoreWriter::open(&path, &Options::default()).unwrap();
        let slot = Mutex::new(Slot {
            writer: opened,
            poisoned: false,
        });
        let w = Box::into_raw(Box::new(hashdir_writer { slot }));
        let status = ffi_call("hashdir_test", || {
            // SAFETY: `w` is live until the close below.
            unsafe { writer(w) }?.with(|_| -> crate::Result<()> { panic!("mid-insert") })
        });
        assert_eq!(status, hashdir_status::HASHDIR_ERR_PANIC);
        // SAFETY: `w` is live until the close below.
        let commit = unsafe { hashdir_writer_commit(w) };
        assert_eq!(commit, hashdir_status::HASHDIR_ERR_PANIC);
        // SAFETY: `w` is live and handed back once.
        let close = unsafe { hashdir_writer_close(w) };
        assert_eq!(close, hashdir_status::HASHDIR_ERR_PANIC);
        assert!(
            StoreWriter::open(&path, &Options::default()).is_ok(),
            "close released the lock"
        );
    }
}
