/* libhashdir_mpi's contract, run by tests/mpi.rs under mpirun with 1 and 3 ranks:
 *   test_mpi DIR
 * Every rank prints TAP lines (prefixed by its rank) and exits non-zero if a check failed.
 * Covers: refused arguments (on every rank, and on one rank only: all ranks return the
 * error naming that rank), NULL handles, a missing store without HASHDIR_CREATE, uneven
 * inserts and lookups, get's BUFFER_TOO_SMALL on one rank and its collective retry, stats
 * against a plain reader of the store, a reopen with the wrong shard count, and the data
 * after close and reopen. */
#include "hashdir_mpi.h"
#include "tap.h"

static int rank, size;

static int fails(hashdir_status got, hashdir_status want, const char *detail, const char *what) {
  const char *msg = hashdir_mpi_last_error();
  return tap_check(got == want && strstr(msg, detail) != NULL, "rank %d: %s: %s (got %s: \"%s\")",
                   rank, what, hashdir_status_name(want), hashdir_status_name(got), msg);
}

static int ok(hashdir_status got, const char *what) {
  return tap_check(got == HASHDIR_OK, "rank %d: %s: %s %s", rank, what, hashdir_status_name(got),
                   got == HASHDIR_OK ? "" : hashdir_mpi_last_error());
}

static hashdir_key key_of(uint64_t i) {
  hashdir_key k;
  memset(&k, 0, sizeof k);
  memcpy(k.bytes, &i, 8);
  return k;
}

static hashdir_value value_of(uint64_t i) {
  hashdir_value v;
  memset(&v, 0, sizeof v);
  memcpy(v.bytes, &i, 8);
  return v;
}

static uint64_t num(const hashdir_value *v) {
  uint64_t i;
  memcpy(&i, v->bytes, 8);
  return i;
}

/* Rank r inserts keys r * 1000 + i, i < 10 * r (rank 0 none), key k with values k*4..k*4+3. */
static void insert_mine(hashdir_mpi *h) {
  for (uint64_t i = 0; i < 10u * (uint64_t)rank; i++) {
    hashdir_key k[4];
    hashdir_value v[4];
    for (int j = 0; j < 4; j++) {
      k[j] = key_of(rank * 1000u + i);
      v[j] = value_of((rank * 1000u + i) * 4 + j);
    }
    TAP_REQUIRE(ok(hashdir_mpi_insert(h, k, v, 4), "insert"));
  }
}

