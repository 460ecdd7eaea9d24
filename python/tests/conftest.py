"""Shared fixtures of the hashdir package's tests.

Run them against an installed package (tests/python.rs installs the wheel it builds into
a scratch directory and puts that on PYTHONPATH):

    python3 -m pytest python/tests

They need numpy, h5py and pytest (`bash scripts/dev.sh setup` installs them).
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import hashdir

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def path(tmp_path):
    """A fresh file name in a scratch directory."""
    return str(tmp_path / "t.h5")


def keys_of(ns) -> np.ndarray:
    """An (n, 16) uint8 batch holding hashdir.key(i) for each i of ns."""
    ns = np.asarray(ns, dtype=np.uint64)
    out = np.zeros((len(ns), 16), np.uint8)
    out[:, :8] = ns.astype("<u8").view(np.uint8).reshape(-1, 8)
    return out


def ints_of(batch: np.ndarray) -> list:
    """The integers of an (n, 16) uint8 batch made by keys_of (first 8 bytes)."""
    return np.ascontiguousarray(batch[:, :8]).view("<u8").ravel().tolist()


def python_process(code: str, *args: str) -> subprocess.Popen:
    """A Python child process running `code` (dedented), talking through text pipes, with
    this process's environment (so it imports the same hashdir)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
        env=dict(os.environ),
    )


def ask(proc: subprocess.Popen, line: str) -> str:
    """Sends one line to a child made by python_process and returns its one-line answer."""
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    answer = proc.stdout.readline()
    if not answer:
        raise AssertionError(f"child exited ({proc.wait()}): {proc.stderr.read()}")
    return answer.strip()


@pytest.fixture
def filled(path):
    """A committed file where key i (0 <= i < 1000) has the values i + 1 and i + 2."""
    ks = keys_of(range(1000))
    with hashdir.Writer(path) as w:
        w.insert(np.concatenate([ks, ks]), np.concatenate([keys_of(range(1, 1001)),
                                                           keys_of(range(2, 1002))]))
        w.commit()
    return path
