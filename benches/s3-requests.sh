#!/usr/bin/env bash
# Requests that metadata commands make to an S3 repository, with and without
# the metadata cache: counted by the test fault proxy (--rate 0) in front of
# SeaweedFS. Needs `cargo build -p cairn-tests --bins` and
# `cargo build --release -p cairn-cli`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/s3-servers.sh start >/dev/null
set -a; . target/s3-servers.env; set +a
UP=${CAIRN_TEST_S3_ENDPOINT#http://}
W=$(mktemp -d)
mkfifo $W/in
sleep 900 > $W/in &
SLEEPER=$!
target/debug/fault-proxy --upstream $UP --rate 0 < $W/in > $W/proxy.out 2>&1 &
sleep 1
PORT=$(head -1 $W/proxy.out | sed 's/.*://')
printf '%s\n%s\n' "$CAIRN_TEST_S3_KEY" "$CAIRN_TEST_S3_SECRET" > $W/cred
echo pw > $W/pw
cat > $W/cairn.toml <<T
repository = "s3test"
[repositories.s3test]
location = "s3:http://127.0.0.1:$PORT/$CAIRN_TEST_S3_BUCKET/reqs-$RANDOM"
password-file = "$W/pw"
[repositories.s3test.s3]
region = "us-east-1"
credentials-file = "$W/cred"
T
C="target/release/cairn --config $W/cairn.toml --cache-dir $W/cache"
stats() { curl -s http://127.0.0.1:$PORT/__fault-proxy/stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])'; }
mkdir -p $W/src && cp -r engine/src $W/src/ && head -c 30000000 /dev/urandom > $W/src/big.bin
$C init -q --kdf-memory-kib 65536
$C backup $W/src -q
for step in "snapshots" "ls latest" "backup $W/src" "find *.rs" "snapshots"; do
  a=$(stats); $C $step > /dev/null; b=$(stats); echo "$step: $((b-a)) requests (warm cache)"
done
a=$(stats); $C --no-cache snapshots > /dev/null; b=$(stats); echo "snapshots --no-cache: $((b-a)) requests"
a=$(stats); $C --no-cache ls latest > /dev/null; b=$(stats); echo "ls latest --no-cache: $((b-a)) requests"
kill $SLEEPER 2>/dev/null || true
scripts/s3-servers.sh stop >/dev/null
rm -rf $W
