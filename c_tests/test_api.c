/* A round trip through the whole C API against a real file: write, commit, read from
 * one reader shared by threads, delete, refresh, checkpoint, stats, locking, reopen,
 * recovery after a writer process dies by SIGKILL.
 * Usage: test_api <scratch dir> */
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tap.h"

enum { K1 = 1, K2, K3, K_CLOSE = 10, K_REOPEN = 11, K_SET = 12 };
enum { V1 = 1, V2, V3 };

static int same_key(hashdir_key a, hashdir_key b) { return memcmp(&a, &b, sizeof a) == 0; }
static int same_value(hashdir_value a, hashdir_value b) { return memcmp(&a, &b, sizeof a) == 0; }

/* The values of one key, checked as a set (the API does not order them). */
static int values_are(const hashdir_value *got, size_t n, const unsigned *want, size_t m) {
  if (n != m) return 0;
  for (size_t i = 0; i < m; i++) {
    int seen = 0;
    for (size_t j = 0; j < n; j++) seen += same_value(got[j], tap_value(want[i]));
    if (seen != 1) return 0;
  }
  return 1;
}

static int has_key(hashdir_reader *r, unsigned k) { return tap_count_found(r, k, 1) == 1; }

static void insert_initial(hashdir_writer *w) {
  /* K1 -> {V1, V2}, K2 -> {V3}; (K1, V1) twice: a set keeps it once. */
  hashdir_key keys[] = {tap_key(K1), tap_key(K1), tap_key(K2), tap_key(K1)};
  hashdir_value vals[] = {tap_value(V1), tap_value(V2), tap_value(V3), tap_value(V1)};
  tap_ok(hashdir_writer_insert(w, keys, vals, 4), "insert 4 pairs, one duplicate");
  tap_ok(hashdir_writer_insert(w, NULL, NULL, 0), "insert n = 0 with NULL arrays");
  tap_ok(hashdir_writer_commit(w), "commit");
  tap_ok(hashdir_writer_sync(w), "sync: the committed batch is durable");
}

