#!/bin/bash
# caulk's library patch of the Python test image (tests/images/python-debian.sh)
# beside the same pip installs run directly, with chroot, in an unpacked copy
# of the image: the versions caulk chose, pinned, in each environment. Each
# round runs the direct installs and caulk with pip dry runs on (the default)
# and off, one after the other, so every overhead (caulk's total minus the
# direct installs of the same round) compares runs made under the same load.
# The direct installs run twice per round: one environment after the other,
# as a Dockerfile's RUN would (the overhead issue 16 asks about), and both
# pips at once, as caulk runs them, which says what is caulk's own cost.
# Prints wall times and overheads as min/median/max over the rounds, and the
# medians of caulk's own timings (probes: waiting for the plugin's questions,
# dry runs, pip check and import checks; steps: the pip installs; write: the
# layer and the image), with the load average before and after: on a
# loaded machine every figure grows, the interleaved rounds keep them
# comparable with each other.
#
#   benches/library.sh [ROUNDS]   (default 3)
#
# CAULK_BENCH_PLUGIN_DIR=DIR runs caulk with a pip plugin built on its own
# (DIR/caulk_plugin_pip.wasm, shadowing the built-in, with its grants).
# CAULK_BENCH_BASELINE_PLUGIN_DIR=DIR adds, in every round, runs with that
# plugin instead, to compare two plugin versions on one host binary under the
# same load. One unmeasured run of each first compiles and caches the
# plugins and gives the pins of the direct installs.
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
plugin_args() { # DIR: the grants and directory of a pip plugin built on its own
  [ -n "$1" ] || return 0
  printf '%s\n' --plugin-dir "$1" --grant pip:image-commands --grant pip:host-tooling --grant pip:network \
    --grant 'pip:index:*'
}

# Variants: a label and a plugin directory (empty: the built-in).
variants=("caulk:${CAULK_BENCH_PLUGIN_DIR:-}")
if [ -n "${CAULK_BENCH_BASELINE_PLUGIN_DIR:-}" ]; then
  variants+=("baseline:$CAULK_BENCH_BASELINE_PLUGIN_DIR")
fi

caulk_run() { # LABEL DIR DRY: one measured caulk patch
  local args
  mapfile -t args < <(plugin_args "$2")
  rm -rf "$work/l" && cp -a "$layout" "$work/l" && sync
  local start end
  start=$(now)
  "$caulk" patch --json --pkg-types library -i "oci:$work/l:python" -r "$work/report.json" \
    --plugin-opt "pip.dry-run=$3" "${args[@]}" >"$work/summary.json"
  end=$(now)
  test "$(jq -r .result "$work/summary.json")" = patched
  echo "$end - $start" | bc >"$work/last"
  cat "$work/last" >>"$work/$1-$3.times"
  for t in probes steps write; do
    jq -r ".timings.${t}_ms / 1000" "$work/summary.json" >>"$work/$1-$3.$t"
  done
}

for variant in "${variants[@]}"; do
  caulk_run warm "${variant#*:}" true
done
# The direct installs: what caulk's warm-up run installed, per environment.
pins() { jq -r --arg loc "$1" '.rows[] | select(.status == "patched" and .location == $loc) | "\(.name)==\(.to)"' "$work/summary.json"; }
mapfile -t sys_pins < <(pins "/$sys")
mapfile -t venv_pins < <(pins "/$venv")
echo "pins: system ${sys_pins[*]}; venv ${venv_pins[*]}"

direct_run() { # MODE: "sequential" (as a Dockerfile would) or "side-by-side" (both pips at once, as caulk does)
  rm -rf "$work/root" && mkdir "$work/root"
  local blob layer start end
  blob=$(jq -r '.manifests[0].digest' "$layout/index.json" | sed 's|:|/|')
  layer=$(jq -r '.layers[0].digest' "$layout/blobs/$blob" | sed 's|:|/|')
  tar -xzf "$layout/blobs/$layer" -C "$work/root"
  mount --bind -o ro /etc/ssl/certs/ca-certificates.crt "$work/root/etc/ssl/certs/ca-certificates.crt"
  cp /etc/resolv.conf "$work/root/etc/resolv.conf"
  sync
  start=$(now)
  chroot "$work/root" env -i PATH=/usr/bin:/bin HOME=/root pip install -q --no-cache-dir --no-deps \
    --break-system-packages "${sys_pins[@]}" &
  local system=$!
  [ "$1" = side-by-side ] || wait "$system"
  chroot "$work/root" env -i PATH=/usr/bin:/bin HOME=/root /opt/venv/bin/pip install -q --no-cache-dir --no-deps \
    "${venv_pins[@]}"
  wait "$system"
  end=$(now)
  umount "$work/root/etc/ssl/certs/ca-certificates.crt"
  echo "$end - $start" | bc >"$work/direct-$1"
  cat "$work/direct-$1" >>"$work/direct-$1.times"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for _ in $(seq "$rounds"); do
  direct_run sequential 2>/dev/null
  direct_run side-by-side 2>/dev/null
  for variant in "${variants[@]}"; do
    for dry in true false; do
      caulk_run "${variant%%:*}" "${variant#*:}" "$dry"
      echo "$(cat "$work/last") - $(cat "$work/direct-sequential")" | bc >>"$work/${variant%%:*}-$dry.overhead"
      echo "$(cat "$work/last") - $(cat "$work/direct-side-by-side")" | bc >>"$work/${variant%%:*}-$dry.overhead2"
    done
  done
done

printf '\n%d rounds, seconds (min median max); overhead: caulk minus the same round'"'"'s direct installs\n' "$rounds"
printf '  load average (1, 5, 15 min) before %s, after %s, on %s cores\n' "$load_before" \
  "$(cut -d' ' -f1-3 /proc/loadavg)" "$(nproc)"
printf '  pip install, direct (chroot), one by one    %s\n' "$(spread <"$work/direct-sequential.times")"
printf '  pip install, direct (chroot), side by side  %s\n' "$(spread <"$work/direct-side-by-side.times")"
for variant in "${variants[@]}"; do
  label=${variant%%:*}
  for dry in true false; do
    what=$([ "$dry" = true ] && echo "dry runs on" || echo "dry runs off")
    printf '  %-8s patch, %-20s %s   overhead %s\n' "$label" "$what" "$(spread <"$work/$label-$dry.times")" \
      "$(spread <"$work/$label-$dry.overhead")"
    printf '    overhead against the direct installs side by side: %s\n' "$(spread <"$work/$label-$dry.overhead2")"
    printf '    medians: probes %.2f, steps %.2f, write %.2f\n' "$(median <"$work/$label-$dry.probes")" \
      "$(median <"$work/$label-$dry.steps")" "$(median <"$work/$label-$dry.write")"
  done
done
