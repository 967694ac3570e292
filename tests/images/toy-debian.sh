#!/bin/bash
# Builds, once, the Debian image of tests/images/debian.sh plus one small
# layer with /etc/toy/packages, the package list of the example toy updater
# (examples/toy-updater), and prints the layout's path. The image is named
# "toy"; it costs a one-file layer on top of debian.sh's cached blobs.
# Cached under ${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}/toy-debian-v1.
set -euo pipefail
# shellcheck source=layout.sh
. "$(dirname "$0")/layout.sh"

base=$("$(dirname "$0")/debian.sh")
cache=${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}
out=$cache/toy-debian-v1
exec 9>"$cache/.toy-debian.lock"
flock 9
if [ -f "$out/index.json" ]; then
  echo "$out"
  exit 0
fi

work=$(mktemp -d "$cache/.toy-debian-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/layer/etc/toy"
printf '# toy packages: NAME VERSION\nhello 1.0.0\nwidget 2.3.1\ngizmo 0.9.0\n' >"$work/layer/etc/toy/packages"
oci_add_layer "$base" "$work/layout" toy "$work/layer" "caulk test: /etc/toy/packages"
rm -rf "$out"
mv "$work/layout" "$out"
echo "$out"
