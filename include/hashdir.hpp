// hashdir.hpp: a small header-only C++20 wrapper over the C API in <hashdir.h>.
//
//   hashdir::Writer w("data.h5");                 // RAII: the destructor closes
//   w.insert(keys, values);                       // std::span batches
//   w.insert_values(key, values);                 // one key, many values
//   w.commit();
//   hashdir::Reader r("data.h5");
//   auto sets = r.get(keys);                      // sets.values_of(i): span of key i's values
//
// Every failing call throws hashdir::Error, which carries the status code
// (HASHDIR_ERR_LOCKED, ...) and the library's message (hashdir_last_error()).
//
// Threads: a Reader may be used by many threads at once; a Writer's calls are serialised
// by the library. Handles are movable, not copyable.
//
// Installed with hashdir.h by scripts/install.sh (PREFIX/include/hashdir.hpp).
// Build: c++ -std=c++20 prog.cpp $(pkg-config --cflags --libs hashdir)
//   or, with CMake: find_package(hashdir CONFIG REQUIRED), link hashdir::hashdir.
//
// SPDX-License-Identifier: MIT OR Apache-2.0
#ifndef HASHDIR_HPP
#define HASHDIR_HPP

#include <hashdir.h>

#include <algorithm>
#include <array>
#include <compare>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

/// Keys and values compare bytewise, so they work in std::set, std::map and ==.
inline bool operator==(const hashdir_key &a, const hashdir_key &b) noexcept {
  return std::memcmp(a.bytes, b.bytes, 16) == 0;
}
inline std::strong_ordering operator<=>(const hashdir_key &a, const hashdir_key &b) noexcept {
  return std::memcmp(a.bytes, b.bytes, 16) <=> 0;
}
inline bool operator==(const hashdir_value &a, const hashdir_value &b) noexcept {
  return std::memcmp(a.bytes, b.bytes, 16) == 0;
}
inline std::strong_ordering operator<=>(const hashdir_value &a,
                                        const hashdir_value &b) noexcept {
  return std::memcmp(a.bytes, b.bytes, 16) <=> 0;
}

namespace hashdir {

using Key = hashdir_key;
using Value = hashdir_value;
using Status = hashdir_status;

/// A key or value from 16 bytes.
template <class T>
constexpr T from_bytes(const std::array<std::uint8_t, 16> &bytes) {
  T t{};
  std::copy(bytes.begin(), bytes.end(), t.bytes);
  return t;
}

/// A key or value holding `n` little-endian in its first 8 bytes, zeros after: a
/// convenient way to make test data; real keys are usually hashes or UUIDs.
template <class T>
constexpr T from_u64(std::uint64_t n) {
  T t{};
  for (int i = 0; i < 8; i++) t.bytes[i] = static_cast<std::uint8_t>(n >> (8 * i));
  return t;
}

/// The inverse of from_u64 (the first 8 bytes, little-endian).
template <class T>
constexpr std::uint64_t to_u64(const T &t) {
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | t.bytes[i];
  return n;
}

/// The failure of a hashdir call: status() is the C status, what() the library's message
/// ("hashdir_writer_open: data.h5 is locked: another writer has it open").
class Error : public std::runtime_error {
 public:
  Error(Status status, const std::string &message)
      : std::runtime_error(message), status_(status) {}
  Status status() const noexcept { return status_; }
  /// "HASHDIR_ERR_LOCKED", ...
  const char *status_name() const noexcept {
    return hashdir_status_name(static_cast<std::uint32_t>(status_));
  }

 private:
  Status status_;
};

namespace detail {
/// Throws Error for a failed status, with this thread's last-error message.
inline void check(Status s) {
  if (s != HASHDIR_OK) throw Error(s, hashdir_last_error());
}
}  // namespace detail

/// The library version, e.g. "0.1.0".
inline std::string version() { return hashdir_version(); }

/// Options for opening; the defaults are hashdir_options_init's (create the file).
class Options {
 public:
  Options() noexcept { hashdir_options_init(&o_); }
  /// Writer: create the file if it is missing (on by default).
  Options &create(bool on) noexcept { return flag(HASHDIR_CREATE, on); }
  /// Writer: fsync at every commit (every acknowledged batch survives a power cut; one
  /// fdatasync per commit).
  Options &sync_commit(bool on) noexcept { return flag(HASHDIR_SYNC_COMMIT, on); }
  /// Writer: WAL bytes after which the log becomes a delta table; 0 = library default.
  Options &checkpoint_bytes(std::uint64_t n) noexcept {
    o_.checkpoint_bytes = n;
    return *this;
  }
  /// Writer creating a file: bytes of its data area, fixed for its life; 0 = 4 TiB.
  Options &capacity(std::uint64_t n) noexcept {
    o_.capacity = n;
    return *this;
  }
  /// Reader: refresh automatically every `ms` milliseconds; 0 = only on refresh().
  Options &refresh_interval_ms(std::uint32_t ms) noexcept {
    o_.refresh_interval_ms = ms;
    return *this;
  }
  const hashdir_options *get() const noexcept { return &o_; }

