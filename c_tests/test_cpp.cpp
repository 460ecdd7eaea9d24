// The header from C++: it must compile as C++17, give C linkage (a link error otherwise,
// from mangled names) and the same layout as C. Usage: test_cpp
#include <cstddef>
#include <cstdio>
#include <cstring>

#include "hashdir.h"

static_assert(sizeof(hashdir_key) == 16 && sizeof(hashdir_value) == 16, "16-byte keys/values");
static_assert(sizeof(hashdir_options) == 40, "options layout");
static_assert(offsetof(hashdir_options, checkpoint_bytes) == 8, "v1 options layout");
static_assert(offsetof(hashdir_options, refresh_interval_ms) == 16, "v1 options layout");
static_assert(offsetof(hashdir_options, capacity) == 24, "capacity appended after the v1 fields");
static_assert(offsetof(hashdir_options, shards) == 32, "shards appended after capacity");
static_assert(offsetof(hashdir_stats, keys) == 8, "v1 stats layout");
static_assert(offsetof(hashdir_stats, wal_bytes) == 48, "v1 stats layout");
static_assert(HASHDIR_OK == 0 && HASHDIR_ERR_PANIC == 8, "status values");
static_assert((HASHDIR_CREATE & HASHDIR_SYNC_COMMIT) == 0, "distinct flags");

int main() {
  hashdir_options o;
  hashdir_options_init(&o);
  hashdir_writer *w = nullptr;
  hashdir_status st = hashdir_writer_open(nullptr, &o, &w);
  bool ok = st == HASHDIR_ERR_INVALID_ARGUMENT && w == nullptr &&
            std::strstr(hashdir_last_error(), "path is NULL") != nullptr &&
            hashdir_writer_close(nullptr) == HASHDIR_OK && hashdir_version()[0] != '\0';
  std::printf("%sok 1 - C++ calls through hashdir.h (version %s)\n", ok ? "" : "not ",
              hashdir_version());
  return ok ? 0 : 1;
}
