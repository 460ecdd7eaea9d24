#!/usr/bin/env bash
# Coverage-guided fuzzing of the file and WAL decoders with libFuzzer on stable Rust:
#   bash fuzz/run.sh build                   build both targets (fuzz/target/…/release/{image,wal})
#   bash fuzz/run.sh image|wal [SECONDS] [libFuzzer flags…]
#                                            fuzz one target from its corpus (default 60 s);
#                                            new inputs land in fuzz/corpus/<t>/, or in
#                                            $FUZZ_NEW when set (the tests' scratch directory)
#   bash fuzz/run.sh merge image|wal         minimize the committed corpus after a long run
# Crashes are written to fuzz/artifacts/<target>/ (or $FUZZ_ARTIFACTS); replay one with
#   fuzz/target/x86_64-unknown-linux-gnu/release/<target> <file>
# The same sanitizer-coverage flags cargo-fuzz uses, without its nightly-only sanitizers. The
# explicit --target keeps the flags off build scripts.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
triple="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR="$here/target"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks"
bin="$CARGO_TARGET_DIR/$triple/release"

build() {
  cargo build --release --manifest-path "$here/Cargo.toml" --target "$triple" --bins
}

case "${1:-}" in
  build) build ;;
  image | wal)
    t="$1"
    secs="${2:-60}"
    shift $(($# < 2 ? $# : 2))
    build
    new="${FUZZ_NEW:-$here/corpus/$t}"
    artifacts="${FUZZ_ARTIFACTS:-$here/artifacts/$t}"
    mkdir -p "$new" "$artifacts"
    "$bin/$t" -max_total_time="$secs" -max_len=262144 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$artifacts/" "$@" "$new" "$here/corpus/$t"
    ;;
  merge)
    t="${2:?merge image|wal}"
    build
    tmp="$(mktemp -d)"
    mv "$here/corpus/$t" "$tmp/old"
    mkdir -p "$here/corpus/$t"
    "$bin/$t" -merge=1 -max_len=262144 "$here/corpus/$t" "$tmp/old"
    rm -rf "$tmp"
    ;;
  *)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
