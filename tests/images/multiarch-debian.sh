#!/bin/bash
# Builds, once, an OCI image layout of a two-platform Debian image index
# (linux/amd64 and linux/arm64/v8, each the image vulnerable-debian.sh builds
# for that architecture, so both are behind on security updates) and prints
# the layout's path. Usage: multiarch-debian.sh SUITE
#
# The index also holds what a real multi-platform image carries besides its
# platforms: an index annotation and a BuildKit-style attestation manifest
# (platform unknown/unknown) pointing at the amd64 manifest, so tests can see
# both kept. The layout's index.json names the image index SUITE.
#
# Cached under ${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}/multiarch-SUITE-v1.
# The arm64 root's maintainer scripts run under qemu-user (binfmt_misc with
# qemu-aarch64 registered).
set -euo pipefail
here=$(dirname "$0")

suite=${1:?usage: multiarch-debian.sh SUITE}
cache=${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}
out=$cache/multiarch-$suite-v2
mkdir -p "$cache"
exec 8>"$cache/.multiarch-$suite.lock"
flock 8
if [ -f "$out/index.json" ]; then
  echo "$out"
  exit 0
fi

amd64=$("$here/vulnerable-debian.sh" "$suite" "" amd64)
arm64=$("$here/vulnerable-debian.sh" "$suite" "" arm64)

work=$(mktemp -d "$cache/.multiarch-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
layout=$work/layout
mkdir -p "$layout/blobs/sha256"
printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
cp -l "$amd64"/blobs/sha256/* "$arm64"/blobs/sha256/* "$layout/blobs/sha256/" 2>/dev/null ||
  cp "$amd64"/blobs/sha256/* "$arm64"/blobs/sha256/* "$layout/blobs/sha256/"

# Moves FILE into the layout's blobs; prints its descriptor.
put() {
  local file=$1 media=$2 hex size
  hex=$(sha256sum "$file" | cut -d' ' -f1)
  size=$(stat -c %s "$file")
  mv "$file" "$layout/blobs/sha256/$hex"
  jq -cn --arg m "$media" --arg d "sha256:$hex" --argjson s "$size" '{mediaType: $m, digest: $d, size: $s}'
}

manifest() { jq -c '.manifests[0] | del(.annotations)' "$1/index.json"; }
amd64_desc=$(manifest "$amd64" | jq -c '. + {platform: {os: "linux", architecture: "amd64"}}')
arm64_desc=$(manifest "$arm64" | jq -c '. + {platform: {os: "linux", architecture: "arm64", variant: "v8"}}')

# An in-toto statement as BuildKit attaches it: a manifest whose one layer
# is the statement, indexed with platform unknown/unknown.
jq -cn --arg d "$(jq -r .digest <<<"$amd64_desc")" \
  '{_type: "https://in-toto.io/Statement/v0.1", predicateType: "https://example.org/test",
    subject: [{name: "amd64", digest: {sha256: ($d | ltrimstr("sha256:"))}}], predicate: {}}' >"$work/statement"
statement_diff="sha256:$(sha256sum "$work/statement" | cut -d' ' -f1)"
statement=$(put "$work/statement" application/vnd.in-toto+json)
jq -cn --arg id "$statement_diff" \
  '{architecture: "unknown", os: "unknown", config: {}, rootfs: {type: "layers", diff_ids: [$id]}}' >"$work/config"
config=$(put "$work/config" application/vnd.oci.image.config.v1+json)
jq -cn --argjson c "$config" --argjson l "$statement" \
  '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: $c, layers: [$l]}' \
  >"$work/attestation"
attestation=$(put "$work/attestation" application/vnd.oci.image.manifest.v1+json |
  jq -c --arg d "$(jq -r .digest <<<"$amd64_desc")" '. + {platform: {os: "unknown", architecture: "unknown"},
    annotations: {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": $d}}')

jq -cn --argjson a "$amd64_desc" --argjson b "$arm64_desc" --argjson t "$attestation" \
  '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: [$a, $b, $t],
    annotations: {"org.example.index": "kept"}}' >"$work/index"
index=$(put "$work/index" application/vnd.oci.image.index.v1+json)
jq -cn --argjson i "$index" --arg r "$suite" \
  '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [$i + {annotations: {"org.opencontainers.image.ref.name": $r}}]}' >"$layout/index.json"
rm -rf "$out"
mv "$layout" "$out"
echo "$out"
