#!/bin/bash
# Builds, once, an OCI image layout of a Debian root fs installed from the
# release suite alone (so packages fixed since in SUITE-security are really
# behind), with SUITE-security and SUITE-updates in its apt sources, and
# prints the layout's path. Usage: vulnerable-debian.sh SUITE [EXTRA_PACKAGES [ARCH]]
#
# Cached under ${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}/vulnerable-SUITE-v1
# (with EXTRA_PACKAGES, a name derived from them; with an ARCH other than
# amd64, -ARCH appended); the layout's image is named SUITE. A foreign ARCH
# runs the maintainer scripts under qemu-user through binfmt_misc. One gzip layer, OCI media types, a config with Env, Cmd, Labels,
# ExposedPorts, Volumes, WorkingDir and User so tests can see them preserved.
set -euo pipefail
# shellcheck source=layout.sh
. "$(dirname "$0")/layout.sh"

suite=${1:?usage: vulnerable-debian.sh SUITE [EXTRA_PACKAGES [ARCH]]}
extra=${2:-}
arch=${3:-amd64}
case $suite in
  bullseye) ssl=libssl1.1 ;;
  bookworm) ssl=libssl3 ;;
  trixie) ssl=libssl3t64 ;;
  *) echo "unknown suite $suite" >&2; exit 2 ;;
esac
packages="openssl,$ssl,libexpat1,ca-certificates${extra:+,$extra}"

cache=${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}
tag=v1${extra:+-$(printf '%s' "$extra" | sha256sum | cut -c1-8)}
[ "$arch" = amd64 ] || tag=$tag-$arch-caught-up
out=$cache/vulnerable-$suite-$tag
mkdir -p "$cache"
exec 9>"$cache/.vulnerable-$suite${tag#v1}.lock"
flock 9
if [ -f "$out/index.json" ]; then
  echo "$out"
  exit 0
fi

work=$(mktemp -d "$cache/.vulnerable-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mirror=${CAULK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${CAULK_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

# Installed from "$suite" only; the security and updates suites are added to
# the sources afterwards, as an image built a while ago would have them.
# A foreign root is brought up to date except for the packages the tests
# look at: every package behind costs an emulated dpkg run under qemu-user
# in each update-all test, minutes in all, for no extra coverage.
catch_up=()
if [ "$arch" != amd64 ]; then
  behind="openssl $ssl libexpat1"
  catch_up=(--customize-hook="chroot \"\$1\" apt-mark hold $behind >/dev/null &&
    chroot \"\$1\" apt-get -q update >&2 &&
    chroot \"\$1\" env DEBIAN_FRONTEND=noninteractive apt-get -qy upgrade >&2 &&
    chroot \"\$1\" apt-mark unhold $behind >/dev/null &&
    chroot \"\$1\" apt-get clean && rm -rf \"\$1\"/var/lib/apt/lists/*")
fi

mmdebstrap --quiet --variant=apt --mode=root --format=tar --architectures="$arch" --include="$packages" \
  --customize-hook="printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
      '$mirror' '$suite' '$mirror' '$suite' '$security' '$suite' > \"\$1/etc/apt/sources.list\"" \
  --customize-hook='rm -f "$1"/etc/apt/sources.list.d/*' \
  "${catch_up[@]}" \
  "$suite" "$work/rootfs.tar" "$mirror" >&2

jq -n --arg s "$suite" --arg a "$arch" '{
  created: "2024-01-01T00:00:00Z", architecture: $a, os: "linux",
  config: {
    Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "CAULK_TEST=1"],
    Entrypoint: ["/bin/sh", "-c"], Cmd: ["openssl version"], WorkingDir: "/srv", User: "0:0",
    Labels: {"org.example.suite": $s}, ExposedPorts: {"8080/tcp": {}}, Volumes: {"/data": {}}
  },
  history: [{created: "2024-01-01T00:00:00Z", created_by: ("mmdebstrap --variant=apt " + $s)}]
}' >"$work/config.json"
layout=$work/layout
oci_layout "$layout" "$suite" "$work/config.json" "$work/rootfs.tar"
rm -rf "$out"
mv "$layout" "$out"
echo "$out"
