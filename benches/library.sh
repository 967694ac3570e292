#!/bin/bash
# caulk's library patch of the Python test image (tests/images/python-debian.sh)
# beside the same pip installs run directly, with chroot, in an unpacked copy
# of the image: the versions caulk chose, pinned, in each environment. Prints
# both wall times and caulk's overhead (its total minus the direct installs),
# with pip dry runs on (the default) and off, as min/median/max, and the
# medians of caulk's own timings (probes: waiting for the plugin's questions,
# dry runs, pip check and import checks; steps: the pip installs; write: the
# layer and the image).
#
#   benches/library.sh [ROUNDS]   (default 3)
#
# CAULK_BENCH_PLUGIN_DIR=DIR runs caulk with a pip plugin built on its own
# (DIR/caulk_plugin_pip.wasm, shadowing the built-in, with its grants) to
# compare plugin versions on one host binary; one unmeasured run first
# compiles and caches it.
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
spread() { sort -n | awk '{a[NR]=$1} END {printf "%6.2f %6.2f %6.2f", a[1], a[int((NR+1)/2)], a[NR]}'; }
now() { date +%s.%N; }
plugin_args=()
if [ -n "${CAULK_BENCH_PLUGIN_DIR:-}" ]; then
  plugin_args=(--plugin-dir "$CAULK_BENCH_PLUGIN_DIR" --grant pip:image-commands --grant pip:host-tooling
    --grant pip:network --grant 'pip:index:*')
  rm -rf "$work/l" && cp -a "$layout" "$work/l"
  "$caulk" patch --json --pkg-types library -i "oci:$work/l:python" -r "$work/report.json" "${plugin_args[@]}" >/dev/null
fi

for dry in true false; do
  for _ in $(seq "$rounds"); do
    rm -rf "$work/l" && cp -a "$layout" "$work/l" && sync
    start=$(now)
    "$caulk" patch --json --pkg-types library -i "oci:$work/l:python" -r "$work/report.json" \
      --plugin-opt "pip.dry-run=$dry" "${plugin_args[@]}" >"$work/summary.json"
    end=$(now)
    echo "$end - $start" | bc >>"$work/caulk-$dry.times"
    test "$(jq -r .result "$work/summary.json")" = patched
    for t in probes steps write; do
      jq -r ".timings.${t}_ms / 1000" "$work/summary.json" >>"$work/caulk-$dry.$t"
    done
  done
done

# The direct installs: what caulk's last run installed, per environment.
pins() { jq -r --arg loc "$1" '.rows[] | select(.status == "patched" and .location == $loc) | "\(.name)==\(.to)"' "$work/summary.json"; }
mapfile -t sys_pins < <(pins "/$sys")
mapfile -t venv_pins < <(pins "/$venv")
echo "pins: system ${sys_pins[*]}; venv ${venv_pins[*]}"
for _ in $(seq "$rounds"); do
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

d=$(median <"$work/direct.times")
printf '\n%d rounds, seconds (min median max):\n' "$rounds"
printf '  pip install, direct (chroot)        %s\n' "$(spread <"$work/direct.times")"
for dry in true false; do
  label=$([ "$dry" = true ] && echo "dry runs on (default)" || echo "dry runs off")
  overhead=$(awk -v d="$d" '{print $1 - d}' "$work/caulk-$dry.times" | spread)
  printf '  caulk patch, %-22s %s   overhead %s\n' "$label" "$(spread <"$work/caulk-$dry.times")" "$overhead"
  printf '    medians: probes %.2f, steps %.2f, write %.2f\n' "$(median <"$work/caulk-$dry.probes")" \
    "$(median <"$work/caulk-$dry.steps")" "$(median <"$work/caulk-$dry.write")"
done
