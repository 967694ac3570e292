# Sourced by the image scripts: assembles an OCI image layout from layer
# tars with GNU tools and jq only, so the test images never depend on the
# code under test.
#
#   oci_layout DIR REF CONFIG LAYER.tar...
#
# Writes the layout into DIR (which must not exist): each tar gzipped as a
# layer (in order, bottom first), CONFIG (a JSON image config without
# `rootfs`) completed with the layers' diff_ids, an OCI manifest, and an
# index naming the image REF. The tars are consumed.

oci_layout() {
  local dir=$1 ref=$2 config=$3
  shift 3
  mkdir -p "$dir/blobs/sha256"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
  local diff_ids=() layers=() tar
  for tar in "$@"; do
    diff_ids+=("sha256:$(sha256sum "$tar" | cut -d' ' -f1)")
    gzip -6 -n "$tar"
    layers+=("$(_oci_put "$dir" "$tar.gz" application/vnd.oci.image.layer.v1.tar+gzip)")
  done
  local ids layer_list config_desc manifest_desc
  ids=$(printf '%s\n' "${diff_ids[@]}" | jq -R . | jq -cs .)
  layer_list=$(printf '%s\n' "${layers[@]}" | jq -cs .)
  jq -c --argjson ids "$ids" '. + {rootfs: {type: "layers", diff_ids: $ids}}' "$config" >"$dir/.config.json"
  config_desc=$(_oci_put "$dir" "$dir/.config.json" application/vnd.oci.image.config.v1+json)
  jq -cn --argjson c "$config_desc" --argjson l "$layer_list" \
    '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: $c, layers: $l}' \
    >"$dir/.manifest.json"
  manifest_desc=$(_oci_put "$dir" "$dir/.manifest.json" application/vnd.oci.image.manifest.v1+json)
  jq -cn --argjson m "$manifest_desc" --arg r "$ref" '{schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [$m + {annotations: {"org.opencontainers.image.ref.name": $r}}]}' >"$dir/index.json"
}

# Moves FILE into DIR's blobs under its digest; prints its descriptor.
_oci_put() {
  local dir=$1 file=$2 media=$3 hex size
  hex=$(sha256sum "$file" | cut -d' ' -f1)
  size=$(stat -c %s "$file")
  mv "$file" "$dir/blobs/sha256/$hex"
  jq -cn --arg m "$media" --arg d "sha256:$hex" --argjson s "$size" '{mediaType: $m, digest: $d, size: $s}'
}
