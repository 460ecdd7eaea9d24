"""Batched lookups from Python next to the same lookups from C: the cost the Python layer adds.

    python3 python/bench_lookup.py [--keys 10M] [--batch 1000] [--lookups 1M] [--rounds 5]
                                   [--dir DIR] [--file F] [--keep]

Loads a file with --keys keys of one value each (as the project's benchmark,
`cargo bench --bench hashdir`, builds it: the same keys and values), or reuses --file
(one made by this script with --keep, or by the Rust benchmark or `hashdir bench` with
--keep and one value a key: all three load the keys and values of `hashdir::workload`).
Then --lookups random keys are looked up in batches of --batch, by
`Reader.lookup` from Python and by `hashdir_reader_lookup` from a small C program
(python/bench_lookup.c, compiled here against the package's own library and header), on the
same file with the same keys. Rounds alternate between the two so both see the same machine;
the medians are compared. Prints one JSON object per line, like the Rust benchmark.

Needs the installed package (`python3 -m pip install .`) and a C compiler. Not run by the
tests: a full run (10 M keys) loads for a minute or two and wants a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# Python puts this script's directory first on sys.path, and the package's sources
# (python/hashdir, without the library) are there: import the installed package instead.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != HERE]
import hashdir  # noqa: E402


def count(text: str) -> int:
    """10M, 100k, 1G, 12345."""
    mul = {"k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9}.get(text[-1:], 1)
    return int(text[:-1] if mul > 1 else text) * mul


def keys_for(ids: np.ndarray) -> np.ndarray:
    """The Rust benchmark's key(i): a mixed-up counter in bytes 0..8, i in bytes 8..16."""
    i = ids.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (i * np.uint64(0x9E3779B97F4A7C15)) ^ np.uint64(0x5851F42D4C957F2D)
    x ^= x >> np.uint64(29)
    out = np.empty((len(ids), 16), np.uint8)
    out[:, :8] = x.astype("<u8").view(np.uint8).reshape(-1, 8)
    out[:, 8:] = i.astype("<u8").view(np.uint8).reshape(-1, 8)
    return out


def values_for(ids: np.ndarray) -> np.ndarray:
    """The Rust benchmark's value(i, 0): i in bytes 0..8, zeros after."""
    out = np.zeros((len(ids), 16), np.uint8)
    out[:, :8] = ids.astype("<u8").view(np.uint8).reshape(-1, 8)
    return out


def emit(metric: str, value: float, **extra) -> None:
    print(json.dumps({"metric": metric, "value": round(value, 3), **extra}), flush=True)


def load(path: str, n: int) -> None:
    step = 100_000
    t0 = time.perf_counter()
    with hashdir.Writer(path) as w:
        for start in range(0, n, step):
            ids = np.arange(start, min(start + step, n), dtype=np.uint64)
            w.insert(keys_for(ids), values_for(ids))
            w.commit()
        w.checkpoint()
    secs = time.perf_counter() - t0
    emit("insert_pairs_per_s", n / secs, keys=n, lang="python", seconds=round(secs, 3))


def build_c(scratch: str) -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or "gcc"
    exe = os.path.join(scratch, "bench_lookup")
    # The package's own library, under the name its soname gives (libhashdir.so.0).
    lib = Path(hashdir.library_path()).resolve()
    os.symlink(lib, os.path.join(scratch, "libhashdir.so.0"))
    cmd = [cc, "-O2", "-std=c11", str(HERE / "bench_lookup.c"), "-o", exe,
           "-I", hashdir.get_include(), str(lib), f"-Wl,-rpath,{scratch}"]
    subprocess.run(cmd, check=True)
    return exe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=count, default=10_000_000)
    ap.add_argument("--batch", type=count, default=1000)
    ap.add_argument("--lookups", type=count, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--file", help="an existing file to read (else one is loaded)")
    ap.add_argument("--keep", action="store_true", help="keep the loaded file")
    a = ap.parse_args()

    scratch = tempfile.mkdtemp(prefix="hashdir-bench-py-", dir=a.dir)
    path = a.file or os.path.join(scratch, "bench.h5")
    try:
        if not a.file:
            print(f"loading {a.keys} keys into {path}", file=sys.stderr)
            load(path, a.keys)
        rng = np.random.default_rng(1)
        ids = rng.integers(0, a.keys, size=a.lookups, dtype=np.uint64)
        keys = keys_for(ids)
        keys_file = os.path.join(scratch, "keys.bin")
        keys.tofile(keys_file)
        batches = [keys[i:i + a.batch] for i in range(0, len(keys), a.batch)]

        c = subprocess.Popen([build_c(scratch), path, keys_file, str(a.batch)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert c.stdout.readline().strip() == "ready", "the C side failed"

        r = hashdir.Reader(path)
        for b in batches:  # untimed: check, and warm the cache as the C side did
            first, found = r.lookup(b)
            assert found.all(), "a key is missing"
            assert (first[:, :8] == b[:, 8:]).all(), "a wrong value"

        py, cc = [], []
        for _ in range(a.rounds):
            c.stdin.write("go\n")
            c.stdin.flush()
            cc.append(float(c.stdout.readline()))
            lookup = r.lookup
            t0 = time.perf_counter_ns()
            for b in batches:
                lookup(b)
            py.append(round((time.perf_counter_ns() - t0) / len(keys), 2))
        c.stdin.close()
        c.wait()
        r.close()

        common = dict(keys=a.keys, batch=a.batch, lookups=a.lookups, rounds=a.rounds)
        emit("lookup_batch_ns_per_key", statistics.median(cc), lang="c", all=cc, **common)
        emit("lookup_batch_ns_per_key", statistics.median(py), lang="python", all=py,
             **common)
        ratio = statistics.median(py) / statistics.median(cc)
        emit("python_over_c", ratio, target=1.5, **common)
        per_call = (statistics.median(py) - statistics.median(cc)) * a.batch / 1000
        emit("python_added_us_per_call", per_call, **common)
        print(f"batched lookup, {a.batch} keys a call, {a.keys} keys: C "
              f"{statistics.median(cc):.0f} ns/key, Python {statistics.median(py):.0f} ns/key "
              f"({ratio:.2f}x; Python adds {per_call:.1f} us a call)", file=sys.stderr)
    finally:
        if a.keep and not a.file:
            kept = os.path.join(a.dir, f"hashdir-bench-py-{os.getpid()}.h5")
            os.replace(path, kept)
            print(f"kept {kept}", file=sys.stderr)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
