#!/usr/bin/env bash
# Control-plane kit: does rebuilding a large snapshot pause request serving?
# Sluice runs with 100 providers × 10 keys, 100 routes and 10,000 tokens (config file) plus its
# embedded store; wrk drives one route with a valid token while, in alternate runs, a loop
# changes a secret through the admin API every INTERVAL seconds (each change builds, validates
# and publishes a full snapshot) or only reads it (the same admin traffic without rebuilds).
# Prints p50/p99/max latency and RPS for each.
#
# usage: benches/control.sh [--smoke]
#   DURATION=5 ROUNDS=3 CONNS=32 WORKERS=1 INTERVAL=0.1  SLUICE_BIN: skip the release build
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5}; ROUNDS=${ROUNDS:-3}; CONNS=${CONNS:-32}; WORKERS=${WORKERS:-1}
INTERVAL=${INTERVAL:-0.1}
if [[ "${1:-}" == "--smoke" ]]; then DURATION=1; ROUNDS=1; fi
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
if [[ -z "${SLUICE_BIN:-}" ]]; then
  cargo build --release --quiet --bin sluice
  SLUICE_BIN=target/release/sluice
fi
T=$(mktemp -d /tmp/sluice-control.XXXXXX)
source benches/lib.sh
trap cleanup EXIT
MOCK=$(port); PROXY=$(port); ADMIN=$(port)
GENERATED=$("$SLUICE_BIN" token generate --name load)
TOKEN=$(sed -n 2p <<<"$GENERATED")
RECORD=$(grep -E '^  - \{ id:' <<<"$GENERATED")
echo "sk-bench-key-0000000001" >"$T/key.txt"
python3 - "$T" "$MOCK" "$PROXY" "$ADMIN" "$WORKERS" "$RECORD" <<'PY'
import hashlib, sys
t, mock, proxy, admin, workers, record = sys.argv[1:]
out = [f'listeners: {{ proxy: "127.0.0.1:{proxy}", admin: "127.0.0.1:{admin}" }}',
       f"data_dir: {t}/data", f"server: {{ threads: {workers}, grace_period_seconds: 1 }}",
       "audit: { sink: none }", "providers:"]
for p in range(100):
    keys = ", ".join(f'{{ id: k{k}, secret_ref: "file:{t}/key.txt", weight: {k+1} }}' for k in range(10))
    out.append(f'  - {{ name: p{p}, kind: openai, base_url: "http://127.0.0.1:{mock}", keys: [{keys}] }}')
out.append("routes:")
out += [f"  - {{ prefix: /p{p}, provider: p{p}, auth: token }}" for p in range(100)]
out.append("tokens:")
out.append(record)
for i in range(9999):
    out.append(f'  - {{ id: "{i:012d}", sha256: "sha256:{hashlib.sha256(str(i).encode()).hexdigest()}", owner: o{i % 50} }}')
open(f"{t}/sluice.yaml", "w").write("\n".join(out) + "\n")
PY
"$SLUICE_BIN" mock-upstream --listen "127.0.0.1:$MOCK" --threads 1 >"$T/mock.log" 2>&1 &
PIDS+=($!)
SLUICE_MASTER_KEY=c2x1aWNlLXRlc3QtbWFzdGVyLWtleS0zMi1ieXRlcyE= RUST_LOG=warn \
  "$SLUICE_BIN" serve --config "$T/sluice.yaml" >"$T/sluice.log" 2>&1 &
PIDS+=($!)
for p in $MOCK $PROXY $ADMIN; do wait_port "$p"; done
ADMIN_TOKEN=$(cat "$T/data/admin-token")
api() { curl -sf -H "authorization: Bearer $ADMIN_TOKEN" -H 'content-type: application/json' "$@"; }
api "http://127.0.0.1:$ADMIN/v1/secrets" -d '{"name":"CHURN","value":"v0"}' >/dev/null

wrk_post "$T/post.lua" '{"model":"gpt-mock","messages":[{"role":"user","content":"hi"}]}' "$TOKEN"
declare -A V
bench() {
  local out; out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$T/post.lua" "http://127.0.0.1:$PROXY/p7/v1/chat/completions")
  if grep -q "Non-2xx" <<<"$out"; then echo "$out" >&2; echo "non-2xx responses" >&2; exit 1; fi
  add "$1_rps" "$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  add "$1_p50" "$(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")")"
  add "$1_p99" "$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")"
  add "$1_max" "$(to_ms "$(awk '$1=="Latency" && $2!="Distribution" {print $4}' <<<"$out")")"
}
# `write`: rotate the secret (a rebuild and swap each time); `read`: the same admin traffic
# without a rebuild (GET), to tell the rebuilds' cost from the admin client's.
churn() {
  local i=0
  while :; do
    i=$((i+1))
    if [[ $1 == write ]]; then
      api -X PATCH "http://127.0.0.1:$ADMIN/v1/secrets/CHURN" -d "{\"value\":\"v$i\"}" >/dev/null || true
    else
      api "http://127.0.0.1:$ADMIN/v1/secrets/CHURN" >/dev/null || true
    fi
    sleep "$INTERVAL"
  done
}
for round in $(seq 1 "$ROUNDS"); do
  bench steady
  churn read & CHURN_PID=$!
  bench admin_reads
  kill $CHURN_PID 2>/dev/null; wait $CHURN_PID 2>/dev/null || true
  churn write & CHURN_PID=$!
  before=$(curl -s "http://127.0.0.1:$ADMIN/readyz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["revision"])')
  bench rebuilding
  kill $CHURN_PID 2>/dev/null; wait $CHURN_PID 2>/dev/null || true
  after=$(curl -s "http://127.0.0.1:$ADMIN/readyz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["revision"])')
  add rebuilds "$((after - before))"
done
echo "control kit: $ROUNDS round(s) of ${DURATION}s, $CONNS connections, snapshot of 100 providers / 1,000 keys / 10,000 tokens"
echo "snapshots published during each rebuilding run (median): $(median "${V[rebuilds]}")"
# vs_steady: req/s against the steady run of the same round, median over rounds.
printf '%-12s %10s %10s %10s %10s %10s\n' run req/s vs_steady p50_ms p99_ms max_ms
for k in steady admin_reads rebuilding; do
  printf '%-12s %10s %10s %10s %10s %10s\n' "$k" "$(median "${V[${k}_rps]}")" "$(paired "${V[${k}_rps]}" "${V[steady_rps]}")" "$(median "${V[${k}_p50]}")" "$(median "${V[${k}_p99]}")" "$(median "${V[${k}_max]}")"
done
# A Prometheus scrape of /metrics with 100 providers and 1,000 keys (key gauges are derived at
# scrape time): its size and duration, median of 20.
scrapes=""
for _ in $(seq 1 20); do
  scrapes+="$(curl -s -o "$T/metrics.txt" -w '%{time_total}' "http://127.0.0.1:$ADMIN/metrics") "
done
echo "/metrics scrape: $(median "$scrapes" | awk '{printf "%.1f", $1 * 1000}') ms median of 20, $(wc -c <"$T/metrics.txt" | awk '{printf "%.0f", $1 / 1024}') KiB, $(grep -c '^sluice_' "$T/metrics.txt") samples"
