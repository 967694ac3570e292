#!/bin/bash
# Builds, once, the Debian image of tests/images/debian.sh plus one small
# layer with /etc/toy/packages, the package list of the example toy updater
# (examples/toy-updater), and prints the layout's path. The image is named
# "toy". The Debian layers are hard links to debian.sh's cached blobs, so
# this costs a tar of one file on top of debian.sh. Cached under
# ${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}/toy-debian-v1.
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
layout=$work/layout
mkdir -p "$layout/blobs/sha256"
printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"

blob() { echo "$base/blobs/sha256/${1#sha256:}"; }
manifest=$(blob "$(jq -r '.manifests[0].digest' "$base/index.json")")
config=$(blob "$(jq -r '.config.digest' "$manifest")")
for digest in $(jq -r '.layers[].digest' "$manifest"); do
  ln "$(blob "$digest")" "$layout/blobs/sha256/${digest#sha256:}" 2>/dev/null ||
    cp "$(blob "$digest")" "$layout/blobs/sha256/${digest#sha256:}"
done

# The new layer: the toy ecosystem's package list.
mkdir -p "$work/l3/etc/toy"
printf '# toy packages: NAME VERSION\nhello 1.0.0\nwidget 2.3.1\ngizmo 0.9.0\n' >"$work/l3/etc/toy/packages"
tar -c --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1700000000 \
  -C "$work/l3" . >"$work/l3.tar"
diff_id="sha256:$(sha256sum "$work/l3.tar" | cut -d' ' -f1)"
gzip -6 -n "$work/l3.tar"
layer=$(_oci_put "$layout" "$work/l3.tar.gz" application/vnd.oci.image.layer.v1.tar+gzip)

jq -c --arg id "$diff_id" '.rootfs.diff_ids += [$id]
  | .history += [{created: "2023-11-14T22:13:20Z", created_by: "caulk test: /etc/toy/packages"}]' \
  "$config" >"$work/config.json"
config_desc=$(_oci_put "$layout" "$work/config.json" application/vnd.oci.image.config.v1+json)
jq -c --argjson c "$config_desc" --argjson l "$layer" '.config = $c | .layers += [$l]' "$manifest" \
  >"$work/manifest.json"
manifest_desc=$(_oci_put "$layout" "$work/manifest.json" application/vnd.oci.image.manifest.v1+json)
jq -cn --argjson m "$manifest_desc" '{schemaVersion: 2,
  mediaType: "application/vnd.oci.image.index.v1+json",
  manifests: [$m + {annotations: {"org.opencontainers.image.ref.name": "toy"}}]}' >"$layout/index.json"
rm -rf "$out"
mv "$layout" "$out"
echo "$out"
