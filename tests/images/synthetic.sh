#!/bin/bash
# Builds a small OCI image layout with GNU tar, gzip, zstd and jq only, so that
# caulk's readers are checked against files no caulk code produced.
#
#   synthetic.sh OUT_DIR
#
# OUT_DIR/index.json names three images:
#   multi   an image index with linux/amd64 (3 layers: gzip, zstd, plain tar)
#           and linux/arm64 (1 layer)
#   single  the linux/amd64 manifest on its own
#   docker  the same amd64 layers under Docker v2 schema 2 media types
# Layer contents exercise whiteouts, opaque directories, hard links, symlinks,
# long names, xattrs, device nodes, fifos and set-uid bits.
set -euo pipefail

out=${1:?usage: synthetic.sh OUT_DIR}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$out"
mkdir -p "$out/blobs/sha256"
printf '{"imageLayoutVersion":"1.0.0"}' >"$out/oci-layout"

epoch=1700000000
tar_opts=(--sort=name --owner=0 --group=0 --numeric-owner "--mtime=@$epoch"
  --format=pax --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime
  --xattrs --xattrs-include='user.*' -C)

# put FILE MEDIA_TYPE: store FILE as a blob and print its descriptor.
put() {
  local file=$1 media=$2 hex size
  hex=$(sha256sum "$file" | cut -d' ' -f1)
  size=$(stat -c %s "$file")
  cp "$file" "$out/blobs/sha256/$hex"
  jq -cn --arg m "$media" --arg d "sha256:$hex" --argjson s "$size" \
    '{mediaType: $m, digest: $d, size: $s}'
}

# ---- layer 1: a base root fs -------------------------------------------------
r1=$work/root1
mkdir -p "$r1"/{etc,bin,usr/bin,dev,tmp,opt/data,opt/gone/sub,opt/keep,var/lib/dpkg}
mkdir -p "$r1/usr/lib/python3.11/site-packages/foo-1.0.dist-info"
printf 'ID=debian\nVERSION_ID="12"\n' >"$r1/etc/os-release"
printf 'base\n' >"$r1/etc/hostname"
ln "$r1/etc/hostname" "$r1/etc/hostname-hardlink"
printf 'Package: libfoo\nVersion: 1.0\n\n' >"$r1/var/lib/dpkg/status"
printf 'Name: foo\nVersion: 1.0\n' >"$r1/usr/lib/python3.11/site-packages/foo-1.0.dist-info/METADATA"
printf 'a\n' >"$r1/opt/data/a.txt"
printf 'b\n' >"$r1/opt/data/b.txt"
printf 'y\n' >"$r1/opt/gone/y"
printf 'z\n' >"$r1/opt/gone/sub/z"
printf 'x\n' >"$r1/opt/keep/x"
printf '#!/bin/sh\n' >"$r1/bin/sh"
chmod 0755 "$r1/bin/sh"
printf 'suid\n' >"$r1/usr/bin/su"
chmod 4755 "$r1/usr/bin/su"
ln -s python3 "$r1/usr/bin/py"
printf 'py\n' >"$r1/usr/bin/python3"
ln -s /etc/os-release "$r1/etc/os-release-link"
chmod 1777 "$r1/tmp"
long=$r1/opt/long/$(printf 'd%.0s' {1..60})/$(printf 'e%.0s' {1..60})
mkdir -p "$long"
printf 'long\n' >"$long/file-with-a-long-name.txt"
printf 'attr\n' >"$r1/opt/xattr.txt"
/usr/bin/python3 -c 'import os, sys; os.setxattr(sys.argv[1], "user.caulk", b"test")' "$r1/opt/xattr.txt"
mknod "$r1/dev/null" c 1 3
mkfifo "$r1/opt/fifo"
tar -c "${tar_opts[@]}" "$r1" . >"$work/l1.tar"
gzip -6 -n -c "$work/l1.tar" >"$work/l1.tar.gz"

# ---- layer 2 (zstd): whiteouts, an opaque directory, changed files ----------
r2=$work/root2
mkdir -p "$r2"/{etc,opt/data,opt/gone,var/lib/dpkg}
printf 'changed\n' >"$r2/etc/hostname"
: >"$r2/opt/data/.wh.a.txt"
: >"$r2/opt/gone/.wh..wh..opq"
printf 'new\n' >"$r2/opt/gone/new"
printf 'Package: libfoo\nVersion: 1.1\n\n' >"$r2/var/lib/dpkg/status"
tar -c "${tar_opts[@]}" "$r2" . >"$work/l2.tar"
zstd -q -3 -c "$work/l2.tar" >"$work/l2.tar.zst"

# ---- layer 3 (uncompressed) --------------------------------------------------
r3=$work/root3
mkdir -p "$r3/usr/lib/python3.12/site-packages/bar-2.0.dist-info"
printf 'Name: bar\nVersion: 2.0\n' >"$r3/usr/lib/python3.12/site-packages/bar-2.0.dist-info/METADATA"
tar -c "${tar_opts[@]}" "$r3" . >"$work/l3.tar"

