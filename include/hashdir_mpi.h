/* hashdir_mpi: collective loading and routed lookups of a sharded hashdir store from the
 * ranks of an MPI communicator. A thin layer over the public C API (hashdir.h):
 * libhashdir itself has no MPI dependency; libhashdir_mpi is built against one MPI
 * implementation (as parallel HDF5 is) and must be used with that one.
 *
 * The store is an ordinary sharded store (hashdir.h, `opts->shards`): a directory of
 * size * shards_per_rank hashdir files. Rank r owns shards r * k .. r * k + k - 1
 * (k = shards_per_rank): it is their only writer, and answers routed lookups of their
 * keys. Any process, with or without MPI, reads the store with hashdir_reader_open(dir)
 * (or the `hashdir` tool) on a file system where it sees the directory. With one rank and
 * one shard per rank the store is one ordinary hashdir file at `dir`, as in hashdir.h,
 * where a store of one shard is a file.
 *
 * Every rank must pass the same `dir`, seen as the same directory by all ranks: one node's
 * file system, or a parallel file system (Lustre, GPFS). docs/SCALE-OUT.md has the details.
 *
 * Conventions:
 * - Calls marked collective must be called by every rank of the communicator, in the same
 *   order; every rank then returns the same status. When a call fails on some ranks,
 *   hashdir_mpi_last_error() on every rank says which rank failed first and why
 *   ("hashdir_mpi_commit: rank 2: shard_002.h5: ..."); libhashdir's own messages are
 *   passed through.
 * - A NULL handle is refused on the rank that passes it (HASHDIR_ERR_INVALID_ARGUMENT)
 *   without communicating: the other ranks then wait in the collective. Close accepts NULL.
 * - A failure of MPI itself (the handle's communicator has MPI_ERRORS_RETURN) returns
 *   HASHDIR_ERR_IO on the ranks that saw it, with MPI's message; close the handle then.
 * - No pointer passed in is kept after the call returns. Arrays of n elements may be NULL
 *   when n == 0. A handle is used by one thread at a time.
 *
 * Crashes: a collective commit is one set commit of the whole store (each rank's shards
 * are written through a group writer, hashdir_group_writer_open). After a crash of some
 * ranks, nodes or the whole job, once the store is opened for writing again (the next
 * hashdir_mpi_open, or hashdir_writer_open of the directory), every shard holds the commit
 * under way or none does, and every commit that returned HASHDIR_OK on all ranks is there
 * (in the default mode across a crash of processes; across a power cut up to the store's
 * last sync point, or every such commit with HASHDIR_SYNC_COMMIT). To make a load
 * idempotent, re-insert the pairs of the last commit that did not return HASHDIR_OK
 * everywhere (inserting a pair twice changes nothing). docs/SCALE-OUT.md has the details.
 *
 * SPDX-License-Identifier: MIT OR Apache-2.0 */

#ifndef HASHDIR_MPI_H
#define HASHDIR_MPI_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "hashdir.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An open store of a communicator's ranks. Opaque: create with hashdir_mpi_open (collective),
 * free with hashdir_mpi_close (collective). */
typedef struct hashdir_mpi hashdir_mpi;

/* A description of the last failed hashdir_mpi_* call on this thread, naming the function
 * and, for collective calls, the rank that failed first; "" if none has failed yet. Owned by
 * the library, valid until the next failing hashdir_mpi_* call on this thread. */
const char *hashdir_mpi_last_error(void);

/* Collective. Opens the sharded store at `dir` for the ranks of `comm` (which is duplicated:
 * the handle's traffic never meets the caller's), each rank owning `shards_per_rank` shards
 * (1 to 4096 / size). With HASHDIR_CREATE in `opts->flags` (the default of
 * hashdir_options_init; `opts` may be NULL for the defaults) a missing store is created with
 * size * shards_per_rank shards. An existing store must have exactly that many shards.
 * Rank 0 creates or checks the store with hashdir_writer_open, then every rank opens the
 * group writer of its shards (hashdir_group_writer_open, over an all-reduce on the
 * handle's communicator; its open cuts any set commit a crash left in some shards only)
 * and a reader on each of its shards for routed lookups. `opts` applies to every shard
 * writer (checkpoint_bytes, capacity, HASHDIR_SYNC_COMMIT); the readers never refresh on a
 * timer: hashdir_mpi_commit refreshes them.
 *
 * Errors: HASHDIR_ERR_INVALID_ARGUMENT for a NULL/empty dir or out, shards_per_rank 0 or
 * above 4096 / size, or a store with another shard count (the message gives both);
 * HASHDIR_ERR_NOT_FOUND for a missing store without HASHDIR_CREATE; HASHDIR_ERR_LOCKED when
 * another writer has the store or one of its shards; the errors of hashdir_writer_open.
 * On failure *out is NULL on every rank. */
enum hashdir_status hashdir_mpi_open(const char *dir, MPI_Comm comm, uint32_t shards_per_rank,
                                     const struct hashdir_options *opts, hashdir_mpi **out);

/* hashdir_mpi_open with a Fortran communicator handle (an `integer` of mpif.h / `use mpi`,
 * or `comm%MPI_VAL` of `use mpi_f08`), converted with MPI_Comm_f2c. */
