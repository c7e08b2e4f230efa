#!/usr/bin/env bash
# Forward-proxy load kit: the same client (examples/forward_load.rs) drives, in interleaved
# rounds on loopback:
#   - reverse mode over plain HTTP vs intercepted HTTPS through CONNECT (keep-alive, JSON chat);
#   - new CONNECT + TLS handshakes per second through Sluice (warm leaf-cert cache) beside new
#     TLS handshakes per second terminated by nginx (same curve, P-256);
#   - a BYTES transfer through a blind tunnel vs directly to the same sink.
# Prints medians, the ratio of the medians, and the median of the per-round ratios (paired).
#
# usage: benches/forward.sh [--smoke]
#   DURATION=5 seconds per run   ROUNDS=3   CONNS=32   WORKERS=1 (Sluice and nginx)
#   BYTES=104857600              SLUICE_BIN / LOAD_BIN: skip the release build
#   --smoke   1 s runs, 1 round, 8 MB: checks the kit works (CI), figures mean nothing
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32}
WORKERS=${WORKERS:-1}
BYTES=${BYTES:-104857600}
if [[ "${1:-}" == "--smoke" ]]; then DURATION=1; ROUNDS=1; BYTES=8388608; fi

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need openssl; then
  if [[ $(id -u) == 0 ]] && need apt-get; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx openssl >/dev/null
  else
    echo "the forward kit needs nginx and openssl" >&2; exit 1
  fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
# nginx's TCP proxy (stream module) is the reference tunnel.
STREAM_MOD=/usr/lib/nginx/modules/ngx_stream_module.so
if [[ ! -f $STREAM_MOD && $(id -u) == 0 ]] && need apt-get; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libnginx-mod-stream >/dev/null || true
fi

if [[ -z "${SLUICE_BIN:-}" || -z "${LOAD_BIN:-}" ]]; then
  cargo build --release --quiet --bin sluice --example forward_load
  SLUICE_BIN=${SLUICE_BIN:-target/release/sluice}
  LOAD_BIN=${LOAD_BIN:-target/release/examples/forward_load}
fi
ulimit -n 65536 2>/dev/null || ulimit -n 4096 2>/dev/null || true

T=$(mktemp -d /tmp/sluice-forward.XXXXXX)
chmod 755 "$T"
source benches/lib.sh
trap cleanup EXIT

MOCK=$(port); PROXY=$(port); FWD=$(port); ADMIN=$(port); NGX=$(port); SINK=$(port); NGXS=$(port)
GENERATED=$("$SLUICE_BIN" token generate --name load)
TOKEN=$(sed -n 2p <<<"$GENERATED")
TOKEN_RECORD=$(grep -E '^  - \{ id:' <<<"$GENERATED")

"$SLUICE_BIN" mock-upstream --listen "127.0.0.1:$MOCK" --threads 1 >"$T/mock.log" 2>&1 &
PIDS+=($!)
"$LOAD_BIN" --mode sink --target "127.0.0.1:$SINK" >"$T/sink.log" 2>&1 &
PIDS+=($!)
echo "sk-load-test-key-0001" >"$T/key.txt"
cat >"$T/sluice.yaml" <<YAML
listeners: { proxy: "127.0.0.1:$PROXY", forward: "127.0.0.1:$FWD", admin: "127.0.0.1:$ADMIN" }
data_dir: $T/data
server: { threads: $WORKERS, grace_period_seconds: 1, graceful_shutdown_timeout_seconds: 1 }
audit: { sink: none }
providers:
  - name: openai
    kind: openai
    base_url: http://127.0.0.1:$MOCK
    intercept_hosts: [api.openai.com]
    keys: [{ id: k1, secret_ref: "file:$T/key.txt" }]
routes:
  - { prefix: /openai, provider: openai, auth: token }
tokens:
$TOKEN_RECORD
forward:
  policy: deny
  allow_hosts: [127.0.0.1]
  allow_cidrs: [127.0.0.0/8]
  ports: [443, $SINK]
YAML
RUST_LOG=warn "$SLUICE_BIN" serve --config "$T/sluice.yaml" >"$T/sluice.log" 2>&1 &
PIDS+=($!)

# nginx terminating TLS with a P-256 certificate for the same name (what the client checks).
# A CA of its own signs it, as Sluice's CA signs Sluice's leaves.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=bench-ca -keyout "$T/nginx-ca.key" -out "$T/nginx-ca.pem" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -subj /CN=api.openai.com -keyout "$T/nginx.key" -out "$T/nginx.csr" 2>/dev/null
printf 'subjectAltName=DNS:api.openai.com\nbasicConstraints=CA:FALSE\n' >"$T/nginx.ext"
openssl x509 -req -in "$T/nginx.csr" -CA "$T/nginx-ca.pem" -CAkey "$T/nginx-ca.key" \
  -CAcreateserial -days 2 -extfile "$T/nginx.ext" -out "$T/nginx.pem" 2>/dev/null
