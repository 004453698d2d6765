#!/usr/bin/env bash
# Load benchmark of fleet mode: durable modifications through one or two `shardex broker`s
# sharing one PostgreSQL, with wrk on loopback.
#
#   bash tools/load/fleet.sh [BROKERS] [CLIENTS] [SECONDS] [TENANTS]   # defaults: 1 64 20 64
#
# Uses the PostgreSQL at SHARDEX_TEST_PG (a URL without a database) or starts a throwaway
# cluster with Debian's initdb; makes a fresh database, starts BROKERS brokers on it, registers
# one host, makes TENANTS tenants with a reservation each, then runs CLIENTS connections
# (split over the brokers) of modifications for SECONDS. Prints each broker's rate and
# latency and the log's growth (the durable total).
set -euo pipefail
brokers=${1:-1}
clients=${2:-64}
seconds=${3:-20}
tenants=${4:-64}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin="$root/target/release/shardex"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
[ -x "$bin" ] || (cd "$root" && cargo build --release -p shardex)

dir=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "${pg_bin:-}" ]; then
        runuser -u postgres -- "$pg_bin/pg_ctl" -D "$dir/pg/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT
server=${SHARDEX_TEST_PG:-}
if [ -z "$server" ]; then
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    mkdir -p "$dir/pg" && chown postgres:postgres "$dir/pg"
    runuser -u postgres -- "$pg_bin/initdb" -D "$dir/pg/data" -U postgres --auth=trust -E UTF8 >/dev/null
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    runuser -u postgres -- "$pg_bin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/log" -w \
        -o "-p $port -k $dir/pg -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
    server="postgres://postgres@127.0.0.1:$port"
fi
db="bench_$$"
python3 - "$server" "$db" <<'PY'
import subprocess, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
subprocess.run(["psql", "-q", "-h", u.hostname, "-p", str(u.port or 5432), "-U", u.username or "postgres",
                "-d", "postgres", "-c", f"CREATE DATABASE {sys.argv[2]}"], check=True)
PY
url="$server/$db"
cat >"$dir/shardex.toml" <<TOML
[api]
rate_limit = 0
TOML
addrs=()
for i in $(seq "$brokers"); do
    SHARDEX_LOG=${SHARDEX_LOG:-warn,shardex::broker=info} "$bin" broker --db "$url" --listen 127.0.0.1:0 --name "b$i" \
        --admin-token "$dir/admin.token" --config "$dir/shardex.toml" 2>"$dir/log$i" &
    pids+=($!)
    for _ in $(seq 100); do grep -q 'listen=' "$dir/log$i" 2>/dev/null && break; sleep 0.1; done
    addrs+=("$(sed -n 's/.*listen=\([0-9.:]*\).*/\1/p' "$dir/log$i" | head -1)")
done
admin=$(cat "$dir/admin.token")
python3 - "${addrs[0]}" "$admin" "$tenants" >"$dir/tenants.txt" <<'PY'
import http.client, json, sys
addr, admin, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
host, port = addr.rsplit(":", 1)
c = http.client.HTTPConnection(host, int(port))
def post(path, token, body):
    c.request("POST", path, json.dumps(body), {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    r = c.getresponse()
    doc = json.loads(r.read())
    if r.status >= 300:
        sys.exit(f"{path}: {r.status} {doc}")
    return doc
post("/v1/actions", admin, {"action": "register_host", "name": "load-1",
     "capacity": {"cpu": 100000, "memory": 100000, "net": 1000, "iops": 1000}})
for i in range(n):
    token = post("/v1/tenants", admin, {"name": f"t{i}"})["token"]["token"]
    res = post("/v1/reservations", token, {"host": "load-1", "shards": {"cpu": 10, "memory": 8}, "for": "24h"})["id"]
    print(token, res)
PY
seq_of() { curl -sf "http://$1/v1/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seq"])'; }
before=$(seq_of "${addrs[0]}")
echo "# fleet load: $brokers broker(s) on one PostgreSQL, $clients clients, $tenants tenants, $seconds s, $(nproc) cores"
per=$(( clients / brokers ))
wpids=()
for i in $(seq "$brokers"); do
    TENANTS="$dir/tenants.txt" wrk -t1 -c"$per" -d"${seconds}s" -s "$here/modify.lua" "http://${addrs[$((i-1))]}" \
        >"$dir/wrk$i" 2>&1 &
    wpids+=($!)
done
wait "${wpids[@]}"
for i in $(seq "$brokers"); do
    echo "## broker b$i"
    grep -E 'Requests/sec|p50|non-2xx' "$dir/wrk$i"
done
sleep 1
after=$(seq_of "${addrs[0]}")
echo "durable entries: $(( after - before )) in ${seconds} s: $(( (after - before) / seconds ))/s"
