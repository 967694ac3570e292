#!/bin/bash
# Builds, once, the distroless-style image of distroless-debian.sh without
# libssl3 (its files and its status.d entries), and with openssl's entry
# not depending on it, as if the installed openssl had not needed it: the
# fixed openssl then needs a package the image does not have. Derived from
# that image's layer with tar and sed, no network. Prints the layout's
# path; its image is "distroless".
#
#   distroless-missing-dep.sh [broken|unlisted]
#
# `broken` keeps openssl's dependency on libssl3: a status.d whose own
# dependencies are not met, as images that list only what they chose have.
# `unlisted` keeps libssl3 and drops libgcc-s1's status.d entry instead (its
# files stay), as gcr's distroless base lists libc6 but not libgcc-s1:
# libc6's own dependency is unmet while openssl and libssl3 can move.
# Cached under ${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}/distroless-missing-dep[-VARIANT]-v2
set -euo pipefail
here=$(dirname "$0")
# shellcheck source=layout.sh
. "$here/layout.sh"

cache=${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}
variant=${1:-}
case $variant in
'' | broken | unlisted) ;;
*)
  echo "usage: distroless-missing-dep.sh [broken|unlisted]" >&2
  exit 2
  ;;
esac
out=$cache/distroless-missing-dep${variant:+-$variant}-v2
base=$("$here/distroless-debian.sh")
exec 9>"$cache/.distroless-missing-dep.lock"
flock 9
if [ -f "$out/index.json" ]; then
  echo "$out"
  exit 0
fi

work=$(mktemp -d "$cache/.distroless-missing-dep-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
oci_unpack "$base" "$root" "$work/base-config.json"
status_d=$root/var/lib/dpkg/status.d
if [ "$variant" = unlisted ]; then
  rm -f "$status_d/libgcc-s1" "$status_d/libgcc-s1.md5sums"
  grep -q '^Depends:.*libgcc-s1' "$status_d/libc6" || {
    echo "distroless-missing-dep.sh: libc6 does not depend on libgcc-s1" >&2
    exit 1
  }
else
  while read -r _ path; do
    rm -f "$root/$path"
  done <"$status_d/libssl3.md5sums"
  rm -f "$status_d/libssl3" "$status_d/libssl3.md5sums"
  if [ -z "$variant" ]; then
    sed -i -E '/^Depends:/ { s/, libssl3 \([^)]*\)//; s/ libssl3 \([^)]*\),?// }' "$status_d/openssl"
    if grep -q libssl3 "$status_d/openssl"; then
      echo "distroless-missing-dep.sh: openssl still depends on libssl3" >&2
      exit 1
    fi
  fi
  if [ -e "$root/usr/lib/x86_64-linux-gnu/libssl.so.3" ]; then
    echo "distroless-missing-dep.sh: libssl3's files are still there" >&2
    exit 1
  fi
fi
tar -c --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1700000000 \
  -C "$root" . >"$work/root.tar"
what="without libssl3${variant:+ ($variant)}"
[ "$variant" != unlisted ] || what="libgcc-s1 unlisted"
jq --arg n ", $what" '.history[0].created_by += $n' "$work/base-config.json" >"$work/config.json"
oci_layout "$work/layout" distroless "$work/config.json" "$work/root.tar"
rm -rf "$out"
mv "$work/layout" "$out"
echo "$out"