/* Every rank asks for all keys of rank (rank + 1) % size, plus one absent key. */
static void check_all(hashdir_mpi *h, const char *when) {
  int other = (rank + 1) % size;
  size_t n = 10u * (size_t)other + 1, total = 0;
  hashdir_key keys[64];
  hashdir_value values[256];
  uint64_t counts[64];
  uint8_t found[64];
  for (size_t i = 0; i + 1 < n; i++) keys[i] = key_of(other * 1000u + i);
  keys[n - 1] = key_of(999999);
  ok(hashdir_mpi_get(h, keys, n, values, 256, counts, &total), when);
  int right = total == 4 * (n - 1) && counts[n - 1] == 0;
  for (size_t i = 0, at = 0; right && i + 1 < n; i++) {
    uint64_t sum = 0;
    right = counts[i] == 4;
    for (int j = 0; j < 4; j++, at++) {
      uint64_t x = num(&values[at]);
      right &= x / 4 == other * 1000u + i;
      sum += x % 4;
    }
    right &= sum == 6;
  }
  tap_check(right, "rank %d: %s: every value of rank %d's %zu keys, none of an absent key", rank,
            when, other, n - 1);
  ok(hashdir_mpi_lookup(h, keys, n, values, found), when);
  right = found[n - 1] == 0;
  for (size_t i = 0; i + 1 < n; i++) right &= found[i] == 1 && num(&values[i]) / 4 == other * 1000u + i;
  tap_check(right, "rank %d: %s: lookup finds them and not the absent key", rank, when);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  TAP_REQUIRE(argc == 2);
  const char *dir = argv[1];
  hashdir_mpi *h = (hashdir_mpi *)&rank; /* must come back NULL */
  hashdir_options opts;
  hashdir_options_init(&opts);

  fails(hashdir_mpi_open(dir, MPI_COMM_WORLD, 1, &opts, NULL), HASHDIR_ERR_INVALID_ARGUMENT,
        "hashdir_mpi_open: rank 0: NULL or empty dir", "open with NULL out");
  fails(hashdir_mpi_open(dir, MPI_COMM_WORLD, 0, &opts, &h), HASHDIR_ERR_INVALID_ARGUMENT,
        "shards_per_rank 0", "open with 0 shards per rank");
  tap_check(h == NULL, "rank %d: a failed open leaves *out NULL", rank);
  /* One rank's bad argument fails the call on every rank, naming that rank. */
  char want[64];
  snprintf(want, sizeof want, "rank %d: NULL or empty dir", size - 1);
  fails(hashdir_mpi_open(rank == size - 1 ? "" : dir, MPI_COMM_WORLD, 1, &opts, &h),
        HASHDIR_ERR_INVALID_ARGUMENT, want, "open with an empty dir on the last rank");
  hashdir_options no_create = opts;
  no_create.flags = 0;
  fails(hashdir_mpi_open(dir, MPI_COMM_WORLD, 2, &no_create, &h), HASHDIR_ERR_NOT_FOUND,
        "hashdir_mpi_open: rank 0:", "open of a missing store without HASHDIR_CREATE");

  /* NULL handles: refused locally (here on every rank, so no collective waits). */
  fails(hashdir_mpi_insert(NULL, NULL, NULL, 0), HASHDIR_ERR_INVALID_ARGUMENT,
        "hashdir_mpi_insert: NULL handle", "insert on NULL");
  fails(hashdir_mpi_commit(NULL), HASHDIR_ERR_INVALID_ARGUMENT, "hashdir_mpi_commit: NULL handle",
        "commit on NULL");
  fails(hashdir_mpi_lookup(NULL, NULL, 0, NULL, NULL), HASHDIR_ERR_INVALID_ARGUMENT,
        "NULL handle", "lookup on NULL");
  fails(hashdir_mpi_times(NULL, NULL, NULL), HASHDIR_ERR_INVALID_ARGUMENT, "NULL handle",
        "times on NULL");
  ok(hashdir_mpi_close(NULL), "close(NULL)");

  TAP_REQUIRE(ok(hashdir_mpi_open(dir, MPI_COMM_WORLD, 2, &opts, &h), "open creating 2 shards a rank"));
  insert_mine(h);
  ok(hashdir_mpi_commit(h), "commit");
  check_all(h, "after commit");

  /* get: rank 0's buffer too small (when it asks for any values), the others' fine. */
  {
    int other = (rank + 1) % size;
    size_t n = 10u * (size_t)other, total = 7;
    hashdir_key keys[64];
    hashdir_value values[256];
    uint64_t counts[64];
    for (size_t i = 0; i < n; i++) keys[i] = key_of(other * 1000u + i);
    size_t cap = rank == 0 && n ? 4 * n - 1 : 256;
    hashdir_status st = hashdir_mpi_get(h, keys, n, values, cap, counts, &total);
    if (cap < 4 * n) {
      fails(st, HASHDIR_ERR_BUFFER_TOO_SMALL, "do not fit", "get with a buffer one short");
      tap_check(total == 4 * n && counts[0] == 4, "rank %d: counts and total filled", rank);
      ok(hashdir_mpi_get(h, keys, n, values, 4 * n, counts, &total), "the retry");
      tap_check(total == 4 * n && num(&values[0]) / 4 == other * 1000u, "rank %d: retry's values", rank);
    } else {
      ok(st, "get with a buffer large enough");
      ok(hashdir_mpi_get(h, keys, 0, NULL, 0, NULL, &total), "taking part in the retry with n = 0");
      tap_check(total == 0, "rank %d: no keys, no values", rank);
    }
  }

  /* A bad argument on the last rank only: every rank fails, naming it; nothing hangs. */
  hashdir_value first[4];
  uint8_t found[4];
  hashdir_key some[4] = {key_of(1), key_of(2), key_of(3), key_of(4)};
  snprintf(want, sizeof want, "hashdir_mpi_lookup: rank %d: NULL array", size - 1);
  fails(hashdir_mpi_lookup(h, some, 4, rank == size - 1 ? NULL : first, found),
        HASHDIR_ERR_INVALID_ARGUMENT, want, "lookup with a NULL array on the last rank");

  /* stats: the sums over all shards, as a plain reader of the store directory counts them. */
  hashdir_stats st = {.struct_size = sizeof st};
  ok(hashdir_mpi_stats(h, &st), "stats");
  if (rank == 0) {
    hashdir_reader *r = NULL;
    hashdir_stats rs = {.struct_size = sizeof rs};
    if (ok(hashdir_reader_open(dir, NULL, &r), "plain reader of the store") &&
        ok(hashdir_reader_stats(r, &rs), "plain reader's stats"))
      tap_check(st.keys == rs.keys && st.values == rs.values && st.wal_bytes == rs.wal_bytes &&
                    st.file_bytes == rs.file_bytes && (size == 1 || st.wal_bytes > 0),
                "stats summed over ranks match the store's: keys %llu values %llu wal %llu",
                (unsigned long long)st.keys, (unsigned long long)st.values,
                (unsigned long long)st.wal_bytes);
    size_t n = 40, total = 0;
    hashdir_key keys[40];
    uint64_t counts[40];
    hashdir_value values[160];
    for (size_t i = 0; i < n; i++) keys[i] = key_of((i / 10 + 1) * 1000u + i % 10);
    ok(hashdir_reader_get(r, keys, n, values, 160, counts, &total), "plain reader get");
    uint64_t expect = 0;
    for (int q = 1; q < size && q <= 4; q++) expect += 40;
    tap_check(total == expect, "the plain reader sees ranks' pairs: %zu values, want %llu", total,
              (unsigned long long)expect);
    hashdir_reader_close(r);
  }
  /* A shorter struct: fields beyond it are left alone. */
  struct hashdir_stats small = {.struct_size = 8, .keys = 12345};
  ok(hashdir_mpi_stats(h, &small), "stats into an 8-byte struct");
  tap_check(small.keys == 12345, "rank %d: stats wrote only within struct_size", rank);

  /* Pairs left buffered are committed by close. */
  hashdir_key k = key_of(777000 + rank);
  hashdir_value v = value_of(5);
  ok(hashdir_mpi_insert(h, &k, &v, 1), "insert before close");
  ok(hashdir_mpi_close(h), "close");

  h = NULL;
  /* With one rank, 1 x 1 shard is a one-file store, which a directory is not. */
  if (size == 1)
    snprintf(want, sizeof want, "is a sharded store, but 1 rank x 1 shard");
  else
    snprintf(want, sizeof want, "has %d shards, not the %d asked for", 2 * size, size);
  fails(hashdir_mpi_open(dir, MPI_COMM_WORLD, 1, &opts, &h), HASHDIR_ERR_INVALID_ARGUMENT, want,
        "reopen with 1 shard a rank instead of 2");
  TAP_REQUIRE(ok(hashdir_mpi_open(dir, MPI_COMM_WORLD, 2, &no_create, &h), "reopen"));
  check_all(h, "after reopen");
  hashdir_key ks[1] = {key_of(777000 + (rank + 1) % size)};
  ok(hashdir_mpi_lookup(h, ks, 1, first, found), "lookup of a pair close committed");
  tap_check(found[0] == 1 && num(&first[0]) == 5, "rank %d: close committed the buffered pairs", rank);
  ok(hashdir_mpi_close(h), "close again");
  int failed = tap_done();
  MPI_Finalize();
  return failed;
}
