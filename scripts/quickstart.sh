#!/bin/bash
# The quickstart, on a Debian 12 machine with a rustup toolchain, as root:
# installs what is missing, checks the machine before the long build, builds
# caulk and installs it, builds a small vulnerable Debian 12 image as an OCI
# layout (installed from `bookworm` only, with bookworm-security in its
# sources), writes a Trivy-format report of what apt can fix, patches the
# image with the local executor, and prints the versions before and after and
# the VEX document.
#
#   scripts/quickstart.sh
#
# CAULK_INSTALL_DIR (default /usr/local/bin) is where caulk is installed;
# CAULK_TEST_CACHE (default /var/tmp/caulk-test-cache) caches the image.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

install_dir=${CAULK_INSTALL_DIR:-/usr/local/bin}
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
image_cache=${CAULK_TEST_CACHE:-/var/tmp/caulk-test-cache}
mirror=${CAULK_DEBIAN_MIRROR:-http://deb.debian.org/debian}

step "checking the machine"
need_root "the quickstart"
grep -qs '^ID=debian' /etc/os-release \
  || echo "warning: this is not Debian; the quickstart is written for Debian 12 and may fail"
# The build (target/release grows to about 1.5 GiB the first time),
# the image and its cache, the work dir.
if [ -x "$target_dir/release/caulk" ]; then
  need_space "$target_dir" 1 "rebuilding caulk"
else
  need_space "$target_dir" 4 "the release build"
fi
need_space "$image_cache" 1 "the test image"
need_space /tmp 1 "the work dir"
need_url "$mirror/dists/bookworm/InRelease" "the image is installed from the Debian mirror; set CAULK_DEBIAN_MIRROR to one you reach"
need_url "https://index.crates.io/config.json" "cargo fetches caulk's dependencies from crates.io"

step "installing missing packages"
# mmdebstrap builds the image; bubblewrap runs the package manager's steps;
# jq, python3 and apt (present on Debian) write the image and the report.
install_packages ca-certificates curl mmdebstrap bubblewrap jq python3 util-linux
ensure_rust

step "checking the sandbox"
bwrap --ro-bind / / --dev /dev --proc /proc --unshare-pid --die-with-parent true \
  || die "bubblewrap cannot start a sandbox on this machine" \
    "caulk runs every package-manager step under bubblewrap; it needs user namespaces and mount permissions (in a container: --privileged)"
probe=$(mktemp -d)
mkdir "$probe/lower" "$probe/upper" "$probe/work" "$probe/merged"
if unshare -m --propagation private \
  mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" "$probe/merged" 2>/dev/null; then
  echo "overlayfs: usable"
else
  echo "overlayfs: not usable here; caulk falls back to its copy mode (slower, same result)"
fi
rm -rf "$probe"

step "building caulk (cargo build --release; about 6 minutes on 2 cores the first time)"
cargo build --release --locked -p caulk
install -m 0755 "$target_dir/release/caulk" "$install_dir/caulk"
caulk=$install_dir/caulk
echo "installed $caulk ($("$caulk" --version))"
case ":$PATH:" in
  *":$install_dir:"*) ;;
  *) echo "note: $install_dir is not on your PATH; add it with: export PATH=\"$install_dir:\$PATH\"" ;;
esac

step "building a vulnerable Debian 12 image (cached under $image_cache after the first run)"
cached=$(tests/images/vulnerable-debian.sh bookworm)
work=$(mktemp -d /tmp/caulk-quickstart.XXXXXX)
cp -a "$cached" "$work/layout"
echo "image: oci:$work/layout:bookworm"

step "writing a report of what apt can fix (Trivy format, from apt-cache policy)"
if ! python3 tests/images/apt-report.py "$work/layout" bookworm openssl libssl3 libexpat1 ca-certificates \
  >"$work/report.json" 2>"$work/report.log"; then
  cat "$work/report.log" >&2
  die "the report could not be written (apt-get update against the image's sources failed?); its log is above and in $work/report.log"
fi
cd "$work"
"$caulk" report report.json

step "caulk patch -i oci:layout:bookworm -r report.json -o vex.json"
"$caulk" patch -i oci:layout:bookworm -r report.json -o vex.json

step "the patched image: oci:layout:bookworm-patched"
"$caulk" image inspect oci:layout:bookworm-patched

step "the VEX document (vex.json)"
if [ -f vex.json ]; then cat vex.json; else echo "none written: nothing the report named was fixed"; fi

cat <<EOF

== done
The work dir is $work:
  layout/       the OCI layout, with bookworm and bookworm-patched
  report.json   the report
  vex.json      the VEX document
Try it by hand there:
  cd $work
  caulk report report.json
  caulk image inspect oci:layout:bookworm-patched
Remove it with: rm -rf $work
Also left behind: $caulk (rm it to uninstall), the image cache $image_cache,
caulk's layer and plugin caches in ${XDG_CACHE_HOME:-$HOME/.cache}/caulk, and target/.
EOF
