#!/bin/bash
# Builds, once, an OCI image layout shaped like a distroless Debian image and
# prints its path: the files of a few bookworm packages (libc6, libssl3,
# openssl, base-files and their dependencies) extracted from the `bookworm`
# suite only, so the security and point-release updates are newer; no apt,
# no dpkg, no shell; the packages listed the way distroless lists them, one
# control paragraph per file in /var/lib/dpkg/status.d/NAME (without a
# Status field) beside NAME.md5sums, and no /var/lib/dpkg/status.
# Cached under ${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}/distroless-debian-v1
# (about 12 MB); the layout names one image, "distroless".
set -euo pipefail
# shellcheck source=layout.sh
. "$(dirname "$0")/layout.sh"

cache=${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}
out=$cache/distroless-debian-v1
mkdir -p "$cache"
exec 9>"$cache/.distroless-debian.lock"
flock 9
if [ -f "$out/index.json" ]; then
  echo "$out"
  exit 0
fi

work=$(mktemp -d "$cache/.distroless-debian-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mirror=${CAULK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
root=$work/root

# `extract` unpacks the packages' files and runs nothing; the .debs stay in
# the apt cache for their control data.
mmdebstrap --quiet --variant=extract --mode=root --skip=cleanup/apt/cache \
  --include=libc6,libgcc-s1,gcc-12-base,libssl3,openssl,base-files \
  bookworm "$root" "$mirror" >&2
status_d=$root/var/lib/dpkg/status.d
mkdir -p "$work/control" "$status_d"
for deb in "$root"/var/cache/apt/archives/*.deb; do
  name=$(dpkg-deb --field "$deb" Package)
  dpkg-deb --field "$deb" >"$status_d/$name"
  dpkg-deb --control "$deb" "$work/control/$name"
  if [ -f "$work/control/$name/md5sums" ]; then
    cp "$work/control/$name/md5sums" "$status_d/$name.md5sums"
  fi
done
# What distroless does not have: dpkg's own database, apt, a shell.
find "$root/var/lib/dpkg" -mindepth 1 -maxdepth 1 ! -name status.d -exec rm -rf {} +
rm -rf "$root/var/cache/apt" "$root/var/lib/apt" "$root/etc/apt" "$root"/dev/*
for tool in sh dash bash dpkg apt-get apt; do
  if [ -e "$root/usr/bin/$tool" ] || [ -e "$root/bin/$tool" ]; then
    echo "distroless-debian.sh: $tool is in the root" >&2
    exit 1
  fi
done
tar -c --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1700000000 \
  -C "$root" . >"$work/root.tar"

jq -n '{
  created: "2023-11-14T22:13:20Z", architecture: "amd64", os: "linux",
  config: {Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
           Entrypoint: ["/usr/bin/openssl"], User: "65532"},
  history: [{created: "2023-11-14T22:13:20Z", created_by: "caulk test: distroless-style bookworm (extracted packages, status.d)"}]
}' >"$work/config.json"
layout=$work/layout
oci_layout "$layout" distroless "$work/config.json" "$work/root.tar"
rm -rf "$out"
mv "$layout" "$out"
echo "$out"
