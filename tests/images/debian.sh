#!/bin/bash
# Builds, once, an OCI image layout of a minimal Debian bookworm root fs
# (mmdebstrap --variant=minbase, about 130 MB unpacked) and prints its path.
# The result is cached outside the repository, under
# ${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}/debian-bookworm-v1, and is
# reused while its index.json exists. The layout names one image, "bookworm",
# with two gzip layers (the root fs, and a small second layer that changes a
# file and whites one out), assembled with GNU tar, gzip and jq only.
set -euo pipefail

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

layout=$work/layout
mkdir -p "$layout/blobs/sha256"
printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
put() {
  local file=$1 media=$2 hex size
  hex=$(sha256sum "$file" | cut -d' ' -f1)
  size=$(stat -c %s "$file")
  mv "$file" "$layout/blobs/sha256/$hex"
  jq -cn --arg m "$media" --arg d "sha256:$hex" --argjson s "$size" '{mediaType: $m, digest: $d, size: $s}'
}
d1="sha256:$(sha256sum "$work/rootfs.tar" | cut -d' ' -f1)"
d2="sha256:$(sha256sum "$work/l2.tar" | cut -d' ' -f1)"
gzip -6 -n "$work/rootfs.tar"
gzip -6 -n "$work/l2.tar"
l1=$(put "$work/rootfs.tar.gz" application/vnd.oci.image.layer.v1.tar+gzip)
l2=$(put "$work/l2.tar.gz" application/vnd.oci.image.layer.v1.tar+gzip)
jq -cn --arg a "$d1" --arg b "$d2" '{
  created: "2023-11-14T22:13:20Z", architecture: "amd64", os: "linux",
  config: {Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], Cmd: ["bash"]},
  rootfs: {type: "layers", diff_ids: [$a, $b]},
  history: [{created: "2023-11-14T22:13:20Z", created_by: "mmdebstrap --variant=minbase bookworm"},
            {created: "2023-11-14T22:13:20Z", created_by: "caulk test: hostname, no bash docs"}]
}' >"$work/config.json"
c=$(put "$work/config.json" application/vnd.oci.image.config.v1+json)
jq -cn --argjson c "$c" --argjson a "$l1" --argjson b "$l2" \
  '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: $c, layers: [$a, $b]}' \
  >"$work/manifest.json"
m=$(put "$work/manifest.json" application/vnd.oci.image.manifest.v1+json)
jq -cn --argjson m "$m" '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
  manifests: [$m + {annotations: {"org.opencontainers.image.ref.name": "bookworm"}}]}' >"$layout/index.json"
rm -rf "$out"
mv "$layout" "$out"
echo "$out"