 private:
  Options &flag(std::uint32_t f, bool on) noexcept {
    o_.flags = on ? (o_.flags | f) : (o_.flags & ~f);
    return *this;
  }
  hashdir_options o_{};
};

using Stats = hashdir_stats;

/// The result of Reader::get: counts[i] values for key i, stored one key after the other.
struct ValueSets {
  std::vector<std::uint64_t> counts;
  std::vector<Value> values;  // exactly sum(counts) values
  std::vector<std::size_t> offsets;  // offsets[i]: index in `values` of key i's first value

  std::size_t size() const noexcept { return counts.size(); }
  /// The values of key i, in no particular order.
  std::span<const Value> values_of(std::size_t i) const {
    return std::span<const Value>(values).subspan(offsets.at(i), counts.at(i));
  }
};

/// The one writer of a file. Closing (destructor or close()) commits and makes everything
/// committed durable.
class Writer {
 public:
  explicit Writer(const std::filesystem::path &path, const Options &opts = Options()) {
    detail::check(hashdir_writer_open(path.c_str(), opts.get(), &w_));
  }
  Writer(const Writer &) = delete;
  Writer &operator=(const Writer &) = delete;
  Writer(Writer &&o) noexcept : w_(std::exchange(o.w_, nullptr)) {}
  Writer &operator=(Writer &&o) noexcept {
    if (this != &o) {
      hashdir_writer_close(w_);  // errors are lost here; call close() to see them
      w_ = std::exchange(o.w_, nullptr);
    }
    return *this;
  }
  /// Closes without throwing; a failure is lost. Call close() first to see it.
  ~Writer() { hashdir_writer_close(w_); }

  /// Adds the pairs (keys[i], values[i]); a pair already there changes nothing.
  void insert(std::span<const Key> keys, std::span<const Value> values) {
    same_length(keys.size(), values.size());
    detail::check(hashdir_writer_insert(handle(), keys.data(), values.data(), keys.size()));
  }
  /// Adds the pairs (key, values[i]): insert for one key and many values, without
  /// repeating the key. A pair already there (or given twice) changes nothing.
  void insert_values(const Key &key, std::span<const Value> values) {
    detail::check(hashdir_writer_insert_values(handle(), &key, values.data(), values.size()));
  }
  /// Removes the keys with all their values; absent keys are ignored.
  void delete_keys(std::span<const Key> keys) {
    detail::check(hashdir_writer_delete_keys(handle(), keys.data(), keys.size()));
  }
  /// Removes the pairs (keys[i], values[i]); absent pairs are ignored.
  void delete_pairs(std::span<const Key> keys, std::span<const Value> values) {
    same_length(keys.size(), values.size());
    detail::check(
        hashdir_writer_delete_pairs(handle(), keys.data(), values.data(), keys.size()));
  }
  /// Makes everything since the last commit one atomic, crash-safe batch, visible to
  /// readers at their next refresh.
  void commit() { detail::check(hashdir_writer_commit(handle())); }
  /// Merges everything committed into the base table, so stats() counts are current (its
  /// cost follows the whole table).
  void checkpoint() { detail::check(hashdir_writer_checkpoint(handle())); }
  /// Makes every committed batch durable against a power cut now (one fdatasync).
  void sync() { detail::check(hashdir_writer_sync(handle())); }
  Stats stats() {
    Stats s{};
    s.struct_size = sizeof s;
    detail::check(hashdir_writer_stats(handle(), &s));
    return s;
  }
  /// Commits, makes everything committed durable and releases the file; throws if that
  /// failed. The handle is gone either way.
  void close() { detail::check(hashdir_writer_close(std::exchange(w_, nullptr))); }
  bool is_open() const noexcept { return w_ != nullptr; }
  hashdir_writer *handle() const {
    if (!w_) throw Error(HASHDIR_ERR_INVALID_ARGUMENT, "hashdir::Writer is closed");
    return w_;
  }

