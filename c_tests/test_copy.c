/* hashdir_copy: a copy of a reader's view taken while a writer thread commits, checked
 * key by key, verified, reopened as a writer; and the calls it refuses.
 * Usage: test_copy <scratch dir> */
#include <stdint.h>

#include "tap.h"

enum { KEYS = 20000, BATCH = 1000, BATCHES = 40 };

/* Inserts keys [first, first + n), key i with value i, and commits. */
static hashdir_status insert_range(hashdir_writer *w, unsigned first, unsigned n) {
  hashdir_key *keys = calloc(n, sizeof *keys);
  hashdir_value *vals = calloc(n, sizeof *vals);
  for (unsigned i = 0; i < n; i++) {
    keys[i] = tap_key(first + i);
    vals[i] = tap_value(first + i);
  }
  hashdir_status s = hashdir_writer_insert(w, keys, vals, n);
  if (s == HASHDIR_OK) s = hashdir_writer_commit(w);
  free(keys);
  free(vals);
  return s;
}

/* The writer thread: new keys and deletes of old ones, batch after batch. */
static void *churn(void *arg) {
  hashdir_writer *w = arg;
  int ok = 1;
  for (unsigned b = 0; b < BATCHES && ok; b++) {
    hashdir_key gone = tap_key(b);
    ok = hashdir_writer_delete_keys(w, &gone, 1) == HASHDIR_OK &&
         insert_range(w, KEYS + b * BATCH, BATCH) == HASHDIR_OK;
  }
  tap_check(ok, "the writer commits %d batches meanwhile", BATCHES);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s <scratch dir>\n", argv[0]);
    return 2;
  }
  char path[4096], dest[4096];
  tap_path(path, sizeof path, argv[1], "src.h5");
  tap_path(dest, sizeof dest, argv[1], "copy.h5");

  hashdir_writer *w = NULL;
  TAP_REQUIRE(tap_ok(hashdir_writer_open(path, NULL, &w), "create the source"));
  for (unsigned i = 0; i < KEYS; i += BATCH) TAP_REQUIRE(tap_ok(insert_range(w, i, BATCH), "load"));
  hashdir_reader *r = NULL;
  TAP_REQUIRE(tap_ok(hashdir_reader_open(path, NULL, &r), "open a reader"));

  pthread_t t;
  pthread_create(&t, NULL, churn, w);
  tap_ok(hashdir_copy(r, dest), "copy the reader's view while the writer commits");
  pthread_join(t, NULL);

  char report[256];
  uint64_t problems = 1;
  tap_ok(hashdir_verify(dest, report, sizeof report, &problems), "verify the copy");
  tap_check(problems == 0, "the copy verifies clean: %s", report);
  hashdir_reader *c = NULL;
  TAP_REQUIRE(tap_ok(hashdir_reader_open(dest, NULL, &c), "open the copy"));
  tap_check(tap_count_found(c, 0, KEYS) == KEYS, "the copy holds every key the view held");
  tap_check(tap_count_found(c, KEYS, BATCHES * BATCH) == 0, "and none committed after it");
  hashdir_stats s;
  memset(&s, 0, sizeof s);
  s.struct_size = sizeof s;
  tap_ok(hashdir_reader_stats(c, &s), "stats of the copy");
  tap_check(s.keys == KEYS && s.delta_tables == 0, "one base table of %d keys (%llu keys, %llu delta tables)",
            KEYS, (unsigned long long)s.keys, (unsigned long long)s.delta_tables);
  hashdir_reader_close(c);

  tap_fails(hashdir_copy(r, dest), HASHDIR_ERR_IO, "hashdir_copy", "File exists",
            "a copy onto an existing file");
  tap_fails(hashdir_copy(r, NULL), HASHDIR_ERR_INVALID_ARGUMENT, "hashdir_copy", "path is NULL",
            "copy to a NULL path");
  tap_fails(hashdir_copy(r, ""), HASHDIR_ERR_INVALID_ARGUMENT, "hashdir_copy", "path is empty",
            "copy to an empty path");
  tap_fails(hashdir_copy(NULL, dest), HASHDIR_ERR_INVALID_ARGUMENT, "hashdir_copy",
            "reader is NULL", "copy from a NULL reader");
  tap_ok(hashdir_reader_close(r), "close the reader");
  tap_ok(hashdir_writer_close(w), "close the source's writer");

  hashdir_writer *cw = NULL;
  TAP_REQUIRE(tap_ok(hashdir_writer_open(dest, NULL, &cw), "the copy opens as a writer"));
  tap_ok(insert_range(cw, 1u << 30, 10), "and takes commits");
  tap_ok(hashdir_writer_close(cw), "close it");
  return tap_done();
}
