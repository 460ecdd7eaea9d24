/* hashdir from MPI: every rank loads its part of N pairs into one sharded store with
 * collective commits, then checks them with routed lookups and gets.
 *
 * Build (libhashdir and libhashdir_mpi installed by scripts/install.sh):
 *   mpicc load.c $(pkg-config --cflags --libs hashdir_mpi) -o load
 * Run:
 *   mpirun -np 4 ./load /tmp/store [--pairs N] [--values-per-key V] [--batch B]
 *                                   [--shards-per-rank K] [--check-only] [--progress]
 *
 * Key i (i < N / V) has the values (i, 0) .. (i, V - 1); rank r inserts the keys
 * i = r, r + size, r + 2 size, ..., B pairs a commit. Then every rank gets all values of its
 * keys and looks up as many keys that were never inserted, through the ranks that own them
 * (--check-only: only that, on a store loaded before). --progress: every rank prints its pid
 * ("pid RANK PID"), and rank 0 "committed batch B" once commit B returned HASHDIR_OK on every
 * rank (tests/mpi.rs kills the ranks in mid-load with them).
 * Rank 0 prints one JSON line of figures; a failed check exits non-zero with the reason. */
#define _POSIX_C_SOURCE 200809L /* getpid */
#include <hashdir_mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int rank;

#define CHECK(call)                                                               \
  do {                                                                            \
    hashdir_status s_ = (call);                                                   \
    if (s_ != HASHDIR_OK) {                                                       \
      fprintf(stderr, "rank %d: %s failed (%s): %s\n", rank, #call,               \
              hashdir_status_name(s_), hashdir_mpi_last_error());                 \
      MPI_Abort(MPI_COMM_WORLD, 1);                                               \
    }                                                                             \
  } while (0)

#define EXPECT(cond, ...)                                                         \
  do {                                                                            \
    if (!(cond)) {                                                                \
      fprintf(stderr, "rank %d: check failed: ", rank);                           \
      fprintf(stderr, __VA_ARGS__);                                               \
      fputc('\n', stderr);                                                        \
      MPI_Abort(MPI_COMM_WORLD, 1);                                               \
    }                                                                             \
  } while (0)