/* One key, a set of values in one call; a repeated value is one member of the set. */
static void check_insert_values(hashdir_writer *w, hashdir_reader *r) {
  hashdir_key k = tap_key(K_SET);
  hashdir_value vals[5] = {tap_value(V1), tap_value(V2), tap_value(V3), tap_value(V1),
                           tap_value(V2)};
  tap_ok(hashdir_writer_insert_values(w, &k, vals, 5), "insert_values: one key, 5 values");
  tap_ok(hashdir_writer_insert_values(w, &k, NULL, 0), "insert_values with n = 0");
  tap_ok(hashdir_writer_commit(w), "commit them");
  tap_ok(hashdir_reader_refresh(r), "refresh");
  hashdir_value got[8];
  uint64_t count = 0;
  size_t total = 0;
  tap_ok(hashdir_reader_get(r, &k, 1, got, 8, &count, &total), "get the key's set");
  static const unsigned want[] = {V1, V2, V3};
  tap_check(count == 3 && total == 3 && values_are(got, 3, want, 3),
            "the set holds V1, V2, V3 once each (%llu values)", (unsigned long long)count);
  tap_fails(hashdir_writer_insert_values(w, NULL, vals, 1), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_writer_insert_values", "key is NULL", "insert_values(NULL key)");
  tap_fails(hashdir_writer_insert_values(w, &k, NULL, 2), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_writer_insert_values", "values is NULL", "insert_values(NULL values, n = 2)");
  tap_ok(hashdir_writer_delete_keys(w, &k, 1), "delete the key again");
  tap_ok(hashdir_writer_commit(w), "commit the delete");
  tap_ok(hashdir_reader_refresh(r), "refresh");
  tap_check(!has_key(r, K_SET), "the key and its set are gone");
}

static void check_lookup(hashdir_reader *r) {
  hashdir_key keys[] = {tap_key(K1), tap_key(K2), tap_key(K3)};
  hashdir_value first[3];
  uint8_t found[3] = {9, 9, 9};
  tap_ok(hashdir_reader_lookup(r, keys, 3, first, found), "lookup K1 K2 K3");
  tap_check(found[0] == 1 && found[1] == 1 && found[2] == 0, "found = 1 1 0");
  tap_check(same_value(first[0], tap_value(V1)) || same_value(first[0], tap_value(V2)),
            "K1's first value is V1 or V2");
  tap_check(same_value(first[1], tap_value(V3)), "K2's first value is V3");
}

static void check_get(hashdir_reader *r) {
  hashdir_key keys[] = {tap_key(K1), tap_key(K2), tap_key(K3)};
  hashdir_value vals[3];
  uint64_t counts[3] = {7, 7, 7};
  size_t total = 0;
  tap_fails(hashdir_reader_get(r, keys, 3, vals, 1, counts, &total),
            HASHDIR_ERR_BUFFER_TOO_SMALL, "hashdir_reader_get", "3 values needed",
            "get with capacity 1");
  tap_check(counts[0] == 2 && counts[1] == 1 && counts[2] == 0 && total == 3,
            "too small still fills counts 2 1 0 and total 3");
  total = 0;
  tap_fails(hashdir_reader_get(r, keys, 3, NULL, 0, counts, &total),
            HASHDIR_ERR_BUFFER_TOO_SMALL, "hashdir_reader_get", NULL,
            "get with capacity 0 and NULL values asks for the size");
  tap_check(total == 3, "capacity 0 reports total 3");

  tap_ok(hashdir_reader_get(r, keys, 3, vals, total, counts, &total), "get with capacity 3");
  static const unsigned k1[] = {V1, V2}, k2[] = {V3};
  tap_check(total == 3 && counts[0] == 2 && counts[1] == 1 && counts[2] == 0,
            "counts 2 1 0, total 3");
  tap_check(values_are(vals, 2, k1, 2) && values_are(vals + 2, 1, k2, 1),
            "values are {V1, V2} then {V3}");
  tap_ok(hashdir_reader_get(r, NULL, 0, NULL, 0, NULL, &total), "get n = 0 with NULL arrays");
  tap_check(total == 0, "n = 0 gives total 0");
}

/* Rejected arguments on live handles; none may change what the reader sees later. */
static void check_bad_arrays(hashdir_writer *w, hashdir_reader *r) {
  hashdir_key k[2] = {tap_key(K3), tap_key(K3)};
  hashdir_value v[2] = {tap_value(V3), tap_value(V3)};
  uint8_t found[2];
  uint64_t counts[2];
  size_t total;
  const char *ins = "hashdir_writer_insert";
  tap_fails(hashdir_writer_insert(w, NULL, v, 1), HASHDIR_ERR_INVALID_ARGUMENT, ins,
            "keys is NULL", "insert(keys = NULL, n = 1)");
  tap_fails(hashdir_writer_insert(w, k, NULL, 1), HASHDIR_ERR_INVALID_ARGUMENT, ins,
            "values is NULL", "insert(values = NULL, n = 1)");
  tap_fails(hashdir_writer_insert(w, k, v, SIZE_MAX / 8), HASHDIR_ERR_INVALID_ARGUMENT, ins,
            "address space", "insert(n * 16 overflows)");
  tap_fails(hashdir_writer_delete_keys(w, NULL, 2), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_writer_delete_keys", "keys is NULL", "delete_keys(NULL, n = 2)");
  tap_fails(hashdir_writer_delete_pairs(w, k, NULL, 1), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_writer_delete_pairs", "values is NULL", "delete_pairs(values = NULL)");
  tap_fails(hashdir_reader_lookup(r, k, 1, NULL, found), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_reader_lookup", "first_values is NULL", "lookup(first_values = NULL)");
  tap_fails(hashdir_reader_lookup(r, k, 2, (hashdir_value *)(void *)k, found),
            HASHDIR_ERR_INVALID_ARGUMENT, "hashdir_reader_lookup", "overlap",
            "lookup writing values over its own keys");
  tap_fails(hashdir_reader_get(r, k, 1, NULL, 5, counts, &total), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_reader_get", "values is NULL", "get(values = NULL, capacity 5)");
  tap_fails(hashdir_reader_get(r, k, 1, v, 1, NULL, &total), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_reader_get", "counts is NULL", "get(counts = NULL)");
  hashdir_stats s;
  memset(&s, 0, sizeof s);
  tap_fails(hashdir_writer_stats(w, &s), HASHDIR_ERR_INVALID_ARGUMENT, "hashdir_writer_stats",
            "struct_size", "writer_stats(struct_size 0)");
  tap_fails(hashdir_reader_stats(r, NULL), HASHDIR_ERR_INVALID_ARGUMENT, "hashdir_reader_stats",
            "out is NULL", "reader_stats(NULL)");
}

static void delete_some(hashdir_writer *w) {
  hashdir_key dk[] = {tap_key(K2)};
  hashdir_key pk[] = {tap_key(K1), tap_key(K3)};
  hashdir_value pv[] = {tap_value(V1), tap_value(V3)}; /* (K3, V3) was never there */
  tap_ok(hashdir_writer_delete_keys(w, dk, 1), "delete_keys K2");
  tap_ok(hashdir_writer_delete_pairs(w, pk, pv, 2), "delete_pairs (K1,V1) and absent (K3,V3)");
  tap_ok(hashdir_writer_commit(w), "commit the deletes");
}

static void check_after_delete(hashdir_reader *r) {
  tap_check(has_key(r, K2), "before refresh the reader still sees K2 (refresh_interval_ms 0)");
  tap_ok(hashdir_reader_refresh(r), "refresh");
  tap_check(!has_key(r, K2), "after refresh K2 is gone");
  hashdir_key keys[] = {tap_key(K1), tap_key(K2), tap_key(K3)};
  hashdir_value vals[3];
  uint64_t counts[3];
  size_t total = 0;
  tap_ok(hashdir_reader_get(r, keys, 3, vals, 3, counts, &total), "get after the deletes");
  tap_check(total == 1 && counts[0] == 1 && counts[1] == 0 && counts[2] == 0 &&
                same_value(vals[0], tap_value(V2)),
            "K1 -> {V2}, K2 and K3 -> {}");
}

static void check_stats(hashdir_writer *w, hashdir_reader *r) {
  tap_ok(hashdir_writer_checkpoint(w), "checkpoint");
  hashdir_stats ws, rs;
  memset(&ws, 0, sizeof ws);
  ws.struct_size = sizeof ws;
  tap_ok(hashdir_writer_stats(w, &ws), "writer_stats");
  tap_check(ws.keys == 1 && ws.values == 1, "after checkpoint: keys 1, values 1 (got %llu, %llu)",
            (unsigned long long)ws.keys, (unsigned long long)ws.values);
  tap_check(ws.epoch >= 1 && ws.buckets >= 1 && ws.file_bytes > 0 && ws.wal_bytes == 0,
            "epoch %llu, buckets %llu, file_bytes %llu, wal_bytes %llu", (unsigned long long)ws.epoch,
            (unsigned long long)ws.buckets, (unsigned long long)ws.file_bytes,
            (unsigned long long)ws.wal_bytes);
  tap_check(ws.struct_size == sizeof ws, "stats leave struct_size alone");
  /* Allocated space: the early-allocated chunks that were never written are holes. */
  tap_check(ws.disk_bytes > 0 && ws.disk_bytes < ws.file_bytes, "disk_bytes %llu of file_bytes %llu",
            (unsigned long long)ws.disk_bytes, (unsigned long long)ws.file_bytes);

  tap_ok(hashdir_reader_refresh(r), "refresh after checkpoint");
  memset(&rs, 0, sizeof rs);
  rs.struct_size = sizeof rs;
  tap_ok(hashdir_reader_stats(r, &rs), "reader_stats");
  tap_check(rs.keys == 1 && rs.values == 1 && rs.epoch == ws.epoch,
            "reader sees the checkpoint: keys 1, values 1, same epoch");

  /* A caller built against a header whose struct ended after `keys`. */
  memset(&rs, 0xEE, sizeof rs);
  rs.struct_size = offsetof(hashdir_stats, keys) + sizeof rs.keys;
  tap_ok(hashdir_reader_stats(r, &rs), "reader_stats with an older, shorter struct");
  tap_check(rs.keys == 1 && rs.values == 0xEEEEEEEEEEEEEEEEull &&
                rs.struct_size == offsetof(hashdir_stats, keys) + sizeof rs.keys,
            "only the fields within struct_size are written");
}

static void check_second_writer(const char *path) {
  hashdir_writer *w2 = (hashdir_writer *)(uintptr_t)1;
  tap_fails(hashdir_writer_open(path, NULL, &w2), HASHDIR_ERR_LOCKED, "hashdir_writer_open", NULL,
            "a second writer on the same file");
  tap_check(w2 == NULL, "the refused writer's *out is NULL");
}

/* ---- threads: one reader shared by many, one writer fed by many ---- */

struct shared {
  hashdir_reader *r;
  hashdir_writer *w;
  unsigned first;
  int ok;
};

static void *lookup_loop(void *arg) {
  struct shared *s = arg;
  hashdir_key k = tap_key(K1);
  s->ok = 1;
  for (int i = 0; i < 2000 && s->ok; i++) {
    hashdir_value v;
    uint8_t found = 0;
    if (i % 500 == 0 && hashdir_reader_refresh(s->r) != HASHDIR_OK) s->ok = 0;
    if (hashdir_reader_lookup(s->r, &k, 1, &v, &found) != HASHDIR_OK || !found ||
        !same_value(v, tap_value(V2)))
      s->ok = 0;
  }
  return NULL;
}

static void *insert_loop(void *arg) {
  struct shared *s = arg;
  s->ok = 1;
  for (unsigned i = 0; i < 100; i++) {
    hashdir_key k = tap_key(s->first + i);
    hashdir_value v = tap_value(i);
    if (hashdir_writer_insert(s->w, &k, &v, 1) != HASHDIR_OK) s->ok = 0;
  }
  return NULL;
}

static void run_threads(void *(*fn)(void *), struct shared *s, int n) {
  pthread_t t[8];
  for (int i = 0; i < n; i++) pthread_create(&t[i], NULL, fn, &s[i]);
  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
}

static void check_threads(hashdir_writer *w, hashdir_reader *r) {
  struct shared s[4];
  for (int i = 0; i < 4; i++) s[i] = (struct shared){r, w, 1000u + 100u * (unsigned)i, 0};
  run_threads(lookup_loop, s, 4);
  tap_check(s[0].ok && s[1].ok && s[2].ok && s[3].ok,
            "4 threads look up and refresh on one reader at once");
  run_threads(insert_loop, s, 4);
  tap_check(s[0].ok && s[1].ok && s[2].ok && s[3].ok, "4 threads insert into one writer at once");
  tap_ok(hashdir_writer_commit(w), "commit the threads' inserts");
  tap_ok(hashdir_reader_refresh(r), "refresh");
  tap_check(tap_count_found(r, 1000, 400) == 400, "all 400 keys from the 4 threads are there");
}

static void check_close_and_reopen(const char *path, hashdir_writer *w, hashdir_reader *r) {
  hashdir_key k = tap_key(K_CLOSE);
  hashdir_value v = tap_value(V1);
  tap_ok(hashdir_writer_insert(w, &k, &v, 1), "insert without commit");
  tap_ok(hashdir_writer_close(w), "writer_close commits and checkpoints");

  hashdir_options o;
  hashdir_options_init(&o);
  o.flags = HASHDIR_SYNC_COMMIT; /* the file exists now: no CREATE needed */
  o.checkpoint_bytes = 1;        /* checkpoint at every commit */
  hashdir_writer *w2 = NULL;
  TAP_REQUIRE(tap_ok(hashdir_writer_open(path, &o, &w2), "reopen the writer after close"));
  k = tap_key(K_REOPEN);
  tap_ok(hashdir_writer_insert(w2, &k, &v, 1), "insert into the reopened writer");
  tap_ok(hashdir_writer_commit(w2), "sync commit with a tiny checkpoint size");

  tap_ok(hashdir_reader_refresh(r), "refresh");
  tap_check(has_key(r, K_CLOSE) && has_key(r, K_REOPEN) && has_key(r, K1),
            "close committed the pending insert; the reopened writer's insert is visible");
  hashdir_recovery rec;
  memset(&rec, 0xff, sizeof rec);
  rec.struct_size = sizeof rec;
  char text[64] = "untouched";
  tap_ok(hashdir_writer_recovery(w2, &rec, text, sizeof text), "writer_recovery");
  tap_check(rec.batches_replayed == 0 && rec.dropped == 0 && text[0] == 0,
            "a cleanly closed file needs no replay (%llu batches, %u dropped, '%s')",
            (unsigned long long)rec.batches_replayed, rec.dropped, text);
  tap_ok(hashdir_writer_close(w2), "close the reopened writer");
  tap_ok(hashdir_reader_close(r), "reader_close");

  hashdir_reader *r2 = NULL;
  TAP_REQUIRE(tap_ok(hashdir_reader_open(path, NULL, &r2), "a fresh reader"));
  tap_check(has_key(r2, K1) && has_key(r2, K_REOPEN) && !has_key(r2, K2) &&
                tap_count_found(r2, 1000, 400) == 400,
            "a fresh reader sees everything that was committed");
  tap_ok(hashdir_reader_close(r2), "close it");
}

static void check_gc_and_verify(const char *path) {
  hashdir_options o;
  hashdir_options_init(&o);
  hashdir_writer *w = NULL;
  TAP_REQUIRE(tap_ok(hashdir_writer_open(path, &o, &w), "reopen for gc"));
  uint64_t pages = 99, bytes = 99;
  tap_ok(hashdir_writer_gc(w, &pages, &bytes), "writer_gc");
  tap_check(pages == 0 && bytes == 0, "a sound file has no orphans (%llu pages, %llu bytes)",
            (unsigned long long)pages, (unsigned long long)bytes);
  tap_ok(hashdir_writer_gc(w, NULL, NULL), "writer_gc without counters");
  tap_ok(hashdir_writer_close(w), "close after gc");

  char report[512];
  uint64_t problems = 99;
  tap_ok(hashdir_verify(path, report, sizeof report, &problems), "verify a sound file");
  tap_check(problems == 0 && strncmp(report, "ok: epoch", 9) == 0, "verify report: %s", report);
  char tiny[4];
  tap_ok(hashdir_verify(path, tiny, sizeof tiny, NULL), "verify into a tiny buffer");
  tap_check(strcmp(tiny, "ok:") == 0, "the report is cut and NUL-terminated");
  tap_fails(hashdir_verify(NULL, report, sizeof report, &problems), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_verify", NULL, "verify with a NULL path");
  char missing[4096 + 16];
  snprintf(missing, sizeof missing, "%s.missing", path);
  tap_fails(hashdir_verify(missing, NULL, 0, NULL), HASHDIR_ERR_NOT_FOUND, "hashdir_verify",
            "does not exist", "verify a missing file");
}

enum { KILLED_BATCHES = 7, KILLED_PER_BATCH = 50 };

/* The child: commits KILLED_BATCHES batches (no checkpoint: they live only in the WAL),
 * inserts one more without committing, then dies by SIGKILL. */
static void commit_then_die(const char *path) {
  hashdir_options o;
  hashdir_options_init(&o);
  o.flags = HASHDIR_CREATE;
  o.checkpoint_bytes = 1ull << 30;
  hashdir_writer *w = NULL;
  if (hashdir_writer_open(path, &o, &w) != HASHDIR_OK) _exit(3);
  for (unsigned b = 0; b <= KILLED_BATCHES; b++) {
    for (unsigned i = 0; i < KILLED_PER_BATCH; i++) {
      hashdir_key k = tap_key(5000 + b * KILLED_PER_BATCH + i);
      hashdir_value v = tap_value(b);
      if (hashdir_writer_insert(w, &k, &v, 1) != HASHDIR_OK) _exit(4);
    }
    if (b < KILLED_BATCHES && hashdir_writer_commit(w) != HASHDIR_OK) _exit(5);
  }
  kill(getpid(), SIGKILL);
  _exit(6);
}

static void check_recovery_after_kill(const char *dir) {
  char path[4096];
  tap_path(path, sizeof path, dir, "killed.h5");
  pid_t pid = fork();
  TAP_REQUIRE(tap_check(pid >= 0, "fork a writer child"));
  if (pid == 0) commit_then_die(path);
  int status = 0;
  waitpid(pid, &status, 0);
  tap_check(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the child died by SIGKILL");

  hashdir_writer *w = NULL;
  TAP_REQUIRE(tap_ok(hashdir_writer_open(path, NULL, &w), "reopen after the kill"));
  hashdir_recovery rec;
  memset(&rec, 0, sizeof rec);
  rec.struct_size = sizeof rec;
  char text[256];
  tap_ok(hashdir_writer_recovery(w, &rec, text, sizeof text), "writer_recovery");
  tap_check(rec.batches_replayed == KILLED_BATCHES && rec.log_bytes_replayed > 0,
            "recovery replayed the %d committed batches (%llu, %llu log bytes, %llu us)",
            KILLED_BATCHES, (unsigned long long)rec.batches_replayed,
            (unsigned long long)rec.log_bytes_replayed, (unsigned long long)rec.micros);
  tap_check(rec.dropped == 0 && text[0] == 0, "nothing acknowledged was dropped ('%s')", text);
  hashdir_recovery old;
  memset(&old, 0xee, sizeof old);
  old.struct_size = offsetof(hashdir_recovery, batches_replayed);
  tap_ok(hashdir_writer_recovery(w, &old, NULL, 0), "writer_recovery into an older, shorter struct");
  tap_check(old.root_epoch == rec.root_epoch && old.batches_replayed == 0xeeeeeeeeeeeeeeeeull,
            "only the fields the older struct has are written");
  tap_ok(hashdir_writer_recovery(w, NULL, NULL, 0), "writer_recovery with no outputs");
  rec.struct_size = 0;
  tap_fails(hashdir_writer_recovery(w, &rec, NULL, 0), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_writer_recovery", "struct_size", "writer_recovery with struct_size 0");
  tap_fails(hashdir_writer_recovery(w, NULL, NULL, 5), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_writer_recovery", "report", "writer_recovery with a NULL report of length 5");
  tap_ok(hashdir_writer_close(w), "close");

  hashdir_reader *r = NULL;
  TAP_REQUIRE(tap_ok(hashdir_reader_open(path, NULL, &r), "open a reader"));
  tap_check(tap_count_found(r, 5000, KILLED_BATCHES * KILLED_PER_BATCH) ==
                    KILLED_BATCHES * KILLED_PER_BATCH &&
                tap_count_found(r, 5000 + KILLED_BATCHES * KILLED_PER_BATCH, KILLED_PER_BATCH) == 0,
            "every committed key survived the kill; the uncommitted batch did not");
  tap_ok(hashdir_reader_close(r), "close the reader");
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s <scratch dir>\n", argv[0]);
    return 2;
  }
  char path[4096];
  tap_path(path, sizeof path, argv[1], "api.h5");
  tap_check(same_key(tap_key(1), tap_key(1)) && !same_key(tap_key(1), tap_key(2)),
            "test keys are distinct");

  hashdir_options o;
  hashdir_options_init(&o);
  hashdir_writer *w = NULL;
  TAP_REQUIRE(tap_ok(hashdir_writer_open(path, &o, &w), "create a writer"));
  TAP_REQUIRE(w != NULL);
  insert_initial(w);

  hashdir_reader *r = NULL;
  TAP_REQUIRE(tap_ok(hashdir_reader_open(path, NULL, &r), "open a reader in the same process"));
  check_lookup(r);
  check_get(r);
  check_insert_values(w, r);
  check_bad_arrays(w, r);
  delete_some(w);
  check_after_delete(r);
  check_stats(w, r);
  check_second_writer(path);
  check_threads(w, r);
  check_close_and_reopen(path, w, r);
  check_gc_and_verify(path);
  check_recovery_after_kill(argv[1]);
  return tap_done();
}
