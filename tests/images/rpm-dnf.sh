#!/bin/bash
# Builds, once, a root whose own dnf manages its own rpm database, and
# prints the directory holding it as dnf.tar. Cached under
# ${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}/rpm-dnf-v2 while its `done`
# marker exists; cold, about 40 s and 60 MB of Debian packages.
#
# No RPM distribution's mirror is reachable from the machines caulk is
# tested on, so the package manager is Debian's: a bookworm minbase root
# with Debian's dnf and rpm (mmdebstrap), configured as an RPM distribution
# configures itself (`%_dbpath /var/lib/rpm` in /etc/rpm), and populated by
# the host's dnf from rpm.sh's repository with caulk-release (ID=caulk,
# ID_LIKE "rhel fedora"), caulk-demo 1.0-1 and caulk-data 1:2.0-1. So the
# image has dnf, rpm and a shell of its own, and its rpm database lists the
# test packages only.
set -euo pipefail

cache=${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}
out=$cache/rpm-dnf-v2
material=$("$(dirname "$0")/rpm.sh")
mkdir -p "$cache"
exec 9>"$cache/.rpm-dnf.lock"
flock 9
if [ -f "$out/done" ]; then
  echo "$out"
  exit 0
fi

work=$(mktemp -d "$cache/.rpm-dnf-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mirror=${CAULK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
mmdebstrap --quiet --variant=minbase --mode=root --format=tar --include=dnf,rpm \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  bookworm "$work/debian.tar" "$mirror" >&2
root=$work/root
mkdir "$root"
tar -xf "$work/debian.tar" -C "$root"
rm "$work/debian.tar"
mkdir -p "$root/etc/rpm" "$work/home"
printf '%%_dbpath /var/lib/rpm\n' >"$root/etc/rpm/macros.dbpath"
printf '%%_dbpath /var/lib/rpm\n' >"$work/home/.rpmmacros"
HOME=$work/home dnf -y -q --noplugins --installroot="$root" --releasever=1 \
  --setopt=reposdir=/nonexistent --setopt=install_weak_deps=False \
  --repofrompath="build,file://$material/repo" --setopt=build.gpgcheck=0 \
  install caulk-release caulk-demo-1.0-1 caulk-data-1:2.0-1 >&2
# Perl (a dependency of Debian's rpm for its build scripts, about 50 MB)
# is never run by dnf or rpm here: left out to keep the image small.
rm -rf "$root/usr/lib/x86_64-linux-gnu/perl" "$root/usr/share/perl" "$root/usr/share/perl5" \
  "$root/var/cache/dnf" "$root/var/lib/dnf" "$root"/var/log/dnf* "$root/var/log/hawkey.log" \
  "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
  "$root/var/lib/rpm/.rpm.lock" "$root/var/lib/rpm/rpmdb.sqlite-shm" "$root/var/lib/rpm/rpmdb.sqlite-wal"
tar -c --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1700000000 -C "$root" . >"$work/dnf.tar"
rm -rf "$out"
mkdir -p "$out"
mv "$work/dnf.tar" "$out/"
touch "$out/done"
echo "$out"
