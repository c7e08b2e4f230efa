#!/usr/bin/env bash
# Sluice's HTTPS listener beside nginx with the same ECDSA P-256 certificate, in one run: the
# mock upstream, Sluice in its default configuration (token auth, accounting to the audit file)
# with `listeners.proxy_tls`, and nginx (as many workers, TLS 1.2/1.3, HTTP/2, upstream
# keepalive) on loopback. ROUNDS rounds, each measuring both proxies back to back:
#   - TLS handshakes per second: wrk with `Connection: close` (one full handshake a request),
#   - JSON and SSE (20 events) over HTTP/1.1 (wrk, 64 connections) and HTTP/2 (h2load,
#     64 connections, one stream each),
#   - JSON and SSE over HTTP/1.1 to an HTTPS upstream (a second mock serving TLS; Sluice with
#     rustls, nginx with OpenSSL, both verifying its certificate and keeping connections alive),
# with CPU per request (process CPU-seconds / requests) for each; then resident memory per idle
# TLS connection (1,000 connections, handshake done, then idle). Ratios are Sluice / nginx.
#
# usage: benches/tls.sh [--smoke]
#   DURATION=8  seconds per run   ROUNDS=2   SLUICE_BIN=path (default: release build)
# Needs wrk, h2load (nghttp2-client) and nginx.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-2}
IDLE=${IDLE:-1000}
if [[ "${1:-}" == "--smoke" ]]; then DURATION=1; ROUNDS=1; IDLE=20; fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [[ -z "${SLUICE_BIN:-}" ]]; then
  cargo build --release --quiet --bin sluice
  SLUICE_BIN=target/release/sluice
fi
WORKERS=$(nproc)
ulimit -n 65536 2>/dev/null || true

T=$(mktemp -d /tmp/sluice-tls.XXXXXX)
chmod 755 "$T"
source benches/lib.sh
trap cleanup EXIT

"$SLUICE_BIN" tls self-signed --out "$T/tls" localhost 127.0.0.1 >/dev/null
MOCK=$(port); SLUICE=$(port); ADMIN=$(port); NGX=$(port); MOCK_TLS=$(port)
MOCK_TLS_CA=$T/tls/ca.pem
GENERATED=$("$SLUICE_BIN" token generate --name load)
TOKEN=$(sed -n 2p <<<"$GENERATED")
TOKEN_RECORD=$(grep -E '^  - \{ id:' <<<"$GENERATED")
"$SLUICE_BIN" mock-upstream --listen "127.0.0.1:$MOCK" --chunks 20 --threads 1 >"$T/mock.log" 2>&1 &
PIDS+=($!)
"$SLUICE_BIN" mock-upstream --listen "127.0.0.1:$MOCK_TLS" --chunks 20 --threads 1 \
  --tls-cert "$T/tls/cert.pem" --tls-key "$T/tls/key.pem" >"$T/mock-tls.log" 2>&1 &
PIDS+=($!)
cat >"$T/sluice.yaml" <<YAML
listeners:
  proxy: "127.0.0.1:$SLUICE"
  proxy_tls: { cert: $T/tls/cert.pem, key: $T/tls/key.pem }
  admin: "127.0.0.1:$ADMIN"
data_dir: $T/data
server: { grace_period_seconds: 1, graceful_shutdown_timeout_seconds: 1 }
providers:
$(load_provider)
  - name: tls-upstream
    kind: openai
    base_url: https://127.0.0.1:$MOCK_TLS
    ca_file: $T/tls/ca.pem
    keys: [{ id: t, secret_ref: "env:LOAD_KEY_A" }]
routes:
  - { prefix: /openai, provider: openai, auth: token }
  - { prefix: /tls-upstream, provider: tls-upstream, auth: token }
tokens:
$TOKEN_RECORD
YAML
LOAD_KEY_A=sk-load-a-000000000 LOAD_KEY_B=sk-load-b-000000000 RUST_LOG=warn \
  "$SLUICE_BIN" serve --config "$T/sluice.yaml" >"$T/sluice.log" 2>&1 &
SLUICE_PID=$!
PIDS+=($SLUICE_PID)
NGX_TLS="$T/tls/cert.pem $T/tls/key.pem" start_nginx_proxy
wait_port "$MOCK"; wait_port "$MOCK_TLS"; wait_port "$SLUICE"; wait_port "$NGX"
NGINX_WORKERS=$(pgrep -P "$(cat "$T/nginx.pid")" | tr '\n' ' ')

JSON='{"model":"gpt-mock","messages":[{"role":"user","content":"hello"}]}'
SSE='{"model":"gpt-mock","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello"}]}'
wrk_post "$T/json.lua" "$JSON" "$TOKEN"
wrk_post "$T/sse.lua" "$SSE" "$TOKEN"
printf '%s' "$JSON" >"$T/json.body"
printf '%s' "$SSE" >"$T/sse.body"
cat >"$T/handshake.lua" <<LUA
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer $TOKEN"
wrk.headers["Connection"] = "close"
LUA
port_of() { [[ $1 == sluice ]] && echo "$SLUICE" || echo "$NGX"; }
pids_of() { [[ $1 == sluice ]] && echo "$SLUICE_PID" || echo "$NGINX_WORKERS"; }

