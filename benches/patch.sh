#!/bin/bash
# Patches the vulnerable Debian 12 image (every package behind its security
# suite) with caulk's local engine, cold and warm, and with `docker build`
# doing the same upgrade on Debian's dockerd (started by
# tests/scripts/dockerd.sh), all in one run; prints min/median/max of each
# and the ratios of the medians (issue 16's goals: warm <= 0.5, cold <= 0.7).
#
#   benches/patch.sh [ROUNDS]     (default 3)
#
# caulk cold: an empty cache dir every round (layers unpacked, package
# indexes and packages downloaded, as docker build does, and caulk's
# built-in plugins compiled). caulk cold-image: the same with only the
# compiled plugins kept (caulk's own state from an earlier run of any
# image, as dockerd is already running for docker build). caulk warm: the
# cache of an untimed first run kept (a second image of the same base, or
# the same image patched again). Neither names --working-folder, so caulk
# picks memory or disk by the upgrade's size as it does for users.
# docker build: --no-cache, the image already in its store (loading it is
# not timed). BENCH_EXTRA=1 also times buildah and caulk --engine buildkit
# (from the OCI layout, sent to the daemon through caulk's session).
# $CAULK_BIN picks the binary (default: a release build). Needs root,
# network to the Debian mirrors, and the packages scripts/test.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}

if [ -z "${CAULK_BIN:-}" ]; then
  cargo build --release --quiet -p caulk
  CAULK_BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/caulk
