#!/usr/bin/env bash
# Runs every Sluice test on a fresh machine: installs what is missing (cmake for pingora's zlib-ng,
# curl, nginx and wrk for the load kit, prometheus and promtool for the observability kit,
# Debian's chromium and chromium-driver (the console's browser test, with Selenium in .venv),
# strace (the Pingora patches' system-call tests), h2load (HTTP/2 load in the TLS tests) and perf (the profile script), redis-server (the
# shared-limits test runs its own), PostgreSQL (the tests run a private cluster), the
# openai/anthropic Python SDKs in .venv), then runs
# formatting and lint checks, unit and integration tests, the criterion benches once as tests,
# and a smoke run of the load-test kit.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
missing=()
need cmake || missing+=(cmake)
need curl || missing+=(curl)
need nginx || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
need wrk || missing+=(wrk)
need promtool || [[ -x /usr/bin/prometheus ]] || missing+=(prometheus)
need strace || missing+=(strace)
need h2load || missing+=(nghttp2-client)
need perf || missing+=(linux-perf)
need redis-server || [[ -x /usr/bin/redis-server ]] || missing+=(redis-server)
# PostgreSQL: the tests start a private cluster of their own (initdb under target/tmp, a Unix
# socket, no port) unless SLUICE_TEST_DATABASE_URL names a server.
if [[ -z "${SLUICE_TEST_DATABASE_URL:-}" ]]; then
  need initdb || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
  need psql || missing+=(postgresql-client)
fi
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
[[ -x /usr/bin/chromedriver ]] || missing+=(chromium-driver)
python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=""; [[ $(id -u) != 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c 'import openai, anthropic, jwt, authlib, kubernetes_validate, selenium, h2, google.genai' 2>/dev/null; then
  echo "installing the openai and anthropic SDKs and PyJWT into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r tests/sdk/requirements.txt
fi
export SLUICE_PYTHON="$PWD/.venv/bin/python"

if [[ ! -d tests/idp/node_modules/oidc-provider ]]; then
  echo "installing the test identity provider (oidc-provider) into tests/idp"
  need npm || { echo "the JWT tests need Node.js and npm" >&2; exit 1; }
  (cd tests/idp && npm ci --no-audit --no-fund --loglevel=error)
fi

if [[ ! -d tests/mcp/node_modules/@modelcontextprotocol/sdk || ! -x tests/mcp/node_modules/.bin/claude ]]; then
  echo "installing the MCP test parts (@modelcontextprotocol/sdk, server-everything, Claude Code) into tests/mcp"
  (cd tests/mcp && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "== fmt and clippy"
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings

echo "== vendored Pingora: pristine 0.9.1 + vendor/patches gives vendor/ exactly"
vendor/patches.sh

echo "== Prometheus rules: checked and unit-tested"
(cd deploy/prometheus && promtool check rules sluice-rules.yml && promtool test rules sluice-rules.test.yml)

echo "== unit and integration tests"
cargo test --quiet

echo "== fuzz targets build (run them with: cargo fuzz run token_parse / jwt_preparse)"
cargo build --quiet --manifest-path fuzz/Cargo.toml

echo "== benches, once each as tests"
cargo test --benches --quiet

echo "== load-test kit smoke run (debug build; figures meaningless)"
SLUICE_BIN=target/debug/sluice benches/loadtest.sh --smoke
cargo build --quiet --example forward_load
SLUICE_BIN=target/debug/sluice LOAD_BIN=target/debug/examples/forward_load benches/forward.sh --smoke
SLUICE_BIN=target/debug/sluice benches/control.sh --smoke
SLUICE_BIN=target/debug/sluice benches/mcp.sh --smoke
SLUICE_BIN=target/debug/sluice benches/issuer.sh --smoke
SLUICE_BIN=target/debug/sluice benches/tls.sh --smoke
SLUICE_BIN=target/debug/sluice OUT=target/profile-smoke benches/profile.sh --smoke

echo "all tests passed"
