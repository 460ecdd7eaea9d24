"""A hashdir file is ordinary HDF5: h5py reads it (as an SWMR reader while a hashdir writer
has it open, plainly once none has), laid out as docs/FORMAT.md says.

h5py and a hashdir writer: hashdir files are HDF5 SWMR files. While a hashdir writer has
the file open, open it with h5py.File(path, "r", swmr=True, locking=False) (or set
HDF5_USE_FILE_LOCKING=FALSE); once no writer has it, a plain h5py.File(path, "r") works.
"""

import contextlib
import importlib.util
import io
import struct

import h5py
from conftest import ROOT
from formatdoc import check_layout, one_bucket_page, root_counts

import hashdir
from hashdir import key


def load_example():
    """examples/python/example.py as a module."""
    spec = importlib.util.spec_from_file_location(
        "example", ROOT / "examples" / "python" / "example.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_file_opens_with_h5py(tmp_path):
    path = str(tmp_path / "example.h5")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        load_example().main(path)
    assert "all checks passed" in out.getvalue()
    # The example closed its writer: no hashdir process holds the file, so a plain
    # read-only open works.
    with h5py.File(path, "r") as f:
        check_layout(f)
        root = root_counts(f)
        # Closing checkpoints: keys 1 and 4 with 2 + 100 values are in the root.
        assert (root["keys"], root["values"]) == (2, 102)
        assert root["extents"] == 1, "key 4's 100 values live in an extent"
    # The one bucket page, decoded from the raw bytes as docs/FORMAT.md describes it.
    entries = {k: (code, body) for k, code, body in one_bucket_page(path)}
    assert set(entries) == {key(1), key(4)}
    code, body = entries[key(1)]
    assert code == 2
    assert {body[:16], body[16:]} == {key(10), key(12)}
    code, body = entries[key(4)]
    assert code == 0xF, "an extent reference"
    assert struct.unpack_from("<Q", body, 0)[0] == 100, "its count"
    # ... and hashdir still reads it afterwards.
    with hashdir.Reader(path) as r:
        assert sorted(r.get(key(1))) == [key(10), key(12)]


def test_h5py_reads_while_a_writer_is_open(path):
    with hashdir.Writer(path) as w:
        w.insert([key(1), key(1), key(2)], [key(10), key(11), key(20)])
        w.commit()
        w.checkpoint()
        # The writer holds the file in SWMR mode: read it as an SWMR reader, without
        # HDF5's own file locks (the same as HDF5_USE_FILE_LOCKING=FALSE).
        with h5py.File(path, "r", swmr=True, locking=False) as f:
            check_layout(f)
            assert root_counts(f)["keys"] == 2
            assert root_counts(f)["values"] == 3
        w.insert([key(3)], [key(30)])
    with h5py.File(path, "r") as f:
        assert (root_counts(f)["keys"], root_counts(f)["values"]) == (3, 4)
