/* A sharded store through the C API: created with opts.shards, written and read through the
 * ordinary calls, routing by hashdir_shard_of, outputs in the caller's order, summed stats,
 * one writer per store and per shard, a plain writer of one shard, a bad shard index, a
 * group writer of one member and its argument checks, and a damaged or missing manifest.
 * Usage: test_sharded <scratch dir> */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "tap.h"

enum { N = 400, SHARDS = 3 };

static void path_in(char *out, size_t len, const char *dir, const char *name) {
  snprintf(out, len, "%s/%s", dir, name);
}

/* A group of one member's all-reduce: the values stay as they are; counts its calls. */
static int calls;
static int32_t count_calls(void *ctx, uint64_t *values, size_t n) {
  (void)values;
  (void)n;
  ++*(int *)ctx;
  return 0;
}

static hashdir_options store_options(uint32_t shards) {
  hashdir_options o;
  hashdir_options_init(&o);
  o.capacity = 64u << 20;
  o.shards = shards;
  return o;
}

/* Key i holds the values 0 .. i % 3 (one to three of them). */
static void fill(hashdir_writer *w) {
  for (unsigned i = 0; i < N; i++) {
    hashdir_key k = tap_key(i);
    hashdir_value v[3] = {tap_value(0), tap_value(1), tap_value(2)};
    TAP_REQUIRE(hashdir_writer_insert_values(w, &k, v, i % 3 + 1) == HASHDIR_OK);
  }
  tap_ok(hashdir_writer_commit(w), "commit one set of 3 shards");
}

/* Keys in descending order, with absent ones between: answers come back in that order. */
static void check_order(hashdir_reader *r) {
  enum { M = N + 50 };
  static hashdir_key keys[M];
  static hashdir_value first[M], values[3 * M];
  static uint8_t found[M];
  static uint64_t counts[M];
  for (unsigned i = 0; i < M; i++) keys[i] = tap_key(M - 1 - i);
  tap_ok(hashdir_reader_lookup(r, keys, M, first, found), "lookup across shards");
  size_t total = 0;
  hashdir_status st = hashdir_reader_get(r, keys, M, values, 2, counts, &total);
  tap_check(st == HASHDIR_ERR_BUFFER_TOO_SMALL && total == N + N / 3 * 3,
            "get with a small buffer reports the total over all shards (%zu)", total);
  tap_ok(hashdir_reader_get(r, keys, M, values, 3 * M, counts, &total), "get across shards");
  int lookups_right = 1, gets_right = 1;
  size_t at = 0;
  for (unsigned i = 0; i < M; i++) {
    unsigned key = M - 1 - i;
    unsigned want = key < N ? key % 3 + 1 : 0;
    lookups_right &= found[i] == (want > 0);
    gets_right &= counts[i] == want;
    for (unsigned j = 0; j < counts[i]; j++) {
      /* A key's values are 0 .. count-1, in any order: their sum tells a misplaced one. */
      unsigned v;
      memcpy(&v, &values[at + j].bytes[12], sizeof v);
      gets_right &= v < want;
    }
    at += counts[i];
  }
  tap_check(lookups_right, "lookup answers in the caller's key order");
  tap_check(gets_right && at == total, "get counts and values in the caller's key order");
}

