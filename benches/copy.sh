#!/usr/bin/env bash
# `cairn copy` against `restic copy` (0.19, Debian unstable's package) on the
# same data, local folder to local folder: the first copy of two nights, a
# nightly copy after a third night, and an unchanged copy. cairn runs both
# paths: "fast" into a repository made with `init --chunker-params-from`
# (restic's equivalent: `init --copy-chunker-params`) and "rechunk" into one
# made without. Each step is timed with /usr/bin/time (wall, peak RSS).
#
#   benches/copy.sh                      # 300 MB nights, data in $WORK
#
# Environment: WORK (default /tmp/cairn-copy-bench), SIZE_MB (default 300),
# CAIRN (default target/release/cairn, built if missing), GEN (default
# target/release/gen-nights, built if missing). Run it on an idle machine:
# nothing else should compile meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/cairn-copy-bench}
SIZE_MB=${SIZE_MB:-300}
CAIRN=${CAIRN:-$PWD/target/release/cairn}
GEN=${GEN:-$PWD/target/release/gen-nights}
if [[ ! -x $CAIRN || ! -x $GEN ]]; then
    cargo build --release -q -p cairn-cli -p cairn-benches
fi
RESTIC=$(RESTIC_SUITE=sid bash benches/fetch-restic.sh "$WORK/restic-fetch" | tail -n 1)
mkdir -p "$WORK"
printf 'copy-bench-source\n' >"$WORK/src.pw"
printf 'copy-bench-destination\n' >"$WORK/dst.pw"
export CAIRN_PASSWORD_FILE=$WORK/src.pw RESTIC_PASSWORD_FILE=$WORK/src.pw
export CAIRN_FROM_PASSWORD_FILE=$WORK/src.pw CAIRN_TO_PASSWORD_FILE=$WORK/dst.pw
export RESTIC_FROM_PASSWORD_FILE=$WORK/src.pw

row() { printf '| %-34s | %8s s | %6s MB |\n' "$1" "$2" "$3"; }
# timed LABEL CMD...: runs CMD under /usr/bin/time, prints a table row.
timed() {
    local label=$1
    shift
    sync
    /usr/bin/time -f '%e %M' -o "$WORK/time" "$@" >"$WORK/last.log" 2>&1 || {
        cat "$WORK/last.log" >&2
        exit 1
    }
    read -r wall rss <"$WORK/time"
    row "$label" "$wall" "$((rss / 1024))"
}

rm -rf "$WORK"/{data,c-src,c-fast,c-rechunk,r-src,r-dst}
"$GEN" --out "$WORK/data" --night 1 --size-mb "$SIZE_MB" --no-redis --no-postgres >/dev/null
data=$WORK/data/src
"$CAIRN" -r "$WORK/c-src" init >/dev/null
"$RESTIC" -r "$WORK/r-src" init -q
backup_night() {
    "$GEN" --out "$WORK/data" --night "$1" --size-mb "$SIZE_MB" --no-redis --no-postgres >/dev/null
    "$CAIRN" -r "$WORK/c-src" backup -q "$data" >/dev/null
    "$RESTIC" -r "$WORK/r-src" backup -q "$data" >/dev/null
}
backup_night 1
backup_night 2
CAIRN_PASSWORD_FILE=$WORK/dst.pw "$CAIRN" -r "$WORK/c-fast" init --chunker-params-from "$WORK/c-src" >/dev/null
CAIRN_PASSWORD_FILE=$WORK/dst.pw "$CAIRN" -r "$WORK/c-rechunk" init >/dev/null
RESTIC_PASSWORD_FILE=$WORK/dst.pw "$RESTIC" -r "$WORK/r-dst" init -q --from-repo "$WORK/r-src" --copy-chunker-params

echo "copy benchmark: $SIZE_MB MB nights (gen-nights, no Redis/PostgreSQL), local to local, $(nproc) cores"
echo "restic: $("$RESTIC" version | head -n 1); cairn: $("$CAIRN" --version)"
echo
echo '| step | wall | peak RSS |'
echo '|---|---:|---:|'
copy_all() {
    timed "restic copy, $1" env RESTIC_PASSWORD_FILE="$WORK/dst.pw" "$RESTIC" -r "$WORK/r-dst" copy -q --from-repo "$WORK/r-src"
    timed "cairn copy fast, $1" "$CAIRN" -r "$WORK/c-src" copy --to "$WORK/c-fast"
    timed "cairn copy rechunk, $1" "$CAIRN" -r "$WORK/c-src" copy --to "$WORK/c-rechunk"
}
copy_all "nights 1-2"
backup_night 3
copy_all "night 3"
copy_all "unchanged"
echo
du -sb "$WORK/r-dst" "$WORK/c-fast" "$WORK/c-rechunk" | awk '{printf "%s: %.1f MB\n", $2, $1/1e6}'
