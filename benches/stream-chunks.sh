#!/usr/bin/env bash
# Repository growth per night and index cost of stream backups at several
# average chunk sizes, on real data: pg_dump of a pgbench database and
# `redis-cli --rdb` of a Redis server with mixed keys, several nights each
# with ~1-2 % of rows/keys changed in between. A measurement of sizes, not
# of speed (it may run while other work compiles).
#
#   benches/stream-chunks.sh gen      # make the nights' dumps in $WORK
#   benches/stream-chunks.sh measure  # back each night up with real `cairn`
#                                     # at each chunk size; prints a table
#
# Environment: WORK (default /tmp/cairn-stream-chunks), NIGHTS (default 4),
# PG_SCALE (pgbench scale, default 20), REDIS_KEYS (default 900000),
# CAIRN (default target/debug/cairn; dependencies are optimised in dev
# builds, and only sizes are measured), SIZES (default "16KiB 64KiB 256KiB 1MiB").
set -euo pipefail

WORK=${WORK:-/tmp/cairn-stream-chunks}
NIGHTS=${NIGHTS:-4}
PG_SCALE=${PG_SCALE:-20}
REDIS_KEYS=${REDIS_KEYS:-900000}
CAIRN=${CAIRN:-$(cd "$(dirname "$0")/.." && pwd)/target/debug/cairn}
SIZES=${SIZES:-"16KiB 64KiB 256KiB 1MiB"}
PGBIN=/usr/lib/postgresql/15/bin

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

gen_postgres() {
    local d=$WORK/pg port
    port=$(free_port)
    rm -rf "$d"
    mkdir -p "$d/data" "$d/sock"
    chown -R postgres "$d"
    runuser -u postgres -- "$PGBIN/initdb" -D "$d/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d/data" -l "$d/log" \
        -o "-p $port -k $d/sock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" -w start >/dev/null
    trap 'runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d/data" -m fast -w stop >/dev/null' RETURN
    local pg=(-h 127.0.0.1 -p "$port" -U postgres)
    createdb "${pg[@]}" bench
    pgbench "${pg[@]}" -i -q -s "$PG_SCALE" bench 2>/dev/null
    # Rows touched per night: ~1 % of pgbench_accounts through the TPC-B-like
    # transaction (each updates one account, teller, branch, inserts history).
    local tx=$((PG_SCALE * 100000 / 100 / 2))
    for n in $(seq 1 "$NIGHTS"); do
        if [ "$n" -gt 1 ]; then
            pgbench "${pg[@]}" -n -c 2 -j 2 -t "$tx" bench >/dev/null 2>&1
            psql "${pg[@]}" -q -d bench -c 'VACUUM' >/dev/null
        fi
        pg_dump "${pg[@]}" bench >"$WORK/pg-night$n.sql"
        echo "postgres night $n: $(stat -c %s "$WORK/pg-night$n.sql") bytes"
    done
}

# RESP commands for redis-cli --pipe: strings, hashes, lists, sets, sorted sets.
redis_commands() {
    python3 - "$@" <<'EOF'
import random, sys
mode, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = random.Random(seed)
out = sys.stdout.buffer
def cmd(*a):
    b = [x if isinstance(x, bytes) else str(x).encode() for x in a]
    out.write(b"*%d\r\n" % len(b) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in b))
words = ["alpha","bravo","charlie","delta","echo","foxtrot","golf","hotel","india","juliet","kilo","lima","order","user","session","cart","price","eur","paid","open"]
def text(k): return " ".join(r.choice(words) for _ in range(k))
def key(i):
    t = i % 10
    if t < 6: return b"str:%d" % i
    if t < 8: return b"hash:%d" % i
    if t == 8: return b"list:%d" % i
    return (b"set:%d" if i % 20 == 9 else b"zset:%d") % i
def write(i):
    k = key(i)
    if k.startswith(b"str:"): cmd("SET", k, "%s|%s|%d" % (r.getrandbits(128).to_bytes(16,'big').hex(), text(6), r.randint(0, 10**9)))
    elif k.startswith(b"hash:"): cmd("HSET", k, "name", text(2), "email", "u%d@example.com" % i, "balance", r.randint(0, 99999), "state", r.choice(words), "token", r.getrandbits(96).to_bytes(12,'big').hex())
    elif k.startswith(b"list:"):
        cmd("DEL", k); cmd("RPUSH", k, *[text(3) for _ in range(8)])
    elif k.startswith(b"set:"): cmd("SADD", k, *["m%d" % r.randint(0, 10**7) for _ in range(8)])
    else: cmd("ZADD", k, *sum([[r.randint(0, 10**6), "p%d" % r.randint(0, 10**7)] for _ in range(8)], []))
