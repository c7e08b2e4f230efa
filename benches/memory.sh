#!/usr/bin/env bash
# Sluice's memory at many concurrent SSE streams: the mock upstream paces its events so that
# CONNS streams are open at once, Sluice (token auth and accounting on, default threads) proxies
# them, and the script prints resident memory idle, at the peak and per stream, beside nginx in
# front of the same mock.
#
# usage: benches/memory.sh [--smoke]
#   CONNS=1000  concurrent streams      DURATION=5  seconds of load
#   SLUICE_BIN=path  skip the release build
#   SERVER=", proxy_loop: pingora"  more `server:` settings for Sluice (experiments)
#   WRAP="heaptrack"  run Sluice under a tool (build with --no-default-features for heaptrack:
#                     mimalloc hides the allocations from it)
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-1000}
DURATION=${DURATION:-5}
WORKERS=${WORKERS:-$(nproc)}
if [[ "${1:-}" == "--smoke" ]]; then CONNS=50; DURATION=1; fi
if [[ -z "${SLUICE_BIN:-}" ]]; then
  cargo build --release --quiet --bin sluice
  SLUICE_BIN=target/release/sluice
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
ulimit -n 65536 2>/dev/null || ulimit -n 4096 2>/dev/null || true

T=$(mktemp -d /tmp/sluice-memory.XXXXXX)
chmod 755 "$T"
source benches/lib.sh
trap cleanup EXIT

MOCK=$(port); SLUICE=$(port); ADMIN=$(port); NGX=$(port)
GENERATED=$("$SLUICE_BIN" token generate --name load)
TOKEN=$(sed -n 2p <<<"$GENERATED")
TOKEN_RECORD=$(grep -E '^  - \{ id:' <<<"$GENERATED")

# 21 events 100 ms apart: each stream lasts ~2 s, so all CONNS are open together.
"$SLUICE_BIN" mock-upstream --listen "127.0.0.1:$MOCK" --chunks 20 --chunk-interval-ms 100 \
  --threads 1 >"$T/mock.log" 2>&1 &
PIDS+=($!)
cat >"$T/sluice.yaml" <<YAML
listeners: { proxy: "127.0.0.1:$SLUICE", admin: "127.0.0.1:$ADMIN" }
data_dir: $T/data
server: { grace_period_seconds: 1, graceful_shutdown_timeout_seconds: 1${SERVER:-} }
providers:
$(load_provider)
routes:
  - { prefix: /openai, provider: openai, auth: token }
tokens:
$TOKEN_RECORD
YAML
# shellcheck disable=SC2086
LOAD_KEY_A=sk-load-a-000000000 LOAD_KEY_B=sk-load-b-000000000 RUST_LOG=warn \
  ${WRAP:-} "$SLUICE_BIN" serve --config "$T/sluice.yaml" >"$T/sluice.log" 2>&1 &
[[ -z "${WRAP:-}" ]] && PIDS+=($!)
start_nginx_proxy
wait_port "$MOCK"; wait_port "$SLUICE"; wait_port "$NGX"
SLUICE_PID=$(pgrep -f -- "^$SLUICE_BIN serve --config $T/sluice.yaml" | tail -1)
NGINX_MASTER=$(cat "$T/nginx.pid")

SSE_BODY='{"model":"gpt-mock","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello"}]}'
wrk_post "$T/sse.lua" "$SSE_BODY" "$TOKEN"

kb() { # KIND PID…: VmRSS or VmHWM of processes (and their children), KiB
  local total=0 p kind=$1; shift
  for p in "$@" $(pgrep -P "$1" 2>/dev/null || true); do
    total=$((total + $(awk -v k="$kind:" '$1 == k {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# One warm-up request each, so idle memory includes what the first request allocates.
curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d "$SSE_BODY" "http://127.0.0.1:$SLUICE/openai/v1/chat/completions"
curl -s -o /dev/null -d "$SSE_BODY" "http://127.0.0.1:$NGX/openai/v1/chat/completions"
s_idle=$(kb VmRSS "$SLUICE_PID"); n_idle=$(kb VmRSS "$NGINX_MASTER")

load() {
  local out
  out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" -s "$T/sse.lua" "$1" 2>&1)
  echo "$(requests "$out") streams"
}
s_n=$(load "http://127.0.0.1:$SLUICE/openai/v1/chat/completions")
s_peak=$(kb VmHWM "$SLUICE_PID")
n_n=$(load "http://127.0.0.1:$NGX/openai/v1/chat/completions")
n_peak=$(kb VmHWM "$NGINX_MASTER")

echo "# resident memory at $CONNS concurrent SSE streams ($(nproc) cores, $WORKERS workers)"
printf '%-7s %9s %9s %14s %s\n' proxy idle_MB peak_MB KiB_per_stream served
for row in "sluice $s_idle $s_peak $s_n" "nginx $n_idle $n_peak $n_n"; do
  read -r name idle peak served _ <<<"$row"
  printf '%-7s %9s %9s %14s %s\n' "$name" "$(mb "$idle")" "$(mb "$peak")" \
    "$(awk -v a="$peak" -v b="$idle" -v c="$CONNS" 'BEGIN { printf "%.1f", (a - b) / c }')" "$served"
done

if [[ -n "${WRAP:-}" ]]; then
  # Let the tool write its report: Sluice stops gracefully, then the wrapper exits on its own.
  kill -TERM "$SLUICE_PID" 2>/dev/null || true
  for _ in $(seq 1 600); do pgrep -f -- "--config $T/sluice.yaml" >/dev/null || break; sleep 0.1; done
  sleep 2
fi
