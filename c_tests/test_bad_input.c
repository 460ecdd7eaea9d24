/* Calls the C API can reject before any file is touched: NULL pointers, bad options,
 * NULL handles. Needs no working engine. Usage: test_bad_input <scratch dir> */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tap.h"

#ifndef EXPECTED_VERSION
#error "build with -DEXPECTED_VERSION=\"<crate version>\""
#endif

/* Any non-NULL address, to prove an open overwrites *out with NULL on failure. */
#define SENTINEL ((void *)(uintptr_t)0x1)

static void check_version_and_names(void) {
  const char *v = hashdir_version();
  tap_check(v != NULL && strcmp(v, EXPECTED_VERSION) == 0, "hashdir_version() is \"%s\"",
            v ? v : "(NULL)");
  tap_check(strcmp(hashdir_status_name(HASHDIR_ERR_LOCKED), "HASHDIR_ERR_LOCKED") == 0,
            "status_name names a status");
  tap_check(strcmp(hashdir_status_name(999), "HASHDIR_UNKNOWN_STATUS") == 0,
            "status_name survives an unknown value");
}

static void check_options_init(void) {
  hashdir_options o;
  memset(&o, 0xAB, sizeof o);
  hashdir_options_init(&o);
  tap_check(o.struct_size == sizeof o && o.flags == HASHDIR_CREATE && o.checkpoint_bytes == 0 &&
                o.refresh_interval_ms == 0,
            "options_init writes the defaults");
  hashdir_options_init(NULL);
  tap_check(1, "options_init(NULL) is a no-op");
}

/* The same bad arguments must be refused by both opens. */
typedef hashdir_status (*open_fn)(const char *, const hashdir_options *, void **);

static void check_open_arguments(const char *name, open_fn open, const char *path) {
  char what[128];
  void *h = SENTINEL;
  hashdir_options o;

  snprintf(what, sizeof what, "%s(NULL path)", name);
  tap_fails(open(NULL, NULL, &h), HASHDIR_ERR_INVALID_ARGUMENT, name, "path is NULL", what);
  tap_check(h == NULL, "%s sets *out = NULL on failure", what);

  h = SENTINEL;
  snprintf(what, sizeof what, "%s(\"\")", name);
  tap_fails(open("", NULL, &h), HASHDIR_ERR_INVALID_ARGUMENT, name, "path is empty", what);
  tap_check(h == NULL, "%s sets *out = NULL on failure", what);

  snprintf(what, sizeof what, "%s(out = NULL)", name);
  tap_fails(open(path, NULL, NULL), HASHDIR_ERR_INVALID_ARGUMENT, name, "out is NULL", what);

  static const uint32_t bad_sizes[] = {0, 4, 7, 4097, UINT32_MAX};
  for (size_t i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++) {
    hashdir_options_init(&o);
    o.struct_size = bad_sizes[i];
    h = SENTINEL;
    snprintf(what, sizeof what, "%s(struct_size = %u)", name, (unsigned)bad_sizes[i]);
    tap_fails(open(path, &o, &h), HASHDIR_ERR_INVALID_ARGUMENT, name, "struct_size", what);
    tap_check(h == NULL, "%s sets *out = NULL on failure", what);
  }

  hashdir_options_init(&o);
  o.flags |= 1u << 7;
  snprintf(what, sizeof what, "%s(unknown flag bit)", name);
  tap_fails(open(path, &o, &h), HASHDIR_ERR_INVALID_ARGUMENT, name, "unknown bits 0x80", what);

  /* A struct from a newer header that sets a field this library does not know. */
  struct {
    hashdir_options v1;
    uint64_t newer_field;
  } newer;
  memset(&newer, 0, sizeof newer);
  hashdir_options_init(&newer.v1);
  newer.v1.struct_size = sizeof newer;
  newer.newer_field = 1;
  snprintf(what, sizeof what, "%s(newer struct, unknown field set)", name);
  tap_fails(open(path, &newer.v1, &h), HASHDIR_ERR_INVALID_ARGUMENT, name,
            "unknown to this library", what);
}

static hashdir_status writer_open(const char *p, const hashdir_options *o, void **out) {
  return hashdir_writer_open(p, o, (hashdir_writer **)out);
}

static hashdir_status reader_open(const char *p, const hashdir_options *o, void **out) {
  return hashdir_reader_open(p, o, (hashdir_reader **)out);
}

