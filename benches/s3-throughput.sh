#!/usr/bin/env bash
# Backup and restore throughput to SeaweedFS on loopback, as a ratio to the
# same work on a local-folder repository, for cairn and restic 0.18 in the
# same run on the same data. Usage: benches/s3-throughput.sh [SOURCE_DIR]
# Needs: cargo build --release -p cairn-cli; bash benches/fetch-restic.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="${1:-bench-work/data-1000mb-seed42/src/node1}"
SRC="$(cd "$SRC" && pwd)"
CAIRN="$PWD/target/release/cairn"
RESTIC="$PWD/bench-work/restic/usr/bin/restic"
scripts/s3-servers.sh start >/dev/null
trap 'scripts/s3-servers.sh stop >/dev/null' EXIT
set -a; . target/s3-servers.env; set +a
W=$(mktemp -d)
echo pw > "$W/pw"
printf '%s\n%s\n' "$CAIRN_TEST_S3_KEY" "$CAIRN_TEST_S3_SECRET" > "$W/cred"
EP="$CAIRN_TEST_S3_ENDPOINT"
cat > "$W/cairn.toml" <<T
[repositories.s3]
location = "s3:$EP/$CAIRN_TEST_S3_BUCKET/tp-$RANDOM"
password-file = "$W/pw"
[repositories.s3.s3]
region = "us-east-1"
credentials-file = "$W/cred"
T
MB=$(du -sm --apparent-size "$SRC" | cut -f1)
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
export CAIRN_PASSWORD_FILE="$W/pw" RESTIC_PASSWORD_FILE="$W/pw"
export AWS_ACCESS_KEY_ID="$CAIRN_TEST_S3_KEY" AWS_SECRET_ACCESS_KEY="$CAIRN_TEST_S3_SECRET" AWS_DEFAULT_REGION=us-east-1
find "$SRC" -type f -exec cat {} + >/dev/null
declare -A R
"$CAIRN" -r "$W/cl" init -q
R[cairn_local_backup]=$(t "$CAIRN" -r "$W/cl" backup "$SRC")
R[cairn_local_restore]=$(t "$CAIRN" -r "$W/cl" restore latest --target "$W/r1")
"$CAIRN" --config "$W/cairn.toml" -r s3 init -q
R[cairn_s3_backup]=$(t "$CAIRN" --config "$W/cairn.toml" -r s3 --cache-dir "$W/cache" backup "$SRC")
R[cairn_s3_restore]=$(t "$CAIRN" --config "$W/cairn.toml" -r s3 --cache-dir "$W/cache" restore latest --target "$W/r2")
RESTIC_REPOSITORY="$W/rl" "$RESTIC" init >/dev/null
R[restic_local_backup]=$(RESTIC_REPOSITORY="$W/rl" t "$RESTIC" backup "$SRC")
R[restic_local_restore]=$(RESTIC_REPOSITORY="$W/rl" t "$RESTIC" restore latest --target "$W/r3")
RS="s3:$EP/$CAIRN_TEST_S3_BUCKET/tpr-$RANDOM"
RESTIC_REPOSITORY="$RS" "$RESTIC" init >/dev/null
R[restic_s3_backup]=$(RESTIC_REPOSITORY="$RS" t "$RESTIC" backup "$SRC")
R[restic_s3_restore]=$(RESTIC_REPOSITORY="$RS" t "$RESTIC" restore latest --target "$W/r4")
echo "data: $SRC ($MB MB)"
for tool in cairn restic; do
  for op in backup restore; do
    l=${R[${tool}_local_$op]}; s=${R[${tool}_s3_$op]}
    printf '%-6s %-7s local %6.2f s (%4.0f MB/s)  s3 %6.2f s (%4.0f MB/s)  s3/local speed %.2f\n' \
      "$tool" "$op" "$l" "$(echo "$MB / $l" | bc -l)" "$s" "$(echo "$MB / $s" | bc -l)" "$(echo "$l / $s" | bc -l)"
  done
done
rm -rf "$W"
