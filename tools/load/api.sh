#!/usr/bin/env bash
# Load benchmark of the tenant-facing API against a real `shardex run` on loopback (wrk).
#
#   bash tools/load/api.sh [CLIENTS] [SECONDS] [TENANTS]   # defaults: 64 clients, 20 s, 64
#
# Starts a daemon on a fresh data folder (simulated actuator, no rate limit), makes TENANTS
# tenants with one reservation each (the clients go round them), then measures: GETs per second (a reservation), and
# durable modifications per second with p50/p99 latency (each one acknowledged only after its
# SQLite transaction committed with synchronous=FULL). Prints one line per figure.
set -euo pipefail
clients=${1:-64}
seconds=${2:-20}
tenants=${3:-64}
threads=$(( clients < 2 ? clients : 2 ))
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin="$root/target/release/shardex"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is missing" >&2; exit 1; }
[ -x "$bin" ] || (cd "$root" && cargo build --release -p shardex)

dir=$(mktemp -d)
# LOG=FILE keeps the daemon's log (e.g. with SHARDEX_LOG=shardex::run::writer=debug: each batch's size and times).
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; [ -n "${LOG:-}" ] && cp "$dir/log" "$LOG"; rm -rf "$dir"' EXIT
cat >"$dir/shardex.toml" <<TOML
[host]
name = "load-1"
cpu_millicores = 256000
memory_bytes = 274877906944
[api]
rate_limit = 0
[engine]
actuator = "simulated"
TOML
SHARDEX_LOG=${SHARDEX_LOG:-warn} "$bin" run --data "$dir/data" --listen 127.0.0.1:0 2>"$dir/log" &
pid=$!
for _ in $(seq 100); do [ -s "$dir/data/api.addr" ] && break; sleep 0.1; done
addr=$(cat "$dir/data/api.addr")
admin=$(cat "$dir/data/admin.token")
url="http://$addr"

# The tenants and their reservations, over one kept-alive connection.
python3 - "$addr" "$admin" "$tenants" >"$dir/tenants.txt" <<'PY'
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
for i in range(n):
    token = post("/v1/tenants", admin, {"name": f"t{i}"})["token"]["token"]
    res = post("/v1/reservations", token, {"host": "load-1", "shards": {"cpu": 10, "memory": 8}, "for": "24h"})["id"]
    print(token, res)
PY
read -r token res < "$dir/tenants.txt"

echo "# shardex API load: $clients clients, $tenants tenants, $seconds s each, on $(nproc) cores"
echo "## GET /v1/reservations/$res"
wrk -t"$threads" -c"$clients" -d"${seconds}s" --latency -H "Authorization: Bearer $token" \
  "$url/v1/reservations/$res" | grep -E 'Requests/sec|50%|99%|Non-2xx'
echo "## POST /v1/reservations/{id}/modifications (durable)"
# PERF=FILE records the daemon's profile during the modifications (perf record, dwarf call graphs).
[ -n "${PERF:-}" ] && { perf record -F 200 --call-graph dwarf,16384 -p "$pid" -o "$PERF" -- sleep "$seconds" >/dev/null 2>&1 & }
TENANTS="$dir/tenants.txt" wrk -t"$threads" -c"$clients" -d"${seconds}s" -s "$here/modify.lua" "$url" |
  grep -E 'Requests/sec|p50|non-2xx|Non-2xx'
seq_after=$(curl -sf "$url/v1/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seq"])')
echo "log seq after the run: $seq_after"
