#!/usr/bin/env bash
# Builds and installs hashdir for C/C++/Fortran programs and the shell:
#   bash scripts/install.sh [--no-cli] [--no-build] [PREFIX]
#
#   PREFIX/lib/libhashdir.so.VERSION       the shared library (VERSION = the crate version)
#   PREFIX/lib/libhashdir.so.0             -> libhashdir.so.VERSION (the soname the loader wants)
#   PREFIX/lib/libhashdir.so               -> libhashdir.so.0 (what `-lhashdir` links)
#   PREFIX/lib/libhashdir.a                the static library
#   PREFIX/include/hashdir.h               the header
#   PREFIX/include/hashdir.hpp             the C++20 wrapper (header-only, over hashdir.h)
#   PREFIX/share/hashdir/fortran/hashdir.f90   the Fortran 2008 module `hashdir`, as source
#   PREFIX/lib/pkgconfig/hashdir.pc        pkgconfig/hashdir.pc.in with PREFIX and VERSION
#   PREFIX/lib/cmake/hashdir/hashdirConfig.cmake, hashdirConfigVersion.cmake
#                                          the CMake package: find_package(hashdir CONFIG)
#                                          gives hashdir::hashdir, hashdir::hashdir_static
#                                          and (Fortran enabled) hashdir::fortran; where
#                                          libhashdir_mpi is installed (below) and CMake
#                                          finds MPI, hashdir::mpi and hashdir::mpi_fortran
#   PREFIX/bin/hashdir                     the command-line tool (not with --no-cli)
# and, where an MPI C compiler wrapper is found ($MPICC, else mpicc on PATH), libhashdir_mpi
# (mpi/hashdir_mpi.c, built with it against that MPI and the libhashdir above):
#   PREFIX/lib/libhashdir_mpi.so.VERSION, .so.0, .so   the library (soname libhashdir_mpi.so.0)
#   PREFIX/include/hashdir_mpi.h           its header
#   PREFIX/share/hashdir/fortran/hashdir_mpi.f90   the Fortran module `hashdir_mpi`, as source
#   PREFIX/lib/pkgconfig/hashdir_mpi.pc    pkgconfig/hashdir_mpi.pc.in rendered (with the mpicc)
# Without one it says so and installs the rest.
#
# PREFIX is the argument, else $PREFIX, else /usr/local. DESTDIR (staged installs, packaging)
# is put in front of every path written; the installed files still say PREFIX.
# --no-build installs what an earlier `cargo build --release` left in the target directory,
# without running cargo at all (it need not be installed): the target directory is
# $CARGO_TARGET_DIR, else $CARGO_BUILD_TARGET_DIR, else the project's ./target (relative
# paths are relative to the project); a target-dir set in a cargo config file is not read,
# so set CARGO_TARGET_DIR to it. $CARGO_BUILD_TARGET adds its triple as with cargo.
# The build uses cargo's target directory (as `cargo metadata` reports it), so a tree
# that is already built is only checked, not rebuilt. After a real (non-DESTDIR) install as
# root into /usr/lib or /usr/local/lib, ldconfig refreshes the loader's cache.
set -euo pipefail

usage() {
  echo "usage: bash scripts/install.sh [--no-cli] [--no-build] [PREFIX]   (env: DESTDIR, PREFIX)" >&2
  exit 2
}

cli=1
build=1
prefix="${PREFIX:-/usr/local}"
prefix_given=0
while [ $# -gt 0 ]; do
  case "$1" in
    --no-cli) cli=0 ;;
    --no-build) build=0 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
      exit 0
      ;;
    -*) echo "install.sh: unknown option $1" >&2; usage ;;
    *)
      [ "$prefix_given" = 0 ] || { echo "install.sh: more than one PREFIX" >&2; usage; }
      prefix="$1"
      prefix_given=1
      ;;
  esac
  shift
done
case "$prefix" in
  /*) ;;
  *) echo "install.sh: PREFIX must be an absolute path, not '$prefix'" >&2; exit 2 ;;
esac
prefix="${prefix%/}"
[ -n "$prefix" ] || prefix=/
destdir="${DESTDIR:-}"
destdir="${destdir%/}"

cd "$(dirname "$0")/.."
cargo="${CARGO:-cargo}"

# The crate version: the first `version = "..."` of the [package] table.
version="$(awk '
  /^\[/ { in_package = ($0 == "[package]") }
  in_package && /^version *=/ { gsub(/.*= *"|".*/, ""); print; exit }
' Cargo.toml)"
[ -n "$version" ] || { echo "install.sh: no [package] version in Cargo.toml" >&2; exit 1; }

if [ "$build" = 1 ]; then
  targets=(--lib)
  [ "$cli" = 0 ] || targets+=(--bin hashdir)
  echo "install.sh: $cargo build --release ${targets[*]}" >&2
  "$cargo" build --release "${targets[@]}"
  target_dir="$("$cargo" metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
  [ -n "$target_dir" ] || { echo "install.sh: cargo metadata gave no target_directory" >&2; exit 1; }
else
  # No cargo: the directory cargo builds into unless a config file says otherwise (the
  # environment wins over config files, CARGO_TARGET_DIR over CARGO_BUILD_TARGET_DIR).
  target_dir="${CARGO_TARGET_DIR:-${CARGO_BUILD_TARGET_DIR:-target}}"
fi
out="$target_dir/${CARGO_BUILD_TARGET:+$CARGO_BUILD_TARGET/}release"

