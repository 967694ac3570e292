#!/bin/bash
# Builds, once, an OCI image layout of Debian 12 (from `bookworm` only, with
# bookworm-security in its sources) with python3, pip and venv, old pinned
# packages from PyPI in the system site-packages (/usr/local/lib/python3.11/
# dist-packages, as Debian's pip installs them), and a virtualenv at
# /opt/venv holding other old pins; prints the layout's path. The image is
# named `python`.
#
# Cached under ${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}/python-bookworm-v1.
# PyPI is reached over HTTPS: the host's CA bundle is bound over the root's
# during the installs (this network intercepts TLS) and never kept.
set -euo pipefail
# shellcheck source=layout.sh
. "$(dirname "$0")/layout.sh"

system_pins=${CAULK_TEST_SYSTEM_PINS:-"requests==2.25.1 urllib3==1.26.5 certifi==2022.12.7 jinja2==3.1.2 markupsafe==2.1.3 idna==2.10 chardet==4.0.0"}
venv_pins=${CAULK_TEST_VENV_PINS:-"flask==2.2.2 werkzeug==2.2.2 jinja2==3.1.2 markupsafe==2.1.3 itsdangerous==2.1.2 click==8.1.3"}

cache=${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}
out=$cache/python-bookworm-v1
mkdir -p "$cache"
exec 9>"$cache/.python.lock"
flock 9
if [ -f "$out/index.json" ]; then
  echo "$out"
  exit 0
fi

work=$(mktemp -d "$cache/.python-build.XXXXXX")
trap 'umount -q "$work/root/etc/ssl/certs/ca-certificates.crt" 2>/dev/null || true; rm -rf "$work"' EXIT
mirror=${CAULK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${CAULK_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

mmdebstrap --quiet --variant=apt --mode=root --format=directory \
  --include=python3,python3-pip,python3-venv,ca-certificates \
  --customize-hook="printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
      '$mirror' '$mirror' '$security' > \"\$1/etc/apt/sources.list\"" \
  bookworm "$work/root" "$mirror" >&2

root=$work/root
mount --bind -o ro /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# shellcheck disable=SC2086
chroot "$root" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root pip install --quiet --no-cache-dir --break-system-packages $system_pins >&2
chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root python3 -m venv /opt/venv >&2
# shellcheck disable=SC2086
chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root /opt/venv/bin/pip install --quiet --no-cache-dir $venv_pins >&2
umount "$root/etc/ssl/certs/ca-certificates.crt"
rm -f "$root/etc/resolv.conf"
rm -rf "$root"/root/.cache "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin

tar -c --sort=name --numeric-owner --xattrs --xattrs-include='*' --mtime=@1704067200 --clamp-mtime \
  -C "$root" . >"$work/rootfs.tar"
rm -rf "$root"

jq -n '{
  created: "2024-01-01T00:00:00Z", architecture: "amd64", os: "linux",
  config: {Env: ["PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
           Cmd: ["python3"], WorkingDir: "/srv"},
  history: [{created: "2024-01-01T00:00:00Z", created_by: "mmdebstrap bookworm python3; pip install old pins"}]
}' >"$work/config.json"
layout=$work/layout
oci_layout "$layout" python "$work/config.json" "$work/rootfs.tar"
rm -rf "$out"
mv "$layout" "$out"
echo "$out"
