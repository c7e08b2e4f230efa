# Shared by the load kits (sourced, not run): temp dir and process cleanup, free ports, waiting
# for a listener, wrk scripts and figures, medians and ratios.

# Kills what the kit started (PIDS, nginx's pid file under $T) and removes $T.
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -f "$T/nginx.pid" ]] && kill "$(cat "$T/nginx.pid" 2>/dev/null)" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$T"
}

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() {
  for _ in $(seq 1 400); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2; return 1
}

# wrk_post FILE BODY TOKEN: a wrk script POSTing BODY as JSON with a bearer token.
wrk_post() {
  cat >"$1" <<LUA
wrk.method = "POST"
wrk.body = '$2'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $3"
LUA
}

# A wrk latency such as 512.00us, 1.20ms or 1.01s, in milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.3f", n }'
}

# add KEY VALUE: appends VALUE to the space-separated list V[KEY] (declare -A V first).
add() { V[$1]="${V[$1]:-} $2"; }

median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

ratio() { python3 -c "print(f'{float($1)/float($2):.2f}' if float($2) else 'n/a')"; }

# paired "A1 A2 …" "B1 B2 …": the median of the per-round ratios Ai/Bi. Each round measures
# both sides back to back, so this cancels the machine's drift between rounds better than the
# ratio of the medians.
paired() { python3 -c "import statistics as s; a='$1'.split(); b='$2'.split(); r=[float(x)/float(y) for x,y in zip(a,b) if float(y)]; print(f'{s.median(r):.2f}' if r else 'n/a')"; }
