#!/usr/bin/env bash
# Builds Sluice (installing cmake, which pingora's zlib-ng build needs, if it is missing) and runs
# `sluice serve` with conf/sluice.yaml. Extra arguments go to `sluice serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cmake >/dev/null 2>&1; then
  SUDO=""; [[ $(id -u) != 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq cmake >/dev/null
fi
exec cargo run --release --quiet -- serve "$@"
