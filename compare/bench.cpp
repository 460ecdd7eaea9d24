// Side-by-side benchmark: hashdir against LMDB, RocksDB and tkrzw HashDBM on one workload,
// measured in one run, one engine after the other. Built and run by compare/run.sh; see
// compare/README.md for what is measured and how each engine is configured.
//
//   bench [--keys N] [--values-per-key V] [--rounds | --zipf S] [--batch B] [--lookups L]
//         [--seed S] [--engines hashdir,lmdb,lmdb-nosync,rocksdb,tkrzw] [--dir DIR] [--keep]
//         [--rocksdb-bloom-bits BITS] [--warm-gib G] [--lookup-batch K]
//
// N, B and L accept the suffixes k and M (e.g. --keys 10M). N is the number of distinct keys;
// each has V values (on average under --zipf), so a run holds N * V pairs (the convention of
// benches/hashdir.rs, whose --rounds and --zipf shapes these mirror).
//
// SPDX-License-Identifier: MIT OR Apache-2.0

#include <hashdir.h>
#include <lmdb.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/merge_operator.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/version.h>
#include <rocksdb/write_batch.h>
#include <tkrzw_dbm_hash.h>
#include <tkrzw_lib_common.h>

#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// ---------------------------------------------------------------------------------------------
// Errors and clean-up

std::string g_run_dir;  // removed on exit unless --keep
bool g_keep = false;

[[noreturn]] void die(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fputs("bench: error: ", stderr);
  std::vfprintf(stderr, fmt, ap);
  std::fputc('\n', stderr);
  va_end(ap);
  if (!g_run_dir.empty()) {
    if (g_keep) {
      std::fprintf(stderr, "bench: stores kept in %s\n", g_run_dir.c_str());
    } else {
      std::error_code ec;
      fs::remove_all(g_run_dir, ec);
    }
  }
  std::exit(1);
}

// ---------------------------------------------------------------------------------------------
// Workload: keys and values from splitmix64, addressable by index so nothing is kept in memory.
// splitmix64's n-th output is mix(seed + n * GAMMA); key i is outputs 2i+1 and 2i+2 of the key
// stream, value j of key i outputs 2(iV+j)+1 and 2(iV+j)+2 of the value stream.
//
// Shapes (the order in which pairs arrive): by key, each key with all its values, keys in
// order; rounds, V rounds each giving every key its next value; Zipf, each pair's key drawn
// from a Zipf law over the N keys (see PairStream).

enum class Shape { ByKey, Rounds, Zipf };

constexpr uint64_t GAMMA = 0x9e3779b97f4a7c15ULL;

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

struct SplitMix64 {
  uint64_t state;
  uint64_t next() { return mix64(state += GAMMA); }
  // Uniform in [0, n) (Lemire's multiply-shift; the bias is < n / 2^64).
  uint64_t below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
  }
};

struct Workload {
  uint64_t keys = 0;  // distinct keys
  uint64_t vpk = 1;   // values per key
  uint64_t key_seed = 0, value_seed = 0, lookup_seed = 0, zipf_seed = 0;

  // The first 8 bytes of key i.
  uint64_t key_head(uint64_t i) const { return mix64(key_seed + (2 * i + 1) * GAMMA); }
  void key(uint64_t i, uint8_t out[16]) const {
    uint64_t a = key_head(i);
    uint64_t b = mix64(key_seed + (2 * i + 2) * GAMMA);
    std::memcpy(out, &a, 8);
    std::memcpy(out + 8, &b, 8);
  }
  void value(uint64_t i, uint64_t j, uint8_t out[16]) const {
    uint64_t n = i * vpk + j;
    uint64_t a = mix64(value_seed + (2 * n + 1) * GAMMA);
    uint64_t b = mix64(value_seed + (2 * n + 2) * GAMMA);
    std::memcpy(out, &a, 8);
    std::memcpy(out + 8, &b, 8);
  }
  // The value of pair p under Zipf, whose key is i: the first half is output 2p+1 of the value
  // stream (distinct for every p: mix64 is a bijection), the second that XOR key i's first 8
  // bytes, so a lookup can tell that a value belongs to its key without keeping the values.
  void zipf_value(uint64_t p, uint64_t i, uint8_t out[16]) const {
    uint64_t a = mix64(value_seed + (2 * p + 1) * GAMMA);
    uint64_t b = a ^ key_head(i);
    std::memcpy(out, &a, 8);
    std::memcpy(out + 8, &b, 8);
  }
  bool is_zipf_value_of(const uint8_t v[16], uint64_t i) const {
    uint64_t a, b;
    std::memcpy(&a, v, 8);
    std::memcpy(&b, v + 8, 8);
    return (a ^ b) == key_head(i);
  }
};

// Rejection-inversion sampling of a Zipf law over ranks 1..n (Hörmann and Derflinger,
// "Rejection-inversion to generate variates from monotone discrete distributions", 1996, as in
// Apache Commons RNG): O(1) per draw for any n. The same sampler as benches/hashdir.rs.
class Zipf {
 public:
  Zipf(uint64_t n, double e) : n_(static_cast<double>(n)), e_(e) {
    h_x1_ = h_integral(1.5) - 1.0;
    h_n_ = h_integral(n_ + 0.5);
    s_ = 2.0 - h_integral_inv(h_integral(2.5) - h(2.0));
  }
  // A rank in 1..n; `u` returns uniform doubles in [0, 1).
  template <class U>
  uint64_t sample(U&& u) const {
    for (;;) {
      double v = h_n_ + u() * (h_x1_ - h_n_);
      double x = h_integral_inv(v);
      double k = std::clamp(std::floor(x + 0.5), 1.0, n_);
      if (k - x <= s_ || v >= h_integral(k + 0.5) - h(k)) return static_cast<uint64_t>(k);
    }
  }

 private:
  double h(double x) const { return std::exp(-e_ * std::log(x)); }
  double h_integral(double x) const {
    double l = std::log(x);
    return helper2((1.0 - e_) * l) * l;
  }
  double h_integral_inv(double x) const {
    double t = std::max(x * (1.0 - e_), -1.0);
    return std::exp(helper1(t) * x);
  }
  static double helper1(double x) {
    return std::fabs(x) > 1e-8 ? std::log1p(x) / x : 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x));
  }
  static double helper2(double x) {
    return std::fabs(x) > 1e-8 ? std::expm1(x) / x
                               : 1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x));
  }
  double n_, e_, h_x1_ = 0, h_n_ = 0, s_ = 0;
};

