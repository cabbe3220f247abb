#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer on the stable toolchain.
#
# cargo-fuzz needs nightly only for its sanitizer flags; the coverage instrumentation that
# libFuzzer steers by is plain (stable) rustc codegen flags, which this script passes itself.
# No AddressSanitizer, then: the targets are safe Rust, so memory errors would need an
# `unsafe` bug in a dependency; panics, overflows (checks on) and hangs are all caught.
#
#   bash fuzz/run-stable.sh [RUNS]      # default: 10,000,000 executions per target
set -euo pipefail
cd "$(dirname "$0")"
runs=${1:-10000000}
triple=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares \
  --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps the flags off build scripts and proc macros, as cargo-fuzz does.
cargo build --release --target "$triple" --target-dir target/stable-fuzz
for target in frame_decoder field_block; do
  mkdir -p "corpus/$target"
  echo "== $target: $runs runs"
  "target/stable-fuzz/$triple/release/$target" -runs="$runs" -print_final_stats=1 \
    "corpus/$target" 2>&1 | grep -E '^(#[0-9]+.*DONE|stat::|Done|==[0-9]+== ERROR)|panicked' || true
done
