#!/usr/bin/env bash
# A shared limit across two data-plane replicas (server.limits_backend over a Redis of the
# script's own): offers RATE req/s for DURATION seconds spread over both replicas against a limit
# of LIMIT requests per second, and prints how many were admitted against the limit's allowance
# over the same time (LIMIT burst + LIMIT per second), i.e. the overshoot (or undershoot).
#
# usage: benches/limits.sh
#   RATE=2000  offered requests per second      LIMIT=500  the limit (requests per second)
#   DURATION=10  seconds                         SLUICE_BIN=path  skip the release build
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-2000}
LIMIT=${LIMIT:-500}
DURATION=${DURATION:-10}
if [[ -z "${SLUICE_BIN:-}" ]]; then
  cargo build --release --quiet --bin sluice
  SLUICE_BIN=target/release/sluice
fi
command -v redis-server >/dev/null || { echo "needs redis-server" >&2; exit 1; }
command -v wrk >/dev/null || { echo "needs wrk" >&2; exit 1; }

T=$(mktemp -d /tmp/sluice-limits.XXXXXX)
source benches/lib.sh
trap cleanup EXIT

REDIS=$(port); MOCK=$(port)
redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no >"$T/redis.log" 2>&1 &
PIDS+=($!)
"$SLUICE_BIN" mock-upstream --listen "127.0.0.1:$MOCK" --threads 1 >"$T/mock.log" 2>&1 &
PIDS+=($!)
GENERATED=$("$SLUICE_BIN" token generate --name load)
TOKEN=$(sed -n 2p <<<"$GENERATED")
TOKEN_RECORD=$(grep -E '^  - \{ id:' <<<"$GENERATED")

PORTS=()
for i in 1 2; do
  P=$(port); A=$(port)
  cat >"$T/sluice$i.yaml" <<YAML
listeners: { proxy: "127.0.0.1:$P", admin: "127.0.0.1:$A" }
data_dir: $T/data$i
server: { limits_backend: "redis://127.0.0.1:$REDIS", grace_period_seconds: 1, graceful_shutdown_timeout_seconds: 1 }
audit: { sink: none }
providers:
  - { name: openai, kind: openai, base_url: "http://127.0.0.1:$MOCK", keys: [{ id: a, secret_ref: "env:LOAD_KEY" }] }
routes:
  - { prefix: /openai, provider: openai, auth: token }
tokens:
$TOKEN_RECORD
limits:
  - { name: shared, route: /openai, requests_per_second: $LIMIT }
YAML
  LOAD_KEY=sk-load-000000000 RUST_LOG=warn "$SLUICE_BIN" serve --config "$T/sluice$i.yaml" >"$T/sluice$i.log" 2>&1 &
  PIDS+=($!)
  PORTS+=("$P")
  wait_port "$P"
  until curl -s "http://127.0.0.1:$A/metrics" | grep -q '^sluice_limits_backend_up 1'; do sleep 0.2; done
done
wait_port "$MOCK"

# Paced: each connection waits so that CONNS connections offer about RATE req/s in all.
CONNS=20
DELAY_MS=$(awk -v c=$CONNS -v r="$RATE" 'BEGIN { printf "%d", c * 1000 / r }')
cat >"$T/paced.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"model":"gpt-mock","messages":[{"role":"user","content":"hello"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $TOKEN"
function delay() return $DELAY_MS end
LUA

before=$(curl -s "http://127.0.0.1:$MOCK/_mock/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')
start=$(date +%s.%N)
for P in "${PORTS[@]}"; do
  wrk -t1 -c$((CONNS / 2)) -d"${DURATION}s" -s "$T/paced.lua" "http://127.0.0.1:$P/openai/v1/chat/completions" >"$T/wrk-$P.txt" 2>&1 &
done
wait_wrk() { while pgrep -f "wrk -t1 -c$((CONNS / 2)) -d${DURATION}s" >/dev/null; do sleep 0.1; done; }
wait_wrk
end=$(date +%s.%N)
after=$(curl -s "http://127.0.0.1:$MOCK/_mock/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')
offered=0
for P in "${PORTS[@]}"; do offered=$((offered + $(requests "$(cat "$T/wrk-$P.txt")"))); done

python3 - "$before" "$after" "$start" "$end" "$offered" "$LIMIT" <<'PY'
import sys
before, after, start, end, offered, limit = map(float, sys.argv[1:])
seconds = end - start
admitted = after - before
allowed = limit + limit * seconds
lease = min(max(int(limit) // 20, 1), 50)
print(f"# shared limit of {int(limit)}/s over 2 replicas, {seconds:.1f} s")
print(f"offered  {int(offered)} requests ({offered / seconds:.0f}/s)")
print(f"admitted {int(admitted)} ({admitted / seconds:.0f}/s)")
print(f"allowed  {allowed:.0f} (burst {int(limit)} + {int(limit)}/s)")
print(f"overshoot {admitted - allowed:+.0f} ({(admitted - allowed) / allowed * 100:+.2f} %); documented bound ±{2 * lease} (2 replicas × lease {lease})")
PY
