#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation on a
# stable toolchain (what cargo-fuzz does with `--sanitizer none`). The
# explicit --target keeps the flags off build scripts and proc-macros.
set -euo pipefail
cd "$(dirname "$0")"
target=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
cargo build --release --locked --target "$target" --bins
echo "fuzz targets: $PWD/target/$target/release/{frame,dispatch}"
