"""Threads and processes: reader threads sharing one handle (in parallel: the GIL is
released during each call), closing while calls run, and a reader process following a
writer process's commits."""

import threading
import time

import numpy as np
import pytest
from conftest import ask, ints_of, keys_of, python_process

import hashdir
from hashdir import key


def test_reader_threads_share_one_handle(filled):
    failures = []
    with hashdir.Reader(filled) as r:

        def work(offset):
            try:
                for start in range(offset * 10, 1000, 40):
                    ks = keys_of(range(start, start + 10))
                    first, found = r.lookup(ks)
                    assert found.all()
                    assert set(ints_of(first)) <= set(range(start + 1, start + 12))
                    values, offsets = r.get(ks)
                    assert np.diff(offsets).tolist() == [2] * 10
                    for i in range(10):
                        n = start + i
                        assert sorted(ints_of(values[offsets[i]:offsets[i + 1]])) == [n + 1, n + 2]
                    assert set(r.get(key(start))) == {key(start + 1), key(start + 2)}
            except Exception as e:  # reported below
                failures.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == []


def long_lookup_batch(path: str, n: int = 200_000) -> np.ndarray:
    """A file with n keys and the batch of all of them: a lookup of it takes a while."""
    ks = keys_of(range(n))
    with hashdir.Writer(path) as w:
        w.insert(ks, ks)
        w.commit()
    return ks


def test_calls_release_the_gil(path):
    """While one thread is inside a long lookup, another runs Python code: it could not if
    the call held the GIL."""
    ks = long_lookup_batch(path)
    with hashdir.Reader(path) as r:
        for attempt in range(5):
            span = []

            def call():
                t0 = time.perf_counter()
                first, found = r.lookup(ks)
                span.append((t0, time.perf_counter()))
                assert found.all()

            ticks = []
            t = threading.Thread(target=call)
            t.start()
            while t.is_alive():
                ticks.append(time.perf_counter())
            t.join()
            (t0, t1), = span
            if t1 - t0 > 0.02:  # long enough to tell
                break
        # Ticks of this thread during the middle half of the call.
        quarter = (t1 - t0) / 4
        inside = sum(1 for x in ticks if t0 + quarter < x < t1 - quarter)
        assert inside > 100, (inside, t1 - t0, len(ticks))


def test_close_waits_for_calls_running_on_the_handle(path):
    ks = long_lookup_batch(path)
    r = hashdir.Reader(path)
    lib = hashdir.library()
    events, started = [], threading.Event()
    real_lookup, real_close = lib.hashdir_reader_lookup, lib.hashdir_reader_close

    def lookup(*args):  # the C call, recording when it runs
        events.append("lookup starts")
        started.set()
        status = real_lookup(*args)
        events.append("lookup ends")
        return status

    def close(*args):
        events.append("close")
        return real_close(*args)

    lib.hashdir_reader_lookup, lib.hashdir_reader_close = lookup, close
    try:
        results = []
        t = threading.Thread(target=lambda: results.append(bool(r.lookup(ks).found.all())))
        t.start()
        assert started.wait(30)
        r.close()  # the lookup is running in C: close waits for it
        t.join()
    finally:
        lib.hashdir_reader_lookup, lib.hashdir_reader_close = real_lookup, real_close
    assert events == ["lookup starts", "lookup ends", "close"]
    assert results == [True] and r.closed
    with pytest.raises(hashdir.InvalidArgumentError, match="closed"):
        r.lookup(ks)


WRITER = """
import sys, hashdir
from hashdir import key
with hashdir.Writer(sys.argv[1]) as w:
    print("ready", flush=True)
    for line in sys.stdin:
        i = int(line)
        w.insert_values(key(i), [key(1000 + i), key(2000 + i)])
        w.commit()
        print("committed", i, flush=True)
"""

READER = """
import sys, time, hashdir
from hashdir import key
r = hashdir.Reader(sys.argv[1])
auto = hashdir.Reader(sys.argv[1], refresh_interval_ms=10)
print("ready", flush=True)
for line in sys.stdin:
    i = int(line)
    before = key(i) in r          # the view stays until refresh
    r.refresh()
    values = sorted(hashdir.to_int(v) for v in r.get(key(i)))
    _, found = r.lookup([key(j) for j in range(i + 1)])
    t0 = time.monotonic()         # the other reader refreshes on its own
    while key(i) not in auto and time.monotonic() - t0 < 30:
        time.sleep(0.005)
    try:
        hashdir.Writer(sys.argv[1])
        locked = "no"
    except hashdir.LockedError:
        locked = "yes"
    print(before, values, int(found.sum()), key(i) in auto, locked, flush=True)
"""


def test_a_reader_process_follows_a_writer_process(path):
    writer = python_process(WRITER, path)
    reader = None
    try:
        assert writer.stdout.readline().strip() == "ready"
        reader = python_process(READER, path)
        assert reader.stdout.readline().strip() == "ready"
        for i in range(5):
            assert ask(writer, str(i)) == f"committed {i}"
            # Before its refresh the reader did not see key i; after it, it sees key i's
            # two values and every key committed before; the auto-refreshing reader got
            # there by itself; and a writer in the reader process is refused.
            assert ask(reader, str(i)) == f"False [{1000 + i}, {2000 + i}] {i + 1} True yes"
    finally:
        for p in (writer, reader):
            if p is not None:
                p.stdin.close()
                assert p.wait(timeout=60) == 0, p.stderr.read()
                p.stdout.close()
                p.stderr.close()
    with hashdir.Reader(path) as r:
        assert r.lookup(keys_of(range(5))).found.all()
