#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ (one per decoder) for a while, one after
# another, and says per target how many inputs it ran and whether it found a
# crash. New interesting inputs land in fuzz/corpus/<target>/; crashes in
# fuzz/artifacts/<target>/ (each must become a fix plus a copy of the input
# under fuzz/regressions/<target>/, which engine/tests/fuzz_corpus.rs replays).
#
# Usage: scripts/fuzz-soak.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  default 600 (10 minutes); also FUZZ_SECONDS
#   TARGET...           default: every target (`cargo fuzz list`)
# Environment:
#   FUZZ_SANITIZER  none (default, fastest) or address
#   FUZZ_JOBS       parallel fuzzing jobs per target (default 1)
#   FUZZ_CMIN=1     minimize each corpus afterwards (`cargo fuzz cmin`)
#
# Only a stable toolchain is needed: RUSTC_BOOTSTRAP=1 lets it accept the
# flags cargo-fuzz passes. cargo-fuzz is installed if missing.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

SECONDS_PER_TARGET="${1:-${FUZZ_SECONDS:-600}}"
shift || true
SANITIZER="${FUZZ_SANITIZER:-none}"
JOBS="${FUZZ_JOBS:-1}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz (a few minutes)"
    cargo install cargo-fuzz --locked
fi

if [[ $# -gt 0 ]]; then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <(cargo fuzz list)
fi

echo "==> building ${#TARGETS[@]} targets (sanitizer: $SANITIZER)"
cargo fuzz build -s "$SANITIZER"

LOGS="$(mktemp -d -t cairn-fuzz.XXXXXX)"
failed=0
summary=()
for t in "${TARGETS[@]}"; do
    echo "==> fuzzing $t for ${SECONDS_PER_TARGET}s"
    mkdir -p "corpus/$t"
    set +e
    # libFuzzer's own limits: 2 GiB RSS, 2 GiB per allocation, 10 s per input.
    parallel=()
    if [[ $JOBS -gt 1 ]]; then parallel=(-jobs="$JOBS" -workers="$JOBS"); fi
    cargo fuzz run -s "$SANITIZER" "$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" "${parallel[@]}" \
        -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        >"$LOGS/$t.log" 2>&1
    rc=$?
    set -e
    # With -jobs, libFuzzer writes each job's log to fuzz-N.log.
    cat "$LOGS/$t.log" fuzz-*.log 2>/dev/null > "$LOGS/$t.all" || true
    rm -f fuzz-*.log
    runs=$(grep -h 'stat::number_of_executed_units' "$LOGS/$t.all" | awk '{s += $2} END {print s + 0}')
    crashes=$(find "artifacts/$t" -type f 2>/dev/null | wc -l)
    line="$t: $runs executions, exit $rc, $crashes crash file(s) in fuzz/artifacts/$t"
    summary+=("$line")
    echo "    $line"
    if [[ $rc -ne 0 ]]; then
        failed=1
        grep -h -m 5 -E 'panicked|ERROR: libFuzzer|SUMMARY' "$LOGS/$t.all" || true
    fi
    if [[ ${FUZZ_CMIN:-0} == 1 ]]; then
        cargo fuzz cmin -s "$SANITIZER" "$t" "corpus/$t" >"$LOGS/$t.cmin" 2>&1 || true
    fi
done

echo "==> summary (logs in $LOGS)"
printf '%s\n' "${summary[@]}"
exit $failed
