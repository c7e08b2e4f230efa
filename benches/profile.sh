#!/usr/bin/env bash
# Where Sluice's CPU goes per request, beside nginx in the same run: the mock upstream, Sluice in
# its default configuration (token auth, accounting to the audit file, one worker per CPU) and
# nginx (as many workers, upstream keepalive, `proxy_buffering off`) on loopback; for JSON and
# SSE at 64 connections it reports
#   - RPS and CPU per request (process CPU-seconds / requests) of both proxies,
#   - Sluice's CPU samples (perf, self time by symbol) grouped by component: kernel send/receive,
#     kernel scheduling and wake-ups, HTTP parsing, header maps, Pingora's proxy and I/O, Sluice's
#     own filters, the tokio runtime, the allocator, memory copies, crypto, JSON,
#   - system calls per request of both proxies (strace -c at 8 connections),
# and leaves perf.data files and the full `perf report`s in OUT (default target/profile).
#
# usage: benches/profile.sh [--smoke]
#   DURATION=10  seconds per measured run   SLUICE_BIN=path  (default: release build)
#   OUT=dir      where reports go            --smoke  1 s runs: checks the script (CI)
#   SERVER=", work_stealing: false"         more `server:` settings for Sluice (experiments)
# Needs perf, strace, wrk and nginx (root may apt-get them).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
if [[ "${1:-}" == "--smoke" ]]; then DURATION=2; SMOKE=1; else SMOKE=0; fi
OUT=${OUT:-target/profile}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

need() { command -v "$1" >/dev/null 2>&1; }
missing=()
for t in perf strace wrk; do need "$t" || missing+=("$t"); done
need nginx || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
if ((${#missing[@]})); then
  pkgs=("${missing[@]/perf/linux-perf}")
  if [[ $(id -u) == 0 ]] && need apt-get; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
  else
    echo "profile.sh needs: ${pkgs[*]}" >&2; exit 1
  fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [[ -z "${SLUICE_BIN:-}" ]]; then
  cargo build --release --quiet --bin sluice
  SLUICE_BIN=target/release/sluice
fi
WORKERS=$(nproc)

T=$(mktemp -d /tmp/sluice-profile.XXXXXX)
chmod 755 "$T"
source benches/lib.sh
trap cleanup EXIT

MOCK=$(port); SLUICE=$(port); ADMIN=$(port); NGX=$(port)
GENERATED=$("$SLUICE_BIN" token generate --name load)
TOKEN=$(sed -n 2p <<<"$GENERATED")
TOKEN_RECORD=$(grep -E '^  - \{ id:' <<<"$GENERATED")
"$SLUICE_BIN" mock-upstream --listen "127.0.0.1:$MOCK" --chunks 20 --threads 1 >"$T/mock.log" 2>&1 &
PIDS+=($!)
# Defaults: no `server.threads`, the audit file under data_dir.
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
LOAD_KEY_A=sk-load-a-000000000 LOAD_KEY_B=sk-load-b-000000000 RUST_LOG=warn \
  "$SLUICE_BIN" serve --config "$T/sluice.yaml" >"$T/sluice.log" 2>&1 &
SLUICE_PID=$!
PIDS+=($SLUICE_PID)
start_nginx_proxy
wait_port "$MOCK"; wait_port "$SLUICE"; wait_port "$NGX"
NGINX_WORKERS=$(pgrep -P "$(cat "$T/nginx.pid")" | tr '\n' ' ')

wrk_post "$T/json.lua" '{"model":"gpt-mock","messages":[{"role":"user","content":"hello"}]}' "$TOKEN"
wrk_post "$T/sse.lua" '{"model":"gpt-mock","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello"}]}' "$TOKEN"
url() {
  case $1 in
    sluice) echo "http://127.0.0.1:$SLUICE/openai/v1/chat/completions" ;;
    nginx) echo "http://127.0.0.1:$NGX/openai/v1/chat/completions" ;;
  esac
}
pids_of() { [[ $1 == sluice ]] && echo "$SLUICE_PID" || echo "$NGINX_WORKERS"; }

# load KIND TARGET CONNS SECONDS: runs wrk, prints "requests rps cpu_us_per_request".
load() {
  local pids before after out n
  pids=$(pids_of "$2")
  # shellcheck disable=SC2086
  before=$(ticks $pids)
  out=$(wrk -t2 -c"$3" -d"$4s" -s "$T/$1.lua" "$(url "$2")" 2>&1)
  # shellcheck disable=SC2086
  after=$(ticks $pids)
  n=$(requests "$out")
  awk -v n="$n" -v d="$4" -v c=$((after - before)) -v hz="$HZ" \
    'BEGIN { printf "%d %.0f %.1f\n", n, n / d, n ? c / hz / n * 1e6 : 0 }'
}

# Components of Sluice's CPU, from `perf report --sort dso,sym` (self time).
components() {
  python3 - "$1" <<'PY'
import re, sys
rows = []
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)", line)
    if m:
        rows.append((float(m.group(1)), m.group(2), m.group(3)))
groups = [
    ("kernel: send/receive (tcp, loopback, epoll)", lambda d, s: d.startswith("[kernel") and re.search(r"tcp|sock|skb|ip_|__dev|loopback|net_|napi|epoll|ep_|copy_|_copy|recv|send|iov", s)),
    ("kernel: scheduling and wake-ups", lambda d, s: d.startswith("[kernel") and re.search(r"sched|switch|wake|futex|schedule|_raw_spin|enqueue|dequeue|update_|pick_", s)),
    ("kernel: other (syscall entry, timers, ...)", lambda d, s: d.startswith("[kernel")),
    ("HTTP parsing (httparse, Pingora's h1 head)", lambda d, s: re.search(r"httparse|parse_req|parse_resp|read_request|read_response|http::uri|http::method", s)),
    ("header maps (http::HeaderMap, case-preserving names)", lambda d, s: re.search(r"HeaderMap|header::|HeaderName|HeaderValue|CaseMap|case_header|pingora_http", s)),
    ("Sluice: filters, auth, key pick, accounting, audit", lambda d, s: re.search(r"sluice::", s)),
    ("Pingora: proxy and connection I/O", lambda d, s: re.search(r"pingora", s)),
    ("tokio runtime (tasks, wake-ups, timers, I/O driver)", lambda d, s: re.search(r"tokio::|mio::", s)),
    ("allocator", lambda d, s: re.search(r"mi_|mimalloc|malloc|free|realloc|_rjem|alloc::alloc|__rdl", s)),
    ("memory copies (memcpy/memmove/memset)", lambda d, s: re.search(r"mem(cpy|move|set|cmp)|__memcpy", s)),
    ("crypto (token hashes, TLS)", lambda d, s: re.search(r"sha2|ring::|rustls|aws_lc|sha256|Sha256", s)),
    ("JSON and text (serde_json, memchr, formatting)", lambda d, s: re.search(r"serde|memchr|core::fmt|itoa|ryu", s)),
]
totals = {name: 0.0 for name, _ in groups}
other = 0.0
for pct, dso, sym in rows:
    for name, f in groups:
        if f(dso, sym):
            totals[name] += pct
            break
    else:
        other += pct
for name, _ in groups:
    print(f"  {totals[name]:5.1f} %  {name}")
print(f"  {other:5.1f} %  other")
PY
}

