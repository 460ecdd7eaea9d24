/* The device's own rate for random 4 KiB reads at a given batch size, without hashdir: what a
 * cold batched lookup can reach at best. Drops FILE from the page cache, then reads `reads`
 * random 4 KiB pages of it, `batch` at a time: each batch's pages are first advised with
 * posix_fadvise(WILLNEED) (so the device gets them together, as a cold hashdir batch does with
 * madvise), then read with pread. Prints one JSON line per batch size.
 *
 *   cc -O2 -o device benches/device.c
 *   head -c 4000000000 /dev/urandom > /work/bench/device.bin
 *   ./device /work/bench/device.bin 20000 1 32 128 1024
 *
 * docs/PERFORMANCE.md "Batched lookups" quotes the figures beside the cold rows. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static uint64_t next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: device FILE READS BATCH...\n");
    return 2;
  }
  int fd = open(argv[1], O_RDONLY);
  if (fd < 0) {
    perror(argv[1]);
    return 1;
  }
  off_t len = lseek(fd, 0, SEEK_END);
  uint64_t pages = (uint64_t)len / 4096;
  long reads = atol(argv[2]);
  if (pages == 0 || reads <= 0) {
    fprintf(stderr, "device: need a file of at least one page and READS > 0\n");
    return 2;
  }
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  static char buf[4096];
  for (int a = 3; a < argc; a++) {
    long batch = atol(argv[a]);
    if (batch <= 0) {
      fprintf(stderr, "device: bad batch size %s\n", argv[a]);
      return 2;
    }
    uint64_t *at = malloc(sizeof(uint64_t) * (size_t)batch);
    if (at == NULL) return 1;
    if (posix_fadvise(fd, 0, len, POSIX_FADV_DONTNEED) != 0) {
      fprintf(stderr, "device: fadvise failed\n");
      return 1;
    }
    double t = now();
    for (long done = 0; done < reads; done += batch) {
      long n = reads - done < batch ? reads - done : batch;
      for (long j = 0; j < n; j++) {
        at[j] = next(&seed) % pages * 4096;
        posix_fadvise(fd, (off_t)at[j], 4096, POSIX_FADV_WILLNEED);
      }
      for (long j = 0; j < n; j++) {
        if (pread(fd, buf, sizeof buf, (off_t)at[j]) != (ssize_t)sizeof buf) {
          perror("pread");
          return 1;
        }
      }
    }
    double s = now() - t;
    printf("{\"metric\":\"device_random_reads_per_s\",\"value\":%.0f,\"batch\":%ld,"
           "\"us_per_read\":%.2f,\"reads\":%ld}\n",
           reads / s, batch, s / reads * 1e6, reads);
    free(at);
  }
  close(fd);
  return 0;
}
