#!/usr/bin/env bash
# Sluice load-test kit: mock upstream, Sluice, a bare Pingora proxy (examples/bare_pingora.rs: the
# framework without Sluice's filters) and nginx (reference proxy, keepalive) on loopback,
# driven by wrk in interleaved rounds. Prints RPS, p50, p99 and peak RSS with ratios to direct
# access and to nginx, for JSON and SSE at 1 and 64 connections, then peak RSS at 1,000
# connections and (when oha is installed) p99 at half of nginx's saturation rate.
#
# usage: benches/loadtest.sh [--smoke]
#   DURATION=10  seconds per run          ROUNDS=3   interleaved rounds (median reported)
#   WORKERS=nproc proxy workers (Sluice's default)  SLUICE_BIN=path  skip the release build
#   TARGETS="direct nginx pingora sluice limited fallback noauth noaudit oldloop nosteal percore percore1"
#                (keep direct, nginx, pingora)
#   --smoke      1 s runs, 1 round: checks the kit works (CI), figures mean nothing
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-$(nproc)}
# sluice: token auth and accounting on; noauth: the same Sluice on an `auth: none` route;
# noaudit: no auth and no accounting (audit records go to a file under the kit's temp dir);
# limited: `sluice` plus a per-principal request rate, token allowance and concurrency cap and a
# monthly dollar budget (none of them reached); fallback: `sluice` on a route with a fallback
# chain that is never used (the body is read whole before going upstream); oldloop, nosteal,
# percore, percore1: `sluice` with other `server:` settings (see VARIANT below).
TARGETS=${TARGETS:-direct nginx pingora sluice limited fallback noauth noaudit}
if [[ "${1:-}" == "--smoke" ]]; then DURATION=1; ROUNDS=1; SMOKE=1; else SMOKE=0; fi

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need nginx; then
  if [[ $(id -u) == 0 ]] && need apt-get; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx >/dev/null
  else
    echo "loadtest needs wrk and nginx (apt-get install wrk nginx)" >&2; exit 1
  fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [[ -z "${SLUICE_BIN:-}" ]]; then
  cargo build --release --quiet --bin sluice --example bare_pingora --example chunk_gaps
  SLUICE_BIN=target/release/sluice
fi
# Pingora without Sluice's filters, built with the same profile as SLUICE_BIN.
BARE_BIN=${BARE_BIN:-$(dirname "$SLUICE_BIN")/examples/bare_pingora}
ulimit -n 65536 2>/dev/null || ulimit -n 4096 2>/dev/null || true

T=$(mktemp -d /tmp/sluice-loadtest.XXXXXX)
chmod 755 "$T"
source benches/lib.sh
trap cleanup EXIT

MOCK=$(port); SLUICE=$(port); ADMIN=$(port); NGX=$(port); BARE=$(port); PACED=$(port)
GENERATED=$("$SLUICE_BIN" token generate --name load)
TOKEN=$(sed -n 2p <<<"$GENERATED")
TOKEN_RECORD=$(grep -E '^  - \{ id:' <<<"$GENERATED")

"$SLUICE_BIN" mock-upstream --listen "127.0.0.1:$MOCK" --chunks 8 --threads 1 >"$T/mock.log" 2>&1 &
PIDS+=($!)
# A paced upstream (a chunk every 10 ms) for inter-chunk gap measurements.
"$SLUICE_BIN" mock-upstream --listen "127.0.0.1:$PACED" --chunks 50 --chunk-interval-ms 10 --threads 1 >"$T/paced.log" 2>&1 &
PIDS+=($!)

cat >"$T/sluice.yaml" <<YAML
listeners: { proxy: "127.0.0.1:$SLUICE", admin: "127.0.0.1:$ADMIN" }
data_dir: $T/data
server: { threads: $WORKERS, grace_period_seconds: 1, graceful_shutdown_timeout_seconds: 1 }
providers:
$(load_provider)
  - name: paced
    kind: openai
    base_url: http://127.0.0.1:$PACED
    keys: [{ id: p, secret_ref: "env:LOAD_KEY_A" }]
