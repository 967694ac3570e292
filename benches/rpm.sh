#!/bin/bash
# caulk patching the toolless RPM test image (tests/images/rpm.sh: an rpm
# database and files, no package manager) beside the same upgrade run by
# hand: the host's `dnf --installroot` on an unpacked copy of the image.
# Both fetch from the test repository, served on 127.0.0.1 by Python's
# http.server. Prints the medians and caulk's overhead (its total minus
# the dnf run by hand): reading and writing the image, the plugin's probe,
# plan and verify rounds, the sandbox, and the new layer.
#
#   benches/rpm.sh [ROUNDS]   (default 5; medians)
#
# CAULK_BIN=path uses that caulk instead of building a release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}

if [ -z "${CAULK_BIN:-}" ]; then
  cargo build --release --quiet -p caulk
  CAULK_BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/caulk
fi
work=$(mktemp -d /var/tmp/caulk-bench-rpm.XXXXXX)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

material=$(tests/images/rpm.sh)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 "$port" --directory "$material/repo" >/dev/null 2>&1 &
server=$!
for _ in $(seq 50); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null && break
  sleep 0.1
done
tests/images/rpm-image.sh toolless "$port" "$work/layout"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
export CAULK_CACHE_DIR=$work/cache XDG_DATA_HOME=$work/data

# One run first, so both sides start with the plugin compiled, dnf's
# metadata cached and the page cache warm; both pass --refresh, so each
# round checks the repository for new metadata.
cp -a "$work/layout" "$work/l"
"$CAULK_BIN" patch --json -i "oci:$work/l:toolless" -t all >/dev/null
for i in $(seq "$rounds"); do
  rm -rf "$work/l" && cp -a "$work/layout" "$work/l" && sync
  start=$(now)
  "$CAULK_BIN" patch --json -i "oci:$work/l:toolless" -t all >"$work/summary.json"
  end=$(now)
  echo "$end - $start" | bc >>"$work/caulk.times"
  test "$(jq -r .result "$work/summary.json")" = patched
done

mkdir -p "$work/home"
printf '%%_dbpath /var/lib/rpm\n' >"$work/home/.rpmmacros"
unpack() {
  rm -rf "$work/root" && mkdir "$work/root"
  local manifest layer
  manifest=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "toolless") | .digest' \
    "$work/layout/index.json" | sed 's|:|/|')
  for layer in $(jq -r '.layers[].digest' "$work/layout/blobs/$manifest" | sed 's|:|/|'); do
    tar -xzf "$work/layout/blobs/$layer" -C "$work/root"
  done
}
by_hand() {
  HOME=$work/home dnf -y -q --noplugins --refresh --installroot="$work/root" --releasever=1 \
    --setopt=reposdir="$work/root/etc/yum.repos.d" --setopt=install_weak_deps=False upgrade >/dev/null
}
# caulk keeps dnf's metadata in a host-side cache between runs: so does
# the hand run, from a first run's /var/cache/dnf.
unpack
by_hand
cp -a "$work/root/var/cache/dnf" "$work/dnf-cache"
for i in $(seq "$rounds"); do
  unpack
  mkdir -p "$work/root/var/cache"
  cp -a "$work/dnf-cache" "$work/root/var/cache/dnf"
  sync
  start=$(now)
  by_hand
  end=$(now)
  echo "$end - $start" | bc >>"$work/dnf.times"
  test "$(rpm --root "$work/root" --dbpath /var/lib/rpm -q --qf '%{VERSION}' caulk-demo)" = 1.2
done

caulk_s=$(median <"$work/caulk.times")
dnf_s=$(median <"$work/dnf.times")
printf 'caulk patch (update-all, host dnf --installroot):  %6.3f s\n' "$caulk_s"
printf 'dnf --installroot upgrade by hand:                  %6.3f s\n' "$dnf_s"
printf "caulk's overhead:                                   %6.3f s (goal < 1 s)\n" "$(echo "$caulk_s - $dnf_s" | bc)"
