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

# oci_unpack LAYOUT ROOT CONFIG: the first image of LAYOUT (one layer)
# unpacked into ROOT, its config without `rootfs` written to CONFIG, for
# scripts that derive an image from another.
oci_unpack() {
  local layout=$1 root=$2 config=$3 manifest
  manifest=$layout/blobs/$(jq -r '.manifests[0].digest | sub(":"; "/")' "$layout/index.json")
  mkdir -p "$root"
  tar -xzf "$layout/blobs/$(jq -r '.layers[0].digest | sub(":"; "/")' "$manifest")" -C "$root"
  jq 'del(.rootfs)' "$layout/blobs/$(jq -r '.config.digest | sub(":"; "/")' "$manifest")" >"$config"
}

# Moves FILE into DIR's blobs under its digest; prints its descriptor.
_oci_put() {
  local dir=$1 file=$2 media=$3 hex size
  hex=$(sha256sum "$file" | cut -d' ' -f1)
  size=$(stat -c %s "$file")
  mv "$file" "$dir/blobs/sha256/$hex"
  jq -cn --arg m "$media" --arg d "sha256:$hex" --argjson s "$size" '{mediaType: $m, digest: $d, size: $s}'
}

# Writes into OUT (which must not exist) a layout whose one image, named
# REF, is BASE's first image plus one layer: the tar of directory DIR, with
# history entry WHAT. BASE's blobs are hard-linked (copied across file
# systems), so a derived test image costs only its own layer.
#
#   oci_add_layer BASE OUT REF DIR WHAT
oci_add_layer() {
  local base=$1 out=$2 ref=$3 dir=$4 what=$5 manifest config digest diff_id layer tmp
  mkdir -p "$out/blobs/sha256"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$out/oci-layout"
  manifest=$base/blobs/sha256/$(jq -r '.manifests[0].digest | ltrimstr("sha256:")' "$base/index.json")
  config=$base/blobs/sha256/$(jq -r '.config.digest | ltrimstr("sha256:")' "$manifest")
  for digest in $(jq -r '.layers[].digest | ltrimstr("sha256:")' "$manifest"); do
    ln "$base/blobs/sha256/$digest" "$out/blobs/sha256/$digest" 2>/dev/null ||
      cp "$base/blobs/sha256/$digest" "$out/blobs/sha256/$digest"
  done
  tmp=$(mktemp -d "$out/.add-layer.XXXXXX")
  tar -c --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1700000000 -C "$dir" . >"$tmp/layer.tar"
  diff_id="sha256:$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)"
  gzip -6 -n "$tmp/layer.tar"
  layer=$(_oci_put "$out" "$tmp/layer.tar.gz" application/vnd.oci.image.layer.v1.tar+gzip)
  jq -c --arg id "$diff_id" --arg what "$what" '.rootfs.diff_ids += [$id]
    | .history += [{created: "2023-11-14T22:13:20Z", created_by: $what}]' "$config" >"$tmp/config.json"
  config=$(_oci_put "$out" "$tmp/config.json" application/vnd.oci.image.config.v1+json)
  jq -c --argjson c "$config" --argjson l "$layer" '.config = $c | .layers += [$l]' "$manifest" \
    >"$tmp/manifest.json"
  manifest=$(_oci_put "$out" "$tmp/manifest.json" application/vnd.oci.image.manifest.v1+json)
  jq -cn --argjson m "$manifest" --arg r "$ref" '{schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [$m + {annotations: {"org.opencontainers.image.ref.name": $r}}]}' >"$out/index.json"
  rm -rf "$tmp"
}