int main(int argc, char **argv) {
  TAP_REQUIRE(argc == 2);
  char dir[512], manifest[600], file[600];
  path_in(dir, sizeof dir, argv[1], "store");
  path_in(manifest, sizeof manifest, dir, "hashdir.shards");
  path_in(file, sizeof file, argv[1], "one.h5");

  hashdir_key k7 = tap_key(7);
  tap_check(hashdir_shard_of(&k7, 0) == 0 && hashdir_shard_of(&k7, 1) == 0,
            "one shard (0 or 1) is shard 0");
  tap_check(hashdir_shard_of(&k7, SHARDS) < SHARDS, "a shard below the count");
  tap_check(hashdir_shard_of(NULL, SHARDS) == 0, "NULL key: 0");

  hashdir_options o = store_options(SHARDS);
  hashdir_writer *w = NULL;
  TAP_REQUIRE(hashdir_writer_open(dir, &o, &w) == HASHDIR_OK);
  tap_check(access(manifest, R_OK) == 0, "the store has its manifest");
  fill(w);

  hashdir_writer *second = NULL;
  tap_fails(hashdir_writer_open(dir, NULL, &second), HASHDIR_ERR_LOCKED, "hashdir_writer_open",
            "locked", "a second writer of the store");
  tap_fails(hashdir_shard_writer_open(dir, 1, NULL, &second), HASHDIR_ERR_LOCKED,
            "hashdir_shard_writer_open", "locked", "a shard writer while the store has one");
  tap_ok(hashdir_writer_checkpoint(w), "checkpoint every shard");
  hashdir_stats ws = {.struct_size = sizeof ws};
  tap_ok(hashdir_writer_stats(w, &ws), "writer stats");
  tap_check(ws.keys == N && ws.values == N + N / 3 * 3, "writer stats sum the shards (%llu keys)",
            (unsigned long long)ws.keys);
  tap_ok(hashdir_writer_close(w), "close the store");

  hashdir_reader *r = NULL;
  TAP_REQUIRE(hashdir_reader_open(dir, NULL, &r) == HASHDIR_OK);
  check_order(r);
  hashdir_stats rs = {.struct_size = sizeof rs};
  tap_ok(hashdir_reader_stats(r, &rs), "reader stats");
  tap_check(rs.keys == N, "reader stats sum the shards");
  tap_ok(hashdir_reader_refresh(r), "refresh every shard");
  tap_ok(hashdir_reader_close(r), "close the reader");

  /* Each shard is an ordinary file holding the keys routed to it. */
  uint64_t sum = 0;
  for (unsigned s = 0; s < SHARDS; s++) {
    char shard[700];
    snprintf(shard, sizeof shard, "%s/shard_%03u.h5", dir, s);
    hashdir_reader *one = NULL;
    if (!tap_ok(hashdir_reader_open(shard, NULL, &one), "open a shard as a file")) continue;
    hashdir_stats st = {.struct_size = sizeof st};
    hashdir_reader_stats(one, &st);
    sum += st.keys;
    unsigned misplaced = 0;
    for (unsigned i = 0; i < N; i++) {
      hashdir_key k = tap_key(i);
      hashdir_value v;
      uint8_t f = 0;
      hashdir_reader_lookup(one, &k, 1, &v, &f);
      misplaced += f != (hashdir_shard_of(&k, SHARDS) == s);
    }
    tap_check(misplaced == 0, "shard %u holds exactly its keys", s);
    hashdir_reader_close(one);
  }
  tap_check(sum == N, "the shards' keys add up");

  /* A process owning shard 2 writes it alone; the store keeps those batches. */
  hashdir_writer *s2 = NULL;
  tap_fails(hashdir_shard_writer_open(dir, SHARDS, NULL, &s2), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_shard_writer_open", "has 3 shards", "a shard the store does not have");
  TAP_REQUIRE(hashdir_shard_writer_open(dir, 2, NULL, &s2) == HASHDIR_OK);
  unsigned mine = N;
  hashdir_key k2 = tap_key(mine);
  while (hashdir_shard_of(&k2, SHARDS) != 2) k2 = tap_key(++mine);
  hashdir_value v9 = tap_value(9);
  tap_ok(hashdir_writer_insert(s2, &k2, &v9, 1), "insert into shard 2 alone");
  tap_ok(hashdir_writer_close(s2), "close the shard writer");
  TAP_REQUIRE(hashdir_reader_open(dir, NULL, &r) == HASHDIR_OK);
  hashdir_value got;
  uint8_t f = 0;
  hashdir_reader_lookup(r, &k2, 1, &got, &f);
  tap_check(f == 1 && memcmp(&got, &v9, sizeof got) == 0, "the store reads the shard's batch");
  hashdir_reader_close(r);

  char report[256];
  uint64_t problems = 1;
  tap_ok(hashdir_verify(dir, report, sizeof report, &problems), "verify the store");
  tap_check(problems == 0, "no problems: %s", report);

  /* A group writer: a group of one member writing every shard (its all-reduce is the
   * identity), then the checks of its arguments. */
  hashdir_group g = {.struct_size = sizeof g, .member = 0, .members = 1, .ctx = &calls,
                     .max = count_calls};
  uint32_t all[SHARDS] = {0, 1, 2};
  tap_ok(hashdir_group_writer_open(dir, all, SHARDS, NULL, &g, &w), "open a group of one");
  hashdir_key k3 = tap_key(N + 3);
  hashdir_value v3 = tap_value(3);
  tap_ok(hashdir_writer_insert(w, &k3, &v3, 1), "insert through the group writer");
  calls = 0;
  tap_ok(hashdir_writer_commit(w), "a collective commit");
  tap_check(calls >= 3, "the commit agreed through max: %d calls", calls);
  tap_ok(hashdir_writer_close(w), "close the group writer");
  TAP_REQUIRE(hashdir_reader_open(dir, NULL, &r) == HASHDIR_OK);
  f = 0;
  hashdir_reader_lookup(r, &k3, 1, &got, &f);
  tap_check(f == 1 && memcmp(&got, &v3, sizeof got) == 0, "the store reads the group's set");
  hashdir_reader_close(r);
  uint32_t two[2] = {0, 2};
  tap_fails(hashdir_group_writer_open(dir, two, 2, NULL, &g, &w), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_group_writer_open", "no member of the group writes shard 1",
            "a shard no member writes");
  uint32_t back[3] = {2, 1, 0};
  tap_fails(hashdir_group_writer_open(dir, back, 3, NULL, &g, &w), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_group_writer_open", "ascending", "shards out of order");
  g.member = 1;
  tap_fails(hashdir_group_writer_open(dir, all, SHARDS, NULL, &g, &w),
            HASHDIR_ERR_INVALID_ARGUMENT, "hashdir_group_writer_open", "member < members",
            "a member beyond the group");
  g.member = 0;
  g.max = NULL;
  tap_fails(hashdir_group_writer_open(dir, all, SHARDS, NULL, &g, &w),
            HASHDIR_ERR_INVALID_ARGUMENT, "hashdir_group_writer_open", "group->max is NULL",
            "no all-reduce");
  tap_fails(hashdir_group_writer_open(dir, all, SHARDS, NULL, NULL, &w),
            HASHDIR_ERR_INVALID_ARGUMENT, "hashdir_group_writer_open", "group", "a NULL group");

  /* Asking for another shard count, or for shards on a plain file. */
  hashdir_options o4 = store_options(4);
  tap_fails(hashdir_writer_open(dir, &o4, &w), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_writer_open", "has 3 shards", "the wrong shard count");
  hashdir_writer *plain = NULL;
  TAP_REQUIRE(hashdir_writer_open(file, NULL, &plain) == HASHDIR_OK);
  hashdir_writer_close(plain);
  tap_fails(hashdir_writer_open(file, &o4, &w), HASHDIR_ERR_INVALID_ARGUMENT,
            "hashdir_writer_open", "single file", "shards on a plain file");

  /* A damaged manifest, then none. */
  FILE *m = fopen(manifest, "r+b");
  TAP_REQUIRE(m != NULL);
  fseek(m, 12, SEEK_SET);
  fputc(9, m);
  fclose(m);
  tap_fails(hashdir_reader_open(dir, NULL, &r), HASHDIR_ERR_CORRUPT, "hashdir_reader_open",
            "shard manifest", "a damaged manifest");
  tap_fails(hashdir_writer_open(dir, NULL, &w), HASHDIR_ERR_CORRUPT, "hashdir_writer_open",
            "checksum", "a damaged manifest (writer)");
  unlink(manifest);
  tap_fails(hashdir_reader_open(dir, NULL, &r), HASHDIR_ERR_NOT_HASHDIR, "hashdir_reader_open",
            "hashdir.shards", "a directory without a manifest");
  tap_fails(hashdir_shard_writer_open(dir, 0, NULL, &w), HASHDIR_ERR_NOT_HASHDIR,
            "hashdir_shard_writer_open", "hashdir.shards", "a shard of a directory without one");
  return tap_done();
}
