#!/bin/bash
# Builds, once, an OCI image layout holding COUNT images of one base for
# fleet tests and benchmarks, and prints its path: the vulnerable Debian 12
# image (vulnerable-debian.sh bookworm) plus one small top layer each
# (/etc/fleet-id saying which), named app-1 … app-COUNT. The images share
# the base layer's blob, as images built FROM one base do.
# Usage: fleet-debian.sh COUNT
#
# Cached under ${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}/fleet-bookworm-COUNT-v1.
set -euo pipefail
here=$(dirname "$0")

count=${1:?usage: fleet-debian.sh COUNT}
case $count in '' | *[!0-9]* | 0) echo "COUNT must be a positive number" >&2; exit 2 ;; esac
base=$("$here/vulnerable-debian.sh" bookworm)

cache=${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}
out=$cache/fleet-bookworm-$count-v1
exec 9>"$cache/.fleet-bookworm.lock"
flock 9
if [ -f "$out/index.json" ]; then
  echo "$out"
  exit 0
fi

work=$(mktemp -d "$cache/.fleet-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
layout=$work/layout
mkdir -p "$layout/blobs/sha256"
cp -a "$base/oci-layout" "$layout/"
blob() { echo "$1/blobs/sha256/${2#sha256:}"; }
manifest=$(blob "$base" "$(jq -r '.manifests[0].digest' "$base/index.json")")
base_config=$(blob "$base" "$(jq -r '.config.digest' "$manifest")")
# The base's blobs, shared by every image (hard links: same file system).
for digest in $(jq -r '.layers[].digest' "$manifest"); do
  cp -l "$(blob "$base" "$digest")" "$layout/blobs/sha256/" 2>/dev/null || cp "$(blob "$base" "$digest")" "$layout/blobs/sha256/"
done

put() { # FILE MEDIA_TYPE -> descriptor
  local hex size
  hex=$(sha256sum "$1" | cut -d' ' -f1)
  size=$(stat -c %s "$1")
  mv "$1" "$layout/blobs/sha256/$hex"
  jq -cn --arg m "$2" --arg d "sha256:$hex" --argjson s "$size" '{mediaType: $m, digest: $d, size: $s}'
}

entries=()
for i in $(seq "$count"); do
  mkdir -p "$work/top-$i/etc"
  echo "app-$i" >"$work/top-$i/etc/fleet-id"
  tar --sort=name --mtime=@1704067200 --owner=0 --group=0 --numeric-owner -C "$work/top-$i" -cf "$work/top-$i.tar" etc
  diff_id="sha256:$(sha256sum "$work/top-$i.tar" | cut -d' ' -f1)"
  gzip -6 -n "$work/top-$i.tar"
  layer=$(put "$work/top-$i.tar.gz" application/vnd.oci.image.layer.v1.tar+gzip)
  jq -c --arg id "$diff_id" --arg app "app-$i" '.rootfs.diff_ids += [$id]
    | .history += [{created: "2024-01-01T00:00:00Z", created_by: ("COPY fleet-id /etc/ # " + $app)}]
    | .config.Labels["org.example.app"] = $app' "$base_config" >"$work/config-$i.json"
  config=$(put "$work/config-$i.json" application/vnd.oci.image.config.v1+json)
  jq -c --argjson c "$config" --argjson l "$layer" '.config = $c | .layers += [$l]' "$manifest" >"$work/manifest-$i.json"
  desc=$(put "$work/manifest-$i.json" application/vnd.oci.image.manifest.v1+json)
  entries+=("$(jq -c --arg r "app-$i" '. + {annotations: {"org.opencontainers.image.ref.name": $r}}' <<<"$desc")")
done
printf '%s\n' "${entries[@]}" | jq -cs '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: .}' >"$layout/index.json"
rm -rf "$out"
mv "$layout" "$out"
echo "$out"