if mode == "load":
    for i in range(n): write(i)
else:  # change: ~1.5 % of keys rewritten, 0.2 % deleted, 0.2 % new
    for _ in range(n * 15 // 1000): write(r.randrange(n))
    for _ in range(n * 2 // 1000): cmd("DEL", key(r.randrange(n)))
    for j in range(n * 2 // 1000): write(n + seed * n + j)
EOF
}

gen_redis() {
    local d=$WORK/redis port
    port=$(free_port)
    rm -rf "$d"
    mkdir -p "$d"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$d" --save '' --appendonly no \
        --daemonize yes --pidfile "$d/redis.pid" --logfile "$d/log"
    trap 'kill "$(cat "$d/redis.pid")"' RETURN
    until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
    redis_commands load "$REDIS_KEYS" 1 | redis-cli -p "$port" --pipe >/dev/null
    for n in $(seq 1 "$NIGHTS"); do
        if [ "$n" -gt 1 ]; then
            redis_commands change "$REDIS_KEYS" "$n" | redis-cli -p "$port" --pipe >/dev/null
        fi
        redis-cli -p "$port" --rdb "$WORK/redis-night$n.rdb" >/dev/null 2>&1
        echo "redis night $n: $(stat -c %s "$WORK/redis-night$n.rdb") bytes, $(redis-cli -p "$port" dbsize) keys"
    done
}

# One repository per (source, chunk size); each night backed up from stdin
# with --chunk-size; the figures come from the backup's --json summary and
# the repository's index/ folder.
measure() {
    export CAIRN_PASSWORD=bench
    printf '| source | avg chunk (min/max) | night | stream MiB | dedup % | new stored KiB | data blobs added | index objects KiB (cumulative) | blobs in repo |\n'
    printf '|---|---|---|---|---|---|---|---|---|\n'
    for src in pg redis; do
        for size in default $SIZES; do
            local repo=$WORK/repo-$src-$size
            rm -rf "$repo"
            "$CAIRN" -q -r "$repo" init --kdf-memory-kib 64 --kdf-iterations 1 >/dev/null
            local flag=() ext=sql
            [ "$size" != default ] && flag=(--chunk-size "$size")
            [ "$src" = redis ] && ext=rdb
            local total_blobs=0
            for n in $(seq 1 "$NIGHTS"); do
                local j
                j=$("$CAIRN" -r "$repo" --json backup --stdin --stdin-filename "$src.$ext" "${flag[@]}" \
                    <"$WORK/$src-night$n.$ext")
                python3 - "$src" "$size" "$n" "$j" "$(du -sb "$repo/index" | cut -f1)" "$total_blobs" <<'EOF'
import json, sys
src, size, n, j, index_bytes, blobs = sys.argv[1:]
j = json.loads(j)
s, d = j["summary"], j["dedup"]
cs = j.get("chunk_sizes")
label = "repo default 512KiB/1MiB/4MiB" if cs is None else "%dKiB (%d/%d KiB)" % (cs["avg_size"]//1024, cs["min_size"]//1024, cs["max_size"]//1024)
total = int(blobs) + s["data_blobs_added"] + s["tree_blobs_added"]
print("| %s | %s | %s | %.1f | %.1f | %d | %d | %.1f | %d |" % (src, label, n, s["bytes_read"]/2**20, d["percent"], s["bytes_added_stored"]//1024, s["data_blobs_added"], int(index_bytes)/1024, total))
open("/dev/stderr","w").write("%d\n" % total)
EOF
            done 2> >(tail -n1 >/dev/null)
        done
    done
}

mkdir -p "$WORK"
case "${1:-}" in
    gen) gen_postgres; gen_redis ;;
    gen-postgres) gen_postgres ;;
    gen-redis) gen_redis ;;
    measure) measure ;;
    *) echo "usage: $0 gen|gen-postgres|gen-redis|measure" >&2; exit 2 ;;
esac
