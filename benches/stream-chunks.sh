#!/usr/bin/env bash
# Repository growth per night and index cost of stream backups at several
# average chunk sizes, on real data: pg_dump of a pgbench database and
# `redis-cli --rdb` of a Redis server with mixed keys, several nights each
# with ~1-2 % of rows/keys changed in between. A measurement of sizes, not
# of speed (it may run while other work compiles).
#
#   benches/stream-chunks.sh gen      # make the nights' dumps in $WORK
#                                     # (pg: changes spread everywhere;
#                                     # pghot: changes in the newest rows)
#   benches/stream-chunks.sh measure  # back each night up with real `cairn`
#                                     # at each chunk size; prints a table
#
# Environment: WORK (default /tmp/cairn-stream-chunks), NIGHTS (default 4),
# PG_SCALE (pgbench scale, default 10), CUSTOMERS/ORDERS (rows of the
# application-like tables, default 400000/1200000), REDIS_KEYS (default 900000),
# CAIRN (default target/debug/cairn; dependencies are optimised in dev
# builds, and only sizes are measured), SIZES (default "16KiB 64KiB 256KiB 1MiB"),
# SOURCES (default "pg pghot redis").
set -euo pipefail

WORK=${WORK:-/tmp/cairn-stream-chunks}
NIGHTS=${NIGHTS:-4}
PG_SCALE=${PG_SCALE:-10}
CUSTOMERS=${CUSTOMERS:-400000}
ORDERS=${ORDERS:-1200000}
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
    # pgbench's tables (accounts padded with blanks: they compress ~60x)
    # and application-like tables with real entropy (hashes, text, jsonb).
    pgbench "${pg[@]}" -i -q -s "$PG_SCALE" bench 2>/dev/null
    psql "${pg[@]}" -q -d bench -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE TABLE customers (id int PRIMARY KEY, name text, email text, balance numeric(12,2),
  created timestamptz, profile jsonb);
INSERT INTO customers SELECT i, 'customer ' || substr(md5(i::text), 1, 12), 'c' || i || '@example.com',
  (random() * 100000)::numeric(12,2), now() - random() * interval '900 days',
  jsonb_build_object('level', i % 5, 'city', 'city-' || (random() * 500)::int, 'ref', md5(random()::text))
  FROM generate_series(1, $((CUSTOMERS))) i;
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int, placed date, amount numeric(10,2),
  status text, note text);
INSERT INTO orders SELECT i, 1 + (random() * ($((CUSTOMERS)) - 1))::int, date '2024-01-01' + (i / 2000),
  (random() * 1000)::numeric(10,2), (ARRAY['new','paid','shipped','done'])[1 + (random() * 3)::int],
  CASE WHEN random() < 0.3 THEN NULL ELSE 'note ' || md5(random()::text) END
  FROM generate_series(1, $((ORDERS))) i;
SQL
    # Changed per night: ~1 % of pgbench accounts (TPC-B-like transactions),
    # ~1.5 % of customers and orders updated, 0.5 % new orders, 0.1 % deleted.
    local tx=$((PG_SCALE * 100000 / 100 / 2))
    for n in $(seq 1 "$NIGHTS"); do
        if [ "$n" -gt 1 ]; then
            pgbench "${pg[@]}" -n -c 2 -j 2 -t "$tx" bench >/dev/null 2>&1
            psql "${pg[@]}" -q -d bench -v ON_ERROR_STOP=1 >/dev/null <<SQL
UPDATE customers SET balance = (random() * 100000)::numeric(12,2) WHERE random() < 0.015;
UPDATE orders SET status = 'done', amount = amount + 1 WHERE random() < 0.015;
INSERT INTO orders SELECT i, 1 + (random() * ($((CUSTOMERS)) - 1))::int, current_date, (random() * 1000)::numeric(10,2),
  'new', 'note ' || md5(random()::text)
  FROM generate_series((SELECT max(id) + 1 FROM orders), (SELECT max(id) FROM orders) + $((ORDERS / 200))) i;
DELETE FROM orders WHERE random() < 0.001;
VACUUM;
SQL
        fi
        pg_dump "${pg[@]}" bench >"$WORK/pg-night$n.sql"
        echo "postgres night $n: $(stat -c %s "$WORK/pg-night$n.sql") bytes"
    done
}

