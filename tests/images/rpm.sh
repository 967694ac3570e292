#!/bin/bash
# Builds, once, the RPM test material and prints its directory: RPMs made
# with rpmbuild, a repository made with createrepo_c, and root file systems
# populated by the host's dnf from that repository. Cached under
# ${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}/rpm-v1 and reused while its
# `done` marker exists; about 3 s cold.
#
#   repo/            every package version, with repodata/
#   toolless.tar     ID=caulk (ID_LIKE "rhel fedora"), an rpm database and
#                    files only: no package manager, no rpm, no shell
#   azure.tar        ID=azurelinux 3.0, the same kind of root plus Azure
#                    Linux's /var/lib/rpmmanifest/container-manifest-{1,2}
#
# Packages: caulk-demo and caulk-demo-libs (x86_64; 1.0-1, 1.1-1, 1.2-1;
# caulk-demo requires caulk-demo-libs of its own version, so the library
# must move with it), caulk-data (noarch, epoch 1; 2.0-1 and 2.1-1),
# caulk-tool (noarch; 3.0-1 only), and the release packages that provide
# /etc/os-release and system-release(releasever). The roots hold the
# oldest versions. No package has scriptlets: the roots have no shell.
#
# The repository files that point dnf at the repository are not in the
# roots: the tests add them in a layer of their own, with the port of the
# HTTP server they start (tests/images/rpm-image.sh).
set -euo pipefail

cache=${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}
out=$cache/rpm-v1
mkdir -p "$cache"
exec 9>"$cache/.rpm.lock"
flock 9
if [ -f "$out/done" ]; then
  echo "$out"
  exit 0
fi

work=$(mktemp -d "$cache/.rpm-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
top=$work/top

# spec NAME: writes the spec of NAME to stdout.
spec() {
  case $1 in
  demo) cat <<'EOF'
Name: caulk-demo
Version: %{ver}
Release: 1
Summary: caulk test program
License: MIT
BuildArch: x86_64
AutoReqProv: no
Requires: caulk-demo-libs = %{version}-%{release}
%description
A program whose library must move with it.
%package libs
Summary: caulk test library
%description libs
The library of caulk-demo.
%install
mkdir -p %{buildroot}/usr/bin %{buildroot}/usr/lib
printf 'caulk-demo %{version}\n' >%{buildroot}/usr/bin/caulk-demo
printf 'libcaulkdemo %{version}\n' >%{buildroot}/usr/lib/libcaulkdemo.txt
%files
/usr/bin/caulk-demo
%files libs
/usr/lib/libcaulkdemo.txt
EOF
    ;;
  data) cat <<'EOF'
Name: caulk-data
Epoch: 1
Version: %{ver}
Release: 1
Summary: caulk test data
License: MIT
BuildArch: noarch
AutoReqProv: no
%description
A package with an epoch.
%install
mkdir -p %{buildroot}/usr/share/caulk
printf 'data %{version}\n' >%{buildroot}/usr/share/caulk/data.txt
%files
/usr/share/caulk/data.txt
EOF
    ;;
  tool) cat <<'EOF'
Name: caulk-tool
Version: %{ver}
Release: 1
Summary: caulk test tool
License: MIT
BuildArch: noarch
AutoReqProv: no
%description
A package with one version only.
%install
mkdir -p %{buildroot}/usr/share/caulk
printf 'tool %{version}\n' >%{buildroot}/usr/share/caulk/tool.txt
%files
/usr/share/caulk/tool.txt
EOF
    ;;
  release) cat <<'EOF'
Name: %{rname}
Version: %{ver}
Release: 1
Summary: caulk test release
License: MIT
BuildArch: noarch
AutoReqProv: no
Provides: system-release(releasever) = %{ver}
%description
/etc/os-release of a test distribution.
%install
mkdir -p %{buildroot}/etc
printf '%%s\n' %{osrelease} >%{buildroot}/etc/os-release
%files
/etc/os-release
EOF
    ;;
  esac
}

build() {
  local which=$1
  shift
  spec "$which" >"$work/$which.spec"
  rpmbuild -bb --quiet --define "_topdir $top" --define '_build_id_links none' "$@" "$work/$which.spec" >&2
}

for v in 1.0 1.1 1.2; do build demo --define "ver $v"; done
for v in 2.0 2.1; do build data --define "ver $v"; done
build tool --define "ver 3.0"
build release --define "rname caulk-release" --define "ver 1" \
  --define "osrelease ID=caulk 'ID_LIKE=\"rhel fedora\"' VERSION_ID=1 'PRETTY_NAME=\"caulk test 1\"'"
build release --define "rname azurelinux-release" --define "ver 3.0" \
  --define "osrelease ID=azurelinux VERSION_ID=3.0 'PRETTY_NAME=\"Azure Linux 3.0 (caulk test)\"'"

mkdir -p "$work/repo"
find "$top/RPMS" -name '*.rpm' -exec mv {} "$work/repo/" \;
createrepo_c --quiet "$work/repo" >&2

# root NAME PACKAGE...: a root populated from the repository by the host's
# dnf, with what dnf leaves beside the packages removed.
root() {
  local name=$1 dir=$work/$1
  shift
  mkdir -p "$dir/etc/yum.repos.d" "$work/home"
  printf '%%_dbpath /var/lib/rpm\n' >"$work/home/.rpmmacros"
  HOME=$work/home dnf -y -q --noplugins --installroot="$dir" --releasever=1 \
    --setopt=reposdir=/nonexistent --setopt=install_weak_deps=False \
    --repofrompath="build,file://$work/repo" --setopt=build.gpgcheck=0 \
    install "$@" >&2
  rm -rf "$dir/var/cache" "$dir/var/log" "$dir/var/lib/dnf" \
    "$dir/var/lib/rpm/.rpm.lock" "$dir/var/lib/rpm/rpmdb.sqlite-shm" "$dir/var/lib/rpm/rpmdb.sqlite-wal"
  rpm --root "$dir" --dbpath /var/lib/rpm -qa >/dev/null
  rm -f "$dir/var/lib/rpm/.rpm.lock" "$dir/var/lib/rpm/rpmdb.sqlite-shm" "$dir/var/lib/rpm/rpmdb.sqlite-wal"
}

root toolless caulk-release caulk-demo-1.0-1 caulk-data-1:2.0-1 caulk-tool-3.0-1
root azure azurelinux-release caulk-demo-1.0-1 caulk-data-1:2.0-1
mkdir -p "$work/azure/var/lib/rpmmanifest"
rpm --root "$work/azure" --dbpath /var/lib/rpm -qa \
  --qf '%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\n' >"$work/azure/var/lib/rpmmanifest/container-manifest-1"
rpm --root "$work/azure" --dbpath /var/lib/rpm -qa \
  --qf '%{NAME}\t%{VERSION}-%{RELEASE}\t%{INSTALLTIME}\t%{BUILDTIME}\t%{VENDOR}\t%{EPOCH}\t%{SIZE}\t%{ARCH}\t%{EPOCHNUM}\t%{SOURCERPM}\n' \
  >"$work/azure/var/lib/rpmmanifest/container-manifest-2"
rm -f "$work/azure/var/lib/rpm/.rpm.lock" "$work/azure/var/lib/rpm/rpmdb.sqlite-shm" "$work/azure/var/lib/rpm/rpmdb.sqlite-wal"

for name in toolless azure; do
  tar -c --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1700000000 \
    -C "$work/$name" . >"$work/$name.tar"
done

rm -rf "$out"
mkdir -p "$out"
mv "$work/repo" "$work/toolless.tar" "$work/azure.tar" "$out/"
touch "$out/done"
echo "$out"
