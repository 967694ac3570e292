#!/bin/bash
# A fleet of COUNT images of one base (tests/images/fleet-debian.sh: the
# vulnerable Debian 12 image plus a small top layer each), both in Debian's
# docker-registry on 127.0.0.1 and as OCI layouts: one `caulk patch
# --config` over all of them per source (update-all mode, shared caches)
# against COUNT sequential `docker build`s doing the same upgrade (apt-get
# update && apt-get upgrade) on Debian's dockerd. Prints min/median/max and
# the ratios of the medians (issue 16's goal: <= 0.25).
#
#   benches/fleet.sh [COUNT] [ROUNDS] [SOURCES]   (defaults 20, 3, "registry oci")
#
# DOCKER_ROUNDS (default ROUNDS) sets the docker build rounds apart: one
# round of 20 builds takes minutes.
# caulk's first round of each source starts with an empty cache (cold);
# later rounds keep the cache of the round before (warm: layers unpacked,
# indexes and packages downloaded), as a nightly fleet run would. The
# registry images are Copa's PatchConfig as is; the layouts need caulk's
# own apiVersion (local transports as sources). $CAULK_BIN picks the binary
# (default: a release build); $CAULK_FLEET_ARGS adds words to every caulk
# patch (e.g. "--plugin-opt apt.index-ttl=600"). Needs root, network to the Debian mirrors,
# and the packages scripts/test.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-20}
rounds=${2:-3}
sources=${3:-registry oci}

if [ -z "${CAULK_BIN:-}" ]; then
  cargo build --release --quiet -p caulk
  CAULK_BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/caulk
fi
caulk=$CAULK_BIN
layout=$(tests/images/fleet-debian.sh "$count")
work=$(mktemp -d /var/tmp/caulk-fleet-bench.XXXXXX)
registry_pid=
cleanup() {
  # wait returns the killed registry's status: under set -e that would end
  # the cleanup before the work dir (GBs of registry blobs) is removed.
  if [ -n "$registry_pid" ]; then kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; fi
  if [ -n "${DOCKER_HOST:-}" ]; then
    for i in $(seq "$count"); do
      /usr/bin/docker rmi -f "caulk-fleet-bench/app-$i:v1" "caulk-fleet-bench/app-$i:patched" >/dev/null 2>&1 || true
    done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/registry}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port}
YAML
/usr/bin/docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
registry_pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

{
  echo "apiVersion: copa.sh/v1alpha1"
  echo "kind: PatchConfig"
  echo "images:"
  for i in $(seq "$count"); do
    "$caulk" -q image copy "oci:$layout:app-$i" "127.0.0.1:$port/app-$i:v1" >/dev/null
    printf '  - name: app-%d\n    image: 127.0.0.1:%d/app-%d\n    tags: {strategy: list, list: [v1]}\n' "$i" "$port" "$i"
  done
} >"$work/registry.yaml"
# One layout per image: concurrent jobs never write one layout together.
{
  echo "apiVersion: caulk.sh/v1alpha1"
  echo "kind: PatchConfig"
  echo "images:"
  for i in $(seq "$count"); do
    "$caulk" -q image copy "oci:$layout:app-$i" "oci:$work/oci/app-$i:v1" >/dev/null
    printf '  - name: app-%d\n    image: oci:%s\n    tags: {strategy: list, list: [v1]}\n' "$i" "$work/oci/app-$i"
  done
} >"$work/oci.yaml"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
stats() { sort -n | awk '{a[NR]=$1} END {printf "%7.1f s  (min %.1f, max %.1f)", a[int((NR+1)/2)], a[1], a[NR]}'; }

for source in $sources; do
  # A cache per source, none deleted before the end (see benches/patch.sh:
  # ext4 slows file creation where many files were just deleted).
  cache=$work/cache-$source
  for i in $(seq "$rounds"); do
    sync
    start=$(date +%s.%N)
    # shellcheck disable=SC2086 # CAULK_FLEET_ARGS is words on purpose
    CAULK_CACHE_DIR=$cache "$caulk" patch --json --config "$work/$source.yaml" ${CAULK_FLEET_ARGS:-} >"$work/summary.json"
    end=$(date +%s.%N)
    echo "$end - $start" | bc >>"$work/$source.times"
    patched=$(jq '[.rows[] | select(.status == "patched")] | length' "$work/summary.json")
    test "$patched" = "$count" || { echo "$source round $i: $patched of $count patched" >&2; exit 1; }
    echo "caulk ($source) round $i: $(tail -1 "$work/$source.times") s ($patched images)"
  done
done

DOCKER_HOST=$(bash tests/scripts/dockerd.sh start)
export DOCKER_HOST
mkdir -p "$work/ctx"
for i in $(seq "$count"); do
  "$caulk" -q image copy "oci:$layout:app-$i" "docker-daemon:caulk-fleet-bench/app-$i:v1" --docker-host "$DOCKER_HOST" >/dev/null
done
for r in $(seq "${DOCKER_ROUNDS:-$rounds}"); do
  sync
  start=$(date +%s.%N)
  for i in $(seq "$count"); do
    printf 'FROM caulk-fleet-bench/app-%d:v1\nRUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -qq\n' "$i" >"$work/ctx/Dockerfile"
    DOCKER_BUILDKIT=0 /usr/bin/docker build --no-cache --network host -q -t "caulk-fleet-bench/app-$i:patched" "$work/ctx" >/dev/null
  done
  end=$(date +%s.%N)
  echo "$end - $start" | bc >>"$work/docker.times"
  echo "docker round $r: $(tail -1 "$work/docker.times") s"
  for i in $(seq "$count"); do /usr/bin/docker rmi -f "caulk-fleet-bench/app-$i:patched" >/dev/null; done
done

d=$(median <"$work/docker.times")
printf '\n%d images, %d caulk and %d docker rounds; median (min, max):\n' "$count" "$rounds" "${DOCKER_ROUNDS:-$rounds}"
for source in $sources; do
  printf '  caulk patch --config, %-8s %s  round 1 cold: %.1f s\n' "$source" "$(stats <"$work/$source.times")" "$(head -1 "$work/$source.times")"
done
printf '  %d x docker build           %s\n' "$count" "$(stats <"$work/docker.times")"
for source in $sources; do
  printf '  caulk (%s) / docker: %.2f (goal <= 0.25)\n' "$source" "$(echo "$(median <"$work/$source.times") / $d" | bc -l)"
done
