#!/bin/bash
# Builds, once, the distroless-style image of distroless-debian.sh with
# /usr/share/doc/openssl replaced by an absolute symlink to /caulk/work,
# the path where the distroless plan mounts its host-side work cache in the
# tooling root. dpkg --root follows the link when it unpacks openssl's docs,
# so the install step writes into whatever /caulk/work is in its sandbox.
# Derived from that image's layer with tar, no network. Prints the layout's
# path; its image is "distroless".
# Cached under ${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}/distroless-cache-link-v1
set -euo pipefail
here=$(dirname "$0")
# shellcheck source=layout.sh
. "$here/layout.sh"

cache=${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}
out=$cache/distroless-cache-link-v1
base=$("$here/distroless-debian.sh")
exec 9>"$cache/.distroless-cache-link.lock"
flock 9
if [ -f "$out/index.json" ]; then
  echo "$out"
  exit 0
fi

work=$(mktemp -d "$cache/.distroless-cache-link-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
oci_unpack "$base" "$root" "$work/base-config.json"
if [ ! -d "$root/usr/share/doc/openssl" ]; then
  echo "distroless-cache-link.sh: the base image has no /usr/share/doc/openssl" >&2
  exit 1
fi
rm -rf "$root/usr/share/doc/openssl"
ln -s /caulk/work "$root/usr/share/doc/openssl"
tar -c --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1700000000 \
  -C "$root" . >"$work/root.tar"
jq '.history[0].created_by += ", /usr/share/doc/openssl -> /caulk/work"' \
  "$work/base-config.json" >"$work/config.json"
oci_layout "$work/layout" distroless "$work/config.json" "$work/root.tar"
rm -rf "$out"
mv "$work/layout" "$out"
echo "$out"