// The pairs of the rounds and Zipf shapes in the order they arrive. Rounds: pair p is value
// p / N of key p % N. Zipf: pair p's key is rank - 1 for a rank drawn from the law (keys are
// random, so the big sets land anywhere in key space; the uniform draws come from xorshift64,
// as in benches/hashdir.rs, started from the seed), its value zipf_value(p, key); the stream
// counts the values it gave every key (N uint32).
class PairStream {
 public:
  PairStream(const Workload& w, Shape shape, double exponent, uint64_t seed)
      : w_(w), shape_(shape), rng_(seed | 1) {
    if (shape_ == Shape::Zipf) {
      zipf_ = std::make_unique<Zipf>(w.keys, exponent);
      counts_.assign(w.keys, 0);
    }
  }
  // The next pair: writes its value, returns its key's index.
  uint64_t next(uint8_t value[16]) {
    const uint64_t p = p_++;
    if (shape_ != Shape::Zipf) {
      uint64_t i = p % w_.keys;
      w_.value(i, p / w_.keys, value);
      return i;
    }
    uint64_t i = zipf_->sample([this] {
                   rng_ ^= rng_ << 13;
                   rng_ ^= rng_ >> 7;
                   rng_ ^= rng_ << 17;
                   return static_cast<double>(rng_ >> 11) / static_cast<double>(1ULL << 53);
                 }) - 1;
    w_.zipf_value(p, i, value);
    counts_[i]++;
    return i;
  }
  // How many values key i holds once every pair has arrived.
  uint64_t count(uint64_t i) const { return counts_.empty() ? w_.vpk : counts_[i]; }
  uint64_t max_count() const {
    return counts_.empty() ? w_.vpk : *std::max_element(counts_.begin(), counts_.end());
  }

 private:
  const Workload& w_;
  Shape shape_;
  std::unique_ptr<Zipf> zipf_;
  uint64_t rng_;
  uint64_t p_ = 0;
  std::vector<uint32_t> counts_;
};

// One batch. By key (`append` false): `nkeys` whole keys, each with its `vpk` values, which an
// engine may store as one record per key. Rounds and Zipf (`append` true): `npairs` pairs whose
// keys may already hold values, so every engine adds each value to its key's set.
struct Batch {
  bool append = false;
  size_t nkeys = 0, vpk = 1, npairs = 0;
  std::vector<uint8_t> keys;       // by key: nkeys * 16, the distinct keys
  std::vector<uint8_t> pair_keys;  // npairs * 16: the key of every pair (empty when == keys)
  std::vector<uint8_t> values;     // npairs * 16; by key: key k's values at [k*vpk, (k+1)*vpk)

  size_t pairs() const { return npairs; }
  const uint8_t* key(size_t k) const { return keys.data() + 16 * k; }
  const uint8_t* pair_key(size_t p) const {
    return pair_keys.empty() ? keys.data() + 16 * p : pair_keys.data() + 16 * p;
  }
  const uint8_t* value(size_t p) const { return values.data() + 16 * p; }
  // The values of key k, concatenated (16 * vpk bytes).
  const uint8_t* key_values(size_t k) const { return values.data() + 16 * vpk * k; }

  void fill(const Workload& w, uint64_t first, size_t n) {
    append = false;
    nkeys = n;
    vpk = w.vpk;
    npairs = n * vpk;
    keys.resize(16 * n);
    values.resize(16 * n * vpk);
    pair_keys.resize(vpk == 1 ? 0 : 16 * n * vpk);
    for (size_t k = 0; k < n; k++) {
      w.key(first + k, &keys[16 * k]);
      for (size_t j = 0; j < vpk; j++) {
        w.value(first + k, j, &values[16 * (k * vpk + j)]);
        if (vpk > 1) std::memcpy(&pair_keys[16 * (k * vpk + j)], &keys[16 * k], 16);
      }
    }
  }
  // The next n pairs of `s`.
  void fill_pairs(const Workload& w, PairStream& s, size_t n) {
    append = true;
    nkeys = 0;
    vpk = 1;
    npairs = n;
    pair_keys.resize(16 * n);
    values.resize(16 * n);
    for (size_t p = 0; p < n; p++) w.key(s.next(&values[16 * p]), &pair_keys[16 * p]);
  }
};