# Syscalls per request: strace -c on the proxy's processes during an 8-connection run.
syscalls() { # KIND TARGET
  local pids args=() p out n
  pids=$(pids_of "$2")
  for p in $pids; do args+=(-p "$p"); done
  strace -f -c -o "$T/strace.$1.$2" "${args[@]}" 2>/dev/null &
  local spid=$!
  sleep 0.5
  out=$(wrk -t1 -c8 -d"$((SMOKE == 1 ? 1 : 3))s" -s "$T/$1.lua" "$(url "$2")" 2>&1)
  n=$(requests "$out")
  kill -INT "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true
  python3 - "$T/strace.$1.$2" "$n" <<'PY'
import sys
n = max(int(sys.argv[2] or 0), 1)
counts = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] not in ("total",):
        try:
            calls = int(f[3])
        except ValueError:
            continue
        counts[f[-1]] = calls
total = sum(counts.values())
top = sorted(counts.items(), key=lambda kv: -kv[1])[:6]
print(f"{total / n:.2f} ({', '.join(f'{k} {v / n:.2f}' for k, v in top)})")
PY
}

echo "# Sluice profile: $(date -u +%FT%TZ), $(nproc) cores, ${DURATION}s runs, Sluice defaults ($WORKERS workers), nginx $WORKERS workers"
for kind in json sse; do
  load "$kind" sluice 64 1 >/dev/null; load "$kind" nginx 64 1 >/dev/null   # warm-up
  read -r _ n_rps n_cpu < <(load "$kind" nginx 64 "$DURATION")
  # Sluice under perf (sampling costs a little: its figures come from a run without it).
  read -r _ s_rps s_cpu < <(load "$kind" sluice 64 "$DURATION")
  wrk -t2 -c64 -d"$DURATION"s -s "$T/$kind.lua" "$(url sluice)" >/dev/null 2>&1 &
  wpid=$!
  sleep 1
  perf record -F 1999 -p "$SLUICE_PID" -o "$OUT/perf.$kind.data" -- sleep "$((DURATION > 3 ? DURATION - 2 : 1))" >/dev/null 2>&1 || true
  wait "$wpid" || true
  perf report -i "$OUT/perf.$kind.data" --no-children --sort dso,sym --stdio 2>/dev/null >"$OUT/report.$kind.txt" || true
  echo
  echo "## $kind, 64 connections"
  printf '%-8s %10s %14s\n' proxy rps cpu_us_per_req
  printf '%-8s %10s %14s\n' nginx "$n_rps" "$n_cpu" sluice "$s_rps" "$s_cpu"
  echo "ratios sluice/nginx: rps $(ratio "$s_rps" "$n_rps"), cpu per request $(ratio "$s_cpu" "$n_cpu")"
  echo "Sluice CPU samples by component (self time; full report: $OUT/report.$kind.txt):"
  components "$OUT/report.$kind.txt"
  echo "syscalls per request (8 connections): nginx $(syscalls "$kind" nginx)"
  echo "                                      sluice $(syscalls "$kind" sluice)"
done
