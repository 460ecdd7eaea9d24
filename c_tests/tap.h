/* Tiny TAP-style checks shared by the C tests: each check prints "ok N - what" or
 * "not ok N - what", and tap_done() exits non-zero if any failed. Checks are
 * thread-safe so threaded tests can use them too. */
#ifndef HASHDIR_TAP_H
#define HASHDIR_TAP_H

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hashdir.h"

static pthread_mutex_t tap_lock = PTHREAD_MUTEX_INITIALIZER;
static int tap_count, tap_failed;

/* Records one check; returns cond so callers can stop early on a broken precondition. */
static inline int tap_check(int cond, const char *fmt, ...) {
  va_list ap;
  pthread_mutex_lock(&tap_lock);
  tap_count++;
  if (!cond) tap_failed++;
  printf("%sok %d - ", cond ? "" : "not ", tap_count);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  fflush(stdout);
  pthread_mutex_unlock(&tap_lock);
  return cond;
}

/* A call must fail with `want`, and this thread's last error must name `function`
 * (proving the message is this call's, not a stale one) and contain `detail`. */
static inline int tap_fails(hashdir_status got, hashdir_status want, const char *function,
                     const char *detail, const char *what) {
  const char *msg = hashdir_last_error();
  int named = msg != NULL && strncmp(msg, function, strlen(function)) == 0;
  int detailed = msg != NULL && (detail == NULL || strstr(msg, detail) != NULL);
  return tap_check(got == want && named && detailed, "%s: %s (%s: \"%s\")", what,
                   hashdir_status_name(want), hashdir_status_name(got), msg ? msg : "(NULL)");
}

static inline int tap_ok(hashdir_status got, const char *what) {
  return tap_check(got == HASHDIR_OK, "%s: %s%s%s", what, hashdir_status_name(got),
                   got == HASHDIR_OK ? "" : " - ", got == HASHDIR_OK ? "" : hashdir_last_error());
}

/* Ends the test: prints the totals and exits 1 if any check failed. */
static inline int tap_done(void) {
  printf("# %d passed, %d failed\n", tap_count - tap_failed, tap_failed);
  return tap_failed == 0 && tap_count > 0 ? 0 : 1;
}

/* Stops the whole test when a check that later ones depend on failed. */
#define TAP_REQUIRE(cond)                                         \
  do {                                                            \
    if (!(cond)) {                                                \
      printf("Bail out! %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      exit(tap_done() | 1);                                       \
    }                                                             \
  } while (0)

/* Builds distinct keys/values from a small number, for readable tests. */
static inline hashdir_key tap_key(unsigned n) {
  hashdir_key k;
  memset(&k, 0, sizeof k);
  k.bytes[0] = 'k';
  memcpy(&k.bytes[12], &n, sizeof n);
  return k;
}

static inline hashdir_value tap_value(unsigned n) {
  hashdir_value v;
  memset(&v, 0, sizeof v);
  v.bytes[0] = 'v';
  memcpy(&v.bytes[12], &n, sizeof n);
  return v;
}

/* Joins a directory and a file name into buf. */
/* How many of `n` keys starting at `first` the reader finds. */
static inline size_t tap_count_found(hashdir_reader *r, unsigned first, size_t n) {
  hashdir_key *keys = calloc(n, sizeof *keys);
  hashdir_value *vals = calloc(n, sizeof *vals);
  uint8_t *found = calloc(n, 1);
  size_t hits = 0;
  for (size_t i = 0; i < n; i++) keys[i] = tap_key(first + (unsigned)i);
  if (hashdir_reader_lookup(r, keys, n, vals, found) == HASHDIR_OK)
    for (size_t i = 0; i < n; i++) hits += found[i];
  free(keys);
  free(vals);
  free(found);
  return hits;
}

static inline const char *tap_path(char *buf, size_t size, const char *dir, const char *name) {
  snprintf(buf, size, "%s/%s", dir, name);
  return buf;
}

#endif