STREAM=""
if [[ -f $STREAM_MOD ]]; then
  echo "load_module $STREAM_MOD;" >"$T/nginx-mod.conf"
  STREAM="stream { server { listen 127.0.0.1:$NGXS; proxy_half_close on; proxy_pass 127.0.0.1:$SINK; } }"
else
  : >"$T/nginx-mod.conf"; NGXS=""
fi
cat >"$T/nginx.conf" <<NGX
include $T/nginx-mod.conf;
worker_processes $WORKERS;
pid $T/nginx.pid;
error_log $T/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$NGX ssl;
    ssl_certificate $T/nginx.pem;
    ssl_certificate_key $T/nginx.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { return 200 "ok"; }
  }
}
$STREAM
NGX
"$NGINX" -c "$T/nginx.conf" -p "$T"
for p in $MOCK $PROXY $FWD $ADMIN $NGX $SINK $NGXS; do wait_port "$p"; done
curl -sf "http://127.0.0.1:$ADMIN/ca.pem" >"$T/ca.pem"

run() { "$LOAD_BIN" --duration "$DURATION" --conns "$CONNS" --token "$TOKEN" "$@"; }
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }
declare -A V
# Warm the leaf-certificate cache and the upstream pool.
run --mode intercept --proxy "127.0.0.1:$FWD" --ca "$T/ca.pem" --duration 0.5 >/dev/null

for round in $(seq 1 "$ROUNDS"); do
  add reverse "$(run --mode reverse --target "127.0.0.1:$PROXY" --path /openai/v1/chat/completions | field per_second)"
  out=$(run --mode intercept --proxy "127.0.0.1:$FWD" --ca "$T/ca.pem")
  add intercept "$(field per_second <<<"$out")"
  add handshake "$(run --mode handshake --proxy "127.0.0.1:$FWD" --ca "$T/ca.pem" | field per_second)"
  add nginx_tls "$(run --mode tls --target "127.0.0.1:$NGX" --ca "$T/nginx-ca.pem" | field per_second)"
  add direct_mbs "$("$LOAD_BIN" --mode throughput --target "127.0.0.1:$SINK" --bytes "$BYTES" | field mb_per_second)"
  add tunnel_mbs "$("$LOAD_BIN" --mode throughput --target "127.0.0.1:$SINK" --proxy "127.0.0.1:$FWD" --token "$TOKEN" --bytes "$BYTES" | field mb_per_second)"
  if [[ -n $NGXS ]]; then
    add nginx_mbs "$("$LOAD_BIN" --mode throughput --target "127.0.0.1:$NGXS" --bytes "$BYTES" | field mb_per_second)"
  fi
  echo "round $round: reverse${V[reverse]##* } intercept${V[intercept]##* } handshake/s ${V[handshake]##* } nginx_tls/s ${V[nginx_tls]##* } direct MB/s ${V[direct_mbs]##* } tunnel MB/s ${V[tunnel_mbs]##* }" >&2
done

# row LABEL SLUICE BASELINE: the medians of V[SLUICE] and V[BASELINE], their ratio, and paired.
row() {
  local a b; a=$(median "${V[$2]:-0}"); b=$(median "${V[$3]:-0}")
  printf '%-48s %12s %12s %8s %8s\n' "$1" "$a" "$b" "$(ratio "$a" "$b")" "$(paired "${V[$2]:-}" "${V[$3]:-}")"
}
echo "forward kit: $ROUNDS round(s) of ${DURATION}s, $CONNS connections, $WORKERS worker(s), $BYTES bytes per transfer"
printf '%-48s %12s %12s %8s %8s\n' "measure" "sluice" "baseline" "ratio" "paired"
row "intercepted HTTPS req/s vs reverse plain HTTP" intercept reverse
row "CONNECT+TLS handshakes/s vs nginx TLS/s" handshake nginx_tls
row "tunnel MB/s vs direct MB/s" tunnel_mbs direct_mbs
[[ -z $NGXS ]] || row "tunnel MB/s vs nginx stream proxy MB/s" tunnel_mbs nginx_mbs
[[ -z $NGXS ]] || row "nginx stream proxy MB/s vs direct MB/s" nginx_mbs direct_mbs
for k in handshake nginx_tls; do
  [[ "$(median "${V[$k]}")" != 0* ]] || { echo "no $k completed" >&2; exit 1; }
done
if grep -q panicked "$T/sluice.log"; then echo "sluice panicked:" >&2; cat "$T/sluice.log" >&2; exit 1; fi
