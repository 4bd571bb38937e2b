#!/usr/bin/env bash
# Every test, on a fresh machine: installs what the tests need, starts the
# servers they use on 127.0.0.1 and free ports, runs the suite, stops them.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
# Alone, the CLI is built without the engine's `testing` feature: this proves
# it compiles against the crate root's public API and nothing else.
cargo check -p cairn-cli -q

echo "==> building"
cargo build --workspace --all-targets -q

echo "==> S3 test servers (SeaweedFS and moto on 127.0.0.1)"
if [[ ${CAIRN_SKIP_S3:-} == 1 ]]; then
    echo "SKIPPED: S3 tests need a server (CAIRN_SKIP_S3=1); they will say so"
else
    scripts/s3-servers.sh start
    trap 'scripts/s3-servers.sh stop' EXIT
    set -a
    # shellcheck disable=SC1091
    . target/s3-servers.env
    set +a
fi

echo "==> data-platform servers (redis-server, PostgreSQL, git) for the source tests"
if [[ ${CAIRN_SKIP_PLATFORM:-} == 1 ]]; then
    echo "SKIPPED: installing redis-server and PostgreSQL (CAIRN_SKIP_PLATFORM=1); their tests will say so"
else
    scripts/platform-tools.sh
fi

echo "==> restic 0.19 (forget is compared with it; import restic reads its repositories)"
if [[ ${CAIRN_SKIP_RESTIC:-} == 1 ]]; then
    echo "SKIPPED: the tests against restic (CAIRN_SKIP_RESTIC=1); they will say so"
else
    mkdir -p target
    CAIRN_RESTIC="$(RESTIC_SUITE=sid bash benches/fetch-restic.sh target/restic-work | tail -n 1)"
    export CAIRN_RESTIC
fi

echo "==> tests"
# The end-to-end tests run the `cairn` that the build above made (they ask
# cargo for the same build, which finds nothing to do). target/ holds the
# servers' settings and this log even when CARGO_TARGET_DIR is elsewhere.
mkdir -p target
cargo test --workspace -q 2>&1 | tee target/test-output.txt
