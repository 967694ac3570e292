#!/bin/bash
# Builds, once, an OCI image layout of Debian bookworm with Debian's nodejs
# and npm, an app in /app holding old packages from the npm registry, and one
# old global package; prints the layout's path. Cached under
# ${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}/npm-debian-v1 (reused while
# its index.json exists), built under a flock so parallel tests build it once.
#
# /app (npm, package-lock.json v3, installed with --omit=dev):
#   lodash 4.17.15          direct
#   @xmldom/xmldom 0.7.5    direct, scoped
#   mkdirp 0.5.5 → minimist 1.2.5   minimist only transitive
#   left-pad 1.3.0          devDependency, not installed
# Global (`npm root -g` = /usr/local/lib/node_modules): semver 7.5.1.
# /yarn-app has a yarn.lock: a tree the npm updater must leave alone.
#
# npm runs inside the image root (Debian's npm 9), trusting the host's CA
# bundle for this build only, so no node is needed on the host.
set -euo pipefail
# shellcheck source=layout.sh
. "$(dirname "$0")/layout.sh"

cache=${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}
out=$cache/npm-debian-v1
mkdir -p "$cache"
exec 9>"$cache/.npm-debian.lock"
flock 9
if [ -f "$out/index.json" ]; then
  echo "$out"
  exit 0
fi

work=$(mktemp -d "$cache/.npm-debian-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mirror=${CAULK_DEBIAN_MIRROR:-http://deb.debian.org/debian}

mkdir -p "$work/app" "$work/yarn-app"
cat >"$work/app/package.json" <<'JSON'
{
  "name": "caulk-npm-test",
  "version": "1.0.0",
  "private": true,
  "dependencies": {
    "@xmldom/xmldom": "0.7.5",
    "lodash": "4.17.15",
    "minimist": "1.2.5",
    "mkdirp": "0.5.5"
  },
  "devDependencies": {
    "left-pad": "1.3.0"
  }
}
JSON
printf '{"name":"yarn-app","version":"1.0.0","dependencies":{"lodash":"4.17.15"}}\n' >"$work/yarn-app/package.json"
printf '# yarn lockfile v1\n\nlodash@4.17.15:\n  version "4.17.15"\n' >"$work/yarn-app/yarn.lock"

# minimist is installed as a direct dependency first so the lock pins 1.2.5,
# then dropped from package.json: mkdirp's ^1.2.5 keeps it, now transitive.
npm_env='env NODE_EXTRA_CA_CERTS=/tmp/host-ca.crt HOME=/tmp/npm-home npm_config_cache=/tmp/npm-cache'
flags='--omit=dev --no-audit --no-fund --loglevel=error'
mmdebstrap --quiet --variant=minbase --mode=root --format=tar \
  --include=ca-certificates,nodejs,npm \
  --customize-hook="copy-in '$work/app' '$work/yarn-app' /" \
  --customize-hook='cp /etc/ssl/certs/ca-certificates.crt "$1/tmp/host-ca.crt"' \
  --customize-hook="chroot \"\$1\" $npm_env sh -ec 'cd /app && npm install $flags && npm pkg delete dependencies.minimist && npm install $flags && npm install -g $flags semver@7.5.1'" \
  --customize-hook='rm -rf "$1/tmp/host-ca.crt" "$1/tmp/npm-home" "$1/tmp/npm-cache" "$1/root/.npm" "$1"/var/lib/apt/lists/*' \
  bookworm "$work/rootfs.tar" "$mirror" >&2

jq -n '{
  created: "2023-11-14T22:13:20Z", architecture: "amd64", os: "linux",
  config: {Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], Cmd: ["node"],
           WorkingDir: "/app"},
  history: [{created: "2023-11-14T22:13:20Z", created_by: "caulk test: bookworm, nodejs, npm, /app"}]
}' >"$work/config.json"
layout=$work/layout
oci_layout "$layout" bookworm "$work/config.json" "$work/rootfs.tar"
rm -rf "$out"
mv "$layout" "$out"
echo "$out"
