#!/usr/bin/env python3
"""Scale model for hashdir loads and lookups beyond what this machine can hold (docs/PERFORMANCE.md,
"1 B keys").

Every input is a measurement from `cargo bench --bench hashdir` on the CI machine type (the
figures quoted in PERFORMANCE.md); the model only extrapolates them. It prints one JSON line per
figure. Usage: python3 benches/scale_model.py [--cold-rewrite-us 7.5] [--device-read-us 59.2] [--ram-gb 24]
"""
import argparse
import json
import math

PAGE = 4096
# Keys per bucket page: 100 M keys filled 935,025 pages (format v2, PERFORMANCE.md §0 session 8).
KEYS_PER_BUCKET = 100e6 / 935025
# Log bytes per single-value insert: a 33-byte op plus its share of the frame header.
LOG_BYTES_PER_OP = 33.3
# The log starts at 4 MiB and grows 4x per forced checkpoint up to checkpoint_bytes.
MIN_LOG, LOG_GROWTH = 4 << 20, 4
# checkpoint_bytes 0 (the default): the limit follows the table (engine/options.rs).
AUTO_MIN, AUTO_KNEE, AUTO_MAX = 128 << 20, 1 << 30, 2 << 30
# Live bucket bytes per key (34-byte entries at 89 % fill) and file bytes per key while the
# writer runs (session 8, 100 M keys).
LIVE_BYTES_PER_KEY, FILE_BYTES_PER_KEY = 38, 98
# Directory: a slot per 512-1024 bytes of entries (checkpoint.rs SLOT_AVG); 8 bytes per slot in
# the file, 4 in a reader's memory (page numbers, since session 9).
ENTRY_BYTES, SLOT_AVG = 34, 1024
# Lookup CPU with the page in memory, µs (session 8, 100 M keys, hot).
HOT_LOOKUP_US = 1.4


def auto_limit(buckets):
    """The default log limit for a table of `buckets` pages (LogLimit::bytes)."""
    table = buckets * PAGE
    return max(AUTO_MIN, min(AUTO_MAX, table / 2, max(AUTO_KNEE, table / 8)))


def load(keys, log_bytes):
    """(bytes written per pair, page rewrites per pair) of a random-key load, one value a key;
    log_bytes 0 is the default limit, which follows the table.

    Each checkpoint rewrites every bucket at least one of its ops falls into: with P buckets and
    n ops, P * (1 - exp(-n / P)) of them.
    """
    done, log, rewrites, written = 0, MIN_LOG, 0.0, 0.0
    while done < keys:
        ops = min(int(log / LOG_BYTES_PER_OP), keys - done)
        done += ops
        buckets = max(done / KEYS_PER_BUCKET, 1)
        touched = buckets * (1 - math.exp(-ops / buckets))
        rewrites += touched
        written += touched * PAGE + ops * LOG_BYTES_PER_OP
        limit = log_bytes or auto_limit(buckets)
        log = min(log * LOG_GROWTH, limit)
    return written / keys, rewrites / keys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device-read-us", type=float, default=59.2,
                    help="average 4 KiB random read from the device (cold lookup, 100 M keys)")
    ap.add_argument("--device-read-p99-us", type=float, default=116.4)
    ap.add_argument("--cold-rewrite-us", type=float, default=7.5,
                    help="seconds per bucket rewritten by a checkpoint with the file dropped "
                         "from the page cache (cold_checkpoint_seconds / buckets), in µs")
    ap.add_argument("--ram-gb", type=float, default=24.0)
    args = ap.parse_args()

    # Insert cost per pair = a + b * rewrites/pair, fitted to the two measured 100 M loads
    # (128 MiB and 1 GiB log, table in the page cache; PERFORMANCE.md §0, session 8): the
    # largest table measured, so the closest to 1 B keys (a 10 M table is cache-friendlier).
    fit = [(100e6, 128 << 20, 1 / 1.35e6), (100e6, 1 << 30, 1 / 3.00e6)]
    (k1, l1, t1), (k2, l2, t2) = fit
    r1, r2 = load(k1, l1)[1], load(k2, l2)[1]
    per_rewrite = (t2 - t1) / (r2 - r1)
    per_pair = t1 - r1 * per_rewrite
    out = {"metric": "model_fit", "us_per_pair": per_pair * 1e6,
           "us_per_page_rewrite_hot": per_rewrite * 1e6}
    print(json.dumps(out))

    for keys in (10e6, 100e6, 1e9):
        for log_mb in (0, 128, 1024, 2048, 4096):
            wpp, rpp = load(keys, log_mb << 20)
            hot = per_pair + rpp * per_rewrite
            table = keys * FILE_BYTES_PER_KEY / 1e9
            # A table larger than RAM: each rewrite first reads its page from the device, as
            # measured by the benchmark's cold checkpoint (its pages requested 64 buckets ahead).
            cold = per_pair + rpp * max(per_rewrite, args.cold_rewrite_us * 1e-6)
            fits = table < args.ram_gb * 0.8
            print(json.dumps({
                "metric": "model_insert", "keys": keys, "checkpoint_mb": log_mb,
                "write_bytes_per_pair": round(wpp), "page_rewrites_per_pair": round(rpp, 4),
                "file_gb": round(table, 1), "fits_page_cache": fits,
                "pairs_per_s": round(1 / (hot if fits else cold)),
            }))

    for keys in (1e8, 1e9):
        live = keys * LIVE_BYTES_PER_KEY / 1e9
        directory = 2 ** math.ceil(math.log2(keys * ENTRY_BYTES / SLOT_AVG)) * 4 / 1e9
        cached = max(0.0, min(1.0, (args.ram_gb * 0.8 - directory) / live))
        avg = cached * HOT_LOOKUP_US + (1 - cached) * (args.device_read_us + HOT_LOOKUP_US)
        print(json.dumps({
            "metric": "model_lookup", "keys": keys, "live_bucket_gb": round(live, 1),
            "directory_gb_per_reader": round(directory, 3),
            "page_cache_hit_fraction": round(cached, 2),
            "device_reads_per_lookup": round(1 - cached, 2),
            "lookup_avg_us": round(avg, 1),
            "lookup_p99_us": round(args.device_read_p99_us + HOT_LOOKUP_US, 1)
            if cached < 0.99 else None,
        }))


if __name__ == "__main__":
    main()
