/* The C side of python/bench_lookup.py: batched hashdir_reader_lookup over the same keys,
 * file and library as the Python side, so the two per-key costs compare the languages only.
 *
 *   bench_lookup FILE KEYS.bin BATCH
 *
 * KEYS.bin holds n keys of 16 bytes. A first, untimed pass checks that every key is found
 * with the value the benchmark wrote (the key's index, little-endian, in the value's first 8
 * bytes, which are the key's bytes 8..15), then the program prints "ready". Each line read
 * from stdin then runs a round: all n keys looked up, BATCH at a time; it prints the
 * round's nanoseconds per key. (The Python side alternates its rounds with these.)
 *
 * SPDX-License-Identifier: MIT OR Apache-2.0 */
#define _POSIX_C_SOURCE 200809L
#include <hashdir.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void die(const char *what) {
  fprintf(stderr, "bench_lookup: %s: %s\n", what, hashdir_last_error());
  exit(1);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: bench_lookup FILE KEYS.bin BATCH\n");
    return 2;
  }
  size_t batch = (size_t)strtoull(argv[3], NULL, 10);
  if (batch == 0) batch = 1;
  FILE *f = fopen(argv[2], "rb");
  if (!f) {
    perror(argv[2]);
    return 1;
  }
  fseek(f, 0, SEEK_END);
  size_t n = (size_t)ftell(f) / sizeof(hashdir_key);
  fseek(f, 0, SEEK_SET);
  hashdir_key *keys = malloc(n * sizeof *keys);
  hashdir_value *first = malloc(batch * sizeof *first);
  uint8_t *found = malloc(batch);
  if (!keys || !first || !found || fread(keys, sizeof *keys, n, f) != n) {
    fprintf(stderr, "bench_lookup: cannot read %s\n", argv[2]);
    return 1;
  }
  fclose(f);

  hashdir_reader *r;
  if (hashdir_reader_open(argv[1], NULL, &r) != HASHDIR_OK) die("open");
  for (size_t at = 0; at < n; at += batch) { /* untimed: check, and warm the cache */
    size_t m = n - at < batch ? n - at : batch;
    if (hashdir_reader_lookup(r, keys + at, m, first, found) != HASHDIR_OK) die("lookup");
    for (size_t i = 0; i < m; i++) {
      if (!found[i] || memcmp(first[i].bytes, keys[at + i].bytes + 8, 8) != 0) {
        fprintf(stderr, "bench_lookup: key %zu not found or wrong value\n", at + i);
        return 1;
      }
    }
  }
  puts("ready");
  fflush(stdout);
  char line[64];
  while (fgets(line, sizeof line, stdin)) {
    double t0 = now_ns();
    for (size_t at = 0; at < n; at += batch) {
      size_t m = n - at < batch ? n - at : batch;
      if (hashdir_reader_lookup(r, keys + at, m, first, found) != HASHDIR_OK) die("lookup");
    }
    printf("%.2f\n", (now_ns() - t0) / (double)n);
    fflush(stdout);
  }
  hashdir_reader_close(r);
  free(keys);
  free(first);
  free(found);
  return 0;
}
