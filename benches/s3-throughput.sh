#!/usr/bin/env bash
# Backup and restore throughput to SeaweedFS on loopback, as a ratio to the
# same work on a local-folder repository, for cairn and restic 0.19 in the
# same run on the same data. Usage: benches/s3-throughput.sh [SOURCE_DIR]
# Needs: cargo build --release -p cairn-cli. RESTIC=path picks another
# restic binary (default: 0.19 fetched by benches/fetch-restic.sh).
#
# SeaweedFS runs on the same cores as the client, so every S3 row also
# gives the CPU time both processes spent and the wall time that CPU needs
# at the least ("floor": client + server CPU over the core count). When the
# S3 wall time is at its floor, the S3/local ratio is set by the server's
# share of this machine, not by how the client uses the network.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="${1:-bench-work/data-1000mb-seed42/src/node1}"
SRC="$(cd "$SRC" && pwd)"
CAIRN="$PWD/target/release/cairn"
RESTIC="${RESTIC:-$(RESTIC_SUITE=sid bash benches/fetch-restic.sh bench-work | tail -n 1)}"
scripts/s3-servers.sh start >/dev/null
trap 'scripts/s3-servers.sh stop >/dev/null' EXIT
set -a; . target/s3-servers.env; set +a
WEED_PID=$(cat target/s3-servers/weed.pid)
CORES=$(nproc)
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
# CPU seconds (user + system) SeaweedFS has used so far, from /proc.
server_cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$WEED_PID/stat"; }
# Runs a command; prints "wall client_cpu peak_rss_kib server_cpu".
t() {
  local s0 s1 out
  s0=$(server_cpu)
  out=$(/usr/bin/time -f '%e %U %S %M' "$@" 2>&1 >/dev/null | tail -n 1)
  s1=$(server_cpu)
  read -r wall user sys rss <<<"$out"
  echo "$wall $(echo "$user + $sys" | bc) $rss $(echo "$s1 - $s0" | bc)"
}
export CAIRN_PASSWORD_FILE="$W/pw" RESTIC_PASSWORD_FILE="$W/pw"
export AWS_ACCESS_KEY_ID="$CAIRN_TEST_S3_KEY" AWS_SECRET_ACCESS_KEY="$CAIRN_TEST_S3_SECRET" AWS_DEFAULT_REGION=us-east-1
find "$SRC" -type f -exec cat {} + >/dev/null
# A fresh SeaweedFS grows its first volumes on the first large writes; a
# throwaway backup pays that before anything is timed.
"$CAIRN" --config "$W/cairn.toml" -r s3 --cache-dir "$W/cache0" init -q
"$CAIRN" --config "$W/cairn.toml" -r s3 --cache-dir "$W/cache0" backup -q "$SRC"
sed -i "s#/tp-[0-9]*\"#/tp2-$RANDOM\"#" "$W/cairn.toml"
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
echo "data: $SRC ($MB MB), $CORES cores shared by client and SeaweedFS; $("$RESTIC" version | cut -d' ' -f1-2)"
printf '%-6s %-7s | %-30s | %-62s | %s\n' tool step "local: wall (MB/s) RSS" \
  "SeaweedFS: wall (MB/s) RSS, client + server CPU, floor" "S3/local, at floor"
for tool in cairn restic; do
  for op in backup restore; do
    read -r lw _ lr _ <<<"${R[${tool}_local_$op]}"
    read -r sw sc sr ss <<<"${R[${tool}_s3_$op]}"
    floor=$(echo "($sc + $ss) / $CORES" | bc -l)
    printf '%-6s %-7s | %5.2f s (%4.0f) %4.0f MiB | %5.2f s (%4.0f) %4.0f MiB, %4.2f + %4.2f s CPU, floor %4.2f s | %.2f, %.2f\n' \
      "$tool" "$op" "$lw" "$(echo "$MB / $lw" | bc -l)" "$(echo "$lr / 1024" | bc -l)" \
      "$sw" "$(echo "$MB / $sw" | bc -l)" "$(echo "$sr / 1024" | bc -l)" "$sc" "$ss" "$floor" \
      "$(echo "$lw / $sw" | bc -l)" "$(echo "$lw / $floor" | bc -l)"
  done
done
rm -rf "$W"
