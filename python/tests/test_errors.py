"""Every error the Python API can be made to raise: each C status it can trigger (with the
library's message), bad shapes, dtypes and types, option ranges, closed handles."""

import os

import h5py
import numpy as np
import pytest
from conftest import ask, keys_of, python_process

import hashdir
from hashdir import key


def test_missing_file(tmp_path):
    missing = str(tmp_path / "missing.h5")
    with pytest.raises(hashdir.NotFoundError) as e:
        hashdir.Writer(missing, create=False)
    assert e.value.status == hashdir.Status.ERR_NOT_FOUND
    assert e.value.status_name == "HASHDIR_ERR_NOT_FOUND"
    assert "does not exist (pass HASHDIR_CREATE to create it)" in str(e.value)
    assert str(e.value).startswith("hashdir_writer_open: ")
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, hashdir.Error)
    assert not os.path.exists(missing)
    with pytest.raises(hashdir.NotFoundError, match="does not exist"):
        hashdir.Reader(missing)


def test_missing_directory_is_an_io_error(tmp_path):
    with pytest.raises(hashdir.HashdirIOError) as e:
        hashdir.Writer(str(tmp_path / "no" / "such" / "dir" / "t.h5"))
    assert e.value.status == hashdir.Status.ERR_IO
    assert isinstance(e.value, OSError)


