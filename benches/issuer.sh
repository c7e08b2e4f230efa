#!/usr/bin/env bash
# Token endpoint throughput: client-credentials tokens per second from Sluice's built-in issuer
# (`/oauth2/token`: client secret checked, ES256 signature) next to oidc-provider issuing the same
# kind of token (client_credentials, ES256 JWT access token) in the same run, each driven by wrk
# with CONNS connections; CPU per token beside tokens/s (the process's CPU-seconds ÷ tokens).
#
# usage: benches/issuer.sh [--smoke]
#   DURATION=5 ROUNDS=3 CONNS=16 WORKERS=1  SLUICE_BIN: skip the release build
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5}; ROUNDS=${ROUNDS:-3}; CONNS=${CONNS:-16}; WORKERS=${WORKERS:-1}
if [[ "${1:-}" == "--smoke" ]]; then DURATION=1; ROUNDS=1; fi
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
if [[ ! -d tests/idp/node_modules/oidc-provider ]]; then
  (cd tests/idp && npm ci --no-audit --no-fund --loglevel=error)
fi
if [[ -z "${SLUICE_BIN:-}" ]]; then
  cargo build --release --quiet --bin sluice
  SLUICE_BIN=target/release/sluice
fi
T=$(mktemp -d /tmp/sluice-issuer.XXXXXX)
source benches/lib.sh
trap cleanup EXIT

node tests/idp/server.js >"$T/idp.out" 2>"$T/idp.log" &
IDP_PID=$!
PIDS+=("$IDP_PID")
for _ in $(seq 1 100); do [[ -s "$T/idp.out" ]] && break; sleep 0.05; done
IDP_PORT=$(python3 -c "import json; print(json.loads(open('$T/idp.out').readline())['port'])")

PROXY=$(port); ADMIN=$(port); API=$(port)
cat >"$T/sluice.yaml" <<YAML
listeners: { proxy: "127.0.0.1:$PROXY", admin: "127.0.0.1:$ADMIN" }
data_dir: $T/data
server: { threads: $WORKERS, grace_period_seconds: 1, graceful_shutdown_timeout_seconds: 1 }
audit: { sink: file, path: $T/audit.jsonl }
agents:
  - name: research
    environments:
      - { name: prod, url: "http://127.0.0.1:$API", auth: oauth }
YAML
"$SLUICE_BIN" serve --config "$T/sluice.yaml" >"$T/sluice.log" 2>&1 &
SLUICE_PID=$!
PIDS+=("$SLUICE_PID")
wait_port "$PROXY"
wait_port "$ADMIN"
export SLUICE_ADMIN_URL="http://127.0.0.1:$ADMIN"
for _ in $(seq 1 100); do [[ -s "$T/data/admin-token" ]] && break; sleep 0.05; done
export SLUICE_ADMIN_TOKEN=$(cat "$T/data/admin-token")
APP=$("$SLUICE_BIN" app --output json create --agent research --env prod --name bench)
ID=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['client_id'])" "$APP")
SECRET=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['client_secret'])" "$APP")

# A wrk script posting a form and counting answers that are not 200 (they would not be tokens).
form_script() {
  cat >"$1" <<LUA
wrk.method = "POST"
wrk.body = "$2"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
local bad = 0
response = function(status, headers, body) if status ~= 200 then bad = bad + 1 end end
done = function(summary, latency, requests) io.write(string.format("NON200 %d\n", bad)) end
LUA
}
form_script "$T/sluice.lua" "grant_type=client_credentials&client_id=$ID&client_secret=$SECRET"
form_script "$T/idp.lua" "grant_type=client_credentials&client_id=es-client&client_secret=es-client-secret&resource=urn:sluice:gateway"

# Both must hand out tokens before anything is measured.
curl -sf -X POST -d "grant_type=client_credentials&client_id=$ID&client_secret=$SECRET" \
  "http://127.0.0.1:$PROXY/oauth2/token" | grep -q access_token
curl -sf -X POST -d "grant_type=client_credentials&client_id=es-client&client_secret=es-client-secret&resource=urn:sluice:gateway" \
  "http://127.0.0.1:$IDP_PORT/token" | grep -q access_token

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)
declare -A V
for round in $(seq 1 "$ROUNDS"); do
  for target in sluice idp; do
    if [[ $target == sluice ]]; then url="http://127.0.0.1:$PROXY/oauth2/token"; pid=$SLUICE_PID
    else url="http://127.0.0.1:$IDP_PORT/token"; pid=$IDP_PID; fi
    before=$(cpu "$pid")
    out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" -s "$T/$target.lua" "$url")
    after=$(cpu "$pid")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    total=$(awk '/requests in/ {print $1}' <<<"$out")
    bad=$(awk '/NON200/ {print $2}' <<<"$out")
    if [[ "${bad:-0}" != 0 ]]; then echo "$target: $bad answers were not tokens" >&2; exit 1; fi
    add "$target.rps" "$rps"
    add "$target.cpu" "$(python3 -c "print(($after - $before) / $TICK / max($total, 1) * 1e6)")"
  done
  echo "round $round done" >&2
done

echo "Client-credentials tokens ($CONNS connections, ${DURATION}s runs, median of $ROUNDS rounds)"
printf '%-14s %12s %18s\n' issuer tokens/s "CPU µs per token"
for target in sluice idp; do
  printf '%-14s %12.0f %18.0f\n' "$target" "$(median "${V[$target.rps]}")" "$(median "${V[$target.cpu]}")"
done
echo "ratio sluice/oidc-provider (paired): tokens/s $(paired "${V[sluice.rps]}" "${V[idp.rps]}"), CPU per token $(paired "${V[sluice.cpu]}" "${V[idp.cpu]}")"