std::string hex(const uint8_t* p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; i++) {
    s += digits[p[i] >> 4];
    s += digits[p[i] & 15];
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Engines. Load: load_open, load_batch per batch (one commit / transaction each where the
// engine has them), load_close. Then read_open on the reopened store, `get` per lookup,
// read_close. `get` copies the key's values (at most `cap`) to `out` and returns how many the
// key has (0 = not found); a count above `cap` is reported as cap + 1 or more.

class Engine {
 public:
  virtual ~Engine() = default;
  virtual void load_open(const std::string& dir) = 0;
  virtual void load_batch(const Batch& b) = 0;
  virtual void load_close() = 0;
  virtual void read_open(const std::string& dir) = 0;
  virtual size_t get(const uint8_t* key, uint8_t* out, size_t cap) = 0;
  // `get` of n keys: key k's values at out + 16 * cap * k, its count in counts[k]. Engines
  // without a batch call look the keys up one after another.
  virtual void get_many(const uint8_t* keys, size_t n, uint8_t* out, size_t cap,
                        size_t* counts) {
    for (size_t k = 0; k < n; k++) counts[k] = get(keys + 16 * k, out + 16 * cap * k, cap);
  }
  virtual void read_close() = 0;
};

// hashdir through its C API, default options (HASHDIR_CREATE only: a commit survives a process
// crash, no fsync per commit).
class HashdirEngine final : public Engine {
 public:
  HashdirEngine() = default;
  ~HashdirEngine() override {
    hashdir_reader_close(r_);
    hashdir_writer_close(w_);
  }

  void load_open(const std::string& dir) override {
    path_ = dir + "/store.h5";
    hashdir_options opts;
    hashdir_options_init(&opts);
    check(hashdir_writer_open(path_.c_str(), &opts, &w_), "hashdir_writer_open");
  }
  void load_batch(const Batch& b) override {
    static_assert(sizeof(hashdir_key) == 16 && sizeof(hashdir_value) == 16, "16-byte types");
    check(hashdir_writer_insert(w_, reinterpret_cast<const hashdir_key*>(b.pair_key(0)),
                                reinterpret_cast<const hashdir_value*>(b.value(0)), b.pairs()),
          "hashdir_writer_insert");
    check(hashdir_writer_commit(w_), "hashdir_writer_commit");
  }
  void load_close() override {
    hashdir_writer* w = w_;
    w_ = nullptr;
    check(hashdir_writer_close(w), "hashdir_writer_close");
  }
  void read_open(const std::string&) override {
    check(hashdir_reader_open(path_.c_str(), nullptr, &r_), "hashdir_reader_open");
  }
  size_t get(const uint8_t* key, uint8_t* out, size_t cap) override {
    if (cap == 1) {  // one value per key: the single-value call (as benches/hashdir.rs does)
      uint8_t found = 0;
      check(hashdir_reader_lookup(r_, reinterpret_cast<const hashdir_key*>(key), 1,
                                  reinterpret_cast<hashdir_value*>(out), &found),
            "hashdir_reader_lookup");
      return found;
    }
    uint64_t count = 0;
    size_t total = 0;
    hashdir_status s =
        hashdir_reader_get(r_, reinterpret_cast<const hashdir_key*>(key), 1,
                           reinterpret_cast<hashdir_value*>(out), cap, &count, &total);
    if (s == HASHDIR_ERR_BUFFER_TOO_SMALL) return std::max<size_t>(total, cap + 1);
    check(s, "hashdir_reader_get");
    return count;
  }
  // One call for the whole batch; a set that does not fit (not in this workload) goes back to
  // calls of one key.
  void get_many(const uint8_t* keys, size_t n, uint8_t* out, size_t cap,
                size_t* counts) override {
    const auto* ks = reinterpret_cast<const hashdir_key*>(keys);
    if (cap == 1) {
      found_.resize(n);
      check(hashdir_reader_lookup(r_, ks, n, reinterpret_cast<hashdir_value*>(out),
                                  found_.data()),
            "hashdir_reader_lookup");
      for (size_t k = 0; k < n; k++) counts[k] = found_[k];
      return;
    }
    packed_.resize(16 * n * cap);
    counts_.resize(n);
    size_t total = 0;
    hashdir_status s = hashdir_reader_get(r_, ks, n, reinterpret_cast<hashdir_value*>(packed_.data()),
                                          n * cap, counts_.data(), &total);
    if (s == HASHDIR_ERR_BUFFER_TOO_SMALL) return Engine::get_many(keys, n, out, cap, counts);
    check(s, "hashdir_reader_get");
    size_t at = 0;
    for (size_t k = 0; k < n; k++) {
      counts[k] = counts_[k];
      size_t m = std::min<size_t>(counts_[k], cap);
      std::memcpy(out + 16 * cap * k, &packed_[16 * at], 16 * m);
      at += counts_[k];
    }
  }
  void read_close() override {
    hashdir_reader* r = r_;
    r_ = nullptr;
    check(hashdir_reader_close(r), "hashdir_reader_close");
  }

 private:
  static void check(hashdir_status s, const char* what) {
    if (s != HASHDIR_OK)
      die("hashdir: %s: %s: %s", what, hashdir_status_name(s), hashdir_last_error());
  }
  std::string path_;
  hashdir_writer* w_ = nullptr;
  hashdir_reader* r_ = nullptr;
  std::vector<uint8_t> found_, packed_;
  std::vector<uint64_t> counts_;
};

// LMDB: one write transaction per batch; `sync` = default durability (fdatasync per commit),
// else MDB_NOSYNC | MDB_NOMETASYNC. `dups` (more than one value per key) uses MDB_DUPSORT (one
// entry per pair). Lookups run in one long read transaction.
class LmdbEngine final : public Engine {
 public:
  LmdbEngine(bool sync, bool dups) : sync_(sync), dups_(dups) {}
  ~LmdbEngine() override { close_env(); }

  void load_open(const std::string& dir) override {
    open_env(dir, sync_ ? 0 : (MDB_NOSYNC | MDB_NOMETASYNC));
    MDB_txn* txn = nullptr;
    check(mdb_txn_begin(env_, nullptr, 0, &txn), "mdb_txn_begin");
    check(mdb_dbi_open(txn, nullptr, MDB_CREATE | (dups_ ? MDB_DUPSORT : 0), &dbi_),
          "mdb_dbi_open");
    check(mdb_txn_commit(txn), "mdb_txn_commit");
  }
  void load_batch(const Batch& b) override {
    MDB_txn* txn = nullptr;
    check(mdb_txn_begin(env_, nullptr, 0, &txn), "mdb_txn_begin");
    for (size_t p = 0; p < b.pairs(); p++) {
      MDB_val k{16, const_cast<uint8_t*>(b.pair_key(p))};
      MDB_val v{16, const_cast<uint8_t*>(b.value(p))};
      int rc = mdb_put(txn, dbi_, &k, &v, 0);
      if (rc != 0) {
        mdb_txn_abort(txn);
        check(rc, "mdb_put");
      }
    }
    check(mdb_txn_commit(txn), "mdb_txn_commit");
  }
  void load_close() override { close_env(); }
  void read_open(const std::string& dir) override {
    open_env(dir, MDB_RDONLY);
    check(mdb_txn_begin(env_, nullptr, MDB_RDONLY, &rtxn_), "mdb_txn_begin(RDONLY)");
    check(mdb_dbi_open(rtxn_, nullptr, dups_ ? MDB_DUPSORT : 0, &dbi_), "mdb_dbi_open");
    if (dups_) check(mdb_cursor_open(rtxn_, dbi_, &cur_), "mdb_cursor_open");
  }
  size_t get(const uint8_t* key, uint8_t* out, size_t cap) override {
    MDB_val k{16, const_cast<uint8_t*>(key)};
    MDB_val v;
    if (!dups_) {
      int rc = mdb_get(rtxn_, dbi_, &k, &v);
      if (rc == MDB_NOTFOUND) return 0;
      check(rc, "mdb_get");
      if (v.mv_size != 16) return 2;  // reported as a wrong count
      std::memcpy(out, v.mv_data, 16);
      return 1;
    }
    int rc = mdb_cursor_get(cur_, &k, &v, MDB_SET_KEY);
    if (rc == MDB_NOTFOUND) return 0;
    check(rc, "mdb_cursor_get(MDB_SET_KEY)");
    size_t n = 0;
    for (;;) {
      if (v.mv_size != 16 || n == cap) return cap + 1;
      std::memcpy(out + 16 * n++, v.mv_data, 16);
      rc = mdb_cursor_get(cur_, &k, &v, MDB_NEXT_DUP);
      if (rc == MDB_NOTFOUND) return n;
      check(rc, "mdb_cursor_get(MDB_NEXT_DUP)");
    }
  }
  void read_close() override { close_env(); }

 private:
  static void check(int rc, const char* what) {
    if (rc != 0) die("lmdb: %s: %s", what, mdb_strerror(rc));
  }
  void open_env(const std::string& dir, unsigned flags) {
    check(mdb_env_create(&env_), "mdb_env_create");
    check(mdb_env_set_mapsize(env_, size_t(64) << 30), "mdb_env_set_mapsize");
    check(mdb_env_open(env_, dir.c_str(), flags, 0644), "mdb_env_open");
  }
  void close_env() {
    if (cur_) mdb_cursor_close(cur_);
    cur_ = nullptr;
    if (rtxn_) mdb_txn_abort(rtxn_);
    rtxn_ = nullptr;
    if (env_) mdb_env_close(env_);
    env_ = nullptr;
  }
  bool sync_;
  bool dups_;
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
  MDB_txn* rtxn_ = nullptr;
  MDB_cursor* cur_ = nullptr;
};

// A key's set as the concatenation of its 16-byte values: Merge appends one. Every operand list
// is joined in one pass (RocksDB's AssociativeMergeOperator would fold the operands pairwise,
// copying the growing value once per operand).
class ConcatMerge final : public rocksdb::MergeOperator {
 public:
  bool FullMergeV2(const MergeOperationInput& in, MergeOperationOutput* out) const override {
    size_t n = in.existing_value ? in.existing_value->size() : 0;
    for (const auto& o : in.operand_list) n += o.size();
    // Not empty when a Get merges into a reused PinnableSlice (the previous lookup's value).
    out->new_value.clear();
    out->new_value.reserve(n);
    if (in.existing_value)
      out->new_value.append(in.existing_value->data(), in.existing_value->size());
    for (const auto& o : in.operand_list) out->new_value.append(o.data(), o.size());
    return true;
  }
  bool PartialMergeMulti(const rocksdb::Slice&, const std::deque<rocksdb::Slice>& ops,
                         std::string* out, rocksdb::Logger*) const override {
    size_t n = 0;
    for (const auto& o : ops) n += o.size();
    out->clear();
    out->reserve(n);
    for (const auto& o : ops) out->append(o.data(), o.size());
    return true;
  }
  const char* Name() const override { return "hashdir-compare.concat"; }
};

// RocksDB: default options + IncreaseParallelism(2) (+ a bloom filter unless bits == 0); WAL on,
// sync = false, one WriteBatch per batch; no forced flush or compaction. A key's values are
// concatenated into one value: by key, Put of the whole set; otherwise Merge of each value
// (ConcatMerge).
class RocksdbEngine final : public Engine {
 public:
  explicit RocksdbEngine(int bloom_bits) : bloom_bits_(bloom_bits) {}
  ~RocksdbEngine() override { close_db(); }

  void load_open(const std::string& dir) override { open_db(dir); }
  void load_batch(const Batch& b) override {
    rocksdb::WriteBatch batch;
    for (size_t k = 0; k < b.nkeys; k++)
      batch.Put(rocksdb::Slice(reinterpret_cast<const char*>(b.key(k)), 16),
                rocksdb::Slice(reinterpret_cast<const char*>(b.key_values(k)), 16 * b.vpk));
    if (b.append)
      for (size_t p = 0; p < b.pairs(); p++)
        batch.Merge(rocksdb::Slice(reinterpret_cast<const char*>(b.pair_key(p)), 16),
                    rocksdb::Slice(reinterpret_cast<const char*>(b.value(p)), 16));
    rocksdb::WriteOptions wo;  // sync = false, WAL on
    check(db_->Write(wo, &batch), "Write");
  }
  void load_close() override { close_db(); }
  void read_open(const std::string& dir) override { open_db(dir); }
  size_t get(const uint8_t* key, uint8_t* out, size_t cap) override {
    val_.Reset();
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), db_->DefaultColumnFamily(),
                                 rocksdb::Slice(reinterpret_cast<const char*>(key), 16), &val_);
    if (s.IsNotFound()) return 0;
    check(s, "Get");
    if (val_.size() % 16 != 0 || val_.size() / 16 > cap) return cap + 1;
    std::memcpy(out, val_.data(), val_.size());
    return val_.size() / 16;
  }
  void read_close() override { close_db(); }

 private:
  static void check(const rocksdb::Status& s, const char* what) {
    if (!s.ok()) die("rocksdb: %s: %s", what, s.ToString().c_str());
  }
  void open_db(const std::string& dir) {
    rocksdb::Options o;
    o.create_if_missing = true;
    o.IncreaseParallelism(2);
    o.merge_operator = std::make_shared<ConcatMerge>();
    if (bloom_bits_ > 0) {
      rocksdb::BlockBasedTableOptions t;
      t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(bloom_bits_, false));
      o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
    }
    rocksdb::DB* db = nullptr;
    check(rocksdb::DB::Open(o, dir, &db), "DB::Open");
    db_.reset(db);
  }
  void close_db() {
    if (!db_) return;
    val_.Reset();
    rocksdb::Status s = db_->Close();
    db_.reset();
    check(s, "Close");
  }
  int bloom_bits_;
  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::PinnableSlice val_;
};

