#!/usr/bin/env bash
# Fingerprint throughput benchmark: Vigil's lexer vs sqlparser's tokenizer vs libpg_query.
# Needs the Debian packages libclang-dev and protobuf-compiler (pg_query builds libpg_query).
# Usage: bench/fingerprint/run.sh [statements (>= 1000)] [seconds per method]
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v protoc >/dev/null || ! ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1; then
    echo "missing build dependencies: apt-get install -y libclang-dev protobuf-compiler" >&2
    exit 1
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-../../target-analyzer-bench}"
cargo run --release --quiet -- "${1:-2000}" "${2:-3}"