routes:
  - { prefix: /paced, provider: paced, auth: none }
  - { prefix: /paced-bare, provider: paced, auth: none, audit: false }
  - { prefix: /openai, provider: openai, auth: token }
  - { prefix: /limited, provider: openai, auth: token }
  - { prefix: /fallback, provider: openai, auth: token, fallback: { to: [{ provider: paced }] } }
  - { prefix: /open, provider: openai, auth: none }
  - { prefix: /bare, provider: openai, auth: none, audit: false }
tokens:
$TOKEN_RECORD
limits:
  - { name: load, route: /limited, per: principal, requests_per_minute: 1000000000, tokens_per_minute: 100000000000, concurrent: 100000 }
budgets:
  - { name: load, route: /limited, per: principal, period: month, usd: 1000000000 }
YAML
LOAD_KEY_A=sk-load-a-000000000 LOAD_KEY_B=sk-load-b-000000000 RUST_LOG=warn \
  "$SLUICE_BIN" serve --config "$T/sluice.yaml" >"$T/sluice.log" 2>&1 &
SLUICE_PID=$!
PIDS+=($SLUICE_PID)
# Variants of `sluice` for A/B, each a second Sluice process started only when named:
# oldloop: pingora-proxy's loop; nosteal: a single-threaded runtime per thread; percore: an event
# loop and a listening socket (SO_REUSEPORT) per thread; percore1: percore with single-threaded
# runtimes.
declare -A VARIANT=([oldloop]="proxy_loop: pingora, " [nosteal]="work_stealing: false, "
  [percore]="thread_per_core: true, " [percore1]="thread_per_core: true, work_stealing: false, ")
declare -A VPORT VPID
for v in "${!VARIANT[@]}"; do
  [[ " $TARGETS " == *" $v "* ]] || continue
  VPORT[$v]=$(port); vadmin=$(port)
  mkdir -p "$T/$v"
  sed -e "s|127.0.0.1:$SLUICE\"|127.0.0.1:${VPORT[$v]}\"|; s|127.0.0.1:$ADMIN\"|127.0.0.1:$vadmin\"|" \
    -e "s|^data_dir: .*|data_dir: $T/$v|" \
    -e "s|^server: { |server: { ${VARIANT[$v]}|" "$T/sluice.yaml" >"$T/$v.yaml"
  LOAD_KEY_A=sk-load-a-000000000 LOAD_KEY_B=sk-load-b-000000000 RUST_LOG=warn \
    "$SLUICE_BIN" serve --config "$T/$v.yaml" >"$T/$v.log" 2>&1 &
  VPID[$v]=$!
  PIDS+=(${VPID[$v]})
  wait_port "${VPORT[$v]}"
done

start_nginx_proxy
"$BARE_BIN" "127.0.0.1:$BARE" "127.0.0.1:$MOCK" "$WORKERS" >"$T/bare.log" 2>&1 &
BARE_PID=$!
PIDS+=($BARE_PID)
wait_port "$MOCK"; wait_port "$SLUICE"; wait_port "$NGX"; wait_port "$BARE"

JSON_BODY='{"model":"gpt-mock","messages":[{"role":"user","content":"hello"}]}'
SSE_BODY='{"model":"gpt-mock","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello"}]}'
wrk_post "$T/json.lua" "$JSON_BODY" "$TOKEN"
wrk_post "$T/sse.lua" "$SSE_BODY" "$TOKEN"

