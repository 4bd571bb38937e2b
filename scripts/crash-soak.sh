#!/usr/bin/env bash
# The SIGKILL soak: the crash campaign of tests/tests/e2e/crash.rs
# (`sigkill_campaign`: kills `cairn backup`, and every 8th trial a prune, at
# random moments; after each kill `check` passes, the next run completes and
# its snapshot restores exactly; at the end prune removes every leftover and
# `check --read-data` passes) for many more trials than the test suite's 30.
#
#   scripts/crash-soak.sh [TRIALS] [SEED]     (default: 1000 trials, seed from the clock)
#
# The seed is printed first; a failure reproduces with the same TRIALS and
# SEED. Output goes to the terminal and to target/crash-soak.log.
set -euo pipefail
cd "$(dirname "$0")/.."
trials="${1:-1000}"
export CAIRN_CRASH_TRIALS="$trials"
if [ -n "${2:-}" ]; then
    export CAIRN_CRASH_SEED="$2"
fi
mkdir -p target
# The single campaign test, its progress shown as it goes.
cargo test -p cairn-tests --test e2e -- --exact crash::sigkill_campaign --nocapture 2>&1 |
    tee target/crash-soak.log
