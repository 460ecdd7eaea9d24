// Side-by-side benchmark: hashdir against LMDB, RocksDB and tkrzw HashDBM on one workload,
// measured in one run, one engine after the other. Built and run by compare/run.sh; see
// compare/README.md for what is measured and how each engine is configured.
//
//   bench [--keys N] [--values-per-key V] [--batch B] [--lookups L] [--seed S]
//         [--engines hashdir,lmdb,lmdb-nosync,rocksdb,tkrzw] [--dir DIR] [--keep]
//         [--rocksdb-bloom-bits BITS] [--warm-gib G] [--lookup-batch K]
//
// N, B and L accept the suffixes k and M (e.g. --keys 10M). N is the number of distinct keys;
// each has V values, so a run holds N * V pairs (the convention of benches/hashdir.rs).
//
// SPDX-License-Identifier: MIT OR Apache-2.0

#include <hashdir.h>
#include <lmdb.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
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
  uint64_t key_seed = 0, value_seed = 0, lookup_seed = 0;

  void key(uint64_t i, uint8_t out[16]) const {
    uint64_t a = mix64(key_seed + (2 * i + 1) * GAMMA);
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
};

// One batch of whole keys: `nkeys` keys, each with `vpk` values.
struct Batch {
  size_t nkeys = 0, vpk = 1;
  std::vector<uint8_t> keys;       // nkeys * 16: the distinct keys
  std::vector<uint8_t> pair_keys;  // nkeys * vpk * 16: the key of every pair (== keys if vpk 1)
  std::vector<uint8_t> values;     // nkeys * vpk * 16: key k's values at [k*vpk, (k+1)*vpk)

  size_t pairs() const { return nkeys * vpk; }
  const uint8_t* key(size_t k) const { return keys.data() + 16 * k; }
  const uint8_t* pair_key(size_t p) const {
    return vpk == 1 ? keys.data() + 16 * p : pair_keys.data() + 16 * p;
  }
  const uint8_t* value(size_t p) const { return values.data() + 16 * p; }
  // The values of key k, concatenated (16 * vpk bytes).
  const uint8_t* key_values(size_t k) const { return values.data() + 16 * vpk * k; }

