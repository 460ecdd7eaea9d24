/* Two processes on one file: the parent writes and commits batches; a child process opens a
 * reader and follows it (refreshing every millisecond) until it has seen the last batch.
 * Build: cc follow.c $(pkg-config --cflags --libs hashdir) -o follow
 * Run:   ./follow /tmp/follow.h5 */
#define _POSIX_C_SOURCE 200809L
#include <hashdir.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { BATCHES = 50, PER_BATCH = 1000 };

static void die(const char *what, hashdir_status s) {
  fprintf(stderr, "%s failed (%s): %s\n", what, hashdir_status_name(s), hashdir_last_error());
  exit(1);
}

static hashdir_key key_of(uint64_t n) {
  hashdir_key k;
  memset(&k, 0, sizeof k);
  memcpy(k.bytes, &n, sizeof n);
  return k;
}

/* The reader process: how many batches are visible = the value stored under key 0. */
static int follow(const char *path) {
  hashdir_options o;
  hashdir_options_init(&o);
  o.refresh_interval_ms = 1; /* lookups refresh by themselves every millisecond */
  hashdir_reader *r = NULL;
  hashdir_status s = hashdir_reader_open(path, &o, &r);
  if (s != HASHDIR_OK) die("reader_open", s);
  hashdir_key progress = key_of(0);
  uint64_t seen = 0, updates = 0;
  for (int spins = 0; seen < BATCHES && spins < 200000; spins++) {
    hashdir_value v;
    uint8_t found;
    s = hashdir_reader_lookup(r, &progress, 1, &v, &found);
    if (s != HASHDIR_OK) die("reader_lookup", s);
    uint64_t n = 0;
    if (found) memcpy(&n, v.bytes, sizeof n);
    if (n < seen) {
      fprintf(stderr, "reader went backwards: %llu after %llu\n", (unsigned long long)n,
              (unsigned long long)seen);
      return 1;
    }
    if (n > seen) {
      /* Everything batch n wrote must be visible with it: batches are atomic. */
      hashdir_key last = key_of(n * PER_BATCH);
      hashdir_value lv;
      uint8_t lf;
      s = hashdir_reader_lookup(r, &last, 1, &lv, &lf);
      if (s != HASHDIR_OK) die("reader_lookup", s);
      if (!lf) {
        fprintf(stderr, "batch %llu visible only in part\n", (unsigned long long)n);
        return 1;
      }
      seen = n;
      updates++;
    }
    struct timespec nap = {0, 200 * 1000};
    nanosleep(&nap, NULL);
  }
  printf("reader: followed the writer to batch %llu in %llu steps\n", (unsigned long long)seen,
         (unsigned long long)updates);
  fflush(stdout); /* the child leaves with _exit, which flushes nothing */
  hashdir_reader_close(r);
  return seen == BATCHES ? 0 : 1;
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "follow.h5";
  hashdir_options o;
  hashdir_options_init(&o);
  hashdir_writer *w = NULL;
  hashdir_status s = hashdir_writer_open(path, &o, &w);
  if (s != HASHDIR_OK) die("writer_open", s);

  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    return 1;
  }
  if (pid == 0) {
    /* The child shares the writer's lock until it execs; a real program would exec a reader
     * binary here. Using only reader calls in the child is fine. */
    _exit(follow(path));
  }

  static hashdir_key keys[PER_BATCH];
  static hashdir_value values[PER_BATCH];
  for (uint64_t b = 1; b <= BATCHES; b++) {
    for (uint64_t i = 0; i < PER_BATCH; i++) {
      keys[i] = key_of((b - 1) * PER_BATCH + i + 1); /* keys 1..b*PER_BATCH */
      memset(&values[i], 0, sizeof values[i]);
      memcpy(values[i].bytes, &b, sizeof b);
    }
    hashdir_key progress = key_of(0);
    hashdir_value pv;
    memset(&pv, 0, sizeof pv);
    memcpy(pv.bytes, &b, sizeof b);
    if ((s = hashdir_writer_insert(w, keys, values, PER_BATCH)) != HASHDIR_OK) die("insert", s);
    if ((s = hashdir_writer_delete_keys(w, &progress, 1)) != HASHDIR_OK) die("delete_keys", s);
    if ((s = hashdir_writer_insert(w, &progress, &pv, 1)) != HASHDIR_OK) die("insert", s);
    if ((s = hashdir_writer_commit(w)) != HASHDIR_OK) die("commit", s); /* one atomic batch */
    struct timespec pause = {0, 2 * 1000 * 1000};
    nanosleep(&pause, NULL);
  }
  printf("writer: committed %d batches\n", BATCHES);
  int status = 0;
  waitpid(pid, &status, 0);
  if ((s = hashdir_writer_close(w)) != HASHDIR_OK) die("writer_close", s);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