// tkrzw HashDBM: num_buckets = 2 x keys, other tuning defaults, no fsync. No transactions: a
// batch is just its Set calls. A key's values are concatenated into one value: by key, Set of
// the whole set; otherwise Append of each value (no delimiter), which rewrites the record.
class TkrzwEngine final : public Engine {
 public:
  explicit TkrzwEngine(uint64_t keys) : keys_(keys) {}
  ~TkrzwEngine() override {
    if (dbm_ && dbm_->IsOpen()) dbm_->Close();
  }

  void load_open(const std::string& dir) override {
    path_ = dir + "/store.tkh";
    tkrzw::HashDBM::TuningParameters tp;
    tp.num_buckets = static_cast<int64_t>(2 * keys_);
    dbm_ = std::make_unique<tkrzw::HashDBM>();
    check(dbm_->OpenAdvanced(path_, true, tkrzw::File::OPEN_TRUNCATE, tp), "OpenAdvanced");
  }
  void load_batch(const Batch& b) override {
    for (size_t k = 0; k < b.nkeys; k++)
      check(dbm_->Set(std::string_view(reinterpret_cast<const char*>(b.key(k)), 16),
                      std::string_view(reinterpret_cast<const char*>(b.key_values(k)),
                                       16 * b.vpk)),
            "Set");
    if (b.append)
      for (size_t p = 0; p < b.pairs(); p++)
        check(dbm_->Append(std::string_view(reinterpret_cast<const char*>(b.pair_key(p)), 16),
                           std::string_view(reinterpret_cast<const char*>(b.value(p)), 16), ""),
              "Append");
  }
  void load_close() override { close_dbm(); }
  void read_open(const std::string&) override {
    dbm_ = std::make_unique<tkrzw::HashDBM>();
    check(dbm_->Open(path_, false), "Open(read-only)");
  }
  size_t get(const uint8_t* key, uint8_t* out, size_t cap) override {
    tkrzw::Status s = dbm_->Get(std::string_view(reinterpret_cast<const char*>(key), 16), &val_);
    if (s == tkrzw::Status::NOT_FOUND_ERROR) return 0;
    check(s, "Get");
    if (val_.size() % 16 != 0 || val_.size() / 16 > cap) return cap + 1;
    std::memcpy(out, val_.data(), val_.size());
    return val_.size() / 16;
  }
  void read_close() override { close_dbm(); }

 private:
  static void check(const tkrzw::Status& s, const char* what) {
    if (s != tkrzw::Status::SUCCESS) die("tkrzw: %s: %s", what, s.GetMessage().c_str());
  }
  void close_dbm() {
    if (!dbm_) return;
    check(dbm_->Close(), "Close");
    dbm_.reset();
  }
  uint64_t keys_;
  std::string path_;
  std::unique_ptr<tkrzw::HashDBM> dbm_;
  std::string val_;
};

// ---------------------------------------------------------------------------------------------
// Measurement