# ---- arm64: one layer -----------------------------------------------------------
r4=$work/root4
mkdir -p "$r4/etc"
printf 'arm\n' >"$r4/etc/hostname"
tar -c "${tar_opts[@]}" "$r4" . >"$work/l4.tar"
gzip -6 -n -c "$work/l4.tar" >"$work/l4.tar.gz"

diffid() { echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"; }

# config ARCH LAYER_TARS...
config() {
  local arch=$1
  shift
  local ids
  ids=$(for t in "$@"; do diffid "$t"; done | jq -R . | jq -cs .)
  jq -cn --arg arch "$arch" --argjson ids "$ids" '{
    created: "2023-11-14T22:13:20Z",
    architecture: $arch, os: "linux",
    config: {Env: ["PATH=/usr/bin:/bin"], Cmd: ["/bin/sh"], WorkingDir: "/",
             Labels: {"org.example.origin": "synthetic"}},
    rootfs: {type: "layers", diff_ids: $ids},
    history: ([range(0; $ids | length)] | map({created: "2023-11-14T22:13:20Z",
               created_by: ("layer " + tostring)}))
  }'
}

config amd64 "$work/l1.tar" "$work/l2.tar" "$work/l3.tar" >"$work/config-amd64.json"
config arm64 "$work/l4.tar" >"$work/config-arm64.json"

oci_cfg=application/vnd.oci.image.config.v1+json
oci_man=application/vnd.oci.image.manifest.v1+json
oci_idx=application/vnd.oci.image.index.v1+json
c_amd=$(put "$work/config-amd64.json" $oci_cfg)
c_arm=$(put "$work/config-arm64.json" $oci_cfg)
l1=$(put "$work/l1.tar.gz" application/vnd.oci.image.layer.v1.tar+gzip)
l2=$(put "$work/l2.tar.zst" application/vnd.oci.image.layer.v1.tar+zstd)
l3=$(put "$work/l3.tar" application/vnd.oci.image.layer.v1.tar)
l4=$(put "$work/l4.tar.gz" application/vnd.oci.image.layer.v1.tar+gzip)

jq -cn --arg m $oci_man --argjson c "$c_amd" --argjson a "$l1" --argjson b "$l2" --argjson d "$l3" \
  '{schemaVersion: 2, mediaType: $m, config: $c, layers: [$a, $b, $d],
    annotations: {"org.example.note": "amd64 manifest"}}' >"$work/m-amd64.json"
jq -cn --arg m $oci_man --argjson c "$c_arm" --argjson a "$l4" \
  '{schemaVersion: 2, mediaType: $m, config: $c, layers: [$a]}' >"$work/m-arm64.json"
m_amd=$(put "$work/m-amd64.json" $oci_man)
m_arm=$(put "$work/m-arm64.json" $oci_man)
jq -cn --arg m $oci_idx --argjson a "$m_amd" --argjson b "$m_arm" \
  '{schemaVersion: 2, mediaType: $m,
    manifests: [($a + {platform: {architecture: "amd64", os: "linux"}}),
                ($b + {platform: {architecture: "arm64", os: "linux", variant: "v8"}})],
    annotations: {"org.example.index": "yes"}}' >"$work/index-multi.json"
i_multi=$(put "$work/index-multi.json" $oci_idx)

# Docker v2 schema 2: the same blobs, Docker media types (zstd has none there,
# so the Docker image carries layers 1 and 3 only).
d_cfg=application/vnd.docker.container.image.v1+json
d_man=application/vnd.docker.distribution.manifest.v2+json
config amd64 "$work/l1.tar" "$work/l3.tar" >"$work/config-docker.json"
c_dock=$(put "$work/config-docker.json" $d_cfg)
dl1=$(put "$work/l1.tar.gz" application/vnd.docker.image.rootfs.diff.tar.gzip)
dl3=$(put "$work/l3.tar" application/vnd.docker.image.rootfs.diff.tar)
jq -cn --arg m $d_man --argjson c "$c_dock" --argjson a "$dl1" --argjson b "$dl3" \
  '{schemaVersion: 2, mediaType: $m, config: $c, layers: [$a, $b]}' >"$work/m-docker.json"
m_dock=$(put "$work/m-docker.json" $d_man)

ref() { jq -c --arg r "$2" '. + {annotations: {"org.opencontainers.image.ref.name": $r}}' <<<"$1"; }
jq -cn --argjson a "$(ref "$i_multi" multi)" --argjson b "$(ref "$m_amd" single)" \
  --argjson c "$(ref "$m_dock" docker)" \
  '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: [$a, $b, $c]}' \
  >"$out/index.json"
echo "$out"
