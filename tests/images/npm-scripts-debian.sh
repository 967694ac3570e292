#!/bin/bash
# Builds, once, the npm image of tests/images/npm-debian.sh with one more
# layer: /app/package.json gains a `postinstall` script that leaves
# /app/postinstall-ran behind, so a test can see whether an install ran the
# app's lifecycle scripts. The image is named "scripts". Cached under
# ${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}/npm-scripts-debian-v1.
set -euo pipefail
# shellcheck source=layout.sh
. "$(dirname "$0")/layout.sh"

base=$("$(dirname "$0")/npm-debian.sh")
cache=${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}
out=$cache/npm-scripts-debian-v1
exec 9>"$cache/.npm-scripts-debian.lock"
flock 9
if [ -f "$out/index.json" ]; then
  echo "$out"
  exit 0
fi

work=$(mktemp -d "$cache/.npm-scripts-debian-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/layer/app"
# The manifest npm-debian.sh left (minimist dropped), plus the script.
cat >"$work/layer/app/package.json" <<'JSON'
{
  "name": "caulk-npm-test",
  "version": "1.0.0",
  "private": true,
  "scripts": {
    "postinstall": "touch /app/postinstall-ran"
  },
  "dependencies": {
    "@xmldom/xmldom": "0.7.5",
    "lodash": "4.17.15",
    "mkdirp": "0.5.5"
  },
  "devDependencies": {
    "left-pad": "1.3.0"
  }
}
JSON
oci_add_layer "$base" "$work/layout" scripts "$work/layer" "caulk test: a postinstall script in /app"
rm -rf "$out"
mv "$work/layout" "$out"
echo "$out"
