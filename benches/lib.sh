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

# start_nginx_proxy: nginx as the reference proxy on 127.0.0.1:$NGX in front of the mock on
# $MOCK (WORKERS workers, upstream keepalive, `proxy_buffering off`, the load key injected like
# Sluice does), pid file under $T; its process joins PIDS. With NGX_TLS="CERT KEY" it listens
# with TLS 1.2/1.3 and HTTP/2 (ALPN), session tickets on, as Sluice's proxy_tls does. With
# MOCK_TLS (a mock serving HTTPS) and MOCK_TLS_CA, /tls-upstream/ proxies to it over kept-alive
# TLS connections, verifying its certificate.
start_nginx_proxy() {
  local user_line="" listen="127.0.0.1:$NGX backlog=4096" tls="" tls_upstream="" tls_location=""
  [[ $(id -u) == 0 ]] && user_line="user root root;"
  if [[ -n "${NGX_TLS:-}" ]]; then
    read -r cert key <<<"$NGX_TLS"
    listen="127.0.0.1:$NGX ssl http2 backlog=4096"
    tls="ssl_certificate $cert; ssl_certificate_key $key; ssl_protocols TLSv1.2 TLSv1.3; ssl_session_tickets on;"
  fi
  if [[ -n "${MOCK_TLS:-}" ]]; then
    tls_upstream="upstream mock_tls { server 127.0.0.1:$MOCK_TLS; keepalive 256; }"
    tls_location="location /tls-upstream/ {
      proxy_pass https://mock_tls/;
      proxy_ssl_verify on; proxy_ssl_trusted_certificate $MOCK_TLS_CA;
      proxy_ssl_name localhost; proxy_ssl_server_name on; proxy_ssl_session_reuse on;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Authorization \"Bearer sk-load-a-000000000\";
      proxy_buffering off;
    }"
  fi
  cat >"$T/nginx.conf" <<CONF
$user_line
worker_processes $WORKERS;
worker_rlimit_nofile 65536;
pid $T/nginx.pid;
error_log $T/nginx-error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $T/nginx-body;
  proxy_temp_path $T/nginx-proxy;
  upstream mock { server 127.0.0.1:$MOCK; keepalive 256; }
  $tls_upstream
  server {
    listen $listen;
    $tls
    keepalive_requests 1000000;
    location /openai/ {
      proxy_pass http://mock/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer sk-load-a-000000000";
      proxy_buffering off;
    }
    $tls_location
  }
}
CONF
  "$NGINX" -p "$T" -c "$T/nginx.conf" -g 'daemon off;' >"$T/nginx.out" 2>&1 &
  PIDS+=($!)
}

# ticks PID…: CPU ticks (user + system, all threads) of processes; HZ ticks make a second.
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
HZ=$(getconf CLK_TCK)

# requests WRK_OUTPUT: wrk's total request count.
requests() { grep -oE '^ +[0-9]+ requests in' <<<"$1" | grep -oE '[0-9]+' | head -1; }

# load_provider: the load scripts' `openai` provider (the mock on $MOCK, two keys weighted 3:1
# from LOAD_KEY_A and LOAD_KEY_B), as a YAML item of `providers:`.
load_provider() {
  cat <<YAML
  - name: openai
    kind: openai
    base_url: http://127.0.0.1:$MOCK
    keys:
      - { id: a, secret_ref: "env:LOAD_KEY_A", weight: 3 }
      - { id: b, secret_ref: "env:LOAD_KEY_B", weight: 1 }
YAML
}
