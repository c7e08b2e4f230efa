#!/usr/bin/env bash
# Checks that vendor/pingora-core and vendor/pingora-proxy are exactly the pristine crates from
# crates.io with vendor/patches/*.patch applied in order, so the patch files are the whole of
# Sluice's changes to Pingora (vendor/PATCHES.md says why each exists).
#
#   vendor/patches.sh          check (run by scripts/test.sh)
#   vendor/patches.sh rebuild  rewrite both vendored crates from the pristine ones and the patches
#
# A new patch: change the vendored crate, then
#   git diff -- vendor/pingora-core vendor/pingora-proxy > vendor/patches/NN-what-it-does.patch
# and describe it in PATCHES.md. To take a new Pingora release: set VERSION and the checksums
# below, run `rebuild`, and fix or drop (when upstream took them) the patches that no longer apply.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.9.1
declare -A SHA256=(
  [pingora-core]=a535f47f65fdcb003f9e1df04cd18e614c128dfe9388acce3f211ae38ac14d68
  [pingora-proxy]=8e3d5670490740405ecc8c6f75c3fcbce4d24f7adaffb355ca44550e7918e358
)
CRATES=(pingora-core pingora-proxy)
# Files crates.io adds to a package that the vendored copies leave out.
SKIP=(-x .cargo_vcs_info.json -x Cargo.lock)

mode=${1:-check}
cache=target/pristine
mkdir -p "$cache"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/vendor"

for crate in "${CRATES[@]}"; do
  file="$cache/$crate-$VERSION.crate"
  if [[ ! -f $file ]] || ! echo "${SHA256[$crate]}  $file" | sha256sum -c --quiet 2>/dev/null; then
    curl -sSfL --retry 3 -o "$file.part" "https://static.crates.io/crates/$crate/$crate-$VERSION.crate"
    mv "$file.part" "$file"
  fi
  if ! echo "${SHA256[$crate]}  $file" | sha256sum -c --quiet; then
    echo "patches: $file does not have the expected checksum" >&2
    exit 1
  fi
  tar xzf "$file" -C "$work"
  mv "$work/$crate-$VERSION" "$work/vendor/$crate"
done

for patch in vendor/patches/*.patch; do
  if ! (cd "$work" && git apply --whitespace=nowarn "$OLDPWD/$patch"); then
    echo "patches: $patch does not apply on top of the ones before it" >&2
    exit 1
  fi
done

case $mode in
  check)
    status=0
    for crate in "${CRATES[@]}"; do
      if ! diff -r "${SKIP[@]}" "$work/vendor/$crate" "vendor/$crate" >"$work/$crate.diff"; then
        echo "patches: vendor/$crate differs from pristine $VERSION + vendor/patches:" >&2
        head -40 "$work/$crate.diff" >&2
        status=1
      fi
    done
    if ((status == 0)); then
      echo "patches: $(ls vendor/patches/*.patch | wc -l) patches apply to pristine Pingora $VERSION and give vendor/ exactly"
    fi
    exit $status
    ;;
  rebuild)
    for crate in "${CRATES[@]}"; do
      rm -rf "vendor/$crate"
      cp -r "$work/vendor/$crate" "vendor/$crate"
      rm -f "vendor/$crate/.cargo_vcs_info.json" "vendor/$crate/Cargo.lock"
    done
    echo "patches: vendor/ rebuilt from pristine Pingora $VERSION and vendor/patches"
    ;;
  *)
    echo "usage: vendor/patches.sh [check|rebuild]" >&2
    exit 2
    ;;
esac