need() {
  [ -f "$1" ] && return
  echo "install.sh: $1 is missing (build first, or drop --no-build)" >&2
  if [ "$build" = 0 ]; then
    echo "install.sh: --no-build looks in \$CARGO_TARGET_DIR, else \$CARGO_BUILD_TARGET_DIR," \
      "else ./target; set CARGO_TARGET_DIR to the target directory of that build" >&2
  fi
  exit 1
}
need "$out/libhashdir.so"
need "$out/libhashdir.a"
[ "$cli" = 0 ] || need "$out/hashdir"

# The name the loader looks for is the library's SONAME (set by build.rs).
soname=""
if command -v objdump >/dev/null 2>&1; then
  soname="$(objdump -p "$out/libhashdir.so" | awk '$1 == "SONAME" { print $2 }')"
fi
[ -n "$soname" ] || soname="libhashdir.so.${version%%.*}"
real="libhashdir.so.$version"

root="$destdir$prefix"
lib="$root/lib"
installed=()
put() { # mode source destination
  install -m "$1" "$2" "$3"
  installed+=("$3")
}

install -d "$lib/pkgconfig" "$lib/cmake/hashdir" "$root/include" "$root/share/hashdir/fortran"
put 0755 "$out/libhashdir.so" "$lib/$real"
if [ "$soname" != "$real" ]; then
  ln -sfn "$real" "$lib/$soname"
  installed+=("$lib/$soname -> $real")
fi
ln -sfn "$soname" "$lib/libhashdir.so"
installed+=("$lib/libhashdir.so -> $soname")
put 0644 "$out/libhashdir.a" "$lib/libhashdir.a"
put 0644 include/hashdir.h "$root/include/hashdir.h"
put 0644 include/hashdir.hpp "$root/include/hashdir.hpp"
put 0644 fortran/hashdir.f90 "$root/share/hashdir/fortran/hashdir.f90"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# The template's comments explain how to render it; the rendered file keeps only the fields.
prefix_sed="$(printf '%s' "$prefix" | sed 's/[|&\\]/\\&/g')"
sed -e '/^#/d' -e "s|@PREFIX@|$prefix_sed|g" -e "s|@VERSION@|$version|g" \
  pkgconfig/hashdir.pc.in >"$scratch/hashdir.pc"
put 0644 "$scratch/hashdir.pc" "$lib/pkgconfig/hashdir.pc"

# The CMake files find the prefix from their own path; they are told the library's file
# names and, for the static library, the .pc file's Libs.private (-lm -> m, as a CMake list).
libs_private="$(sed -n 's/^Libs\.private: *//p' pkgconfig/hashdir.pc.in |
  sed -e 's/^-l//' -e 's/  *-l/;/g')"
for f in hashdirConfig hashdirConfigVersion; do
  sed -e "s|@VERSION@|$version|g" -e "s|@REAL@|$real|g" -e "s|@SONAME@|$soname|g" \
    -e "s|@LIBS_PRIVATE@|$libs_private|g" "cmake/$f.cmake.in" >"$scratch/$f.cmake"
  put 0644 "$scratch/$f.cmake" "$lib/cmake/hashdir/$f.cmake"
done

if [ "$cli" = 1 ]; then
  install -d "$root/bin"
  put 0755 "$out/hashdir" "$root/bin/hashdir"
fi

# libhashdir_mpi: a C layer over hashdir.h, built per MPI implementation (like parallel HDF5).
mpicc="${MPICC:-mpicc}"
if mpicc_path="$(command -v "$mpicc")"; then
  mpi_real="libhashdir_mpi.so.$version"
  echo "install.sh: $mpicc_path: building libhashdir_mpi" >&2
  # $ORIGIN: the library finds libhashdir.so.0 beside itself wherever the tree is moved.
  "$mpicc_path" -std=c11 -O2 -fPIC -shared -Wall -Iinclude mpi/hashdir_mpi.c \
    -o "$scratch/$mpi_real" -Wl,-soname,libhashdir_mpi.so.0 -Wl,-rpath,'$ORIGIN' \
    -L"$out" -lhashdir
  put 0755 "$scratch/$mpi_real" "$lib/$mpi_real"
  ln -sfn "$mpi_real" "$lib/libhashdir_mpi.so.0"
  ln -sfn libhashdir_mpi.so.0 "$lib/libhashdir_mpi.so"
  installed+=("$lib/libhashdir_mpi.so.0 -> $mpi_real" "$lib/libhashdir_mpi.so -> libhashdir_mpi.so.0")
  put 0644 include/hashdir_mpi.h "$root/include/hashdir_mpi.h"
  put 0644 fortran/hashdir_mpi.f90 "$root/share/hashdir/fortran/hashdir_mpi.f90"
  mpicc_sed="$(printf '%s' "$mpicc_path" | sed 's/[|&\\]/\\&/g')"
  sed -e '/^#/d' -e "s|@PREFIX@|$prefix_sed|g" -e "s|@VERSION@|$version|g" \
    -e "s|@MPICC@|$mpicc_sed|g" pkgconfig/hashdir_mpi.pc.in >"$scratch/hashdir_mpi.pc"
  put 0644 "$scratch/hashdir_mpi.pc" "$lib/pkgconfig/hashdir_mpi.pc"
else
  echo "install.sh: no MPI C compiler ($mpicc; set MPICC): libhashdir_mpi is not built" >&2
fi

if [ -z "$destdir" ] && [ "$(id -u)" -eq 0 ] && command -v ldconfig >/dev/null 2>&1; then
  case "$prefix" in
    /usr | /usr/local) ldconfig ;;
  esac
fi

printf 'installed hashdir %s:\n' "$version"
printf '  %s\n' "${installed[@]}"