struct Args {
  uint64_t keys = 10'000'000;
  uint64_t vpk = 1;
  Shape shape = Shape::ByKey;
  double zipf = 0;  // the Zipf law's exponent under Shape::Zipf
  uint64_t batch = 100'000;
  uint64_t lookups = 1'000'000;
  uint64_t seed = 42;
  std::vector<std::string> engines{"hashdir", "lmdb", "lmdb-nosync", "rocksdb", "tkrzw"};
  bool engines_given = false;
  std::string dir;  // parent of the run directory; default /tmp
  bool keep = false;
  int rocksdb_bloom_bits = 10;
  uint64_t warm_gib = 0;
  uint64_t lookup_batch = 1;  // keys per lookup call
  uint64_t passes = 1;        // times the lookups are run on the one reader
};

const char* const FIGURES[] = {"insert_pairs_per_s", "lookup_avg_us", "lookup_p50_us",
                               "lookup_p99_us",      "lookup_p999_us", "disk_bytes_per_pair"};
constexpr size_t NFIG = sizeof FIGURES / sizeof FIGURES[0];

struct Result {
  std::string engine;
  double fig[NFIG] = {};
  double load_s = 0, reopen_s = 0, lookup_s = 0;
  std::vector<double> later_avg_us;  // lookup average of passes 2, 3, ...
  uint64_t disk_bytes = 0;
  uint64_t largest_set = 0;
};

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

uint64_t disk_bytes(const std::string& dir) {
  uint64_t total = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    struct stat st;
    if (lstat(e.path().c_str(), &st) != 0) die("stat %s: %s", e.path().c_str(), strerror(errno));
    if (S_ISREG(st.st_mode)) total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

std::unique_ptr<Engine> make_engine(const std::string& name, const Args& a) {
  if (name == "hashdir") return std::make_unique<HashdirEngine>();
  const bool dups = a.vpk > 1 || a.shape == Shape::Zipf;
  if (name == "lmdb") return std::make_unique<LmdbEngine>(true, dups);
  if (name == "lmdb-nosync") return std::make_unique<LmdbEngine>(false, dups);
  if (name == "rocksdb") return std::make_unique<RocksdbEngine>(a.rocksdb_bloom_bits);
  if (name == "tkrzw") return std::make_unique<TkrzwEngine>(a.keys);
  die("unknown engine '%s' (known: hashdir, lmdb, lmdb-nosync, rocksdb, tkrzw)", name.c_str());
}

// Whole keys per batch under Shape::ByKey.
uint64_t keys_per_batch(const Args& a) { return std::max<uint64_t>(1, a.batch / a.vpk); }

// Loads the workload into `e` in batches: by key, B / V whole keys a batch; rounds and Zipf,
// the next B pairs of `s`. Returns the time spent in the engine's calls (open, every batch,
// close), not in making the data.
Clock::duration load(Engine& e, const Args& a, const Workload& w, PairStream& s,
                     const std::string& dir) {
  Clock::duration t{};
  auto timed = [&t](auto&& call) {
    auto t0 = Clock::now();
    call();
    t += Clock::now() - t0;
  };
  Batch b;
  timed([&] { e.load_open(dir); });
  if (a.shape == Shape::ByKey) {
    const uint64_t per = keys_per_batch(a);
    for (uint64_t first = 0; first < a.keys; first += per) {
      b.fill(w, first, static_cast<size_t>(std::min(per, a.keys - first)));
      timed([&] { e.load_batch(b); });
    }
  } else {
    const uint64_t pairs = a.keys * a.vpk;
    for (uint64_t done = 0; done < pairs; done += a.batch) {
      b.fill_pairs(w, s, static_cast<size_t>(std::min(a.batch, pairs - done)));
      timed([&] { e.load_batch(b); });
    }
  }
  timed([&] { e.load_close(); });
  return t;
}

// Checks what a lookup returned: by key and rounds, exactly the key's V values (in any order);
// Zipf, as many values as the stream gave the key (0: not found), each one of the key's.
class Checker {
 public:
  Checker(const std::string& engine, const Args& a, const Workload& w, const PairStream& s)
      : engine_(engine), zipf_(a.shape == Shape::Zipf), w_(w), s_(s) {}
  // The largest set: the lookup buffer's size in values.
  size_t cap() const { return static_cast<size_t>(std::max<uint64_t>(1, s_.max_count())); }
  // Lookup q of key #i found n values, the first min(n, cap()) of them in `got`.
  void check(uint64_t q, uint64_t i, const uint8_t* key, const uint8_t* got, size_t n) {
    const uint64_t count = s_.count(i);
    if (n != count)
      die("%s: lookup %" PRIu64 " of key #%" PRIu64 " (%s): expected %" PRIu64
          " value(s), got %zu%s",
          engine_.c_str(), q, i, hex(key, 16).c_str(), count, n, n > cap() ? " or more" : "");
    if (zipf_) {
      for (size_t j = 0; j < n; j++)
        if (!w_.is_zipf_value_of(got + 16 * j, i))
          die("%s: lookup %" PRIu64 " of key #%" PRIu64 " (%s): value %s is not one of its",
              engine_.c_str(), q, i, hex(key, 16).c_str(), hex(got + 16 * j, 16).c_str());
      return;
    }
    got_.assign(got, got + 16 * n);
    want_.resize(16 * n);
    for (size_t j = 0; j < n; j++) w_.value(i, j, &want_[16 * j]);
    if (n > 1) {
      sort16(got_);
      sort16(want_);
    }
    if (got_ != want_)
      die("%s: lookup %" PRIu64 " of key #%" PRIu64 " (%s): wrong value(s): got %s, want %s",
          engine_.c_str(), q, i, hex(key, 16).c_str(), hex(got_.data(), got_.size()).c_str(),
          hex(want_.data(), want_.size()).c_str());
  }

 private:
  static void sort16(std::vector<uint8_t>& v) {
    std::vector<std::string> xs;
    for (size_t j = 0; j < v.size(); j += 16)
      xs.emplace_back(reinterpret_cast<const char*>(&v[j]), 16);
    std::sort(xs.begin(), xs.end());
    for (size_t j = 0; j < xs.size(); j++) std::memcpy(&v[16 * j], xs[j].data(), 16);
  }
  std::string engine_;
  bool zipf_;
  const Workload& w_;
  const PairStream& s_;
  std::vector<uint8_t> got_, want_;
};

Result run_engine(const std::string& name, const Args& a, const Workload& w,
                  const std::string& dir) {
  Result res;
  res.engine = name;
  std::unique_ptr<Engine> e = make_engine(name, a);
  const uint64_t pairs = a.keys * a.vpk;

  std::fprintf(stderr, "bench: %s: loading %" PRIu64 " pairs ...\n", name.c_str(), pairs);
  PairStream s(w, a.shape, a.zipf, w.zipf_seed);
  res.load_s = secs(load(*e, a, w, s, dir));

  // Reopen, then time the lookups of random existing keys, in calls of --lookup-batch keys.
  auto t0 = Clock::now();
  e->read_open(dir);
  res.reopen_s = secs(Clock::now() - t0);
  std::fprintf(stderr, "bench: %s: loaded in %.2f s; %" PRIu64 " lookups ...\n", name.c_str(),
               res.load_s, a.lookups);
  std::vector<uint64_t> ns(a.lookups);
  Checker check(name, a, w, s);
  const size_t cap = check.cap();
  res.largest_set = s.max_count();
  const size_t per_call = static_cast<size_t>(a.lookup_batch);
  std::vector<uint8_t> got(16 * cap * per_call), keys(16 * per_call);
  std::vector<uint64_t> ids(per_call);
  std::vector<size_t> counts(per_call);
  // Pass 1 is what a freshly opened reader sees (the figures); later passes look the same
  // keys up again on the same reader, with every page it reads already touched once.
  for (uint64_t pass = 0; pass < a.passes; pass++) {
    SplitMix64 pick{w.lookup_seed};
    uint64_t pass_ns = 0;
    auto l0 = Clock::now();
    for (uint64_t q0 = 0; q0 < a.lookups; q0 += per_call) {
      size_t nb = static_cast<size_t>(std::min<uint64_t>(per_call, a.lookups - q0));
      for (size_t k = 0; k < nb; k++) {
        ids[k] = pick.below(a.keys);
        w.key(ids[k], &keys[16 * k]);
      }
      auto t = Clock::now();
      e->get_many(keys.data(), nb, got.data(), cap, counts.data());
      // A call of several keys counts its time evenly among them.
      uint64_t call_ns = static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t).count());
      pass_ns += call_ns;
      for (size_t k = 0; k < nb; k++) {
        if (pass == 0) ns[q0 + k] = call_ns / nb;
        check.check(q0 + k, ids[k], &keys[16 * k], &got[16 * cap * k], counts[k]);
      }
    }
    if (pass == 0) {
      res.lookup_s = secs(Clock::now() - l0);
    } else {
      res.later_avg_us.push_back(static_cast<double>(pass_ns) / 1000.0 /
                                 static_cast<double>(a.lookups));
    }
  }
  e->read_close();
  e.reset();
  res.disk_bytes = disk_bytes(dir);

  double sum = 0;
  for (uint64_t x : ns) sum += static_cast<double>(x);
  std::sort(ns.begin(), ns.end());
  auto pct = [&](double p) {  // nearest rank
    if (ns.empty()) return 0.0;
    size_t r = static_cast<size_t>(std::ceil(p * static_cast<double>(ns.size())));
    r = std::min(std::max<size_t>(r, 1), ns.size());
    return static_cast<double>(ns[r - 1]) / 1000.0;
  };
  res.fig[0] = static_cast<double>(pairs) / res.load_s;
  res.fig[1] = ns.empty() ? 0.0 : sum / static_cast<double>(ns.size()) / 1000.0;
  res.fig[2] = pct(0.50);
  res.fig[3] = pct(0.99);
  res.fig[4] = pct(0.999);
  res.fig[5] = static_cast<double>(res.disk_bytes) / static_cast<double>(pairs);
  return res;
}

