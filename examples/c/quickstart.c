/* hashdir quickstart: write pairs, commit, read them back from a reader handle.
 * Build: cc quickstart.c $(pkg-config --cflags --libs hashdir) -o quickstart
 * Run:   ./quickstart /tmp/quickstart.h5 */
#include <hashdir.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                                            \
  do {                                                                         \
    hashdir_status s_ = (call);                                                \
    if (s_ != HASHDIR_OK) {                                                    \
      fprintf(stderr, "%s failed (%d): %s\n", #call, (int)s_,                  \
              hashdir_last_error());                                           \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

static hashdir_key key_of(uint64_t n) {
  hashdir_key k;
  memset(&k, 0, sizeof k);
  memcpy(k.bytes, &n, sizeof n);
  return k;
}

static hashdir_value value_of(uint64_t n) {
  hashdir_value v;
  memset(&v, 0, sizeof v);
  memcpy(v.bytes + 8, &n, sizeof n);
  return v;
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "quickstart.h5";
  hashdir_options opts;
  hashdir_options_init(&opts); /* HASHDIR_CREATE is set */

  hashdir_writer *w = NULL;
  CHECK(hashdir_writer_open(path, &opts, &w));
  enum { N = 1000 };
  static hashdir_key keys[N];
  static hashdir_value values[N];
  for (uint64_t i = 0; i < N; i++) {
    keys[i] = key_of(i % 100); /* 100 keys, 10 values each */
    values[i] = value_of(i);
  }
  CHECK(hashdir_writer_insert(w, keys, values, N));
  CHECK(hashdir_writer_commit(w)); /* one atomic, durable batch */

  hashdir_reader *r = NULL;
  CHECK(hashdir_reader_open(path, &opts, &r));
  hashdir_key probe[2] = {key_of(7), key_of(12345)};
  hashdir_value first[2];
  uint8_t found[2];
  CHECK(hashdir_reader_lookup(r, probe, 2, first, found));
  printf("key 7: %s, key 12345: %s\n", found[0] ? "found" : "absent",
         found[1] ? "found" : "absent");

  /* get: all values; retry with a bigger buffer on HASHDIR_ERR_BUFFER_TOO_SMALL. */
  uint64_t counts[2];
  size_t total = 0, capacity = 4;
  hashdir_value *buf = malloc(capacity * sizeof *buf);
  hashdir_status s = hashdir_reader_get(r, probe, 2, buf, capacity, counts, &total);
  if (s == HASHDIR_ERR_BUFFER_TOO_SMALL) {
    capacity = total;
    buf = realloc(buf, capacity * sizeof *buf);
    s = hashdir_reader_get(r, probe, 2, buf, capacity, counts, &total);
  }
  CHECK(s);
  printf("key 7 has %llu values, key 12345 has %llu\n",
         (unsigned long long)counts[0], (unsigned long long)counts[1]);
  free(buf);

  hashdir_stats st;
  st.struct_size = sizeof st;
  CHECK(hashdir_writer_checkpoint(w));
  CHECK(hashdir_writer_stats(w, &st));
  printf("keys %llu values %llu buckets %llu epoch %llu\n",
         (unsigned long long)st.keys, (unsigned long long)st.values,
         (unsigned long long)st.buckets, (unsigned long long)st.epoch);

  CHECK(hashdir_reader_close(r));
  CHECK(hashdir_writer_close(w));
  return (found[0] && !found[1] && counts[0] == 10 && counts[1] == 0) ? 0 : 1;
}