fi
caulk=$CAULK_BIN
layout=$(tests/images/vulnerable-debian.sh bookworm)
work=$(mktemp -d /var/tmp/caulk-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

python3 tests/images/apt-report.py "$layout" bookworm --all-behind >"$work/report.json" 2>/dev/null
mapfile -t names < <(jq -r '.Results[0].Vulnerabilities[].PkgName' "$work/report.json")
echo "packages behind: ${#names[@]} (${names[*]})"

# Each cold round gets a cache dir of its own, and none is deleted before
# the end: on ext4, creating files where many were just deleted makes the
# kernel's inode allocator check each freed inode for a recent delete
# (`recently_deleted`), which took a cold round's layer unpacking from 1 s
# to 6 s when the round before's cache had just been removed. A runner with
# a fresh cache has no such deletes behind it.
cache=$work/cache

# One caulk run on a fresh copy of the layout; appends its wall time to
# $work/$1.times and its overhead (total minus the package manager's steps)
# to $work/$1.overhead.
caulk_round() {
  local kind=$1
  rm -rf "$work/c" && cp -a "$layout" "$work/c"
  # The copy's dirty pages would otherwise be written back during the run.
  sync
  local start end
  start=$(date +%s.%N)
  CAULK_CACHE_DIR=$cache /usr/bin/time -f '%M' -o "$work/rss" \
    "$caulk" patch --json -i "oci:$work/c:bookworm" -r "$work/report.json" >"$work/summary.json"
  end=$(date +%s.%N)
  test "$(jq -r .result "$work/summary.json")" = patched
  echo "$end - $start" | bc >>"$work/$kind.times"
  jq '.timings.total_ms - .timings.steps_ms - .timings.probes_ms' "$work/summary.json" >>"$work/$kind.overhead"
  cat "$work/rss" >>"$work/caulk.rss"
  echo "caulk $kind round: $(tail -1 "$work/$kind.times") s (steps $(jq .timings.steps_ms "$work/summary.json") ms)"
}

for i in $(seq "$rounds"); do
  cache=$work/cache-cold-$i
  caulk_round cold
done
plugins=$cache/plugins
for i in $(seq "$rounds"); do
  cache=$work/cache-cold-image-$i
  mkdir -p "$cache" && cp -a "$plugins" "$cache/"
  caulk_round cold-image
done
cache=$work/cache-cold-$rounds
# The last cold round left a full cache: the warm rounds start from it.
for _ in $(seq "$rounds"); do
  caulk_round warm
done

# docker build on Debian's dockerd (classic builder: --network host works
# with a daemon that has no bridge).
DOCKER_HOST=$(bash tests/scripts/dockerd.sh start)
export DOCKER_HOST
"$caulk" image copy "oci:$layout:bookworm" docker-daemon:caulk-bench:vulnerable --docker-host "$DOCKER_HOST" >/dev/null
mkdir -p "$work/ctx"
cat >"$work/ctx/Dockerfile" <<DOCKERFILE
FROM caulk-bench:vulnerable
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --only-upgrade ${names[*]}
DOCKERFILE
for i in $(seq "$rounds"); do
  sync
  start=$(date +%s.%N)
  DOCKER_BUILDKIT=0 /usr/bin/docker build --no-cache --network host -q -t "caulk-bench:patched-$i" "$work/ctx" >/dev/null
  end=$(date +%s.%N)
  echo "$end - $start" | bc >>"$work/docker.times"
  echo "docker build round: $(tail -1 "$work/docker.times") s"
  /usr/bin/docker rmi -f "caulk-bench:patched-$i" >/dev/null
done

if [ "${BENCH_EXTRA:-0}" = 1 ]; then
  # buildah, chroot isolation (no container runtime needed), host network.
  for i in $(seq "$rounds"); do
    root=$work/buildah-$i
    b=(buildah --root "$root/root" --runroot "$root/run" --storage-driver overlay)
    sync
    start=$(date +%s.%N)
    ctr=$("${b[@]}" from --quiet "oci:$layout:bookworm")
    "${b[@]}" run --isolation chroot --network host "$ctr" -- apt-get update -qq >/dev/null
    "${b[@]}" run --isolation chroot --network host --env DEBIAN_FRONTEND=noninteractive "$ctr" -- \
      apt-get install -y -qq --no-install-recommends --only-upgrade "${names[@]}" >/dev/null
    "${b[@]}" commit --quiet "$ctr" "oci:$root/out:patched" >/dev/null
    end=$(date +%s.%N)
    echo "$end - $start" | bc >>"$work/buildah.times"
    "${b[@]}" rm -a >/dev/null
    rm -rf "$root"
  done
  # caulk on the same dockerd's BuildKit, from the same OCI layout as the
  # local engine: the image goes to the daemon through caulk's session and
  # the result comes back through it. Before each round the daemon's build
  # cache is emptied (docker build above runs with --no-cache), so every
  # round sends the whole image and runs every step.
  for i in $(seq "$rounds"); do
    /usr/bin/docker builder prune -af >/dev/null
    rm -rf "$cache/steps" "$work/c" && cp -a "$layout" "$work/c"
    sync
    start=$(date +%s.%N)
    CAULK_CACHE_DIR=$cache "$caulk" patch --json -i "oci:$work/c:bookworm" \
      -r "$work/report.json" -t "bk-$i" --engine buildkit --addr "docker-unix://${DOCKER_HOST#unix://}" \
      >"$work/bk-summary.json"
    end=$(date +%s.%N)
    echo "$end - $start" | bc >>"$work/bk.times"
    test "$(jq -r .result "$work/bk-summary.json")" = patched
    echo "caulk --engine buildkit round: $(tail -1 "$work/bk.times") s"
  done
fi
/usr/bin/docker rmi -f caulk-bench:vulnerable >/dev/null

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
stats() { sort -n | awk '{a[NR]=$1} END {printf "%6.2f s  (min %.2f, max %.2f)", a[int((NR+1)/2)], a[1], a[NR]}'; }
cold=$(median <"$work/cold.times"); warm=$(median <"$work/warm.times"); d=$(median <"$work/docker.times")
cold_image=$(median <"$work/cold-image.times")
printf '\n%d rounds each, %d packages; median (min, max):\n' "$rounds" "${#names[@]}"
printf '  caulk patch, cold   %s  own overhead %d ms\n' "$(stats <"$work/cold.times")" "$(median <"$work/cold.overhead")"
printf '  caulk patch, cold, plugins compiled before  %s  own overhead %d ms\n' "$(stats <"$work/cold-image.times")" "$(median <"$work/cold-image.overhead")"
printf '  caulk patch, warm   %s  own overhead %d ms\n' "$(stats <"$work/warm.times")" "$(median <"$work/warm.overhead")"
printf '  docker build        %s\n' "$(stats <"$work/docker.times")"
if [ -f "$work/buildah.times" ]; then
  printf '  buildah             %s\n' "$(stats <"$work/buildah.times")"
  printf '  caulk --engine buildkit %s  (%.2f x docker build, goal <= 1.2)\n' \
    "$(stats <"$work/bk.times")" "$(echo "$(median <"$work/bk.times") / $d" | bc -l)"
fi
printf '  caulk peak RSS %d MB\n' "$(($(median <"$work/caulk.rss") / 1024))"
printf '  warm / docker build: %.2f (goal <= 0.5)\n' "$(echo "$warm / $d" | bc -l)"
printf '  cold / docker build: %.2f (goal <= 0.7)\n' "$(echo "$cold / $d" | bc -l)"
printf '  cold with plugins compiled before / docker build: %.2f\n' "$(echo "$cold_image / $d" | bc -l)"