// ---------------------------------------------------------------------------------------------
// Arguments and output

[[noreturn]] void usage(int code) {
  std::fprintf(code ? stderr : stdout,
               "usage: bench [--keys N] [--values-per-key V] [--rounds | --zipf S] [--batch B]\n"
               "             [--lookups L] [--seed S] [--engines hashdir,lmdb,lmdb-nosync,"
               "rocksdb,tkrzw]\n"
               "             [--dir DIR] [--keep] [--rocksdb-bloom-bits BITS] [--warm-gib G]\n"
               "             [--lookup-batch K] [--passes P]\n"
               "  N (distinct keys, default 10M), B (pairs per batch, default 100k) and L\n"
               "  (lookups, default 1M) accept the suffixes k and M. Each key has V values\n"
               "  (default 1): N*V pairs, loaded key by key, or with --rounds in V rounds each\n"
               "  giving every key one new value, or with --zipf S each pair's key drawn from a\n"
               "  Zipf law of exponent S (V values a key on average). Stores go to a fresh\n"
               "  directory under DIR (default /tmp), removed at the end unless --keep. BITS:\n"
               "  RocksDB bloom filter bits per key (default 10, 0 = none). G: GiB of fresh\n"
               "  memory touched and released before each engine runs (default 0; see\n"
               "  compare/README.md). K: keys per lookup call (default 1; engines without a batch\n"
               "  call loop; a call's time is split evenly among its keys). P: times the\n"
               "  lookups run on the one reader (default 1); the figures are the first pass's,\n"
               "  what a freshly opened reader sees, and each later pass prints its average as\n"
               "  figure lookup_avg_us_pass2, _pass3, ... (every page it reads touched before).\n");
  std::exit(code);
}

uint64_t parse_count(const char* opt, const char* s) {
  char* end = nullptr;
  errno = 0;
  double x = std::strtod(s, &end);
  if (end == s || errno) die("%s: not a number: '%s'", opt, s);
  double mult = 1;
  if (*end == 'k' || *end == 'K') mult = 1e3, end++;
  else if (*end == 'm' || *end == 'M') mult = 1e6, end++;
  else if (*end == 'g' || *end == 'G') mult = 1e9, end++;
  if (*end != '\0') die("%s: bad suffix in '%s' (use k, M or G)", opt, s);
  double v = x * mult;
  if (!(v >= 0) || v > 1e15 || v != std::floor(v)) die("%s: not a whole count: '%s'", opt, s);
  return static_cast<uint64_t>(v);
}

// Touches `gib` GiB of fresh anonymous memory, then releases it. A VM that hands free guest
// memory back to its host (virtio-balloon free page reporting) makes the first process that
// uses much memory after a quiet spell pay for the host faulting it back in; warming before
// each engine gives every engine the same start.
void warm_memory(uint64_t gib) {
  if (gib == 0) return;
  if (gib > (1u << 20)) die("--warm-gib: %" PRIu64 " is too large", gib);
  size_t len = static_cast<size_t>(gib) << 30;
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) die("--warm-gib: mmap of %" PRIu64 " GiB: %s", gib, std::strerror(errno));
  for (size_t i = 0; i < len; i += 4096) static_cast<volatile char*>(p)[i] = 1;
  munmap(p, len);
}

double parse_exponent(const char* s) {
  char* end = nullptr;
  errno = 0;
  double e = std::strtod(s, &end);
  if (end == s || *end != '\0' || errno || !(e > 0 && e < 10))
    die("--zipf: the exponent must be a number in (0, 10), not '%s'", s);
  return e;
}

