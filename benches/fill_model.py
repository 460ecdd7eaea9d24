#!/usr/bin/env python3
"""Page count of a bulk-loaded hashdir table (format v2), simulated: random 64-bit hashes in
2^g directory slots, one-value entries of 34 bytes, pages cut greedily at slot boundaries into
4,064-byte page bodies, as a checkpoint's window cuts them (docs/ARCHITECTURE.md, checkpoint
step 3). Prints one JSON line per directory depth. Usage:
python3 benches/fill_model.py [--keys 10000000] [--depths 18,19,20] [--seed 1]
"""
import argparse
import json

import numpy as np

PAGE, HEADER, ENTRY, ITEM = 4096, 32, 34, 8


def pages(slot_bytes):
    """Pages a greedy cut at slot boundaries makes of slots holding `slot_bytes` each."""
    n, cur = 1, 0
    for b in slot_bytes.tolist():
        if cur + b > PAGE - HEADER:
            n, cur = n + 1, b
        else:
            cur += b
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=10_000_000)
    ap.add_argument("--depths", default="18,19,20")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    hashes = rng.integers(0, 2**63, a.keys, dtype=np.int64)  # 63 leading bits suffice
    for g in (int(d) for d in a.depths.split(",")):
        slots = np.bincount(hashes >> (63 - g), minlength=2**g) * ENTRY
        p = pages(slots)
        disk = p * PAGE + ITEM * 2**g
        print(json.dumps({"metric": "fill_model", "keys": a.keys, "seed": a.seed, "depth": g,
                          "pages": p, "fill": round(a.keys * ENTRY / (p * (PAGE - HEADER)), 4),
                          "bytes_per_pair": round(disk / a.keys, 2)}))


if __name__ == "__main__":
    main()