def test_not_a_hashdir_file(tmp_path):
    plain = str(tmp_path / "plain.h5")
    with h5py.File(plain, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(hashdir.NotHashdirError, match="is not a hashdir file") as e:
        hashdir.Writer(plain)
    assert e.value.status_name == "HASHDIR_ERR_NOT_HASHDIR"
    with h5py.File(plain, "r") as f:  # left unchanged
        assert list(f) == ["x"]
    text = tmp_path / "text.h5"
    text.write_text("hello")
    with pytest.raises(hashdir.NotHashdirError):
        hashdir.Reader(str(text))
    assert text.read_text() == "hello"


def test_second_writer_is_locked_out_in_this_and_another_process(path):
    with hashdir.Writer(path) as w:
        with pytest.raises(hashdir.LockedError) as e:
            hashdir.Writer(path)
        assert "is locked: another writer has it open" in str(e.value)
        assert e.value.status == hashdir.Status.ERR_LOCKED
        child = python_process(
            """
            import sys, hashdir
            try:
                hashdir.Writer(sys.argv[1])
                print("opened")
            except hashdir.LockedError as e:
                print(e.status_name)
            """,
            path,
        )
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        assert out.strip() == "HASHDIR_ERR_LOCKED"
        w.insert(key(1), key(2))  # the first writer goes on
    # The lock went with the writer.
    with hashdir.Writer(path, create=False) as w:
        assert w.stats().keys == 1


def test_corrupt_page_is_reported(path):
    from formatdoc import one_bucket_page_offset

    with hashdir.Writer(path) as w:
        w.insert(keys_of([1, 2, 3]), keys_of([10, 20, 30]))
    offset = one_bucket_page_offset(path)
    with open(path, "r+b") as f:  # damage the entries of the one bucket page
        f.seek(offset + 100)
        byte = f.read(1)
        f.seek(offset + 100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(hashdir.CorruptError) as e:
        with hashdir.Reader(path) as r:
            r.lookup(keys_of([1, 2, 3]))
    assert e.value.status_name == "HASHDIR_ERR_CORRUPT"
    assert "corrupt" in str(e.value)


def test_bad_keys_values_and_batches(path):
    with hashdir.Writer(path) as w:
        bad = [
            # (call, args, exception, message)
            (w.insert, (b"short", key(1)), hashdir.InvalidArgumentError, "has 5 bytes"),
            (w.insert, (key(1) + b"\0", key(1)), hashdir.InvalidArgumentError, "has 17 bytes"),
            (w.insert, ([key(1), b"x"], [key(1), key(2)]), hashdir.InvalidArgumentError,
             r"keys\[1\] has 1 bytes"),
            (w.insert, ([key(1), key(2)], [key(1)]), hashdir.InvalidArgumentError,
             "2 keys but 1 values"),
            (w.insert, (key(1), [key(1), key(2)]), hashdir.InvalidArgumentError,
             "insert_values adds many values"),
            (w.insert, (np.zeros((2, 8), np.uint8), np.zeros((2, 8), np.uint8)),
             hashdir.InvalidArgumentError, r"shape \(n, 16\), not \(2, 8\)"),
            (w.insert, (np.zeros((2, 16), np.int64), np.zeros((2, 16), np.int64)),
             hashdir.InvalidArgumentError, "dtype int64"),
            (w.insert, (np.zeros((2, 16), np.float32), np.zeros((2, 16), np.uint8)),
             hashdir.InvalidArgumentError, "dtype float32"),
            (w.insert, (np.zeros((2, 2, 16), np.uint8), np.zeros((2, 2, 16), np.uint8)),
             hashdir.InvalidArgumentError, r"not \(2, 2, 16\)"),
            (w.insert, (np.zeros((2, 2), "V16"), np.zeros((2, 2), "V16")),
             hashdir.InvalidArgumentError, r"shape \(n,\)"),
            (w.insert, (np.zeros(3, "V8"), np.zeros(3, "V8")), hashdir.InvalidArgumentError,
             "dtype"),
            (w.insert, (np.zeros(16, np.int8), key(1)), hashdir.InvalidArgumentError,
             "dtype int8"),
            (w.insert, (12, key(1)), TypeError, "not int"),
            (w.insert, ("a string", key(1)), TypeError, "not str"),
            (w.insert, ([1, 2], [key(1), key(2)]), TypeError, "not int"),
            (w.insert_values, (keys_of([1, 2]), [key(1)]), hashdir.InvalidArgumentError,
             "one key of 16 bytes, not a batch"),
            (w.insert_values, (np.zeros(8, np.uint8), [key(1)]), hashdir.InvalidArgumentError,
             "16 bytes, not an array"),
            (w.delete_pairs, (keys_of([1]), keys_of([1, 2])), hashdir.InvalidArgumentError,
             "1 keys but 2 values"),
            (w.delete_keys, (np.zeros((1, 17), np.uint8),), hashdir.InvalidArgumentError,
             r"not \(1, 17\)"),
        ]
        for call, args, exc, message in bad:
            with pytest.raises(exc, match=message):
                call(*args)
        w.commit()
        st = w.stats()
        assert st.wal_bytes == 0, "nothing bad reached the log"
        with hashdir.Reader(path) as r:
            with pytest.raises(hashdir.InvalidArgumentError, match="shape"):
                r.lookup(np.zeros((3, 15), np.uint8))
            with pytest.raises(hashdir.InvalidArgumentError, match="dtype"):
                r.get(np.zeros((3, 16), np.uint16))
            with pytest.raises(hashdir.InvalidArgumentError, match="capacity"):
                r.get(keys_of([1]), capacity=-1)
            with pytest.raises(TypeError):
                r.lookup(None)
            with pytest.raises(hashdir.InvalidArgumentError):
                b"x" in r
    # InvalidArgumentError is a ValueError, as Python code expects of bad arguments.
    assert issubclass(hashdir.InvalidArgumentError, ValueError)


def test_options_out_of_range(path):
    with pytest.raises(hashdir.InvalidArgumentError, match="checkpoint_bytes"):
        hashdir.Writer(path, checkpoint_bytes=-1)
    # Within 64 bits but above the library's 4 GiB limit: the library says no.
    with pytest.raises(hashdir.InvalidArgumentError, match="checkpoint_bytes") as e:
        hashdir.Writer(path, checkpoint_bytes=5 << 30)
    assert str(e.value).startswith("hashdir_writer_open: ")
    assert not os.path.exists(path)
    with hashdir.Writer(path):
        pass
    with pytest.raises(hashdir.InvalidArgumentError, match="refresh_interval_ms"):
        hashdir.Reader(path, refresh_interval_ms=2**32)
    with pytest.raises(hashdir.InvalidArgumentError, match="NUL"):
        hashdir.Reader(path + "\0x")
    with pytest.raises(hashdir.InvalidArgumentError, match="empty"):
        hashdir.Reader("")


def test_closed_handles_refuse_calls(path):
    w = hashdir.Writer(path)
    w.insert(key(1), key(2))
    w.close()
    assert w.closed
    for call in (lambda: w.insert(key(1), key(2)), w.commit, w.checkpoint, w.gc, w.stats,
                 lambda: w.delete_keys(key(1)), lambda: w.insert_values(key(1), [key(3)])):
        with pytest.raises(hashdir.InvalidArgumentError, match="Writer is closed"):
            call()
    w.close()  # closing twice is fine
    with hashdir.Reader(path) as r:
        assert r.lookup(key(1)) == key(2)
    assert r.closed
    for call in (r.refresh, r.stats, lambda: r.lookup(key(1)), lambda: r.get(key(1)),
                 lambda: r.get(keys_of([1]))):
        with pytest.raises(hashdir.InvalidArgumentError, match="Reader is closed"):
            call()


def test_context_managers_close_on_exceptions(path):
    with pytest.raises(RuntimeError):
        with hashdir.Writer(path) as w:
            w.insert(key(7), key(70))
            raise RuntimeError("boom")
    assert w.closed  # closed, which commits (there is no rollback)
    with pytest.raises(RuntimeError):
        with hashdir.Reader(path) as r:
            assert r.lookup(key(7)) == key(70)
            raise RuntimeError("boom")
    assert r.closed
    # The lock went with the writer.
    with hashdir.Writer(path, create=False):
        pass


def test_a_forgotten_writer_releases_the_lock_when_collected(path):
    import gc

    w = hashdir.Writer(path)
    w.insert(key(3), key(30))
    del w
    gc.collect()
    with hashdir.Writer(path, create=False) as w:
        w.checkpoint()
        assert w.stats().keys == 1  # and it committed
