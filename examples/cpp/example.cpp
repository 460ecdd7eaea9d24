// hashdir from C++20 through hashdir.hpp: write a batch, read it back, delete, refresh.
// Build (hashdir installed by scripts/install.sh, which installs hashdir.hpp with hashdir.h):
//        c++ -std=c++20 examples/cpp/example.cpp -o example
//            $(pkg-config --cflags --libs hashdir)
// Run:   ./example /tmp/example.h5
// Prints one line per step; exits non-zero (with the reason on stderr) if a check fails.
#include <hashdir.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

namespace {

using hashdir::Key;
using hashdir::Value;

Key key(std::uint64_t n) { return hashdir::from_u64<Key>(n); }
Value value(std::uint64_t n) { return hashdir::from_u64<Value>(n); }

void expect(bool ok, const char *what) {
  if (!ok) {
    std::fprintf(stderr, "check failed: %s\n", what);
    std::exit(1);
  }
}

std::set<std::uint64_t> numbers(std::span<const Value> values) {
  std::set<std::uint64_t> out;
  for (const Value &v : values) out.insert(hashdir::to_u64(v));
  return out;
}

}  // namespace

int main(int argc, char **argv) try {
  const std::filesystem::path path = argc > 1 ? argv[1] : "example.h5";
  std::filesystem::remove(path);

  hashdir::Writer w(path);  // creates the file

  // Key 1 gets three values (and the pair (1, 10) twice: a set keeps it once), key 2 one,
  // key 3 two: pairs (key, value).
  const std::vector<Key> keys = {key(1), key(1), key(1), key(1), key(2), key(3), key(3)};
  const std::vector<Value> values = {value(10), value(11), value(12), value(10),
                                     value(20), value(30), value(31)};
  w.insert(keys, values);
  // Key 4 gets a hundred values: one key and its values, the key given once.
  std::vector<Value> four;
  for (std::uint64_t i = 0; i < 100; i++) four.push_back(value(1000 + i));
  w.insert_values(key(4), four);
  w.commit();
  std::printf("inserted %zu pairs (106 distinct) and committed\n", keys.size() + four.size());

  hashdir::Reader r(path);
  const std::vector<Key> probe = {key(1), key(2), key(3), key(99)};
  auto first = r.lookup(probe);
  expect(first[0] && first[1] && first[2] && !first[3], "lookup found 1, 2, 3, not 99");
  expect(*first[1] == value(20), "key 2's only value is 20");
  const std::uint64_t any_of_1 = hashdir::to_u64(*first[0]);
  expect(any_of_1 >= 10 && any_of_1 <= 12, "key 1's first value is one of its values");
  std::printf("lookup: 1 found, 2 found, 3 found, 99 absent\n");

  // get with a buffer of 4 values: the library answers HASHDIR_ERR_BUFFER_TOO_SMALL with
  // the total it needs, and the wrapper calls again with a buffer that size.
  const std::vector<Key> wanted = {key(1), key(99), key(3), key(4)};
  std::vector<Value> buffer(4);
  auto counts = r.get(wanted, buffer);
  expect(counts == std::vector<std::uint64_t>{3, 0, 2, 100}, "get counts 3 0 2 100");
  expect(buffer.size() == 105, "the buffer grew to the 105 values");
  std::span<const Value> all(buffer);
  expect(numbers(all.subspan(0, 3)) == std::set<std::uint64_t>{10, 11, 12}, "key 1 values");
  expect(numbers(all.subspan(3, 2)) == std::set<std::uint64_t>{30, 31}, "key 3 values");
  auto four_got = numbers(all.subspan(5, 100));
  expect(four_got.size() == 100 && *four_got.begin() == 1000 && *four_got.rbegin() == 1099,
         "key 4 values (insert_values)");
  std::printf("get: counts 3 0 2 100 (105 values, first buffer held 4)\n");

  // One writer per file: a second one, here or in another process, is refused.
  try {
    hashdir::Writer second(path);
    expect(false, "a second writer is refused");
  } catch (const hashdir::Error &e) {
    expect(e.status() == HASHDIR_ERR_LOCKED, "second writer: HASHDIR_ERR_LOCKED");
    expect(std::string(e.what()).find("is locked: another writer has it open") !=
               std::string::npos,
           "the message says why");
    std::printf("second writer refused: %s\n  %s\n", e.status_name(), e.what());
  }

  // Delete key 2, and pairs (1, 11), (3, 30), (3, 31) and (5, 50), which is not there.
  w.delete_keys(std::vector<Key>{key(2)});
  w.delete_pairs(std::vector<Key>{key(1), key(3), key(3), key(5)},
                 std::vector<Value>{value(11), value(30), value(31), value(50)});
  w.commit();
  expect(r.contains(key(2)), "the reader's view is unchanged until refresh");
  std::printf("before refresh: key 2 still found\n");

  r.refresh();
  first = r.lookup(probe);
  expect(first[0] && !first[1] && !first[2], "after refresh: 1 found, 2 and 3 absent");
  auto sets = r.get(std::vector<Key>{key(1)});
  expect(numbers(sets.values_of(0)) == std::set<std::uint64_t>{10, 12}, "key 1 is {10, 12}");
  std::printf("after refresh: 1 found, 2 absent, 3 absent; key 1 values {10, 12}\n");

  w.checkpoint();  // stats count as of the last checkpoint
  auto st = w.stats();
  expect(st.keys == 2 && st.values == 102, "2 keys (1 and 4), 102 values");
  std::printf("stats: keys %llu values %llu\n", static_cast<unsigned long long>(st.keys),
              static_cast<unsigned long long>(st.values));

  try {
    hashdir::Reader missing(path.string() + ".missing");
    expect(false, "opening a missing file fails");
  } catch (const hashdir::Error &e) {
    expect(e.status() == HASHDIR_ERR_NOT_FOUND, "missing file: HASHDIR_ERR_NOT_FOUND");
    expect(std::string(e.what()).find("does not exist") != std::string::npos,
           "the message says why");
    std::printf("missing file: %s\n  %s\n", e.status_name(), e.what());
  }

  r.close();
  w.close();  // commits, checkpoints, releases the lock; throws if that failed
  std::printf("all checks passed\n");
  return 0;
} catch (const hashdir::Error &e) {
  std::fprintf(stderr, "hashdir error %s: %s\n", e.status_name(), e.what());
  return 1;
}
