/* Opens the engine must refuse: a missing file without HASHDIR_CREATE, a file that is
 * not HDF5. Also shows options of other struct versions reach the engine intact.
 * Usage: test_open_errors <scratch dir> */
#include <stdint.h>
#include <sys/stat.h>

#include "tap.h"

static const char NOT_HDF5[] = "just some text, certainly not an HDF5 superblock\n";

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  fputs(text, f);
  fclose(f);
}

static int file_is(const char *path, const char *text) {
  char buf[256] = {0};
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  return n == strlen(text) && memcmp(buf, text, n) == 0;
}

static void check_missing(const char *missing) {
  hashdir_options o;
  hashdir_options_init(&o);
  o.flags = 0; /* no HASHDIR_CREATE */
  hashdir_writer *w = (hashdir_writer *)&o;
  tap_fails(hashdir_writer_open(missing, &o, &w), HASHDIR_ERR_NOT_FOUND, "hashdir_writer_open",
            NULL, "writer_open(missing, no CREATE)");
  tap_check(w == NULL, "failed writer_open sets *out = NULL");
  tap_check(!exists(missing), "failed writer_open created no file");

  hashdir_reader *r = (hashdir_reader *)&o;
  tap_fails(hashdir_reader_open(missing, NULL, &r), HASHDIR_ERR_NOT_FOUND, "hashdir_reader_open",
            NULL, "reader_open(missing)");
  tap_check(r == NULL, "failed reader_open sets *out = NULL");

  /* An older header's struct that ends after `flags`: read, so CREATE stays unset. */
  o.struct_size = 8;
  tap_fails(hashdir_writer_open(missing, &o, &w), HASHDIR_ERR_NOT_FOUND, "hashdir_writer_open",
            NULL, "writer_open(struct_size 8, flags 0) reads flags");

  /* A newer header's struct with its unknown tail zeroed is accepted. */
  struct {
    hashdir_options v1;
    uint64_t newer_field;
  } newer;
  memset(&newer, 0, sizeof newer);
  newer.v1.struct_size = sizeof newer;
  tap_fails(hashdir_writer_open(missing, &newer.v1, &w), HASHDIR_ERR_NOT_FOUND,
            "hashdir_writer_open", NULL, "writer_open(newer struct, zero tail) is accepted");
  tap_check(!exists(missing), "still no file");
}

static void check_not_hdf5(const char *path) {
  write_file(path, NOT_HDF5);
  hashdir_writer *w = NULL;
  tap_fails(hashdir_writer_open(path, NULL, &w), HASHDIR_ERR_NOT_HASHDIR, "hashdir_writer_open",
            NULL, "writer_open(text file, CREATE)");
  tap_check(w == NULL, "failed writer_open sets *out = NULL");
  hashdir_reader *r = NULL;
  tap_fails(hashdir_reader_open(path, NULL, &r), HASHDIR_ERR_NOT_HASHDIR, "hashdir_reader_open",
            NULL, "reader_open(text file)");
  tap_check(r == NULL, "failed reader_open sets *out = NULL");
  tap_check(file_is(path, NOT_HDF5), "the text file's bytes are unchanged");
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s <scratch dir>\n", argv[0]);
    return 2;
  }
  char missing[4096], text[4096];
  check_missing(tap_path(missing, sizeof missing, argv[1], "missing.h5"));
  check_not_hdf5(tap_path(text, sizeof text, argv[1], "text.h5"));
  return tap_done();
}