static uint64_t mix(uint64_t x) { /* splitmix64's finaliser: keys spread over the shards */
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

static hashdir_key key_of(uint64_t i) {
  hashdir_key k;
  uint64_t lo = mix(i);
  memcpy(k.bytes, &lo, 8);
  memcpy(k.bytes + 8, &i, 8);
  return k;
}

static hashdir_value value_of(uint64_t i, uint64_t j) {
  hashdir_value v;
  memcpy(v.bytes, &i, 8);
  memcpy(v.bytes + 8, &j, 8);
  return v;
}

static uint64_t half(const hashdir_value *v, int second) {
  uint64_t x;
  memcpy(&x, v->bytes + 8 * second, 8);
  return x;
}

static uint64_t arg_u64(int argc, char **argv, const char *name, uint64_t dflt) {
  for (int i = 2; i + 1 < argc; i++)
    if (strcmp(argv[i], name) == 0) return strtoull(argv[i + 1], NULL, 10);
  return dflt;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (argc < 2) {
    if (rank == 0) fprintf(stderr, "usage: load DIR [--pairs N] [--values-per-key V] ...\n");
    MPI_Finalize();
    return 2;
  }
  const char *dir = argv[1];
  uint64_t pairs = arg_u64(argc, argv, "--pairs", 1000000);
  uint64_t per_key = arg_u64(argc, argv, "--values-per-key", 1);
  uint64_t batch = arg_u64(argc, argv, "--batch", 100000);
  uint32_t per_rank = (uint32_t)arg_u64(argc, argv, "--shards-per-rank", 1);
  int load = 1, progress = 0;
  for (int i = 2; i < argc; i++) {
    load &= strcmp(argv[i], "--check-only") != 0;
    progress |= strcmp(argv[i], "--progress") == 0;
  }
  EXPECT(per_key >= 1 && batch >= per_key && pairs >= per_key, "bad sizes");
  uint64_t nkeys = pairs / per_key;
  pairs = nkeys * per_key;
  uint64_t mine = nkeys / size + ((uint64_t)rank < nkeys % size); /* keys of this rank */
  uint64_t most = nkeys / size + (nkeys % size != 0);
  uint64_t keys_per_batch = batch / per_key;

  hashdir_options opts;
  hashdir_options_init(&opts); /* HASHDIR_CREATE */
  hashdir_mpi *h = NULL;
  CHECK(hashdir_mpi_open(dir, MPI_COMM_WORLD, per_rank, &opts, &h));

  /* Load: the same number of commits on every rank (a commit is collective). */
  size_t cap = keys_per_batch * per_key;
  hashdir_key *keys = malloc(cap * sizeof *keys);
  hashdir_value *values = malloc(cap * sizeof *values);
  EXPECT(keys && values, "out of memory");
  double exchange0, store0;
  CHECK(hashdir_mpi_times(h, &exchange0, &store0));
  MPI_Barrier(MPI_COMM_WORLD);
  double t0 = MPI_Wtime();
  if (progress) {
    printf("pid %d %ld\n", rank, (long)getpid());
    fflush(stdout);
  }
  for (uint64_t first = 0; load && first < most; first += keys_per_batch) {
    size_t n = 0;
    for (uint64_t q = first; q < mine && q < first + keys_per_batch; q++) {
      uint64_t i = q * size + rank;
      for (uint64_t j = 0; j < per_key; j++, n++) {
        keys[n] = key_of(i);
        values[n] = value_of(i, j);
      }
    }
    CHECK(hashdir_mpi_insert(h, keys, values, n));
    CHECK(hashdir_mpi_commit(h));
    if (progress && rank == 0) {
      printf("committed batch %llu\n", (unsigned long long)(first / keys_per_batch));
      fflush(stdout);
    }
  }
  double load_s = MPI_Wtime() - t0, exchange_s, store_s;
  CHECK(hashdir_mpi_times(h, &exchange_s, &store_s));
  exchange_s -= exchange0; /* the load's share, without the open's */
  store_s -= store0;

  /* Check: all values of every key this rank inserted, and as many absent keys. */
  MPI_Barrier(MPI_COMM_WORLD);
  t0 = MPI_Wtime();
  uint64_t *counts = malloc(keys_per_batch * sizeof *counts);
  uint8_t *found = malloc(keys_per_batch);
  EXPECT(counts && found, "out of memory");
  uint64_t checked = 0;
  for (uint64_t first = 0; first < most; first += keys_per_batch) {
    size_t n = 0;
    for (uint64_t q = first; q < mine && q < first + keys_per_batch; q++)
      keys[n++] = key_of(q * size + rank);
    size_t total = 0;
    /* A buffer one value short first: every rank that has values is told their total. */
    hashdir_status s = hashdir_mpi_get(h, keys, n, values, n ? n * per_key - 1 : 0, counts, &total);
    EXPECT(n == 0 ? s == HASHDIR_OK : s == HASHDIR_ERR_BUFFER_TOO_SMALL, "get: %s: %s",
           hashdir_status_name(s), hashdir_mpi_last_error());
    EXPECT(total == n * per_key, "get: total %zu, not %llu", total,
           (unsigned long long)(n * per_key));
    CHECK(hashdir_mpi_get(h, keys, n, values, cap, counts, &total));
    EXPECT(total == n * per_key, "get: total %zu", total);
    size_t at = 0;
    for (size_t k = 0; k < n; k++) {
      uint64_t i = (first + k) * size + rank, sum = 0;
      EXPECT(counts[k] == per_key, "key %llu: %llu values, not %llu", (unsigned long long)i,
             (unsigned long long)counts[k], (unsigned long long)per_key);
      for (uint64_t j = 0; j < per_key; j++, at++) {
        EXPECT(half(&values[at], 0) == i && half(&values[at], 1) < per_key,
               "key %llu: a value that is not its own", (unsigned long long)i);
        sum += half(&values[at], 1);
      }
      EXPECT(sum == per_key * (per_key - 1) / 2, "key %llu: values are not 0..%llu",
             (unsigned long long)i, (unsigned long long)per_key - 1);
    }
    checked += n;
    /* The same number of keys that were never inserted, and the first of this batch. */
    for (size_t k = 0; k < n; k++) keys[k] = key_of(nkeys + (first + k) * size + rank);
    if (n) keys[0] = key_of(first * size + rank);
    CHECK(hashdir_mpi_lookup(h, keys, n, values, found));
    for (size_t k = 0; k < n; k++)
      EXPECT(found[k] == (k == 0), "lookup of key %zu of the batch: found %d", k, found[k]);
    if (n) EXPECT(half(&values[0], 0) == first * size + rank, "lookup: a foreign value");
  }
  double check_s = MPI_Wtime() - t0;
  uint64_t all_checked = 0;
  MPI_Reduce(&checked, &all_checked, 1, MPI_UINT64_T, MPI_SUM, 0, MPI_COMM_WORLD);
  double max_ex = 0, max_store = 0;
  MPI_Reduce(&exchange_s, &max_ex, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  MPI_Reduce(&store_s, &max_store, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  t0 = MPI_Wtime();
  CHECK(hashdir_mpi_close(h)); /* every shard's log becomes a table, durable */
  double close_s = MPI_Wtime() - t0;
  if (rank == 0) {
    EXPECT(all_checked == nkeys, "checked %llu keys of %llu", (unsigned long long)all_checked,
           (unsigned long long)nkeys);
    printf("{\"example\": \"c\", \"pairs\": %llu, \"keys\": %llu, \"values_per_key\": %llu, "
           "\"ranks\": %d, \"shards\": %u, \"batch\": %llu, \"load_seconds\": %.3f, "
           "\"pairs_per_s\": %.0f, \"pairs_per_s_per_rank\": %.0f, "
           "\"exchange_seconds\": %.3f, \"store_seconds\": %.3f, \"check_seconds\": %.3f, "
           "\"close_seconds\": %.3f, "
           "\"keys_checked\": %llu, \"loaded\": %s}\n",
           (unsigned long long)pairs, (unsigned long long)nkeys, (unsigned long long)per_key,
           size, (unsigned)size * per_rank, (unsigned long long)batch, load_s,
           load ? pairs / load_s : 0.0, load ? pairs / load_s / size : 0.0, max_ex, max_store, check_s, close_s, (unsigned long long)all_checked, load ? "true" : "false");
  }
  free(keys);
  free(values);
  free(counts);
  free(found);
  MPI_Finalize();
  return 0;
}