url() {
  case $1 in
    direct) echo "http://127.0.0.1:$MOCK/v1/chat/completions" ;;
    nginx) echo "http://127.0.0.1:$NGX/openai/v1/chat/completions" ;;
    sluice) echo "http://127.0.0.1:$SLUICE/openai/v1/chat/completions" ;;
    pingora) echo "http://127.0.0.1:$BARE/openai/v1/chat/completions" ;;
    noauth) echo "http://127.0.0.1:$SLUICE/open/v1/chat/completions" ;;
    noaudit) echo "http://127.0.0.1:$SLUICE/bare/v1/chat/completions" ;;
    limited) echo "http://127.0.0.1:$SLUICE/limited/v1/chat/completions" ;;
    fallback) echo "http://127.0.0.1:$SLUICE/fallback/v1/chat/completions" ;;
    *) echo "http://127.0.0.1:${VPORT[$1]}/openai/v1/chat/completions" ;;
  esac
}
declare -A RPS P50 P99 CPU
# The proxy's processes (CPU per request is theirs; direct access has none).
proxy_pids() {
  case $1 in
    direct) echo "" ;;
    nginx) pgrep -P "$(cat "$T/nginx.pid")" | tr '\n' ' ' ;;
    pingora) echo "$BARE_PID" ;;
    sluice | noauth | noaudit | limited | fallback) echo "$SLUICE_PID" ;;
    *) echo "${VPID[$1]}" ;;
  esac
}
run() { # kind conns target
  local threads=1; [[ $2 -gt 1 ]] && threads=2
  local out pids before after n
  pids=$(proxy_pids "$3")
  # shellcheck disable=SC2086
  before=$(ticks $pids)
  out=$(wrk -t"$threads" -c"$2" -d"${DURATION}s" --latency -s "$T/$1.lua" "$(url "$3")" 2>&1)
  # shellcheck disable=SC2086
  after=$(ticks $pids)
  n=$(requests "$out")
  CPU["$1 $2 $3"]+="$(awk -v n="${n:-0}" -v c=$((after - before)) -v hz="$HZ" 'BEGIN { printf "%.1f", n ? c / hz / n * 1e6 : 0 }') "
  local non2xx; non2xx=$(grep -oE 'Non-2xx or 3xx responses: [0-9]+' <<<"$out" | grep -oE '[0-9]+$' || echo 0)
  if [[ $non2xx != 0 ]] || grep -q 'Socket errors' <<<"$out"; then echo "$3 $1 c=$2: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr -s ' ')" >&2; fi
  local key="$1 $2 $3"
  RPS[$key]+="$(awk '/Requests\/sec/ {print $2}' <<<"$out") "
  P50[$key]+="$(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")") "
  P99[$key]+="$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")") "
}
rss_mb() { # peak resident set of a process and its children, MB
  local total=0 p
  for p in "$@" $(pgrep -P "$1" 2>/dev/null || true); do
    total=$((total + $(awk '/VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
  done
  awk -v k="$total" 'BEGIN { printf "%.1f", k/1024 }'
}
NGINX_MASTER=$(cat "$T/nginx.pid")

echo "# Sluice load test: $(date -u +%FT%TZ), $(nproc) cores, ${DURATION}s runs, $ROUNDS rounds, $WORKERS proxy worker(s)"
for round in $(seq 1 "$ROUNDS"); do
  for kind in json sse; do
    for conns in 1 64; do
      for target in $TARGETS; do run "$kind" "$conns" "$target"; done
    done
  done
  echo "round $round done" >&2
done

printf '\n%-5s %5s %-8s %10s %8s %8s %9s %9s %9s %8s %9s\n' kind conns target rps p50_ms p99_ms x_direct x_nginx x_pingora cpu_us cpu_x_ngx
for kind in json sse; do
  for conns in 1 64; do
    d=$(median "${RPS[$kind $conns direct]}"); n=$(median "${RPS[$kind $conns nginx]}")
    b=$(median "${RPS[$kind $conns pingora]}"); nc=$(median "${CPU[$kind $conns nginx]}")
    for target in $TARGETS; do
      key="$kind $conns $target"; r=$(median "${RPS[$key]}"); c=$(median "${CPU[$key]}")
      printf '%-5s %5s %-8s %10.0f %8s %8s %9.2f %9.2f %9.2f %8s %9s\n' "$kind" "$conns" "$target" "$r" \
        "$(median "${P50[$key]}")" "$(median "${P99[$key]}")" \
        "$(awk -v a="$r" -v b="$d" 'BEGIN{print a/b}')" "$(awk -v a="$r" -v b="$n" 'BEGIN{print a/b}')" \
        "$(awk -v a="$r" -v c="$b" 'BEGIN{print a/c}')" "$c" "$(ratio "$c" "$nc")"
    done
  done
done
echo
echo "peak RSS after the runs above: sluice $(rss_mb "$SLUICE_PID") MB, nginx $(rss_mb "$NGINX_MASTER") MB (master+workers)"

C1000_DURATION=$((DURATION < 5 ? DURATION : 5))
wrk -t2 -c1000 -d"${C1000_DURATION}s" -s "$T/sse.lua" "$(url sluice)" >/dev/null 2>&1 || true
wrk -t2 -c1000 -d"${C1000_DURATION}s" -s "$T/sse.lua" "$(url nginx)" >/dev/null 2>&1 || true
echo "peak RSS after 1,000 connections (SSE): sluice $(rss_mb "$SLUICE_PID") MB, nginx $(rss_mb "$NGINX_MASTER") MB"

GAPS_BIN=${GAPS_BIN:-$(dirname "$SLUICE_BIN")/examples/chunk_gaps}
if [[ -x "$GAPS_BIN" ]]; then
  streams=32; rounds=$((SMOKE == 1 ? 1 : 3))
  on=$("$GAPS_BIN" "http://127.0.0.1:$SLUICE/paced/v1/chat/completions" $streams $rounds)
  off=$("$GAPS_BIN" "http://127.0.0.1:$SLUICE/paced-bare/v1/chat/completions" $streams $rounds)
  direct_gaps=$("$GAPS_BIN" "http://127.0.0.1:$PACED/v1/chat/completions" $streams $rounds)
  echo "SSE inter-chunk gaps (upstream paces 10 ms, $streams streams x 50 chunks x $rounds): direct $direct_gaps"
  echo "  accounting on:  $on"
  echo "  accounting off: $off"
fi

if command -v oha >/dev/null 2>&1; then
  sat=$(median "${RPS[json 64 nginx]}")
  rate=$(awk -v s="$sat" 'BEGIN { printf "%d", s/2 }')
  p99_at_rate() {
    local out
    out=$(oha --no-tui -z "${DURATION}s" -c 64 -q "$rate" -m POST -T application/json -d "$JSON_BODY" \
      -H "Authorization: Bearer $TOKEN" "$(url "$1")" 2>&1 || true)
    awk '/99.00% in/ && !done {v=$3; u=$4; done=1; if (u ~ /^ms/) print v; else if (u ~ /^s/) print v*1000; else print v/1000}' <<<"$out"
  }
  pd=$(p99_at_rate direct); ps=$(p99_at_rate sluice); pn=$(p99_at_rate nginx); pp=$(p99_at_rate pingora)
  echo "p99 at half of nginx's saturation ($rate req/s, 64 conns, JSON): direct ${pd} ms, nginx ${pn} ms, bare pingora ${pp} ms, sluice ${ps} ms; sluice - nginx: $(awk -v a="$ps" -v b="$pn" 'BEGIN{printf "%.3f", a-b}') ms, sluice - direct: $(awk -v a="$ps" -v b="$pd" 'BEGIN{printf "%.3f", a-b}') ms"
else
  echo "(oha not installed: the half-saturation p99 line needs rate limiting; cargo install oha --locked)"
fi

if [[ $SMOKE == 1 ]]; then
  # The kit ran end to end; make sure every target actually answered.
  for key in "${!RPS[@]}"; do
    r=$(median "${RPS[$key]}")
    awk -v r="$r" 'BEGIN { exit !(r > 0) }' || { echo "no throughput for $key" >&2; exit 1; }
  done
  echo "smoke run ok"
fi
