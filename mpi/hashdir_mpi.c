/* libhashdir_mpi: include/hashdir_mpi.h over the public C API of libhashdir.
 *
 * Build (scripts/install.sh does it where mpicc is found):
 *   mpicc -std=c11 -O2 -fPIC -shared -Iinclude mpi/hashdir_mpi.c -o libhashdir_mpi.so \
 *       -Wl,-soname,libhashdir_mpi.so.0 -L<libdir> -lhashdir
 *
 * Every collective call validates its arguments, then agrees on a status with the other ranks
 * before any exchange, so a rank that refuses a call never leaves the others waiting inside
 * an MPI_Alltoallv it skipped.
 *
 * SPDX-License-Identifier: MIT OR Apache-2.0 */

#include "hashdir_mpi.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The most shards a store may have (hashdir.h, `shards`). */
#define MAX_SHARDS 4096u
#define MSG_LEN 1024

struct hashdir_mpi {
  MPI_Comm comm;
  int rank, size;
  uint32_t per_rank; /* k: rank r owns shards r * k .. r * k + k - 1 */
  uint32_t shards;   /* size * k */
  hashdir_writer *writer;   /* this rank's shards: a group writer (one-file store: the file's) */
  hashdir_reader **readers; /* k */
  uint32_t *ids;            /* k: this rank's shards, for its group writer */
  hashdir_key *keys;        /* buffered pairs */
  hashdir_value *values;
  size_t len, cap;
  MPI_Datatype item; /* 16 bytes: a key or a value */
  double exchange_s, store_s;
};

static _Thread_local char last_error[MSG_LEN];

const char *hashdir_mpi_last_error(void) { return last_error; }

static enum hashdir_status fail(enum hashdir_status st, const char *fmt, ...) {
  char msg[MSG_LEN];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  memcpy(last_error, msg, sizeof msg);
  return st;
}

/* A libhashdir failure, its message passed through after `what`. */
static enum hashdir_status lib_fail(enum hashdir_status st, const char *what) {
  return fail(st, "%s: %s", what, hashdir_last_error());
}

/* An MPI failure: not agreed on (the communicator may be unusable), reported as I/O. */
static enum hashdir_status mpi_fail(int code, const char *fn, const char *call) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "code %d", code);
  return fail(HASHDIR_ERR_IO, "%s: %s failed: %s", fn, call, text);
}

