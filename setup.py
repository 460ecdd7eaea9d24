"""Builds the Python package `hashdir` (metadata in pyproject.toml): the pure-Python code in
python/hashdir plus the C library, built by cargo and copied into the package as
hashdir/libhashdir.so, and its header as hashdir/include/hashdir.h.

    python3 -m pip install .      # build with cargo, install
    python3 -m pip wheel .        # a wheel for machines without Rust

cargo builds into its usual target directory (./target, or $CARGO_TARGET_DIR): a tree
that `cargo build --release --lib` or scripts/install.sh already built is reused as it is,
not rebuilt. Building from scratch needs Rust, a C compiler and CMake >= 3.26 (for the
bundled HDF5); `bash scripts/dev.sh setup` installs them on Debian 12.

The wheel is tagged py3-none-<platform>: the package has no Python extension (it calls
the library through ctypes), so one wheel serves every CPython 3 version, but the library
makes it specific to the platform (Linux x86-64 with the builder's glibc or newer).

No dependency beyond setuptools: a custom build_py is some forty lines, where
setuptools-rust's binding-less mode installs the library under a CPython extension
module's name (`*.cpython-311-*.so`, or `*.abi3.so`), tagging the wheel for CPython, and
maturin's only ABI-level mode generates cffi bindings.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def crate_version() -> str:
    """The first `version = "..."` of Cargo.toml's [package] table: the package's version."""
    section = None
    for line in (ROOT / "Cargo.toml").read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[package]":
            m = re.match(r'version\s*=\s*"([^"]+)"', line)
            if m:
                return m.group(1)
    raise RuntimeError("no [package] version in Cargo.toml")


def tool_env() -> dict:
    """The environment for cargo: the user's, with the places scripts/dev.sh installs Rust
    and CMake added to PATH (a shell opened before the install does not have them yet).

    pip builds in an isolated environment whose PYTHONPATH and PYTHONNOUSERSITE would also
    isolate the Python programs cargo's build scripts run, such as the `cmake` that
    `pip install cmake` provides (a Python script that imports its own module, which the
    isolated environment hides). cargo's tools get them unset."""
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONNOUSERSITE"):
        env.pop(var, None)
    extra = [
        os.path.join(os.path.expanduser("~"), ".cargo", "bin"),
        sysconfig.get_path("scripts"),
        os.path.join(os.path.expanduser("~"), ".local", "bin"),
    ]
    env["PATH"] = os.pathsep.join([env.get("PATH", "")] + [d for d in extra if os.path.isdir(d)])
    return env


def cargo_build() -> Path:
    """Runs `cargo build --release --lib` and returns the path of libhashdir.so."""
    env = tool_env()
    cargo = env.get("CARGO") or shutil.which("cargo", path=env["PATH"])
    if not cargo:
        raise SystemExit(
            "hashdir: cargo (Rust) is needed to build the library: `bash scripts/dev.sh setup` "
            "installs it (or see https://rustup.rs). A wheel built elsewhere "
            "(`python3 -m pip wheel .`) installs without it."
        )
    cmd = [
        cargo, "build", "--release", "--lib",
        "--message-format=json-render-diagnostics",
        "--manifest-path", str(ROOT / "Cargo.toml"),
    ]
    print("hashdir: " + " ".join(cmd), file=sys.stderr, flush=True)
    # Cargo's messages go to stderr (shown by `pip -v`); its JSON artifacts to stdout.
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"hashdir: cargo build failed (exit {proc.returncode}).{cmake_hint(env)}")
    for line in proc.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "hashdir":
            for f in msg.get("filenames", []):
                if f.endswith("/libhashdir.so"):
                    return Path(f)
    raise SystemExit("hashdir: cargo reported no libhashdir.so")


def cmake_hint(env: dict) -> str:
    """A hint when the CMake the bundled HDF5 build needs is missing, broken or too old."""
    try:
        out = subprocess.run(["cmake", "--version"], env=env, capture_output=True, text=True)
        m = re.search(r"version (\d+)\.(\d+)", out.stdout)
        if out.returncode == 0 and m and (int(m.group(1)), int(m.group(2))) >= (3, 26):
            return ""
    except OSError:
        pass
    return (
        " The bundled HDF5 needs CMake >= 3.26 on PATH: python3 -m pip install 'cmake>=3.26'"
        " (or bash scripts/dev.sh setup)."
    )


class BuildPyWithLibrary(build_py):
    """build_py, then the library and header into the package."""

    def run(self):
        super().run()
        lib = cargo_build()
        package = Path(self.build_lib) / "hashdir"
        (package / "include").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lib, package / "libhashdir.so")
        os.chmod(package / "libhashdir.so", 0o755)
        # The release profile keeps line tables (debug = 1): 29 MB of the library's 34.
        # The wheel drops them (symbols stay, so backtraces still name functions).
        objcopy = shutil.which("objcopy")
        if objcopy:
            subprocess.run([objcopy, "--strip-debug", str(package / "libhashdir.so")], check=True)
        shutil.copyfile(ROOT / "include" / "hashdir.h", package / "include" / "hashdir.h")


class BinaryDistribution(Distribution):
    """Not pure Python: the package carries a shared library, so it installs into the
    platform's site-packages (platlib) and its wheel names a platform."""

    def has_ext_modules(self):
        return True


class PlatformWheel(bdist_wheel):
    """A wheel for one platform but any Python 3: py3-none-<platform>."""

    def get_tag(self):
        _, _, plat = super().get_tag()
        return "py3", "none", plat


# setuptools' scratch directories go under cargo's target directory (ignored by git), not
# into the source tree.
scratch = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "python-build"
scratch.mkdir(parents=True, exist_ok=True)

setup(
    version=crate_version(),
    distclass=BinaryDistribution,
    cmdclass={"build_py": BuildPyWithLibrary, "bdist_wheel": PlatformWheel},
    options={"build": {"build_base": str(scratch)}, "egg_info": {"egg_base": str(scratch)}},
)
