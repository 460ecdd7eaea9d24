/* The memory floor of a hot get on this machine: what a loop of dependent random accesses to a
 * large mapped file costs, without hashdir. Each step makes `hops - 1` dependent random 8-byte
 * loads, then copies `len` bytes from a random place (the address of each access depends on the
 * value the one before read, so steps do not overlap); three passes over the same places, the
 * first mapping the pages in.
 *
 *   cc -O2 -o floor benches/floor.c
 *   fallocate -l 16G /work/bench/floor.bin
 *   ./floor /work/bench/floor.bin 0 17179869184 100000 1600 3   # bucket page, then extent
 *
 * A hashdir get of a set in an extent is the 3-hop pattern (directory leaf in memory, bucket
 * page, extent); docs/PERFORMANCE.md "Where the time goes" quotes the figures. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: floor FILE OFFSET SPAN STEPS COPY_BYTES HOPS\n");
    return 2;
  }
  int fd = open(argv[1], O_RDONLY);
  uint64_t lo = strtoull(argv[2], 0, 0), span = strtoull(argv[3], 0, 0);
  int n = atoi(argv[4]), len = atoi(argv[5]), hops = atoi(argv[6]);
  if (fd < 0 || len <= 0 || len > 65536 || hops < 1 || span < 16384) {
    fprintf(stderr, "floor: bad arguments\n");
    return 2;
  }
  uint8_t *m = mmap(0, lo + span, PROT_READ, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  uint64_t *off = malloc(sizeof *off * (size_t)n * hops), x = 88172645463325252ull;
  for (long i = 0; i < (long)n * hops; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    off[i] = lo + (x % (span - 8192)) / 16 * 16;
  }
  static uint8_t buf[65536];
  uint64_t sink = 0;
  for (int pass = 0; pass < 3; pass++) {
    double t = now();
    uint64_t dep = 0;
    for (int i = 0; i < n; i++) {
      const uint64_t *o = off + (size_t)i * hops;
      for (int h = 0; h < hops - 1; h++) /* never true: makes the address depend on `dep` */
        dep = *(volatile uint64_t *)(m + ((o[h] + (dep == 0x123456789ull ? 16 : 0)) & ~7ull));
      memcpy(buf, m + o[hops - 1] + (dep == 0x123456789ull ? 16 : 0), len);
      dep = buf[0];
      sink += buf[len - 1];
    }
    printf("pass %d: %.3f us a step (%d dependent loads + %d bytes copied)\n", pass,
           (now() - t) / n * 1e6, hops - 1, len);
  }
  return (int)(sink & 0);
}
