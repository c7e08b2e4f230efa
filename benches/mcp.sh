#!/usr/bin/env bash
# MCP gateway figures: the latency Sluice adds to an MCP call (the official SDK client calling
# server-everything's `echo`, CALLS sequential calls per run, direct, through Sluice and through
# a group of two members back to back in each of ROUNDS rounds; p50/p99, paired ratios), and
# Sluice's resident memory holding
# STREAMS idle GET streams (each its own session: initialize, then the GET stream) to an
# upstream that never sends.
#
# usage: benches/mcp.sh [--smoke]
#   CALLS=1000  ROUNDS=3  STREAMS=9900 (the machine allows 20,000 descriptors per process and
#   Sluice holds two per stream)  WORKERS=1  SLUICE_BIN=path (skip the release build)
#   --smoke     50 calls, 1 round, 100 streams: checks the kit works (CI), figures mean nothing
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh

CALLS=${CALLS:-1000}
ROUNDS=${ROUNDS:-3}
STREAMS=${STREAMS:-9900}
WORKERS=${WORKERS:-1}
if [[ "${1:-}" == "--smoke" ]]; then CALLS=50; ROUNDS=1; STREAMS=100; fi

if [[ ! -d tests/mcp/node_modules/@modelcontextprotocol/sdk ]]; then
  (cd tests/mcp && npm ci --no-audit --no-fund --loglevel=error)
fi
if [[ -z "${SLUICE_BIN:-}" ]]; then
  cargo build --release --quiet --bin sluice
  SLUICE_BIN=target/release/sluice
fi
ulimit -n 20000 2>/dev/null || true

T=$(mktemp -d)
trap cleanup EXIT

EVERYTHING_PORT=$(port)
PORT=$EVERYTHING_PORT node tests/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js streamableHttp \
  >"$T/everything.log" 2>&1 &
PIDS+=($!)
node tests/mcp/idle-streams.mjs upstream >"$T/idle.port" 2>"$T/idle.log" &
PIDS+=($!)
wait_port "$EVERYTHING_PORT"
for _ in $(seq 1 100); do [[ -s "$T/idle.port" ]] && break; sleep 0.05; done
IDLE_PORT=$(python3 -c "import json; print(json.load(open('$T/idle.port'))['port'])")

generated=$("$SLUICE_BIN" token generate --name bench)
TOKEN=$(sed -n 2p <<<"$generated")
RECORD=$(grep -- '- {' <<<"$generated" | sed 's/^ *- //')
PROXY=$(port)
ADMIN=$(port)
cat >"$T/sluice.yaml" <<YAML
listeners: { proxy: "127.0.0.1:$PROXY", admin: "127.0.0.1:$ADMIN" }
data_dir: $T/data
server: { threads: $WORKERS, grace_period_seconds: 1, graceful_shutdown_timeout_seconds: 1, max_connections: 20000, max_connections_per_source: 20000 }
audit: { sink: file, path: $T/audit.jsonl }
tokens:
  - $RECORD
mcp_servers:
  - { name: everything, url: "http://127.0.0.1:$EVERYTHING_PORT/mcp", client_auth: token }
  - { name: idle, url: "http://127.0.0.1:$IDLE_PORT/mcp", client_auth: token, timeouts: { idle_seconds: 86400 }, max_streams_per_principal: 10000 }
  - { name: everything-b, url: "http://127.0.0.1:$EVERYTHING_PORT/mcp", client_auth: token }
  - { name: work, members: [everything, everything-b], client_auth: token }
YAML
"$SLUICE_BIN" serve --config "$T/sluice.yaml" >"$T/sluice.log" 2>&1 &
SLUICE_PID=$!
PIDS+=("$SLUICE_PID")
wait_port "$PROXY"

declare -A V
for round in $(seq 1 "$ROUNDS"); do
  for target in direct sluice group; do
    tool=echo
    case $target in
      direct) url="http://127.0.0.1:$EVERYTHING_PORT/mcp" ;;
      sluice) url="http://127.0.0.1:$PROXY/mcp/everything" ;;
      group) url="http://127.0.0.1:$PROXY/mcp/work"; tool=everything__echo ;;
    esac
    out=$(MCP_TOKEN=$TOKEN TOOL=$tool node tests/mcp/bench.mjs "$url" "$CALLS")
    add "$target.p50" "$(python3 -c "import json; print(json.loads('$out')['p50'])")"
    add "$target.p99" "$(python3 -c "import json; print(json.loads('$out')['p99'])")"
  done
  echo "round $round done" >&2
done

echo "MCP calls ($CALLS sequential tools/call echo per run, median of $ROUNDS rounds; ms)"
printf '%-8s %10s %10s\n' target p50 p99
for target in direct sluice group; do
  printf '%-8s %10.3f %10.3f\n' "$target" "$(median "${V[$target.p50]}")" "$(median "${V[$target.p99]}")"
done
printf 'added    %10.3f %10.3f\n' \
  "$(python3 -c "print($(median "${V[sluice.p50]}") - $(median "${V[direct.p50]}"))")" \
  "$(python3 -c "print($(median "${V[sluice.p99]}") - $(median "${V[direct.p99]}"))")"
echo "ratio sluice/direct (paired): p50 $(paired "${V[sluice.p50]}" "${V[direct.p50]}"), p99 $(paired "${V[sluice.p99]}" "${V[direct.p99]}")"
printf 'group added over a server through Sluice: p50 %.3f ms, p99 %.3f ms; ratio group/sluice (paired): p50 %s, p99 %s\n' \
  "$(python3 -c "print($(median "${V[group.p50]}") - $(median "${V[sluice.p50]}"))")" \
  "$(python3 -c "print($(median "${V[group.p99]}") - $(median "${V[sluice.p99]}"))")" \
  "$(paired "${V[group.p50]}" "${V[sluice.p50]}")" "$(paired "${V[group.p99]}" "${V[sluice.p99]}")"

before=$(ps -o rss= -p "$SLUICE_PID" | tr -d ' ')
MCP_TOKEN=$TOKEN node tests/mcp/idle-streams.mjs open "http://127.0.0.1:$PROXY/mcp/idle" "$STREAMS" >"$T/streams.out" 2>"$T/streams.err" &
PIDS+=($!)
for _ in $(seq 1 1200); do [[ -s "$T/streams.out" ]] && break; sleep 0.1; done
if [[ ! -s "$T/streams.out" ]]; then echo "the streams did not open: $(tail -3 "$T/streams.err")" >&2; exit 1; fi
sleep 2
after=$(ps -o rss= -p "$SLUICE_PID" | tr -d ' ')
python3 - "$before" "$after" "$STREAMS" <<'PY'
import sys
before, after, n = (int(x) for x in sys.argv[1:])
per = (after - before) * 1024 / n
print(f"idle GET streams: {n} held; Sluice RSS {before/1024:.1f} MiB -> {after/1024:.1f} MiB "
      f"({per/1024:.1f} KiB per stream; 10,000 streams ≈ {(before*1024 + per*10000)/2**20:.0f} MiB)")
PY
