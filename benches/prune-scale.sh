#!/usr/bin/env bash
# Prune at scale: generates a repository of 1,000,000 data blobs and 1,000
# snapshots with gen-repo, forgets the older half, and measures
# `prune --dry-run` and `prune --instant-delete` (peak RSS, wall time),
# after `stats` and `stats --mode raw-data --cost` over every snapshot.
# See benches/README.md ("Prune at scale"). Examples:
#   bash benches/prune-scale.sh
#   CAIRN_BIN=/work/main-target/release/cairn bash benches/prune-scale.sh --work /tmp/ps
#   bash benches/prune-scale.sh --blobs 20000 --snapshots 50 -- --blobs-per-pack 16
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

blobs=1000000
snapshots=1000
keep=""
work=""
build=1
check=1
gen_args=()

usage() {
    cat <<EOF
usage: prune-scale.sh [--blobs N] [--snapshots N] [--keep N] [--work DIR]
                      [--no-build] [--no-check] [-- GEN-REPO-OPTIONS...]
  --blobs N       data blobs (default 1000000)
  --snapshots N   snapshots (default 1000)
  --keep N        forget --keep-last N (default: half the snapshots)
  --work DIR      keep everything in DIR (DIR/repo must not exist);
                  default: a temporary folder, removed at the end
  --no-build      use the binaries already built (CAIRN_BIN, GEN_REPO_BIN,
                  or target/release)
  --no-check      do not run \`cairn check\` after the prune
  -- ...          passed to gen-repo (e.g. --blobs-per-pack 16)
environment: CAIRN_BIN (the cairn to measure; default: built from this
tree), GEN_REPO_BIN, CARGO_TARGET_DIR, TIME_BIN (default /usr/bin/time;
"none" polls VmHWM instead)
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --blobs) blobs="$2"; shift 2 ;;
        --snapshots) snapshots="$2"; shift 2 ;;
        --keep) keep="$2"; shift 2 ;;
        --work) work="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        --no-check) check=0; shift ;;
        --) shift; gen_args=("$@"); break ;;
        -h|--help) usage; exit 0 ;;
        *) echo "prune-scale: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
keep="${keep:-$((snapshots / 2))}"

target="${CARGO_TARGET_DIR:-$root/target}"
if [ "$build" = 1 ]; then
    (cd "$root" && cargo build --release -p cairn-benches --bin gen-repo)
    if [ -z "${CAIRN_BIN:-}" ]; then
        (cd "$root" && cargo build --release -p cairn-cli)
    fi
fi
cairn="${CAIRN_BIN:-$target/release/cairn}"
gen="${GEN_REPO_BIN:-$target/release/gen-repo}"
for b in "$cairn" "$gen"; do
    [ -x "$b" ] || { echo "prune-scale: $b is not an executable (build it or set CAIRN_BIN / GEN_REPO_BIN)" >&2; exit 1; }
done

temporary=0
if [ -z "$work" ]; then
    work="$(mktemp -d "${TMPDIR:-/tmp}/prune-scale.XXXXXX")"
    temporary=1
    trap 'rm -rf "$work"' EXIT
else
    mkdir -p "$work"
fi
repo="$work/repo"
logs="$work/logs"
if [ -e "$repo" ]; then
    echo "prune-scale: $repo exists; remove it or choose another --work" >&2
    exit 1
fi
mkdir -p "$logs"
printf 'prune-scale\n' > "$work/password"
export CAIRN_PASSWORD_FILE="$work/password"
unset CAIRN_PASSWORD CAIRN_PASSWORD_COMMAND CAIRN_REPOSITORY

# Peak RSS comes from GNU time when it is installed; otherwise from VmHWM
# in /proc/PID/status, polled every 20 ms while the process runs (which can
# miss growth in the last poll interval: the number is then a lower bound).
# TIME_BIN=none forces the fallback (to test it).
time_bin="${TIME_BIN:-/usr/bin/time}"
if [ -x "$time_bin" ]; then
    rss_source="/usr/bin/time -v (Maximum resident set size)"
else
    rss_source="VmHWM polled from /proc/PID/status every 20 ms (lower bound)"
fi

results=()

# measure NAME CMD...: runs CMD with stdout/stderr in $logs/NAME.{out,err},
# records wall seconds, peak RSS and exit status in $results.
measure() {
    local name="$1"; shift
    local out="$logs/$name.out" err="$logs/$name.err" tv="$logs/$name.time"
    local t0 t1 rc=0 rss_kb=""
    echo "== $name: $*" >&2
    t0="$(date +%s.%N)"
    if [ -x "$time_bin" ]; then
        "$time_bin" -v -o "$tv" "$@" >"$out" 2>"$err" || rc=$?
        rss_kb="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tv")"
    else
        "$@" >"$out" 2>"$err" &
        local pid=$! hwm
        while kill -0 "$pid" 2>/dev/null; do
            hwm="$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)"
            [ -n "$hwm" ] && rss_kb="$hwm"
            sleep 0.02
        done
        wait "$pid" || rc=$?
    fi
    t1="$(date +%s.%N)"
    local wall rss_mib
    wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')"
    rss_mib="$(awk -v k="${rss_kb:-0}" 'BEGIN {printf "%.1f", k / 1024}')"
    results+=("$(printf '%-24s %10s %12s %6s' "$name" "$wall" "$rss_mib" "$rc")")
    if [ "$rc" != 0 ]; then
        echo "   exit $rc; stderr tail:" >&2
        tail -n 5 "$err" | sed 's/^/   /' >&2
    fi
    return 0
}

measure gen-repo "$gen" --repo "$repo" --blobs "$blobs" --snapshots "$snapshots" --json "${gen_args[@]}"
if [ ! -f "$repo/config" ]; then
    echo "prune-scale: gen-repo failed:" >&2
    cat "$logs/gen-repo.err" >&2
    exit 1
fi
# stats over every snapshot (issue 15): the restore size walk, then the
# per-source breakdown and the raw-data figure, bounded like prune's mark.
measure stats "$cairn" -r "$repo" stats --json
measure stats-raw-data "$cairn" -r "$repo" stats --mode raw-data --cost --json
# The mark phase over every snapshot (nothing is unused yet).
measure prune-plan-all "$cairn" -r "$repo" prune --dry-run --instant-delete --json
measure forget "$cairn" -r "$repo" forget --keep-last "$keep"
# --instant-delete: the plan for an idle repository (every pack was just
# written, and packs younger than the grace period are otherwise left alone).
measure prune-dry-run "$cairn" -r "$repo" prune --dry-run --instant-delete --json
measure prune "$cairn" -r "$repo" prune --instant-delete --json
if [ "$check" = 1 ]; then
    measure check-after-prune "$cairn" -r "$repo" check
fi

echo
echo "repository: $(cat "$logs/gen-repo.out")"
for step in prune-plan-all prune-dry-run prune; do
    mark="$(grep -o '"mark_seconds": *[0-9.e-]*' "$logs/$step.out" 2>/dev/null | cut -d: -f2 | tr -d ' ')"
    snaps="$(grep -o '"snapshots": *[0-9]*' "$logs/$step.out" 2>/dev/null | head -n 1 | cut -d: -f2 | tr -d ' ')"
    echo "mark phase ($step): ${mark:-?} s over ${snaps:-?} snapshots"
done
echo "cairn:      $cairn ($("$cairn" --version 2>/dev/null || echo 'version unknown'))"
echo "peak RSS:   $rss_source"
if [ "$temporary" = 1 ]; then
    echo "logs:       $logs (temporary, removed now; use --work DIR to keep them)"
else
    echo "logs:       $logs"
fi
echo
printf '%-24s %10s %12s %6s\n' "step" "wall s" "peak RSS MiB" "exit"
printf '%s\n' "${results[@]}"
