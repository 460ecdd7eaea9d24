//! Group writers: the members of a group of processes (MPI ranks) writing one sharded store
//! together, agreeing through a collective the caller supplies.

use super::abi::{hashdir_group, hashdir_options, hashdir_status};
use super::args::{self, field_ends, out_init, read_versioned, slice_in};
use super::call::{ffi_call, CallResult, Failure};
use super::options;
use super::writer::{boxed, hashdir_writer};
use crate::engine::{Collective, ShardedWriter};
use crate::error::{Error, Result};
use crate::StoreWriter;
use std::ffi::{c_char, c_void};
use std::ptr;

/// The caller's collective.
struct Group {
    member: u32,
    members: u32,
    ctx: *mut c_void,
    max: unsafe extern "C" fn(*mut c_void, *mut u64, usize) -> i32,
}

// SAFETY: the group is used by one call at a time (the writer's calls are serialised), and
// `hashdir_group_writer_open`'s contract makes `ctx` and `max` usable from whichever thread
// calls the writer.
unsafe impl Send for Group {}

impl Collective for Group {
    fn member(&self) -> u32 {
        self.member
    }

    fn members(&self) -> u32 {
        self.members
    }

    fn max(&mut self, values: &mut [u64]) -> Result<()> {
        // SAFETY: `max` is the caller's non-NULL function, given `ctx` as the caller asked
        // and `values.len()` writable values.
        let rc = unsafe { (self.max)(self.ctx, values.as_mut_ptr(), values.len()) };
        match rc {
            0 => Ok(()),
            rc => Err(Error::Unusable {
                why: format!("the group's max function failed (returned {rc})"),
                errno: None,
            }),
        }
    }
}

fn no_group() -> hashdir_group {
    hashdir_group {
        struct_size: std::mem::size_of::<hashdir_group>() as u32,
        member: 0,
        members: 0,
        ctx: ptr::null_mut(),
        max: None,
    }
}

/// Reads and checks the caller's group.
///
/// # Safety
/// `group` is NULL or points at `group->struct_size` readable bytes.
unsafe fn decode(group: *const hashdir_group) -> CallResult<Group> {
    let fields = field_ends!(hashdir_group, no_group(); member, members, ctx, max);
    // SAFETY: passed on from this function's contract. The fields are integers, a pointer
    // kept opaque, and an `Option` of a function pointer (NULL is `None`; anything else is
    // the caller's function, by contract).
    let g = unsafe { read_versioned(group, no_group(), &fields, "group") }?;
    let Some(max) = g.max else {
        return Err(Failure::invalid("group->max is NULL"));
    };
    if g.members == 0 || g.member >= g.members {
        return Err(Failure::invalid(format!(
            "group->member {} of group->members {}: needs member < members",
            g.member, g.members
        )));
    }
    Ok(Group {
        member: g.member,
        members: g.members,
        ctx: g.ctx,
        max,
    })
}

/// Opens, as one member of a group of processes (e.g. the ranks of an MPI communicator),
/// the writer of shards `shards[0..n)` of the sharded store at `dir`; the members together
/// write every shard, each shard from one member. **Collective**: every member calls it, and
/// then every member calls `hashdir_writer_commit`, `_sync`, `_checkpoint`, `_gc` and
/// `_close` on its handle the same number of times in the same order; each such call runs
/// `group->max` a few times, on the calling thread.
///
/// Member 0 first opens the store whole (creating it with `opts->shards` shards when
/// `HASHDIR_CREATE` is set and it does not exist), which cuts the batches of a set commit that
/// a crash left in some shards only, and closes it again; then every member opens its shards.
/// A commit is a set commit of every member's pending batch: after a crash of any or every
/// member, every shard holds it or none does. Member 0 writes its record to the store's set
/// log once every member's batches are in their shards' logs, and the call returns
/// `HASHDIR_OK` on every member or fails on every member (those that saw no failure of their
/// own return `HASHDIR_ERR_IO`, "member k of the group writing DIR failed"); after a failure
/// the writers refuse work until closed and reopened, which keeps every whole set commit.
/// With `HASHDIR_SYNC_COMMIT` an acknowledged set commit survives a power cut.
///
/// Inserts and deletes take only keys of this member's shards (`hashdir_shard_of`); a key of
/// another member's shard is `HASHDIR_ERR_INVALID_ARGUMENT` and nothing of the call is kept.
/// Stats and the recovery report cover this member's shards.
///
/// # Errors
/// On every member: `HASHDIR_ERR_INVALID_ARGUMENT` for shards named by no member or by two,
/// or not ascending, or beyond the store; and any member's failure to open (the others
/// return `HASHDIR_ERR_IO` naming it). On this member only: `HASHDIR_ERR_INVALID_ARGUMENT`
/// for a NULL/empty `dir`, NULL `out`, bad `opts` or `group` — no collective step runs then,
/// so every member must pass valid arguments.
///
/// # Threads
/// Any thread; the handle's collective calls must come from threads on which
/// `group->max` may run.
///
/// # Safety
/// As `hashdir_writer_open`; `shards` is NULL (with `n` = 0) or `n` readable `uint32_t`;
/// `group` is NULL or points at `group->struct_size` readable bytes, and `group->ctx` stays
/// valid for `group->max` until the handle is closed.
#[no_mangle]
pub unsafe extern "C" fn hashdir_group_writer_open(
    dir: *const c_char,
    shards: *const u32,
    n: usize,
    opts: *const hashdir_options,
    group: *const hashdir_group,
    out: *mut *mut hashdir_writer,
) -> hashdir_status {
    ffi_call("hashdir_group_writer_open", || {
        // SAFETY: `out` is NULL or writable, by contract.
        let out = unsafe { out_init(out, ptr::null_mut(), "out") }?;
        // SAFETY: `dir` is NULL or NUL-terminated, by contract.
        let dir = unsafe { args::path(dir) }?;
        // SAFETY: `shards` is NULL with n = 0 or n readable u32s, by contract.
        let ids = unsafe { slice_in(shards, n, "shards") }?;
        // SAFETY: `opts` is NULL or `struct_size` readable bytes, by contract.
        let options = unsafe { options::decode(opts) }?;
        // SAFETY: `group` is NULL or `struct_size` readable bytes, by contract.
        let group = unsafe { decode(group) }?;
        let writer = ShardedWriter::open_group(dir, ids, &options, Box::new(group))?;
        *out = boxed(StoreWriter::Sharded(writer));
        Ok(())
    })
}