# run KIND TARGET: "rps cpu_us_per_request" for one measured run.
run() {
  local kind=$1 target=$2 pids before after out n secs base
  base="https://127.0.0.1:$(port_of "$target")/openai/v1"
  pids=$(pids_of "$target")
  # shellcheck disable=SC2086
  before=$(ticks $pids)
  case $kind in
    handshake) out=$(wrk -t2 -c32 -d"${DURATION}s" -s "$T/handshake.lua" "$base/models" 2>&1) ;;
    json1|sse1) out=$(wrk -t2 -c64 -d"${DURATION}s" -s "$T/${kind%1}.lua" "$base/chat/completions" 2>&1) ;;
    jsonup|sseup)
      out=$(wrk -t2 -c64 -d"${DURATION}s" -s "$T/${kind%up}.lua" \
        "https://127.0.0.1:$(port_of "$target")/tls-upstream/v1/chat/completions" 2>&1) ;;
    json2|sse2)
      out=$(h2load -c64 -m1 -t2 -D "$DURATION" -d "$T/${kind%2}.body" \
        -H "authorization: Bearer $TOKEN" -H "content-type: application/json" \
        "$base/chat/completions" 2>&1) ;;
  esac
  # shellcheck disable=SC2086
  after=$(ticks $pids)
  case $kind in
    json2|sse2)
      n=$(grep -oE '[0-9]+ succeeded' <<<"$out" | grep -oE '[0-9]+')
      if ! grep -q ' 0 failed, 0 errored' <<<"$out"; then echo "$target $kind: $out" >&2; fi ;;
    *)
      n=$(requests "$out")
      if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then echo "$target $kind: $(grep -E 'Non-2xx|Socket errors' <<<"$out")" >&2; fi ;;
  esac
  secs=$DURATION
  python3 -c "n=$n; print(f'{n/$secs:.0f} {($after-$before)/$HZ/max(n,1)*1e6:.1f}')"
}

declare -A V
KINDS=(handshake json1 sse1 json2 sse2 jsonup sseup)
for r in $(seq 1 "$ROUNDS"); do
  for kind in "${KINDS[@]}"; do
    for target in nginx sluice; do
      read -r rps cpu < <(run "$kind" "$target")
      add "$kind.$target.rps" "$rps"; add "$kind.$target.cpu" "$cpu"
    done
  done
done

# Resident memory per idle TLS connection: IDLE connections opened and held, RSS before/after.
rss_kib() { local t=0 p; for p in "$@"; do t=$((t + $(awk '/VmRSS/ {print $2}' "/proc/$p/status"))); done; echo "$t"; }
idle() {
  local target=$1 pids before after
  pids=$(pids_of "$target")
  # shellcheck disable=SC2086
  before=$(rss_kib $pids)
  python3 - "$(port_of "$target")" "$IDLE" "$T/idle.$target" <<'PY' &
import os, socket, ssl, sys, time
port, n, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context()
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])
held = [ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost") for _ in range(n)]
open(ready, "w").close()
time.sleep(30)
PY
  local py=$!
  for _ in $(seq 1 600); do [[ -f "$T/idle.$target" ]] && break; sleep 0.1; done
  sleep 1
  # shellcheck disable=SC2086
  after=$(rss_kib $pids)
  kill "$py" 2>/dev/null || true; wait "$py" 2>/dev/null || true
  python3 -c "print(f'{($after-$before)/$IDLE:.1f}')"
}
MEM_N=$(idle nginx); MEM_S=$(idle sluice)

echo "HTTPS beside nginx (same ECDSA P-256 certificate), $ROUNDS rounds of ${DURATION}s, medians"
printf '%-24s %10s %10s %8s %12s %12s %8s\n' run nginx_rps sluice_rps ratio nginx_cpu_us sluice_cpu_us ratio
label() { case $1 in handshake) echo "TLS handshakes (new conn)";; json1) echo "JSON, HTTP/1.1";; sse1) echo "SSE, HTTP/1.1";; json2) echo "JSON, HTTP/2";; sse2) echo "SSE, HTTP/2";; jsonup) echo "JSON, HTTPS upstream";; sseup) echo "SSE, HTTPS upstream";; esac; }
for kind in "${KINDS[@]}"; do
  nr=$(median "${V[$kind.nginx.rps]}"); sr=$(median "${V[$kind.sluice.rps]}")
  nc=$(median "${V[$kind.nginx.cpu]}"); sc=$(median "${V[$kind.sluice.cpu]}")
  printf '%-24s %10s %10s %8s %12s %12s %8s\n' "$(label "$kind")" "$nr" "$sr" \
    "$(paired "${V[$kind.sluice.rps]}" "${V[$kind.nginx.rps]}")" "$nc" "$sc" \
    "$(paired "${V[$kind.sluice.cpu]}" "${V[$kind.nginx.cpu]}")"
done
echo "resident memory per idle TLS connection ($IDLE connections): nginx $MEM_N KiB, sluice $MEM_S KiB"