enum hashdir_status hashdir_mpi_open_f(const char *dir, MPI_Fint comm, uint32_t shards_per_rank,
                                       const struct hashdir_options *opts, hashdir_mpi **out);

/* Local. Buffers the pairs (keys[i], values[i]), i < n, for the next hashdir_mpi_commit; any
 * rank may insert any key. Memory: 32 bytes a pair until the commit.
 * Errors: HASHDIR_ERR_INVALID_ARGUMENT for a NULL handle, NULL arrays with n > 0;
 * HASHDIR_ERR_IO when the buffer cannot grow (out of memory). */
enum hashdir_status hashdir_mpi_insert(hashdir_mpi *h, const struct hashdir_key *keys,
                                       const struct hashdir_value *values, size_t n);

/* Collective. Sends every rank's buffered pairs to the owners of their keys' shards
 * (hashdir_shard_of over size * shards_per_rank shards; MPI_Alltoallv), inserts them there
 * and commits every shard as one set commit of the store, then refreshes the
 * ranks' readers, so routed lookups and new hashdir_reader_open calls see the pairs.
 * The buffers are empty afterwards, whatever the status.
 * Errors (the same on every rank): those of hashdir_writer_commit on any rank; the commit is
 * then in no shard once the store is reopened, and every rank's writer refuses work: close
 * the handle and open the store again (see "Crashes" above). HASHDIR_ERR_INVALID_ARGUMENT when a rank
 * would send or receive more than INT_MAX pairs in one commit (commit more often). */
enum hashdir_status hashdir_mpi_commit(hashdir_mpi *h);

/* Collective. For each keys[i], i < n, of this rank: found[i] = 1 and first_values[i] = one
 * of its values, or found[i] = 0 (first_values[i] unspecified), as of the last commit. The
 * keys go to their owners, which answer from their readers (MPI_Alltoallv both ways). Each
 * rank asks for its own keys (n may differ between ranks, and be 0).
 * Errors: HASHDIR_ERR_INVALID_ARGUMENT for a NULL handle or NULL arrays with n > 0 on any
 * rank; those of hashdir_reader_lookup on an owner. */
enum hashdir_status hashdir_mpi_lookup(hashdir_mpi *h, const struct hashdir_key *keys, size_t n,
                                       struct hashdir_value *first_values, uint8_t *found);

/* Collective. All values of each keys[i], i < n, of this rank, as hashdir_reader_get returns
 * them: counts[i] = how many values keys[i] has; the values one key after the other in
 * `values` (counts[0] of keys[0], then those of keys[1], ...); *total = the sum of counts.
 * When *total > capacity, `values` holds nothing useful, counts and *total are filled, and
 * the status is HASHDIR_ERR_BUFFER_TOO_SMALL on this rank only (other ranks whose buffers
 * were large enough return HASHDIR_OK): call again with *total values. The retry is
 * collective too: ranks that have their values take part with n = 0 (which costs a few
 * small messages); the Fortran module's hd_mpi%get does that.
 * Owners send values only to ranks whose buffer holds them.
 * Errors: HASHDIR_ERR_BUFFER_TOO_SMALL as above; HASHDIR_ERR_INVALID_ARGUMENT for a NULL
 * handle or total, NULL arrays with a non-zero length, on any rank; those of
 * hashdir_reader_get on an owner. *total is 0 after any other failure. */
enum hashdir_status hashdir_mpi_get(hashdir_mpi *h, const struct hashdir_key *keys, size_t n,
                                    struct hashdir_value *values, size_t capacity,
                                    uint64_t *counts, size_t *total);

/* Collective. The store's counters on every rank: the sums over all shards (of their
 * writers' hashdir_writer_stats), the deepest global_depth, merging if any shard merges; set
 * out->struct_size as for hashdir_writer_stats (fields beyond it are left alone).
 * Errors: HASHDIR_ERR_INVALID_ARGUMENT for a NULL handle or out, or out->struct_size below 8
 * or above 4096; those of hashdir_writer_stats. */
enum hashdir_status hashdir_mpi_stats(hashdir_mpi *h, struct hashdir_stats *out);

/* Local. Seconds this rank spent, since the open, in MPI calls of the handle's collective
 * calls (the exchange: routing, MPI_Alltoallv, agreeing on a status) and in libhashdir
 * calls (the store: inserts, commits, refreshes, lookups). Either pointer may be NULL.
 * Errors: HASHDIR_ERR_INVALID_ARGUMENT for a NULL handle. */
enum hashdir_status hashdir_mpi_times(const hashdir_mpi *h, double *exchange_seconds,
                                      double *store_seconds);

/* Collective. Commits the pairs still buffered (as hashdir_mpi_commit), closes every rank's
 * readers and shard writers (hashdir_writer_close: the logs become tables, durable), frees
 * the duplicated communicator and the handle, and waits for every rank: once it returns, a
 * hashdir_reader_open anywhere sees every pair. NULL is a no-op (local). The handle is
 * freed even when this fails.
 * Errors: those of hashdir_mpi_commit and hashdir_writer_close on any rank. */
enum hashdir_status hashdir_mpi_close(hashdir_mpi *h);

#ifdef __cplusplus
}
#endif

#endif /* HASHDIR_MPI_H */