 private:
  static void same_length(std::size_t k, std::size_t v) {
    if (k != v)
      throw Error(HASHDIR_ERR_INVALID_ARGUMENT,
                  "hashdir: " + std::to_string(k) + " keys but " + std::to_string(v) +
                      " values");
  }
  hashdir_writer *w_ = nullptr;
};

/// A reader: sees the last commit as of its open or refresh(). Safe to share between
/// threads.
class Reader {
 public:
  explicit Reader(const std::filesystem::path &path, const Options &opts = Options()) {
    detail::check(hashdir_reader_open(path.c_str(), opts.get(), &r_));
  }
  Reader(const Reader &) = delete;
  Reader &operator=(const Reader &) = delete;
  Reader(Reader &&o) noexcept : r_(std::exchange(o.r_, nullptr)) {}
  Reader &operator=(Reader &&o) noexcept {
    if (this != &o) {
      hashdir_reader_close(r_);
      r_ = std::exchange(o.r_, nullptr);
    }
    return *this;
  }
  ~Reader() { hashdir_reader_close(r_); }

  /// Moves the view to the writer's last commit.
  void refresh() { detail::check(hashdir_reader_refresh(handle())); }

  /// For each key: one of its values, or nullopt if it has none.
  std::vector<std::optional<Value>> lookup(std::span<const Key> keys) const {
    std::vector<Value> first(keys.size());
    std::vector<std::uint8_t> found(keys.size());
    detail::check(
        hashdir_reader_lookup(handle(), keys.data(), keys.size(), first.data(), found.data()));
    std::vector<std::optional<Value>> out(keys.size());
    for (std::size_t i = 0; i < keys.size(); i++)
      if (found[i]) out[i] = first[i];
    return out;
  }

  /// Whether the key has at least one value.
  bool contains(const Key &key) const { return lookup(std::span(&key, 1))[0].has_value(); }

  /// All values of each key. `buffer` is the value buffer to use (and keep, to reuse its
  /// memory next time): when it is too small the library says so
  /// (HASHDIR_ERR_BUFFER_TOO_SMALL, with the total it needs) and the call is repeated with
  /// a buffer of that size. Returns the counts; buffer[0, sum(counts)) holds the values.
  std::vector<std::uint64_t> get(std::span<const Key> keys, std::vector<Value> &buffer) const {
    std::vector<std::uint64_t> counts(keys.size());
    for (;;) {
      std::size_t total = 0;
      Status s = hashdir_reader_get(handle(), keys.data(), keys.size(), buffer.data(),
                                    buffer.size(), counts.data(), &total);
      if (s == HASHDIR_ERR_BUFFER_TOO_SMALL) {
        // With refresh_interval_ms the view may move between calls: loop until it fits.
        buffer.resize(total);
        continue;
      }
      detail::check(s);
      return counts;
    }
  }

  /// All values of each key, in a new ValueSets.
  ValueSets get(std::span<const Key> keys) const {
    ValueSets out;
    out.values.resize(std::max<std::size_t>(keys.size(), 16));
    out.counts = get(keys, out.values);
    std::size_t at = 0;
    for (std::uint64_t c : out.counts) {
      out.offsets.push_back(at);
      at += static_cast<std::size_t>(c);
    }
    out.values.resize(at);
    return out;
  }

  /// Counters of the current view.
  Stats stats() const {
    Stats s{};
    s.struct_size = sizeof s;
    detail::check(hashdir_reader_stats(handle(), &s));
    return s;
  }

  void close() { detail::check(hashdir_reader_close(std::exchange(r_, nullptr))); }
  bool is_open() const noexcept { return r_ != nullptr; }
  hashdir_reader *handle() const {
    if (!r_) throw Error(HASHDIR_ERR_INVALID_ARGUMENT, "hashdir::Reader is closed");
    return r_;
  }

 private:
  hashdir_reader *r_ = nullptr;
};

}  // namespace hashdir

#endif  // HASHDIR_HPP