static void check_null_writer(void) {
  hashdir_key k = tap_key(1);
  hashdir_value v = tap_value(1);
  hashdir_stats s;
  memset(&s, 0, sizeof s);
  s.struct_size = sizeof s;
  const char *d = "writer is NULL";
  tap_fails(hashdir_writer_insert(NULL, NULL, NULL, 0), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_writer_insert", d, "insert(NULL writer, n = 0)");
  tap_fails(hashdir_writer_insert(NULL, &k, &v, 1), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_writer_insert", d, "insert(NULL writer, n = 1)");
  tap_fails(hashdir_writer_insert(NULL, NULL, NULL, 3), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_writer_insert", NULL, "insert(NULL writer, NULL arrays, n = 3)");
  tap_fails(hashdir_writer_delete_keys(NULL, NULL, 0), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_writer_delete_keys", d, "delete_keys(NULL writer)");
  tap_fails(hashdir_writer_delete_pairs(NULL, &k, &v, 1), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_writer_delete_pairs", d, "delete_pairs(NULL writer)");
  tap_fails(hashdir_writer_commit(NULL), HASHDIR_ERR_INVALID_ARGUMENT, "hashdir_writer_commit",
            d, "commit(NULL)");
  tap_fails(hashdir_writer_checkpoint(NULL), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_writer_checkpoint", d, "checkpoint(NULL)");
  tap_fails(hashdir_writer_sync(NULL), HASHDIR_ERR_INVALID_ARGUMENT, "hashdir_writer_sync", d,
            "sync(NULL)");
  tap_fails(hashdir_writer_stats(NULL, &s), HASHDIR_ERR_INVALID_ARGUMENT, "hashdir_writer_stats",
            d, "writer_stats(NULL writer)");
  tap_fails(hashdir_writer_insert_values(NULL, &k, &v, 1), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_writer_insert_values", d, "insert_values(NULL writer)");
  tap_fails(hashdir_writer_recovery(NULL, NULL, NULL, 0), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_writer_recovery", d, "writer_recovery(NULL writer)");
  tap_ok(hashdir_writer_close(NULL), "writer_close(NULL)");
}

static void check_null_reader(void) {
  hashdir_key k = tap_key(1);
  hashdir_value v;
  uint8_t found;
  uint64_t count;
  size_t total = 99;
  hashdir_stats s;
  memset(&s, 0, sizeof s);
  s.struct_size = sizeof s;
  const char *d = "reader is NULL";
  tap_fails(hashdir_reader_refresh(NULL), HASHDIR_ERR_INVALID_ARGUMENT, "hashdir_reader_refresh",
            d, "refresh(NULL)");
  tap_fails(hashdir_reader_lookup(NULL, NULL, 0, NULL, NULL), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_reader_lookup", d, "lookup(NULL reader, n = 0)");
  tap_fails(hashdir_reader_lookup(NULL, &k, 1, &v, &found), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_reader_lookup", d, "lookup(NULL reader, n = 1)");
  tap_fails(hashdir_reader_get(NULL, &k, 1, &v, 1, &count, &total), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_reader_get", d, "get(NULL reader)");
  tap_check(total == 0, "get(NULL reader) still sets *total = 0");
  tap_fails(hashdir_reader_get(NULL, &k, 1, &v, 1, &count, NULL), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_reader_get", "total is NULL", "get(total = NULL)");
  tap_fails(hashdir_reader_stats(NULL, &s), HASHDIR_ERR_INVALID_ARGUMENT, "hashdir_reader_stats",
            d, "reader_stats(NULL reader)");
  tap_ok(hashdir_reader_close(NULL), "reader_close(NULL)");
}

/* Each thread has its own last error: a failure elsewhere leaves this thread's alone. */
static void *fail_in_thread(void *arg) {
  (void)arg;
  int fresh = strcmp(hashdir_last_error(), "") == 0;
  hashdir_writer_commit(NULL);
  int own = strncmp(hashdir_last_error(), "hashdir_writer_commit", 21) == 0;
  return (void *)(uintptr_t)(fresh && own);
}

static void check_last_error_is_per_thread(void) {
  hashdir_reader_refresh(NULL);
  pthread_t t;
  void *result = NULL;
  pthread_create(&t, NULL, fail_in_thread, NULL);
  pthread_join(t, &result);
  tap_check(result != NULL, "a new thread starts with last_error \"\" and gets its own");
  tap_check(strncmp(hashdir_last_error(), "hashdir_reader_refresh", 22) == 0,
            "this thread's last_error is untouched by the other thread's failure");
}

/* checkpoint_bytes bounds recovery time and memory: above 4 GiB is refused. */
static void check_checkpoint_limit(const char *path) {
  hashdir_options o;
  hashdir_options_init(&o);
  o.checkpoint_bytes = (4ull << 30) + 1;
  hashdir_writer *w = (hashdir_writer *)SENTINEL;
  tap_fails(hashdir_writer_open(path, &o, &w), HASHDIR_ERR_INVALID_ARGUMENT, "hashdir_writer_open",
            "above the maximum", "writer_open(checkpoint_bytes = 4 GiB + 1)");
  tap_check(w == NULL, "writer_open sets *out = NULL on failure");
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s <scratch dir>\n", argv[0]);
    return 2;
  }
  char path[4096];
  tap_path(path, sizeof path, argv[1], "never-created.h5");

  tap_check(hashdir_last_error() != NULL && strcmp(hashdir_last_error(), "") == 0,
            "last_error is \"\" before any failure");
  check_version_and_names();
  check_options_init();
  check_open_arguments("hashdir_writer_open", writer_open, path);
  check_open_arguments("hashdir_reader_open", reader_open, path);
  check_checkpoint_limit(path);
  check_null_writer();
  check_null_reader();
  check_last_error_is_per_thread();

  struct stat st;
  tap_check(stat(path, &st) != 0, "no failed open created %s", path);
  return tap_done();
}
