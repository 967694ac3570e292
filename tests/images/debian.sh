#!/bin/bash
# Builds, once, an OCI image layout of a minimal Debian bookworm root fs
# (mmdebstrap --variant=minbase, about 130 MB unpacked) and prints its path.
# The result is cached outside the repository, under
# ${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}/debian-bookworm-v1, and is
# reused while its index.json exists. The layout names one image, "bookworm",
# with two gzip layers (the root fs, and a small second layer that changes a
# file and whites one out), assembled with GNU tar, gzip and jq only.
set -euo pipefail
# shellcheck source=layout.sh
. "$(dirname "$0")/layout.sh"

cache=${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}
out=$cache/debian-bookworm-v1
mkdir -p "$cache"
exec 9>"$cache/.debian.lock"
flock 9
if [ -f "$out/index.json" ]; then
  echo "$out"
  exit 0
fi

work=$(mktemp -d "$cache/.debian-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mirror=${CAULK_DEBIAN_MIRROR:-http://deb.debian.org/debian}

mmdebstrap --quiet --variant=minbase --mode=root --format=tar \
  --include=ca-certificates bookworm "$work/rootfs.tar" "$mirror" >&2
# Second layer: an update to one file and a deletion.
mkdir -p "$work/l2/etc" "$work/l2/usr/share/doc"
printf 'caulk-test\n' >"$work/l2/etc/hostname"
: >"$work/l2/usr/share/doc/.wh.bash"
tar -c --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1700000000 \
  -C "$work/l2" . >"$work/l2.tar"

jq -n '{
  created: "2023-11-14T22:13:20Z", architecture: "amd64", os: "linux",
  config: {Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], Cmd: ["bash"]},
  history: [{created: "2023-11-14T22:13:20Z", created_by: "mmdebstrap --variant=minbase bookworm"},
            {created: "2023-11-14T22:13:20Z", created_by: "caulk test: hostname, no bash docs"}]
}' >"$work/config.json"
layout=$work/layout
oci_layout "$layout" bookworm "$work/config.json" "$work/rootfs.tar" "$work/l2.tar"
rm -rf "$out"
mv "$layout" "$out"
echo "$out"
