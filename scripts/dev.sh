#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine (and CI):
#   bash scripts/dev.sh demo   install what is missing, build, run the writer+reader demo (10 M pairs)
#   bash scripts/dev.sh test   install what is missing, build, run the whole test suite
# Extra arguments go to the benchmark (demo) or to `cargo test` (test).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_packages() {
  # C toolchain for the bundled HDF5 and the C tests; nm for the symbol checks; pkg-config for
  # the .pc test; h5dump (hdf5-tools) to show files stay readable by stock HDF5 tools;
  # gfortran for the Fortran example (tests/examples.rs); Open MPI (mpicc, mpifort, mpirun) for
  # libhashdir_mpi and its examples (tests/mpi.rs).
  local need=(build-essential binutils pkg-config hdf5-tools gfortran python3-pip curl ca-certificates valgrind
    openmpi-bin libopenmpi-dev)
  local missing=()
  for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  fi
}

install_cmake() {
  # The bundled HDF5 2.2.0 needs CMake >= 3.26; Debian 12 ships 3.25, PyPI has current ones.
  if cmake --version 2>/dev/null | awk 'NR==1{split($3,v,"."); exit !(v[1]>3 || (v[1]==3 && v[2]>=26))}'; then
    return
  fi
  if [ "$(id -u)" -eq 0 ]; then
    python3 -m pip install --quiet --break-system-packages "cmake>=3.26"
  else
    python3 -m pip install --quiet --user --break-system-packages "cmake>=3.26"
  fi
  PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$HOME/.local/bin:$PATH"
  export PATH
  cmake --version | head -n 1
}

install_python_packages() {
  # NumPy (the Python package's dependency), h5py and pytest for the Python package's tests
  # (tests/python.rs runs python/tests with pytest; they read hashdir files with h5py to
  # show they are ordinary HDF5) and the Python example (tests/examples.rs).
  if python3 -c 'import numpy, h5py, pytest' 2>/dev/null; then
    return
  fi
  if [ "$(id -u)" -eq 0 ]; then
    python3 -m pip install --quiet --break-system-packages numpy h5py pytest
  else
    python3 -m pip install --quiet --user --break-system-packages numpy h5py pytest
  fi
  python3 -c 'import numpy, h5py, pytest
print("numpy", numpy.__version__, "h5py", h5py.__version__, "pytest", pytest.__version__)'
}

install_rust() {
  # Debian's rustc is too old for this crate; rustup installs the current stable toolchain.
  [ -x "$HOME/.cargo/bin/cargo" ] && PATH="$HOME/.cargo/bin:$PATH"
  if ! command -v cargo >/dev/null 2>&1; then
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    PATH="$HOME/.cargo/bin:$PATH"
  fi
  export PATH
}

setup() {
  install_packages
  install_cmake
  install_python_packages
  install_rust
}

cmd="${1:-}"
shift || true
case "$cmd" in
  demo)
    setup
    exec cargo bench --bench hashdir -- "$@"
    ;;
  test)
    setup
    # The benchmark (the demo) is built too: `cargo test` alone does not compile benches.
    cargo build --release --benches
    exec cargo test --release "$@"
    ;;
  setup)
    setup
    ;;
  *)
    echo "usage: bash scripts/dev.sh demo|test|setup [args]" >&2
    exit 2
    ;;
esac
