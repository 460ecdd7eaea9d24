"""hashdir from Python through the `hashdir` package: write a batch, read it back, delete,
refresh.

Install the package from the repository root, then run:
    python3 -m pip install .
    python3 examples/python/example.py /tmp/example.h5
Prints one line per step; exits non-zero (with a traceback) if a check fails.
"""

import os
import sys

import numpy as np

import hashdir
from hashdir import key


def keys_of(ns) -> np.ndarray:
    """A batch, shape (n, 16) uint8, of the keys key(n) for each n of ns."""
    return np.stack([np.frombuffer(key(n), np.uint8) for n in ns])


def main(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)

    with hashdir.Writer(path) as w:  # creates the file; closing commits and checkpoints
        # Key 1 gets three values (and the pair (1, 10) twice: a set keeps it once), key 2
        # one, key 3 two: a batch given as a list of 16-byte bytes.
        keys = [key(1), key(1), key(1), key(1), key(2), key(3), key(3)]
        values = [key(10), key(11), key(12), key(10), key(20), key(30), key(31)]
        w.insert(keys, values)
        # Key 4 gets a hundred values: a NumPy array of shape (n, 16), uint8, passed to the
        # library as it is; insert_values gives them all to one key.
        four = np.zeros((100, 16), dtype=np.uint8)
        four[:, :8] = np.arange(1000, 1100, dtype="<u8").view(np.uint8).reshape(100, 8)
        w.insert_values(key(4), four)
        w.commit()
        print(f"inserted {len(keys) + len(four)} pairs (106 distinct) and committed")

        with hashdir.Reader(path) as r:
            # A batch of keys: one value of each (first) and whether it has any (found).
            first, found = r.lookup(keys_of([1, 2, 3, 99]))
            assert found.tolist() == [True, True, True, False], found
            assert first[1].tobytes() == key(20), first
            assert hashdir.to_int(first[0]) in (10, 11, 12), first
            assert r.lookup(key(2)) == key(20)  # one key: its value as bytes, or None
            print("lookup: 1 found, 2 found, 3 found, 99 absent")

            # get with room for 4 values: the library answers HASHDIR_ERR_BUFFER_TOO_SMALL
            # with the total it needs, and the package calls again with that much room.
            # The result is CSR: key i's values are values[offsets[i]:offsets[i + 1]].
            values, offsets = r.get(keys_of([1, 99, 3, 4]), capacity=4)
            assert np.diff(offsets).tolist() == [3, 0, 2, 100], offsets
            sets = [{v.tobytes() for v in values[offsets[i]:offsets[i + 1]]} for i in range(4)]
            assert sets[0] == {key(10), key(11), key(12)}
            assert sets[2] == {key(30), key(31)}
            assert sets[3] == {bytes(row) for row in four}
            got = np.sort(values[offsets[3]:].copy()[:, :8].view("<u8").ravel())
            assert (got == np.arange(1000, 1100)).all()
            print("get: counts 3 0 2 100 (105 values, first buffer held 4)")

            # One writer per file: a second one, here or in another process, is refused.
            try:
                hashdir.Writer(path)
                raise AssertionError("a second writer was let in")
            except hashdir.LockedError as e:
                assert "is locked: another writer has it open" in str(e), e
                print(f"second writer refused: {e.status_name}\n  {e}")

            # Delete key 2, and pairs (1, 11), (3, 30), (3, 31) and (5, 50), not there.
            w.delete_keys(key(2))
            w.delete_pairs([key(1), key(3), key(3), key(5)], [key(11), key(30), key(31), key(50)])
            w.commit()
            assert key(2) in r, "the reader's view is unchanged until refresh"
            print("before refresh: key 2 still found")

            r.refresh()
            _, found = r.lookup(keys_of([1, 2, 3]))
            assert found.tolist() == [True, False, False], found
            assert sorted(r.get(key(1))) == [key(10), key(12)]  # one key: a list of bytes
            print("after refresh: 1 found, 2 absent, 3 absent; key 1 values {10, 12}")

            w.checkpoint()  # stats count as of the last checkpoint
            st = w.stats()
            assert (st.keys, st.values) == (2, 102), st
            print(f"stats: keys {st.keys} values {st.values}")

            try:
                hashdir.Reader(path + ".missing")
                raise AssertionError("opened a missing file")
            except hashdir.NotFoundError as e:
                assert "does not exist" in str(e), e
                print(f"missing file: {e.status_name}\n  {e}")
    print("all checks passed")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "example.h5")
