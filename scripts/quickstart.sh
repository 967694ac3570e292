#!/bin/bash
# The quickstart: builds caulk, builds a small vulnerable Debian 12 image as
# an OCI layout (installed from `bookworm` only, with bookworm-security in
# its sources), writes a Trivy-format report of what apt can fix, patches the
# image with the local executor, and prints the versions before and after and
# the VEX document. Needs root (overlayfs, bubblewrap) and Debian 12 with
# mmdebstrap, bubblewrap, jq and python3 (.ci/run installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== building caulk (cargo build --release)"
cargo build --release --quiet -p caulk
caulk=${CARGO_TARGET_DIR:-$PWD/target}/release/caulk

echo "== building a vulnerable Debian 12 image (cached after the first run)"
cached=$(tests/images/vulnerable-debian.sh bookworm)
work=$(mktemp -d /tmp/caulk-quickstart.XXXXXX)
cp -a "$cached" "$work/layout"
image="oci:$work/layout:bookworm"

echo "== a report of what apt can fix (Trivy format, from apt-cache policy)"
python3 tests/images/apt-report.py "$work/layout" bookworm openssl libssl3 libexpat1 ca-certificates \
  >"$work/report.json" 2>/dev/null
"$caulk" report "$work/report.json"

echo
echo "== caulk patch -i $image -r report.json -o vex.json"
"$caulk" patch -i "$image" -r "$work/report.json" -o "$work/vex.json"

echo
echo "== the patched image: $image-patched"
"$caulk" image inspect "$image-patched" | sed -n '1,4p;/Layer/p'

echo
echo "== VEX document ($work/vex.json)"
cat "$work/vex.json"