#define MPI_TRY(call, fn)                                                    \
  do {                                                                       \
    int rc_ = (call);                                                        \
    if (rc_ != MPI_SUCCESS) return mpi_fail(rc_, fn, #call);                 \
  } while (0)

/* Every rank calls this with its own status; all return the status of the lowest rank that
 * failed, with its message prefixed by `fn` and that rank (one MPI_Allreduce when all
 * succeeded, one MPI_Bcast more otherwise). */
static enum hashdir_status agree(MPI_Comm comm, int rank, int size, enum hashdir_status st,
                                 const char *fn) {
  int mine = st == HASHDIR_OK ? size : rank, first = size;
  int rc = MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
  if (rc != MPI_SUCCESS) return mpi_fail(rc, fn, "MPI_Allreduce");
  if (first == size) return HASHDIR_OK;
  struct {
    int status;
    char msg[MSG_LEN];
  } m;
  memset(&m, 0, sizeof m);
  if (rank == first) {
    m.status = (int)st;
    memcpy(m.msg, last_error, sizeof m.msg);
  }
  rc = MPI_Bcast(&m, (int)sizeof m, MPI_BYTE, first, comm);
  if (rc != MPI_SUCCESS) return mpi_fail(rc, fn, "MPI_Bcast");
  m.msg[MSG_LEN - 1] = 0;
  return fail((enum hashdir_status)m.status, "%s: rank %d: %s", fn, first, m.msg);
}

static double now(void) { return MPI_Wtime(); }

/* Keys in bucket order (a stable counting sort): counts[b] keys in bucket b, at[i] the place
 * of keys[i]. The bucket of a key is (its shard - first) / div: its owner rank (first 0,
 * div k) or, on the owner, its local shard (first r * k, div 1). */
struct order {
  size_t *counts; /* nb */
  size_t *at;     /* n */
};

static void order_free(struct order *o) {
  free(o->counts);
  free(o->at);
  memset(o, 0, sizeof *o);
}

static enum hashdir_status order_keys(const hashdir_mpi *h, const hashdir_key *keys, size_t n,
                                      uint32_t first, uint32_t div, size_t nb, struct order *o,
                                      const char *fn) {
  uint32_t *bucket = malloc((n ? n : 1) * sizeof *bucket);
  size_t *next = malloc(nb * sizeof *next);
  o->counts = calloc(nb, sizeof *o->counts);
  o->at = malloc((n ? n : 1) * sizeof *o->at);
  if (!bucket || !next || !o->counts || !o->at) {
    free(bucket);
    free(next);
    order_free(o);
    return fail(HASHDIR_ERR_IO, "%s: out of memory", fn);
  }
  for (size_t i = 0; i < n; i++) {
    bucket[i] = (hashdir_shard_of(&keys[i], h->shards) - first) / div;
    o->counts[bucket[i]]++;
  }
  for (size_t b = 0, sum = 0; b < nb; b++) {
    next[b] = sum;
    sum += o->counts[b];
  }
  for (size_t i = 0; i < n; i++) o->at[i] = next[bucket[i]]++;
  free(bucket);
  free(next);
  return HASHDIR_OK;
}

/* MPI_Alltoallv of 16-byte items with counts in items; the receive counts are given. */
static enum hashdir_status exchange(hashdir_mpi *h, const void *send, const int *scounts,
                                    void *recv, const int *rcounts, MPI_Datatype t,
                                    const char *fn) {
  int *sd = malloc(2 * (size_t)h->size * sizeof *sd), *rd = sd + h->size;
  if (!sd) return fail(HASHDIR_ERR_IO, "%s: out of memory", fn);
  int s = 0, r = 0;
  for (int i = 0; i < h->size; i++) {
    sd[i] = s;
    rd[i] = r;
    s += scounts[i];
    r += rcounts[i];
  }
  double t0 = now();
  int rc = MPI_Alltoallv(send, scounts, sd, t, recv, rcounts, rd, t, h->comm);
  h->exchange_s += now() - t0;
  free(sd);
  return rc == MPI_SUCCESS ? HASHDIR_OK : mpi_fail(rc, fn, "MPI_Alltoallv");
}

/* Counts of items per rank as ints, refusing more than INT_MAX in total either way (the
 * displacements of MPI_Alltoallv are ints). */
static enum hashdir_status int_counts(hashdir_mpi *h, const size_t *counts, int *out,
                                      const char *fn) {
  size_t sum = 0;
  for (int i = 0; i < h->size; i++) {
    sum += counts[i];
    if (sum > INT_MAX)
      return fail(HASHDIR_ERR_INVALID_ARGUMENT,
                  "%s: more than %d items to exchange in one call; split the work", fn, INT_MAX);
    out[i] = (int)counts[i];
  }
  return HASHDIR_OK;
}

/* The routing of one rank's keys: each key's place in owner order, and the counts sent to
 * and received from every rank (an MPI_Alltoall of the counts). */
struct route {
  struct order by_owner;
  int *send, *recv; /* size each: items to and from each rank */
  size_t nrecv;
};

static void route_free(struct route *r) {
  order_free(&r->by_owner);
  free(r->send);
  memset(r, 0, sizeof *r);
}

static enum hashdir_status route(hashdir_mpi *h, const hashdir_key *keys, size_t n,
                                 struct route *r, const char *fn) {
  memset(r, 0, sizeof *r);
  size_t size = (size_t)h->size;
  size_t *counts = malloc(size * sizeof *counts);
  r->send = malloc(2 * size * sizeof *r->send);
  enum hashdir_status st = counts && r->send ? HASHDIR_OK : fail(HASHDIR_ERR_IO, "%s: out of memory", fn);
  if (st == HASHDIR_OK) st = order_keys(h, keys, n, 0, h->per_rank, size, &r->by_owner, fn);
  if (st == HASHDIR_OK) st = int_counts(h, r->by_owner.counts, r->send, fn);
  /* A refusal here is this rank's, which the others must hear before exchanging. */
  st = agree(h->comm, h->rank, h->size, st, fn);
  if (st != HASHDIR_OK) goto out;
  r->recv = r->send + size;
  double t0 = now();
  int rc = MPI_Alltoall(r->send, 1, MPI_INT, r->recv, 1, MPI_INT, h->comm);
  h->exchange_s += now() - t0;
  if (rc != MPI_SUCCESS) {
    st = mpi_fail(rc, fn, "MPI_Alltoall");
    goto out;
  }
  for (int i = 0; i < h->size; i++) {
    r->nrecv += (size_t)r->recv[i];
    counts[i] = (size_t)r->recv[i];
  }
  st = agree(h->comm, h->rank, h->size, int_counts(h, counts, r->recv, fn), fn);
out:
  free(counts);
  if (st != HASHDIR_OK) route_free(r);
  return st;
}

/* Sends `items` (n, 16 bytes each, in the caller's order) along the route to their owners:
 * `got` receives r->nrecv items, in order of the sending rank. */
static enum hashdir_status send_along(hashdir_mpi *h, const struct route *r, const void *items,
                                      size_t n, void *got, const char *fn) {
  unsigned char *sorted = malloc((n ? n : 1) * 16);
  if (!sorted) return fail(HASHDIR_ERR_IO, "%s: out of memory", fn);
  for (size_t i = 0; i < n; i++)
    memcpy(sorted + 16 * r->by_owner.at[i], (const unsigned char *)items + 16 * i, 16);
  enum hashdir_status st = exchange(h, sorted, r->send, got, r->recv, h->item, fn);
  free(sorted);
  return st;
}

/* The owner's side: the keys it received grouped by its local shard. */
struct local {
  struct order by_shard; /* counts: keys of each local shard */
  hashdir_key *keys;     /* n, in shard order */
};

static void local_free(struct local *l) {
  order_free(&l->by_shard);
  free(l->keys);
  memset(l, 0, sizeof *l);
}

static enum hashdir_status by_shard(hashdir_mpi *h, const hashdir_key *keys, size_t n,
                                    struct local *l, const char *fn) {
  memset(l, 0, sizeof *l);
  l->keys = malloc((n ? n : 1) * sizeof *l->keys);
  if (!l->keys) return fail(HASHDIR_ERR_IO, "%s: out of memory", fn);
  enum hashdir_status st =
      order_keys(h, keys, n, (uint32_t)h->rank * h->per_rank, 1, h->per_rank, &l->by_shard, fn);
  if (st != HASHDIR_OK) {
    local_free(l);
    return st;
  }
  for (size_t i = 0; i < n; i++) l->keys[l->by_shard.at[i]] = keys[i];
  return HASHDIR_OK;
}

/* ------------------------------------------------------------------------------------- */
/* Open and close */

static void release(hashdir_mpi *h) {
  for (uint32_t j = 0; h->readers && j < h->per_rank; j++) hashdir_reader_close(h->readers[j]);
  free(h->readers);
  free(h->ids);
  free(h->keys);
  free(h->values);
  if (h->item != MPI_DATATYPE_NULL) MPI_Type_free(&h->item);
  if (h->comm != MPI_COMM_NULL) MPI_Comm_free(&h->comm);
  free(h);
}

/* The caller's options as this header's struct (a larger struct's extra fields are dropped:
 * this layer was built against this header). */
static struct hashdir_options options_of(const struct hashdir_options *opts) {
  struct hashdir_options o;
  hashdir_options_init(&o);
  if (opts) {
    size_t n = opts->struct_size < sizeof o ? opts->struct_size : sizeof o;
    memcpy(&o, opts, n);
    o.struct_size = sizeof o;
  }
  return o;
}

/* Rank 0: creates the store (with HASHDIR_CREATE) or checks that it has `shards` shards, by
 * opening and closing it with hashdir_writer_open. */
static enum hashdir_status make_store(const char *dir, struct hashdir_options o, uint32_t shards,
                                      int size) {
  struct stat sb;
  int exists = stat(dir, &sb) == 0;
  if (shards == 1) {
    if (exists && S_ISDIR(sb.st_mode))
      return fail(HASHDIR_ERR_INVALID_ARGUMENT,
                  "%s is a sharded store, but %d rank x 1 shard per rank opens a one-file store",
                  dir, size);
    return HASHDIR_OK; /* the shard writer of rank 0 is hashdir_writer_open(dir) itself */
  }
  if (exists && !S_ISDIR(sb.st_mode))
    return fail(HASHDIR_ERR_INVALID_ARGUMENT,
                "%s is a one-file store, not a sharded store of %u shards (%d ranks x %u)", dir,
                shards, size, shards / (uint32_t)size);
  o.shards = shards;
  hashdir_writer *w = NULL;
  enum hashdir_status st = hashdir_writer_open(dir, &o, &w);
  if (st == HASHDIR_ERR_INVALID_ARGUMENT && exists)
    return fail(st, "the store must have %u shards (%d ranks x %u per rank): %s", shards, size,
                shards / (uint32_t)size, hashdir_last_error());
  if (st != HASHDIR_OK) return lib_fail(st, dir);
  st = hashdir_writer_close(w);
  return st == HASHDIR_OK ? HASHDIR_OK : lib_fail(st, dir);
}

static void shard_file(const hashdir_mpi *h, const char *dir, uint32_t shard, char *path,
                       size_t len) {
  /* The file name of a shard inside the store's directory (src/store/shards.rs). */
  if (h->shards == 1)
    snprintf(path, len, "%s", dir);
  else
    snprintf(path, len, "%s/shard_%03u.h5", dir, shard);
}

/* The group writers' collective: an all-reduce with max over the handle's communicator. */
static int32_t group_max(void *ctx, uint64_t *values, size_t n) {
  hashdir_mpi *h = ctx;
  if (n > INT_MAX) return -1;
  return MPI_Allreduce(MPI_IN_PLACE, values, (int)n, MPI_UINT64_T, MPI_MAX, h->comm);
}

/* Collective: this rank's writer — of its shards, one member of the group of all ranks (so
 * that a commit is one set commit of every shard) or, for a one-file store, of the file. */
static enum hashdir_status open_writer(hashdir_mpi *h, const char *dir,
                                       struct hashdir_options o) {
  if (h->shards == 1) {
    enum hashdir_status st = hashdir_writer_open(dir, &o, &h->writer);
    return st == HASHDIR_OK ? st : lib_fail(st, dir);
  }
  for (uint32_t j = 0; j < h->per_rank; j++) h->ids[j] = (uint32_t)h->rank * h->per_rank + j;
  struct hashdir_group g = {.struct_size = sizeof g,
                            .member = (uint32_t)h->rank,
                            .members = (uint32_t)h->size,
                            .ctx = h,
                            .max = group_max};
  o.shards = h->shards;
  enum hashdir_status st = hashdir_group_writer_open(dir, h->ids, h->per_rank, &o, &g,
                                                     &h->writer);
  return st == HASHDIR_OK ? st : lib_fail(st, dir);
}

/* This rank's shard readers. */
static enum hashdir_status open_readers(hashdir_mpi *h, const char *dir,
                                        struct hashdir_options o) {
  o.refresh_interval_ms = 0;
  for (uint32_t j = 0; j < h->per_rank; j++) {
    char path[4096 + 32];
    shard_file(h, dir, (uint32_t)h->rank * h->per_rank + j, path, sizeof path);
    enum hashdir_status st = hashdir_reader_open(path, &o, &h->readers[j]);
    if (st != HASHDIR_OK) return lib_fail(st, path);
  }
  return HASHDIR_OK;
}

/* Collective for a store of several shards. */
static enum hashdir_status close_writer(hashdir_mpi *h) {
  enum hashdir_status st = hashdir_writer_close(h->writer);
  h->writer = NULL;
  return st == HASHDIR_OK ? st : lib_fail(st, "closing this rank's shards");
}

enum hashdir_status hashdir_mpi_open(const char *dir, MPI_Comm comm, uint32_t shards_per_rank,
                                     const struct hashdir_options *opts, hashdir_mpi **out) {
  static const char fn[] = "hashdir_mpi_open";
  if (out) *out = NULL;
  int rank = 0, size = 1;
  MPI_TRY(MPI_Comm_rank(comm, &rank), fn);
  MPI_TRY(MPI_Comm_size(comm, &size), fn);
  enum hashdir_status st = HASHDIR_OK;
  if (!dir || !*dir || !out)
    st = fail(HASHDIR_ERR_INVALID_ARGUMENT, "NULL or empty dir, or NULL out");
  else if (shards_per_rank == 0 || shards_per_rank > MAX_SHARDS / (uint32_t)size)
    st = fail(HASHDIR_ERR_INVALID_ARGUMENT,
              "shards_per_rank %u: must be 1 to %u with %d ranks (a store has at most %u shards)",
              shards_per_rank, MAX_SHARDS / (uint32_t)size, size, MAX_SHARDS);
  else if (opts && (opts->struct_size < 8 || opts->struct_size > 4096))
    st = fail(HASHDIR_ERR_INVALID_ARGUMENT, "opts->struct_size %u is not 8 to 4096",
              opts->struct_size);
  /* Errors here are local: the caller's communicator is not ours to set MPI_ERRORS_RETURN on. */
  st = agree(comm, rank, size, st, fn);
  if (st != HASHDIR_OK) return st;

  hashdir_mpi *h = calloc(1, sizeof *h);
  if (h) {
    h->comm = MPI_COMM_NULL;
    h->item = MPI_DATATYPE_NULL;
    h->rank = rank;
    h->size = size;
    h->per_rank = shards_per_rank;
    h->shards = (uint32_t)size * shards_per_rank;
    h->readers = calloc(shards_per_rank, sizeof *h->readers);
    h->ids = calloc(shards_per_rank, sizeof *h->ids);
  }
  /* Agreed before any collective open: a rank that could not call it would leave the others
   * waiting inside it. */
  st = h && h->readers && h->ids ? HASHDIR_OK : fail(HASHDIR_ERR_IO, "out of memory");
  st = agree(comm, rank, size, st, fn);
  if (st != HASHDIR_OK) {
    if (h) release(h);
    return st;
  }
  int rc = MPI_Comm_dup(comm, &h->comm);
  if (rc == MPI_SUCCESS) rc = MPI_Comm_set_errhandler(h->comm, MPI_ERRORS_RETURN);
  if (rc == MPI_SUCCESS) rc = MPI_Type_contiguous(16, MPI_BYTE, &h->item);
  if (rc == MPI_SUCCESS) rc = MPI_Type_commit(&h->item);
  if (rc != MPI_SUCCESS) {
    release(h);
    return mpi_fail(rc, fn, "setting up the handle's communicator");
  }

  struct hashdir_options o = options_of(opts);
  double t0 = now();
  st = rank == 0 ? make_store(dir, o, h->shards, size) : HASHDIR_OK;
  h->store_s += now() - t0;
  st = agree(h->comm, rank, size, st, fn);
  if (st != HASHDIR_OK) {
    release(h);
    return st;
  }
  t0 = now();
  st = open_writer(h, dir, o);
  if (st == HASHDIR_OK) st = open_readers(h, dir, o);
  h->store_s += now() - t0;
  st = agree(h->comm, rank, size, st, fn);
  if (st != HASHDIR_OK) {
    /* The group open succeeds or fails on every rank alike, so either every rank has its
     * writer (a reader failed) and closes it collectively, or none has. */
    if (h->shards > 1) close_writer(h);
    else hashdir_writer_close(h->writer);
    release(h);
    return st;
  }
  *out = h;
  return HASHDIR_OK;
}

enum hashdir_status hashdir_mpi_open_f(const char *dir, MPI_Fint comm, uint32_t shards_per_rank,
                                       const struct hashdir_options *opts, hashdir_mpi **out) {
  return hashdir_mpi_open(dir, MPI_Comm_f2c(comm), shards_per_rank, opts, out);
}

/* ------------------------------------------------------------------------------------- */
/* Insert and commit */

enum hashdir_status hashdir_mpi_insert(hashdir_mpi *h, const struct hashdir_key *keys,
                                       const struct hashdir_value *values, size_t n) {
  static const char fn[] = "hashdir_mpi_insert";
  if (!h) return fail(HASHDIR_ERR_INVALID_ARGUMENT, "%s: NULL handle", fn);
  if (n && (!keys || !values)) return fail(HASHDIR_ERR_INVALID_ARGUMENT, "%s: NULL array", fn);
  if (h->len + n > h->cap) {
    size_t cap = h->cap ? h->cap : 1024;
    while (cap < h->len + n) cap *= 2;
    hashdir_key *k = realloc(h->keys, cap * sizeof *k);
    if (k) h->keys = k;
    hashdir_value *v = k ? realloc(h->values, cap * sizeof *v) : NULL;
    if (v) h->values = v;
    if (!k || !v) return fail(HASHDIR_ERR_IO, "%s: out of memory for %zu pairs", fn, cap);
    h->cap = cap;
  }
  memcpy(h->keys + h->len, keys, n * sizeof *keys);
  memcpy(h->values + h->len, values, n * sizeof *values);
  h->len += n;
  return HASHDIR_OK;
}

/* Inserts the received pairs into this rank's shards and commits: one set commit of every
 * rank's shards. The commit is collective and runs even when the insert failed (the failed
 * insert leaves the group writer refusing work, so the commit fails on every rank). */
static enum hashdir_status store_pairs(hashdir_mpi *h, const hashdir_key *keys,
                                       const hashdir_value *values, size_t n) {
  enum hashdir_status st = hashdir_writer_insert(h->writer, keys, values, n);
  if (st != HASHDIR_OK) st = lib_fail(st, "inserting into this rank's shards");
  enum hashdir_status cm = hashdir_writer_commit(h->writer);
  if (st == HASHDIR_OK && cm != HASHDIR_OK) st = lib_fail(cm, "committing");
  for (uint32_t j = 0; j < h->per_rank && st == HASHDIR_OK; j++) {
    st = hashdir_reader_refresh(h->readers[j]);
    if (st != HASHDIR_OK) st = lib_fail(st, "refreshing a shard's reader");
  }
  return st;
}

enum hashdir_status hashdir_mpi_commit(hashdir_mpi *h) {
  static const char fn[] = "hashdir_mpi_commit";
  if (!h) return fail(HASHDIR_ERR_INVALID_ARGUMENT, "%s: NULL handle", fn);
  size_t n = h->len;
  h->len = 0;
  struct route r;
  enum hashdir_status st = route(h, h->keys, n, &r, fn);
  if (st != HASHDIR_OK) return st;
  hashdir_key *keys = malloc((r.nrecv ? r.nrecv : 1) * sizeof *keys);
  hashdir_value *values = malloc((r.nrecv ? r.nrecv : 1) * sizeof *values);
  st = keys && values ? HASHDIR_OK : fail(HASHDIR_ERR_IO, "out of memory");
  st = agree(h->comm, h->rank, h->size, st, fn);
  if (st == HASHDIR_OK) st = send_along(h, &r, h->keys, n, keys, fn);
  if (st == HASHDIR_OK) st = send_along(h, &r, h->values, n, values, fn);
  if (st == HASHDIR_OK) {
    double t0 = now();
    st = store_pairs(h, keys, values, r.nrecv);
    h->store_s += now() - t0;
    double t1 = now();
    st = agree(h->comm, h->rank, h->size, st, fn);
    h->exchange_s += now() - t1;
  }
  free(keys);
  free(values);
  route_free(&r);
  return st;
}

/* ------------------------------------------------------------------------------------- */
/* Routed lookups */

enum hashdir_status hashdir_mpi_lookup(hashdir_mpi *h, const struct hashdir_key *keys, size_t n,
                                       struct hashdir_value *first_values, uint8_t *found) {
  static const char fn[] = "hashdir_mpi_lookup";
  if (!h) return fail(HASHDIR_ERR_INVALID_ARGUMENT, "%s: NULL handle", fn);
  enum hashdir_status st = HASHDIR_OK;
  if (n && (!keys || !first_values || !found))
    st = fail(HASHDIR_ERR_INVALID_ARGUMENT, "NULL array with n = %zu", n);
  st = agree(h->comm, h->rank, h->size, st, fn);
  if (st != HASHDIR_OK) return st;
  struct route r;
  st = route(h, keys, n, &r, fn);
  if (st != HASHDIR_OK) return st;

  size_t m = r.nrecv, cap = m ? m : 1;
  hashdir_key *asked = malloc(cap * sizeof *asked);
  hashdir_value *answer = malloc(cap * sizeof *answer), *shard_vals = malloc(cap * sizeof *shard_vals);
  uint8_t *hit = malloc(cap), *shard_hit = malloc(cap);
  hashdir_value *back = malloc((n ? n : 1) * sizeof *back);
  uint8_t *back_hit = malloc(n ? n : 1);
  struct local l = {0};
  st = asked && answer && shard_vals && hit && shard_hit && back && back_hit
           ? HASHDIR_OK
           : fail(HASHDIR_ERR_IO, "out of memory");
  st = agree(h->comm, h->rank, h->size, st, fn);
  if (st == HASHDIR_OK) st = send_along(h, &r, keys, n, asked, fn);
  if (st == HASHDIR_OK) {
    double t0 = now();
    st = by_shard(h, asked, m, &l, fn);
    size_t off = 0;
    for (uint32_t j = 0; st == HASHDIR_OK && j < h->per_rank; off += l.by_shard.counts[j++]) {
      st = hashdir_reader_lookup(h->readers[j], l.keys + off, l.by_shard.counts[j], shard_vals + off,
                                 shard_hit + off);
      if (st != HASHDIR_OK) st = lib_fail(st, "hashdir_reader_lookup");
    }
    for (size_t i = 0; st == HASHDIR_OK && i < m; i++) {
      answer[i] = shard_vals[l.by_shard.at[i]];
      hit[i] = shard_hit[l.by_shard.at[i]];
    }
    h->store_s += now() - t0;
    st = agree(h->comm, h->rank, h->size, st, fn);
  }
  /* The answers go back the way the keys came: the counts swap sides. */
  if (st == HASHDIR_OK) st = exchange(h, answer, r.recv, back, r.send, h->item, fn);
  if (st == HASHDIR_OK) st = exchange(h, hit, r.recv, back_hit, r.send, MPI_BYTE, fn);
  if (st == HASHDIR_OK) {
    for (size_t i = 0; i < n; i++) {
      first_values[i] = back[r.by_owner.at[i]];
      found[i] = back_hit[r.by_owner.at[i]];
    }
  }
  local_free(&l);
  free(asked);
  free(answer);
  free(shard_vals);
  free(hit);
  free(shard_hit);
  free(back);
  free(back_hit);
  route_free(&r);
  return st;
}

/* Runs of values from one order to another: item i (of n) is item at[i] of the source order,
 * whose run of counts[at[i]] values starts after the runs of the items before it in `src`.
 * out_counts (may be NULL) gets each item's count in the new order. */
static enum hashdir_status reorder_runs(const uint64_t *counts, const size_t *at, size_t n,
                                        const hashdir_value *src, hashdir_value *dst,
                                        uint64_t *out_counts) {
  size_t *start = malloc((n ? n : 1) * sizeof *start), s = 0, o = 0;
  if (!start) return fail(HASHDIR_ERR_IO, "out of memory");
  for (size_t p = 0; p < n; p++) {
    start[p] = s;
    s += counts[p];
  }
  for (size_t i = 0; i < n; i++) {
    size_t p = at[i];
    if (out_counts) out_counts[i] = counts[p];
    memcpy(dst + o, src + start[p], counts[p] * sizeof *dst);
    o += counts[p];
  }
  free(start);
  return HASHDIR_OK;
}

/* The owner's side of a get: the values of the `m` keys it was asked, in the order asked
 * (counts[i] values of asked[i] one key after the other), in *vals (malloc'ed). */
static enum hashdir_status owner_get(hashdir_mpi *h, const hashdir_key *asked, size_t m,
                                     uint64_t *counts, hashdir_value **vals, size_t *nvals) {
  static const char fn[] = "hashdir_mpi_get";
  struct local l;
  *vals = NULL;
  *nvals = 0;
  enum hashdir_status st = by_shard(h, asked, m, &l, fn);
  if (st != HASHDIR_OK) return st;
  uint64_t *shard_counts = malloc((m ? m : 1) * sizeof *shard_counts);
  size_t cap = m ? m : 1, used = 0;
  hashdir_value *shard_vals = malloc(cap * sizeof *shard_vals);
  if (!shard_counts || !shard_vals) st = fail(HASHDIR_ERR_IO, "out of memory");
  size_t off = 0;
  for (uint32_t j = 0; st == HASHDIR_OK && j < h->per_rank; off += l.by_shard.counts[j++]) {
    size_t total = 0;
    for (;;) {
      st = hashdir_reader_get(h->readers[j], l.keys + off, l.by_shard.counts[j],
                              shard_vals + used, cap - used, shard_counts + off, &total);
      if (st != HASHDIR_ERR_BUFFER_TOO_SMALL) {
        if (st != HASHDIR_OK) st = lib_fail(st, "hashdir_reader_get");
        break;
      }
      size_t want = cap;
      while (want < used + total) want *= 2;
      hashdir_value *more = realloc(shard_vals, want * sizeof *more);
      if (!more) {
        st = fail(HASHDIR_ERR_IO, "out of memory for %zu values", want);
        break;
      }
      shard_vals = more;
      cap = want;
    }
    used += total;
  }
  hashdir_value *ordered = st == HASHDIR_OK ? malloc((used ? used : 1) * sizeof *ordered) : NULL;
  if (st == HASHDIR_OK && !ordered) st = fail(HASHDIR_ERR_IO, "out of memory");
  if (st == HASHDIR_OK) st = reorder_runs(shard_counts, l.by_shard.at, m, shard_vals, ordered, counts);
  if (st == HASHDIR_OK) {
    *vals = ordered;
    *nvals = used;
  } else {
    free(ordered);
  }
  free(shard_counts);
  free(shard_vals);
  local_free(&l);
  return st;
}

enum hashdir_status hashdir_mpi_get(hashdir_mpi *h, const struct hashdir_key *keys, size_t n,
                                    struct hashdir_value *values, size_t capacity,
                                    uint64_t *counts, size_t *total) {
  static const char fn[] = "hashdir_mpi_get";
  if (!h) return fail(HASHDIR_ERR_INVALID_ARGUMENT, "%s: NULL handle", fn);
  enum hashdir_status st = HASHDIR_OK;
  if (!total || (n && (!keys || !counts)) || (capacity && !values))
    st = fail(HASHDIR_ERR_INVALID_ARGUMENT, "NULL total, or NULL array with a non-zero length");
  if (total) *total = 0;
  st = agree(h->comm, h->rank, h->size, st, fn);
  if (st != HASHDIR_OK) return st;
  struct route r;
  st = route(h, keys, n, &r, fn);
  if (st != HASHDIR_OK) return st;

  size_t m = r.nrecv, nvals = 0;
  hashdir_key *asked = malloc((m ? m : 1) * sizeof *asked);
  uint64_t *asked_counts = malloc((m ? m : 1) * sizeof *asked_counts);
  uint64_t *back_counts = malloc((n ? n : 1) * sizeof *back_counts);
  hashdir_value *answer = NULL, *back = NULL;
  int *wants = malloc((size_t)h->size * sizeof *wants);
  int *vsend = malloc(2 * (size_t)h->size * sizeof *vsend), *vrecv = vsend ? vsend + h->size : NULL;
  size_t *sums = malloc(2 * (size_t)h->size * sizeof *sums);
  st = asked && asked_counts && back_counts && wants && vsend && sums
           ? HASHDIR_OK
           : fail(HASHDIR_ERR_IO, "out of memory");
  st = agree(h->comm, h->rank, h->size, st, fn);
  if (st == HASHDIR_OK) st = send_along(h, &r, keys, n, asked, fn);
  if (st == HASHDIR_OK) {
    double t0 = now();
    st = owner_get(h, asked, m, asked_counts, &answer, &nvals);
    h->store_s += now() - t0;
    st = agree(h->comm, h->rank, h->size, st, fn);
  }
  /* First exchange: the counts, back the way the keys came. */
  MPI_Datatype u64 = MPI_UINT64_T;
  if (st == HASHDIR_OK) st = exchange(h, asked_counts, r.recv, back_counts, r.send, u64, fn);
  size_t sum = 0;
  if (st == HASHDIR_OK) {
    for (size_t i = 0; i < n; i++) sum += back_counts[i];
    for (size_t i = 0; i < n; i++) counts[i] = back_counts[r.by_owner.at[i]];
    *total = sum;
    /* Which ranks take their values: those whose buffer holds them. */
    int want = sum <= capacity;
    double t0 = now();
    int rc = MPI_Allgather(&want, 1, MPI_INT, wants, 1, MPI_INT, h->comm);
    h->exchange_s += now() - t0;
    if (rc != MPI_SUCCESS) st = mpi_fail(rc, fn, "MPI_Allgather");
  }
  if (st == HASHDIR_OK) {
    /* Second exchange: the values. Sent per rank: the sum of the counts of its keys. */
    size_t *to = sums, *from = sums + h->size, a = 0, b = 0;
    for (int i = 0; i < h->size; i++) {
      to[i] = 0;
      for (int q = 0; q < r.recv[i]; q++) to[i] += asked_counts[a++];
      from[i] = 0;
      for (int q = 0; q < r.send[i]; q++) from[i] += back_counts[b++];
      if (!wants[i]) to[i] = 0;
      if (sum > capacity) from[i] = 0;
    }
    st = int_counts(h, to, vsend, fn);
    if (st == HASHDIR_OK) st = int_counts(h, from, vrecv, fn);
    st = agree(h->comm, h->rank, h->size, st, fn);
  }
  if (st == HASHDIR_OK) {
    /* Values for ranks that do not take them are skipped: pack the rest. */
    size_t a = 0, o = 0, src = 0;
    for (int i = 0; i < h->size; i++) {
      size_t run = 0;
      for (int q = 0; q < r.recv[i]; q++) run += asked_counts[a++];
      if (wants[i]) {
        memmove(answer + o, answer + src, run * sizeof *answer);
        o += run;
      }
      src += run;
    }
    back = malloc((sum <= capacity && sum ? sum : 1) * sizeof *back);
    st = back ? HASHDIR_OK : fail(HASHDIR_ERR_IO, "out of memory");
    st = agree(h->comm, h->rank, h->size, st, fn);
    if (st == HASHDIR_OK) st = exchange(h, answer ? answer : back, vsend, back, vrecv, h->item, fn);
  }
  if (st == HASHDIR_OK && sum <= capacity)
    st = reorder_runs(back_counts, r.by_owner.at, n, back, values, NULL);
  if (st == HASHDIR_OK && sum > capacity)
    st = fail(HASHDIR_ERR_BUFFER_TOO_SMALL, "%s: %zu values do not fit the buffer of %zu", fn,
              sum, capacity);
  if (st != HASHDIR_OK && st != HASHDIR_ERR_BUFFER_TOO_SMALL && total) *total = 0;
  free(asked);
  free(asked_counts);
  free(back_counts);
  free(answer);
  free(back);
  free(wants);
  free(vsend);
  free(sums);
  route_free(&r);
  return st;
}

/* ------------------------------------------------------------------------------------- */
/* Stats, times, close */

enum hashdir_status hashdir_mpi_stats(hashdir_mpi *h, struct hashdir_stats *out) {
  static const char fn[] = "hashdir_mpi_stats";
  if (!h) return fail(HASHDIR_ERR_INVALID_ARGUMENT, "%s: NULL handle", fn);
  enum hashdir_status st = HASHDIR_OK;
  if (!out || out->struct_size < 8 || out->struct_size > 4096)
    st = fail(HASHDIR_ERR_INVALID_ARGUMENT, "NULL out, or out->struct_size not 8 to 4096");
  /* Summed: keys values buckets file_bytes epoch wal_bytes extents disk_bytes delta_tables
   * delta_bytes (as a sharded store's stats are); the largest: global_depth, merging. */
  uint64_t sum[10] = {0}, max[2] = {0};
  double t0 = now();
  if (st == HASHDIR_OK) {
    struct hashdir_stats s = {.struct_size = sizeof s};
    st = hashdir_writer_stats(h->writer, &s);
    if (st != HASHDIR_OK) st = lib_fail(st, "hashdir_writer_stats");
    uint64_t add[10] = {s.keys, s.values, s.buckets, s.file_bytes, s.epoch, s.wal_bytes,
                        s.extents, s.disk_bytes, s.delta_tables, s.delta_bytes};
    for (int i = 0; i < 10; i++) sum[i] += add[i];
    if (s.global_depth > max[0]) max[0] = s.global_depth;
    if (s.merging > max[1]) max[1] = s.merging;
  }
  h->store_s += now() - t0;
  st = agree(h->comm, h->rank, h->size, st, fn);
  if (st != HASHDIR_OK) return st;
  uint64_t tsum[10], tmax[2];
  t0 = now();
  MPI_TRY(MPI_Allreduce(sum, tsum, 10, MPI_UINT64_T, MPI_SUM, h->comm), fn);
  MPI_TRY(MPI_Allreduce(max, tmax, 2, MPI_UINT64_T, MPI_MAX, h->comm), fn);
  h->exchange_s += now() - t0;
  struct hashdir_stats s = {
      .struct_size = out->struct_size,
      .global_depth = (uint32_t)tmax[0],
      .keys = tsum[0],
      .values = tsum[1],
      .buckets = tsum[2],
      .file_bytes = tsum[3],
      .epoch = tsum[4],
      .wal_bytes = tsum[5],
      .extents = tsum[6],
      .disk_bytes = tsum[7],
      .delta_tables = tsum[8],
      .delta_bytes = tsum[9],
      .merging = (uint32_t)tmax[1],
  };
  /* Only the fields within the caller's struct: an older header's struct is a prefix. */
  size_t n = out->struct_size < sizeof s ? out->struct_size : sizeof s;
  memcpy((char *)out + sizeof s.struct_size, (char *)&s + sizeof s.struct_size,
         n - sizeof s.struct_size);
  return HASHDIR_OK;
}

enum hashdir_status hashdir_mpi_times(const hashdir_mpi *h, double *exchange_seconds,
                                      double *store_seconds) {
  if (!h) return fail(HASHDIR_ERR_INVALID_ARGUMENT, "hashdir_mpi_times: NULL handle");
  if (exchange_seconds) *exchange_seconds = h->exchange_s;
  if (store_seconds) *store_seconds = h->store_s;
  return HASHDIR_OK;
}

enum hashdir_status hashdir_mpi_close(hashdir_mpi *h) {
  static const char fn[] = "hashdir_mpi_close";
  if (!h) return HASHDIR_OK;
  enum hashdir_status st = hashdir_mpi_commit(h);
  enum hashdir_status cl = h->shards > 1 ? close_writer(h) : hashdir_writer_close(h->writer);
  if (cl != HASHDIR_OK && h->shards == 1) cl = lib_fail(cl, "closing the store");
  if (st == HASHDIR_OK) st = agree(h->comm, h->rank, h->size, cl, fn);
  int rc = MPI_Barrier(h->comm);
  if (st == HASHDIR_OK && rc != MPI_SUCCESS) st = mpi_fail(rc, fn, "MPI_Barrier");
  char msg[MSG_LEN];
  memcpy(msg, last_error, sizeof msg);
  release(h);
  if (st != HASHDIR_OK) memcpy(last_error, msg, sizeof msg);
  return st;
}
