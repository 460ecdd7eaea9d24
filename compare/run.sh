#!/usr/bin/env bash
# Side-by-side benchmark of hashdir against LMDB, RocksDB and tkrzw (see compare/README.md):
#   bash compare/run.sh [bench options, e.g. --keys 200k --lookups 100k]
#
# 1. installs the peers' Debian packages if missing (with sudo unless root);
# 2. installs hashdir into $PREFIX (default compare/.prefix) with scripts/install.sh --no-cli,
#    which runs `cargo build --release --lib` first; HASHDIR_NO_BUILD=1 passes --no-build
#    (installs what an earlier release build left in the target directory);
# 3. compiles compare/bench.cpp into compare/.build/bench (rpath to $PREFIX/lib);
# 4. runs it with the arguments given here.
# Not part of the cargo build, the tests or CI.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
PREFIX="${PREFIX:-$here/.prefix}"
case "$PREFIX" in
  /*) ;;
  *) PREFIX="$(pwd)/$PREFIX" ;;
esac
build="$here/.build"
CXX="${CXX:-g++}"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# 1. Peers' packages.
need=(liblmdb-dev librocksdb-dev libtkrzw-dev pkg-config g++)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "run.sh: installing ${missing[*]}" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" ||
    { as_root env DEBIAN_FRONTEND=noninteractive apt-get update &&
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; }
fi

# 2. hashdir into the prefix.
install_args=(--no-cli)
[ "${HASHDIR_NO_BUILD:-0}" = 1 ] && install_args+=(--no-build)
bash "$root/scripts/install.sh" "${install_args[@]}" "$PREFIX" >&2

# 3. Compile. pkg-config names of the Debian packages: lmdb, rocksdb, tkrzw.
export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
pkg-config --exists hashdir ||
  { echo "run.sh: no hashdir.pc under $PREFIX/lib/pkgconfig" >&2; exit 1; }
flags=()
read -r -a f <<<"$(pkg-config --cflags --libs hashdir)"
flags+=("${f[@]}")
for lib in lmdb rocksdb tkrzw; do
  if pkg-config --exists "$lib"; then
    read -r -a f <<<"$(pkg-config --cflags --libs "$lib")"
    flags+=("${f[@]}")
  else
    flags+=("-l$lib")
  fi
done
mkdir -p "$build"
echo "run.sh: $CXX -O2 -std=c++17 -Wall -Wextra compare/bench.cpp ${flags[*]} -Wl,-rpath,$PREFIX/lib" >&2
"$CXX" -O2 -std=c++17 -Wall -Wextra -o "$build/bench" "$here/bench.cpp" "${flags[@]}" \
  -Wl,-rpath,"$PREFIX/lib"

# 4. Run.
exec "$build/bench" "$@"