# The second pattern: changes that cluster where an application's data is
# hot (the newest 10 % of orders: 15 % of them updated, 0.5 % new orders a
# night), on the database gen_postgres left; night 1 is its last dump.
gen_postgres_hot() {
    local d=$WORK/pg port
    port=$(free_port)
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d/data" -l "$d/log" \
        -o "-p $port -k $d/sock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" -w start >/dev/null
    trap 'runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d/data" -m fast -w stop >/dev/null' RETURN
    local pg=(-h 127.0.0.1 -p "$port" -U postgres)
    cp "$WORK/pg-night$NIGHTS.sql" "$WORK/pghot-night1.sql"
    for n in $(seq 2 "$NIGHTS"); do
        psql "${pg[@]}" -q -d bench -v ON_ERROR_STOP=1 >/dev/null <<SQL
UPDATE orders SET status = 'done', amount = amount + 1
  WHERE id > (SELECT max(id) - $((ORDERS / 10)) FROM orders) AND random() < 0.15;
INSERT INTO orders SELECT i, 1 + (random() * ($((CUSTOMERS)) - 1))::int, current_date, (random() * 1000)::numeric(10,2),
  'new', 'note ' || md5(random()::text)
  FROM generate_series((SELECT max(id) + 1 FROM orders), (SELECT max(id) FROM orders) + $((ORDERS / 200))) i;
VACUUM;
SQL
        pg_dump "${pg[@]}" bench >"$WORK/pghot-night$n.sql"
        echo "postgres (hot rows) night $n: $(stat -c %s "$WORK/pghot-night$n.sql") bytes"
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
# the repository's index/ and data/ folders.
measure() {
    CAIRN_PASSWORD=bench python3 - "$CAIRN" "$WORK" "$NIGHTS" $SIZES <<'EOF'
import json, os, subprocess, sys
cairn, work, nights, sizes = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
def du(p):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(p) for f in fs)
print("| source | chunk sizes avg (min–max) | night | stream MiB | dedup vs earlier nights | new stored MiB | data blobs added | blobs in repo | index objects KiB | repo MiB |")
print("|---|---|---|---|---|---|---|---|---|---|")
for src, ext in (("pg", "sql"), ("pghot", "sql"), ("redis", "rdb")):
    if src not in os.environ.get("SOURCES", "pg pghot redis").split():
        continue
    for size in ["default"] + sizes:
        repo = os.path.join(work, "repo-%s-%s" % (src, size))
        subprocess.run(["rm", "-rf", repo], check=True)
        subprocess.run([cairn, "-q", "-r", repo, "init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"], check=True, stdout=subprocess.DEVNULL)
        blobs = 0
        for n in range(1, nights + 1):
            args = [cairn, "-r", repo, "--json", "backup", "--stdin", "--stdin-filename", "%s.%s" % (src, ext)]
            if size != "default":
                args += ["--chunk-size", size]
            with open(os.path.join(work, "%s-night%d.%s" % (src, n, ext)), "rb") as f:
                j = json.loads(subprocess.run(args, stdin=f, check=True, capture_output=True).stdout)
            s, d, cs = j["summary"], j["dedup"], j["chunk_sizes"]
            label = "512KiB/1MiB/4MiB (repository default)" if cs is None else "%dKiB (%d–%d KiB)" % (cs["avg_size"] // 1024, cs["min_size"] // 1024, cs["max_size"] // 1024)
            blobs += s["data_blobs_added"] + s["tree_blobs_added"]
            print("| %s | %s | %d | %.1f | %.2f %% | %.2f | %d | %d | %.1f | %.1f |" % (
                src, label, n, s["bytes_read"] / 2**20, d["percent_known"], s["bytes_added_stored"] / 2**20,
                s["data_blobs_added"], blobs, du(os.path.join(repo, "index")) / 1024, du(repo) / 2**20), flush=True)
EOF
}

mkdir -p "$WORK"
case "${1:-}" in
    gen) gen_postgres; gen_postgres_hot; gen_redis ;;
    gen-postgres) gen_postgres ;;
    gen-redis) gen_redis ;;
    gen-postgres-hot) gen_postgres_hot ;;
    measure) export SOURCES=${SOURCES:-pg pghot redis}; measure ;;
    *) echo "usage: $0 gen|gen-postgres|gen-redis|measure" >&2; exit 2 ;;
esac
