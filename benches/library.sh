#!/bin/bash
# caulk's library patch of the Python test image (tests/images/python-debian.sh)
# beside the same pip installs run directly, with chroot, in an unpacked copy
# of the image: the versions caulk chose, pinned, in each environment. Prints
# both wall times and caulk's overhead (its total minus the direct installs),
# with pip dry runs on (the default) and off.
#
#   benches/library.sh [ROUNDS]   (default 3; medians)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}

cargo build --release --quiet -p caulk
caulk=${CARGO_TARGET_DIR:-$PWD/target}/release/caulk
layout=$(tests/images/python-debian.sh)
work=$(mktemp -d /var/tmp/caulk-bench-lib.XXXXXX)
cleanup() {
  umount -q "$work/root/etc/ssl/certs/ca-certificates.crt" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

sys=usr/local/lib/python3.11/dist-packages
venv=opt/venv/lib/python3.11/site-packages
finding() { # site name installed id fixed
  jq -cn --arg s "$1" --arg n "$2" --arg i "$3" --arg id "$4" --arg f "$5" '{VulnerabilityID: $id, PkgName: $n,
    InstalledVersion: $i, FixedVersion: $f, Status: "fixed", Severity: "HIGH",
    PkgPath: ($s + "/" + $n + "-" + $i + ".dist-info/METADATA")}'
}
jq -n --argjson v "[$(finding $sys urllib3 1.26.5 CVE-2023-45803 '2.0.7, 1.26.18'),
  $(finding $sys certifi 2022.12.7 CVE-2024-39689 2024.7.4), $(finding $sys jinja2 3.1.2 CVE-2024-22195 3.1.3),
  $(finding $venv jinja2 3.1.2 CVE-2024-22195 3.1.3), $(finding $venv werkzeug 2.2.2 CVE-2023-25577 2.2.3)]" \
  '{SchemaVersion: 2, ArtifactName: "python", Metadata: {OS: {Family: "debian", Name: "12"}},
    Results: [{Target: "Python", Class: "lang-pkgs", Type: "python-pkg", Vulnerabilities: $v}]}' >"$work/report.json"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }

for dry in true false; do
  for i in $(seq "$rounds"); do
    rm -rf "$work/l" && cp -a "$layout" "$work/l" && sync
    start=$(now)
    "$caulk" patch --json --pkg-types library -i "oci:$work/l:python" -r "$work/report.json" \
      --plugin-opt "pip.dry-run=$dry" >"$work/summary.json"
    end=$(now)
    echo "$end - $start" | bc >>"$work/caulk-$dry.times"
    test "$(jq -r .result "$work/summary.json")" = patched
  done
done

# The direct installs: what caulk's last run installed, per environment.
pins() { jq -r --arg loc "$1" '.rows[] | select(.status == "patched" and .location == $loc) | "\(.name)==\(.to)"' "$work/summary.json"; }
mapfile -t sys_pins < <(pins "/$sys")
mapfile -t venv_pins < <(pins "/$venv")
echo "pins: system ${sys_pins[*]}; venv ${venv_pins[*]}"
for i in $(seq "$rounds"); do
  rm -rf "$work/root" && mkdir "$work/root"
  blob=$(jq -r '.manifests[0].digest' "$layout/index.json" | sed 's|:|/|')
  layer=$(jq -r '.layers[0].digest' "$layout/blobs/$blob" | sed 's|:|/|')
  tar -xzf "$layout/blobs/$layer" -C "$work/root"
  mount --bind -o ro /etc/ssl/certs/ca-certificates.crt "$work/root/etc/ssl/certs/ca-certificates.crt"
  cp /etc/resolv.conf "$work/root/etc/resolv.conf"
  sync
  start=$(now)
  chroot "$work/root" env -i PATH=/usr/bin:/bin HOME=/root pip install -q --no-cache-dir --no-deps \
    --break-system-packages "${sys_pins[@]}"
  chroot "$work/root" env -i PATH=/usr/bin:/bin HOME=/root /opt/venv/bin/pip install -q --no-cache-dir --no-deps \
    "${venv_pins[@]}"
  end=$(now)
  umount "$work/root/etc/ssl/certs/ca-certificates.crt"
  echo "$end - $start" | bc >>"$work/direct.times"
done

d=$(median <"$work/direct.times"); a=$(median <"$work/caulk-true.times"); b=$(median <"$work/caulk-false.times")
printf '\nmedian of %d rounds:\n' "$rounds"
printf '  pip install, direct (chroot)        %6.2f s\n' "$d"
printf '  caulk patch, dry runs on (default)  %6.2f s  overhead %5.2f s\n' "$a" "$(echo "$a - $d" | bc -l)"
printf '  caulk patch, dry runs off           %6.2f s  overhead %5.2f s\n' "$b" "$(echo "$b - $d" | bc -l)"