  void fill(const Workload& w, uint64_t first, size_t n) {
    nkeys = n;
    vpk = w.vpk;
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
// else MDB_NOSYNC | MDB_NOMETASYNC. V > 1 uses MDB_DUPSORT (one entry per pair). Lookups run in
// one long read transaction.
class LmdbEngine final : public Engine {
 public:
  LmdbEngine(bool sync, size_t vpk) : sync_(sync), vpk_(vpk) {}
  ~LmdbEngine() override { close_env(); }

  void load_open(const std::string& dir) override {
    open_env(dir, sync_ ? 0 : (MDB_NOSYNC | MDB_NOMETASYNC));
    MDB_txn* txn = nullptr;
    check(mdb_txn_begin(env_, nullptr, 0, &txn), "mdb_txn_begin");
    check(mdb_dbi_open(txn, nullptr, MDB_CREATE | (vpk_ > 1 ? MDB_DUPSORT : 0), &dbi_),
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
    check(mdb_dbi_open(rtxn_, nullptr, vpk_ > 1 ? MDB_DUPSORT : 0, &dbi_), "mdb_dbi_open");
    if (vpk_ > 1) check(mdb_cursor_open(rtxn_, dbi_, &cur_), "mdb_cursor_open");
  }
  size_t get(const uint8_t* key, uint8_t* out, size_t cap) override {
    MDB_val k{16, const_cast<uint8_t*>(key)};
    MDB_val v;
    if (vpk_ == 1) {
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
  size_t vpk_;
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
  MDB_txn* rtxn_ = nullptr;
  MDB_cursor* cur_ = nullptr;
};

// RocksDB: default options + IncreaseParallelism(2) (+ a bloom filter unless bits == 0); WAL on,
// sync = false, one WriteBatch per batch; no forced flush or compaction. V values of a key are
// concatenated into one value.
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
// batch is just its Set calls. V values of a key are concatenated into one value.
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
  uint64_t batch = 100'000;
  uint64_t lookups = 1'000'000;
  uint64_t seed = 42;
  std::vector<std::string> engines{"hashdir", "lmdb", "lmdb-nosync", "rocksdb", "tkrzw"};
  std::string dir;  // parent of the run directory; default /tmp
  bool keep = false;
  int rocksdb_bloom_bits = 10;
  uint64_t warm_gib = 0;
  uint64_t lookup_batch = 1;  // keys per lookup call
};

const char* const FIGURES[] = {"insert_pairs_per_s", "lookup_avg_us", "lookup_p50_us",
                               "lookup_p99_us",      "lookup_p999_us", "disk_bytes_per_pair"};
constexpr size_t NFIG = sizeof FIGURES / sizeof FIGURES[0];

struct Result {
  std::string engine;
  double fig[NFIG] = {};
  double load_s = 0, reopen_s = 0, lookup_s = 0;
  uint64_t disk_bytes = 0;
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
  if (name == "lmdb") return std::make_unique<LmdbEngine>(true, a.vpk);
  if (name == "lmdb-nosync") return std::make_unique<LmdbEngine>(false, a.vpk);
  if (name == "rocksdb") return std::make_unique<RocksdbEngine>(a.rocksdb_bloom_bits);
  if (name == "tkrzw") return std::make_unique<TkrzwEngine>(a.keys);
  die("unknown engine '%s' (known: hashdir, lmdb, lmdb-nosync, rocksdb, tkrzw)", name.c_str());
}

Result run_engine(const std::string& name, const Args& a, const Workload& w,
                  const std::string& dir) {
  Result res;
  res.engine = name;
  std::unique_ptr<Engine> e = make_engine(name, a);
  const uint64_t pairs = a.keys * a.vpk;

  // Load: only the engine's calls are timed (open, every batch, close), not making the data.
  std::fprintf(stderr, "bench: %s: loading %" PRIu64 " pairs ...\n", name.c_str(), pairs);
  const uint64_t keys_per_batch = std::max<uint64_t>(1, a.batch / a.vpk);
  Batch b;
  Clock::duration load{};
  auto t0 = Clock::now();
  e->load_open(dir);
  load += Clock::now() - t0;
  for (uint64_t first = 0; first < a.keys; first += keys_per_batch) {
    b.fill(w, first, static_cast<size_t>(std::min(keys_per_batch, a.keys - first)));
    t0 = Clock::now();
    e->load_batch(b);
    load += Clock::now() - t0;
  }
  t0 = Clock::now();
  e->load_close();
  load += Clock::now() - t0;
  res.load_s = secs(load);

  // Reopen, then time the lookups of random existing keys, in calls of --lookup-batch keys.
  t0 = Clock::now();
  e->read_open(dir);
  res.reopen_s = secs(Clock::now() - t0);
  std::fprintf(stderr, "bench: %s: loaded in %.2f s; %" PRIu64 " lookups ...\n", name.c_str(),
               res.load_s, a.lookups);
  std::vector<uint64_t> ns(a.lookups);
  SplitMix64 pick{w.lookup_seed};
  const size_t cap = static_cast<size_t>(a.vpk);
  const size_t per_call = static_cast<size_t>(a.lookup_batch);
  std::vector<uint8_t> got(16 * cap * per_call), want(16 * cap), keys(16 * per_call);
  std::vector<uint64_t> ids(per_call);
  std::vector<size_t> counts(per_call);
  auto sort16 = [](uint8_t* p, size_t n) {
    std::vector<std::string> xs;
    for (size_t j = 0; j < n; j++) xs.emplace_back(reinterpret_cast<const char*>(p + 16 * j), 16);
    std::sort(xs.begin(), xs.end());
    for (size_t j = 0; j < n; j++) std::memcpy(p + 16 * j, xs[j].data(), 16);
  };
  auto l0 = Clock::now();
  for (uint64_t q0 = 0; q0 < a.lookups; q0 += per_call) {
    size_t nb = static_cast<size_t>(std::min<uint64_t>(per_call, a.lookups - q0));
    for (size_t k = 0; k < nb; k++) {
      ids[k] = pick.below(a.keys);
      w.key(ids[k], &keys[16 * k]);
    }
    auto s = Clock::now();
    e->get_many(keys.data(), nb, got.data(), cap, counts.data());
    // A call of several keys counts its time evenly among them.
    uint64_t call_ns = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - s).count());
    for (size_t k = 0; k < nb; k++) {
      uint64_t q = q0 + k, i = ids[k];
      const uint8_t* key = &keys[16 * k];
      uint8_t* g = &got[16 * cap * k];
      size_t n = counts[k];
      ns[q] = call_ns / nb;
      // Check: the key is there with exactly its V values (in any order).
      if (n != cap)
        die("%s: lookup %" PRIu64 " of key #%" PRIu64 " (%s): expected %zu value(s), got %zu%s",
            name.c_str(), q, i, hex(key, 16).c_str(), cap, n, n > cap ? " or more" : "");
      for (size_t j = 0; j < cap; j++) w.value(i, j, &want[16 * j]);
      if (cap > 1) {
        sort16(g, cap);
        sort16(want.data(), cap);
      }
      if (std::memcmp(g, want.data(), 16 * cap) != 0)
        die("%s: lookup %" PRIu64 " of key #%" PRIu64 " (%s): wrong value(s): got %s, want %s",
            name.c_str(), q, i, hex(key, 16).c_str(), hex(g, 16 * cap).c_str(),
            hex(want.data(), want.size()).c_str());
    }
  }
  res.lookup_s = secs(Clock::now() - l0);
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
               "usage: bench [--keys N] [--values-per-key V] [--batch B] [--lookups L] "
               "[--seed S]\n"
               "             [--engines hashdir,lmdb,lmdb-nosync,rocksdb,tkrzw] [--dir DIR] "
               "[--keep]\n"
               "             [--rocksdb-bloom-bits BITS] [--warm-gib G] [--lookup-batch K]\n"
               "  N (distinct keys, default 10M), B (pairs per batch, default 100k) and L\n"
               "  (lookups, default 1M) accept the suffixes k and M. Each key has V values\n"
               "  (default 1): N*V pairs. Stores go to a fresh directory under DIR (default\n"
               "  /tmp), removed at the end unless --keep. BITS: RocksDB bloom filter bits per\n"
               "  key (default 10, 0 = none). G: GiB of fresh memory touched and released\n"
               "  before each engine runs (default 0; see compare/README.md). K: keys per lookup\n"
               "  call (default 1; engines without a batch call loop; a call's time is split\n"
               "  evenly among its keys).\n");
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
    else if (o == "--batch") a.batch = parse_count("--batch", val());
    else if (o == "--lookups") a.lookups = parse_count("--lookups", val());
    else if (o == "--seed") a.seed = parse_count("--seed", val());
    else if (o == "--dir") a.dir = val();
    else if (o == "--keep") a.keep = true;
    else if (o == "--rocksdb-bloom-bits")
      a.rocksdb_bloom_bits = static_cast<int>(parse_count(o.c_str(), val()));
    else if (o == "--warm-gib") a.warm_gib = parse_count(o.c_str(), val());
    else if (o == "--lookup-batch") a.lookup_batch = parse_count(o.c_str(), val());
    else if (o == "--engines") {
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
  for (const auto& name : a.engines) make_engine(name, a);  // rejects unknown names early
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
  const uint64_t pairs = a.keys * a.vpk;
  const uint64_t keys_per_batch = std::max<uint64_t>(1, a.batch / a.vpk);

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
  std::printf("# seed=%" PRIu64 " keys=%" PRIu64 " values_per_key=%" PRIu64 " pairs=%" PRIu64
              " batch=%" PRIu64 " pairs (%" PRIu64 " keys) lookups=%" PRIu64
              " lookup_batch=%" PRIu64 " dir=%s\n",
              a.seed, a.keys, a.vpk, pairs, keys_per_batch * a.vpk, keys_per_batch, a.lookups,
              a.lookup_batch, g_run_dir.c_str());
  std::printf("# workload: random 16-byte keys and 16-byte values (splitmix64), inserted in\n"
              "#   batches of whole keys; lookups of random existing keys, each call timed\n"
              "#   (steady_clock) and checked (found, exactly its values); insert time = the\n"
              "#   engine's open + batches + close; disk = st_blocks*512 over the store's files\n"
              "#   after the final close; stores reopened before the lookups; hot page cache.\n");
  std::printf("# hashdir: C API, default options (crash-safe commits, no fsync), insert+commit\n"
              "#   per batch; lookups with %s\n",
              a.vpk > 1 ? "hashdir_reader_get (all values of the key; native value sets)"
                        : "hashdir_reader_lookup (the key's one value)");
  std::printf("# lmdb: one write txn per batch, fdatasync per commit; lmdb-nosync: "
              "MDB_NOSYNC|MDB_NOMETASYNC;\n#   map size 64 GiB; lookups in one long read txn%s\n",
              a.vpk > 1 ? "; MDB_DUPSORT, one entry per pair (cursor MDB_SET_KEY + MDB_NEXT_DUP)"
                        : "");
  if (a.rocksdb_bloom_bits > 0)
    std::printf("# rocksdb: default options + IncreaseParallelism(2) + bloom filter %d bits/key;"
                "\n#   WAL on, sync=false, one WriteBatch per batch; no forced flush/compaction%s\n",
                a.rocksdb_bloom_bits,
                a.vpk > 1 ? "; the V values of a key concatenated into one value" : "");
  else
    std::printf("# rocksdb: default options + IncreaseParallelism(2), no bloom filter;\n"
                "#   WAL on, sync=false, one WriteBatch per batch; no forced flush/compaction%s\n",
                a.vpk > 1 ? "; the V values of a key concatenated into one value" : "");
  std::printf("# tkrzw: HashDBM, num_buckets = 2 x keys, no fsync; no transactions: a batch is\n"
              "#   just its Set calls, one record per key%s\n",
              a.vpk > 1 ? " (the V values concatenated)" : "");
  std::fflush(stdout);

  std::vector<Result> rs;
  for (const auto& name : a.engines) {
    std::string dir = g_run_dir + "/" + name;
    if (!fs::create_directory(dir, ec) || ec) die("mkdir %s: %s", dir.c_str(), ec.message().c_str());
    warm_memory(a.warm_gib);
    Result r = run_engine(name, a, w, dir);
    for (size_t f = 0; f < NFIG; f++)
      std::printf("compare engine=%s figure=%s value=%s keys=%" PRIu64 " values_per_key=%" PRIu64
                  "\n",
                  name.c_str(), FIGURES[f], num(r.fig[f]).c_str(), a.keys, a.vpk);
    std::printf("# %s: load %.2f s, reopen %.3f s, lookups %.2f s, %.1f MB on disk\n",
                name.c_str(), r.load_s, r.reopen_s, r.lookup_s, r.disk_bytes / 1e6);
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
          std::printf("compare ratio figure=%s engine=%s vs=hashdir value=%.4f\n", FIGURES[f],
                      r.engine.c_str(), base->fig[f] > 0 ? r.fig[f] / base->fig[f] : 0.0);
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