void set_shape(Args& a, Shape shape, double zipf) {
  if (a.shape != Shape::ByKey) die("--rounds and --zipf exclude each other");
  a.shape = shape;
  a.zipf = zipf;
}

// The shape as printed in the `compare` lines: by_key, rounds or zipf:S.
std::string shape_name(const Args& a) {
  if (a.shape == Shape::ByKey) return "by_key";
  if (a.shape == Shape::Rounds) return "rounds";
  char buf[48];
  std::snprintf(buf, sizeof buf, "zipf:%g", a.zipf);
  return buf;
}

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; i++) {
    std::string o = argv[i];
    auto val = [&]() -> const char* {
      if (i + 1 >= argc) die("%s needs a value", o.c_str());
      return argv[++i];
    };
    if (o == "-h" || o == "--help") usage(0);
    else if (o == "--keys") a.keys = parse_count("--keys", val());
    else if (o == "--values-per-key") a.vpk = parse_count("--values-per-key", val());
    else if (o == "--rounds") set_shape(a, Shape::Rounds, 0);
    else if (o == "--zipf") set_shape(a, Shape::Zipf, parse_exponent(val()));
    else if (o == "--batch") a.batch = parse_count("--batch", val());
    else if (o == "--lookups") a.lookups = parse_count("--lookups", val());
    else if (o == "--seed") a.seed = parse_count("--seed", val());
    else if (o == "--dir") a.dir = val();
    else if (o == "--keep") a.keep = true;
    else if (o == "--rocksdb-bloom-bits")
      a.rocksdb_bloom_bits = static_cast<int>(parse_count(o.c_str(), val()));
    else if (o == "--warm-gib") a.warm_gib = parse_count(o.c_str(), val());
    else if (o == "--lookup-batch") a.lookup_batch = parse_count(o.c_str(), val());
    else if (o == "--passes") a.passes = parse_count(o.c_str(), val());
    else if (o == "--engines") {
      a.engines_given = true;
      a.engines.clear();
      std::string s = val();
      size_t p = 0;
      while (p <= s.size()) {
        size_t q = s.find(',', p);
        if (q == std::string::npos) q = s.size();
        if (q > p) a.engines.push_back(s.substr(p, q - p));
        p = q + 1;
      }
      if (a.engines.empty()) die("--engines: empty list");
    } else {
      std::fprintf(stderr, "bench: unknown option %s\n", o.c_str());
      usage(2);
    }
  }
  if (a.keys == 0) die("--keys must be > 0");
  if (a.vpk == 0 || a.vpk > 4096) die("--values-per-key must be in 1..4096");
  if (a.batch == 0) die("--batch must be > 0");
  if (a.lookup_batch == 0 || a.lookup_batch > 1'000'000) die("--lookup-batch must be in 1..1M");
  if (a.passes == 0 || a.passes > 100) die("--passes must be in 1..100");
  if (a.shape == Shape::Zipf && a.keys * a.vpk > UINT32_MAX)
    die("--zipf: at most %" PRIu32 " pairs (values are counted per key in 32 bits)", UINT32_MAX);
  if (a.shape == Shape::Zipf && a.lookup_batch > 1)
    die("--zipf: --lookup-batch must be 1 (a call's buffer holds the largest set per key)");
  for (const auto& name : a.engines) make_engine(name, a);  // rejects unknown names early
  if (a.shape == Shape::Zipf && !a.engines_given)
    a.engines.erase(std::find(a.engines.begin(), a.engines.end(), "tkrzw"));
  return a;
}

// Plain decimal, no exponent: whole numbers for large figures, 3 decimals otherwise.
std::string num(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, std::fabs(x) >= 1e4 ? "%.0f" : "%.3f", x);
  return buf;
}

std::string human(double x, size_t f) {
  char buf[64];
  if (f == 0) std::snprintf(buf, sizeof buf, "%.3f M", x / 1e6);
  else if (f == 5) std::snprintf(buf, sizeof buf, "%.1f", x);
  else std::snprintf(buf, sizeof buf, "%.2f", x);
  return buf;
}

void print_table(const std::vector<Result>& rs, const Result* base) {
  const char* heads[] = {"engine",        "insert pairs/s", "lookup avg µs", "P50 µs",
                         "P99 µs",        "P99.9 µs",       "disk B/pair"};
  std::vector<std::vector<std::string>> rows;
  rows.push_back(std::vector<std::string>(std::begin(heads), std::end(heads)));
  for (const auto& r : rs) {
    std::vector<std::string> row{r.engine};
    for (size_t f = 0; f < NFIG; f++) {
      std::string cell = human(r.fig[f], f);
      if (base && &r != base && base->fig[f] > 0) {
        char buf[32];
        std::snprintf(buf, sizeof buf, " (%.2f×)", r.fig[f] / base->fig[f]);
        cell += buf;
      }
      row.push_back(cell);
    }
    rows.push_back(row);
  }
  // Width in characters, not bytes (µ and × are two bytes in UTF-8).
  auto width = [](const std::string& s) {
    size_t n = 0;
    for (unsigned char c : s) n += (c & 0xc0) != 0x80;
    return n;
  };
  std::vector<size_t> w(rows[0].size(), 0);
  for (const auto& row : rows)
    for (size_t c = 0; c < row.size(); c++) w[c] = std::max(w[c], width(row[c]));
  for (size_t i = 0; i < rows.size(); i++) {
    std::string line = "|";
    for (size_t c = 0; c < rows[i].size(); c++) {
      size_t pad = w[c] - width(rows[i][c]);
      line += ' ';
      if (c == 0) line += rows[i][c] + std::string(pad, ' ');
      else line += std::string(pad, ' ') + rows[i][c];
      line += " |";
    }
    std::printf("%s\n", line.c_str());
    if (i == 0) {
      std::string sep = "|";
      for (size_t c = 0; c < w.size(); c++)
        sep += (c == 0 ? std::string(w[c] + 2, '-') : std::string(w[c] + 1, '-') + ":") + "|";
      std::printf("%s\n", sep.c_str());
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  Args a = parse_args(argc, argv);
  g_keep = a.keep;
  Workload w;
  w.keys = a.keys;
  w.vpk = a.vpk;
  w.key_seed = mix64(a.seed ^ 0x6b657973ULL);        // "keys"
  w.value_seed = mix64(a.seed ^ 0x76616c756573ULL);  // "values"
  w.lookup_seed = mix64(a.seed ^ 0x6c6f6f6b7570ULL);  // "lookup"
  w.zipf_seed = mix64(a.seed ^ 0x7a697066ULL);          // "zipf"
  const uint64_t pairs = a.keys * a.vpk;
  const std::string shape = shape_name(a);
  const bool append = a.shape != Shape::ByKey;

  std::string parent = a.dir.empty() ? "/tmp" : a.dir;
  std::error_code ec;
  fs::create_directories(parent, ec);
  std::string tmpl = parent + "/hashdir-compare.XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) die("mkdtemp %s: %s", tmpl.c_str(), strerror(errno));
  g_run_dir = buf.data();

  struct utsname u;
  uname(&u);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  std::time_t now = std::time(nullptr);
  char date[64];
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&now));
  std::printf("# hashdir side-by-side benchmark, %s, %s %s, %ld CPUs\n", date, u.sysname,
              u.release, cpus);
  std::printf("# versions: hashdir %s, %s, RocksDB %d.%d.%d, tkrzw %s\n", hashdir_version(),
              mdb_version(nullptr, nullptr, nullptr), ROCKSDB_MAJOR, ROCKSDB_MINOR,
              ROCKSDB_PATCH, tkrzw::PACKAGE_VERSION);
  std::string batch_keys;
  if (!append) batch_keys = " (" + std::to_string(keys_per_batch(a)) + " keys)";
  std::printf("# seed=%" PRIu64 " keys=%" PRIu64 " values_per_key=%" PRIu64
              " shape=%s pairs=%" PRIu64 " batch=%" PRIu64 " pairs%s lookups=%" PRIu64
              " lookup_batch=%" PRIu64 " dir=%s\n",
              a.seed, a.keys, a.vpk, shape.c_str(), pairs,
              append ? a.batch : keys_per_batch(a) * a.vpk, batch_keys.c_str(), a.lookups, a.lookup_batch,
              g_run_dir.c_str());
  const char* order =
      a.shape == Shape::ByKey    ? "in batches of whole keys"
      : a.shape == Shape::Rounds ? "in V rounds, each giving every key its next value, in\n"
                                   "#   batches of B pairs"
                                 : "with keys drawn from a Zipf law over the N keys, in\n"
                                   "#   batches of B pairs";
  std::printf("# workload: random 16-byte keys and 16-byte values (splitmix64), inserted\n"
              "#   %s; lookups of random keys (uniform over the N),\n"
              "#   each timed alone (steady_clock) and checked (%s);\n"
              "#   insert time = the engine's open + batches + close; disk = st_blocks*512 over\n"
              "#   the store's files after the final close; stores reopened before the lookups;\n"
              "#   hot page cache.\n",
              order,
              a.shape == Shape::Zipf ? "as many values as drawn, each the key's"
                                     : "found, exactly its values");
  std::printf("# hashdir: C API, default options (crash-safe commits, no fsync), insert+commit\n"
              "#   per batch; lookups with %s\n",
              a.vpk > 1 || a.shape == Shape::Zipf
                  ? "hashdir_reader_get (all values of the key; native value sets)"
                  : "hashdir_reader_lookup (the key's one value)");
  std::printf("# lmdb: one write txn per batch, fdatasync per commit; lmdb-nosync: "
              "MDB_NOSYNC|MDB_NOMETASYNC;\n#   map size 64 GiB; lookups in one long read txn%s\n",
              a.vpk > 1 || a.shape == Shape::Zipf
                  ? ";\n#   MDB_DUPSORT, one entry per pair (cursor MDB_SET_KEY + MDB_NEXT_DUP)"
                  : "");
  const char* rocks_sets =
      append      ? ";\n#   a key's values concatenated into one value, each value added by\n"
                    "#   WriteBatch::Merge (a merge operator that concatenates)"
      : a.vpk > 1 ? ";\n#   the V values of a key concatenated into one value (Put)"
                  : "";
  if (a.rocksdb_bloom_bits > 0)
    std::printf("# rocksdb: default options + IncreaseParallelism(2) + bloom filter %d bits/key;"
                "\n#   WAL on, sync=false, one WriteBatch per batch; no forced flush/compaction%s\n",
                a.rocksdb_bloom_bits, rocks_sets);
  else
    std::printf("# rocksdb: default options + IncreaseParallelism(2), no bloom filter;\n"
                "#   WAL on, sync=false, one WriteBatch per batch; no forced flush/compaction%s\n",
                rocks_sets);
  std::printf("# tkrzw: HashDBM, num_buckets = 2 x keys, no fsync; no transactions: a batch is\n"
              "#   just its %s calls, one record per key%s\n",
              append ? "Append" : "Set",
              append      ? ";\n#   each Append rewrites the key's record one value longer"
              : a.vpk > 1 ? " (the V values concatenated)"
                          : "");
  if (a.shape == Shape::Zipf && !a.engines_given)
    std::printf("# tkrzw left out (name it in --engines to run it): each Append rewrites the\n"
                "#   key's whole record, so a set of n values costs ~8 n^2 bytes of copying,\n"
                "#   hours for the largest sets of a Zipf law\n");
  std::fflush(stdout);

  std::vector<Result> rs;
  for (const auto& name : a.engines) {
    std::string dir = g_run_dir + "/" + name;
    if (!fs::create_directory(dir, ec) || ec) die("mkdir %s: %s", dir.c_str(), ec.message().c_str());
    warm_memory(a.warm_gib);
    Result r = run_engine(name, a, w, dir);
    for (size_t f = 0; f < NFIG; f++)
      std::printf("compare engine=%s figure=%s value=%s keys=%" PRIu64 " values_per_key=%" PRIu64
                  " shape=%s\n",
                  name.c_str(), FIGURES[f], num(r.fig[f]).c_str(), a.keys, a.vpk, shape.c_str());
    for (size_t p = 0; p < r.later_avg_us.size(); p++)
      std::printf("compare engine=%s figure=lookup_avg_us_pass%zu value=%s keys=%" PRIu64
                  " values_per_key=%" PRIu64 " shape=%s\n",
                  name.c_str(), p + 2, num(r.later_avg_us[p]).c_str(), a.keys, a.vpk,
                  shape.c_str());
    std::printf("# %s: load %.2f s, reopen %.3f s, lookups %.2f s, %.1f MB on disk, largest set "
                "%" PRIu64 " values\n",
                name.c_str(), r.load_s, r.reopen_s, r.lookup_s, r.disk_bytes / 1e6,
                r.largest_set);
    std::fflush(stdout);
    if (!a.keep) fs::remove_all(dir, ec);
    rs.push_back(r);
  }

  const Result* base = nullptr;
  for (const auto& r : rs)
    if (r.engine == "hashdir") base = &r;
  if (base) {
    for (size_t f = 0; f < NFIG; f++)
      for (const auto& r : rs)
        if (&r != base)
          std::printf("compare ratio figure=%s engine=%s vs=hashdir value=%.4f shape=%s\n",
                      FIGURES[f], r.engine.c_str(),
                      base->fig[f] > 0 ? r.fig[f] / base->fig[f] : 0.0, shape.c_str());
  } else {
    std::printf("# no ratios: hashdir was not among the engines\n");
  }
  std::printf("\n");
  print_table(rs, base);
  std::fflush(stdout);

  if (a.keep) std::fprintf(stderr, "bench: stores kept in %s\n", g_run_dir.c_str());
  else fs::remove_all(g_run_dir, ec);
  return 0;
}
