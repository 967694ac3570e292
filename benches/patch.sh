#!/bin/bash
# Patches the vulnerable Debian 12 image four ways in one run, for the
# same packages: caulk (local executor), buildah (FROM the image, RUN apt-get
# update && apt-get install ..., commit to an OCI layout), docker build on
# Debian's dockerd (started by tests/scripts/dockerd.sh) and caulk with
# --engine buildkit on that dockerd's BuildKit (the image already in its
# store, as for docker build; the result written back there). Prints the
# wall times and their ratios, caulk's own overhead (total minus the time
# inside package-manager steps) and caulk's peak RSS.
#
#   benches/patch.sh [ROUNDS]     (default 3; the median of each is reported)
#
# Needs root, network to the Debian mirrors, and the packages scripts/test.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}

cargo build --release --quiet -p caulk
caulk=${CARGO_TARGET_DIR:-$PWD/target}/release/caulk
layout=$(tests/images/vulnerable-debian.sh bookworm)
work=$(mktemp -d /var/tmp/caulk-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

python3 tests/images/apt-report.py "$layout" bookworm --all-behind >"$work/report.json" 2>/dev/null
mapfile -t names < <(jq -r '.Results[0].Vulnerabilities[].PkgName' "$work/report.json")
echo "packages behind: ${#names[@]} (${names[*]})"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# caulk: a fresh cache per round, so it downloads indexes and packages as
# the others do; the layer cache (unpacked base layers) is warm after the
# first round, as it would be for a second image of the same base.
for i in $(seq "$rounds"); do
  rm -rf "$work/c" && cp -a "$layout" "$work/c"
  rm -rf "$work/cache/steps"
  # The copy's dirty pages would otherwise be written back during the run.
  sync
  start=$(date +%s.%N)
  CAULK_CACHE_DIR=$work/cache /usr/bin/time -f '%M' -o "$work/rss" \
    "$caulk" patch --json -i "oci:$work/c:bookworm" -r "$work/report.json" --working-folder "$work/w" \
    >"$work/summary.json"
  end=$(date +%s.%N)
  echo "$end - $start" | bc >>"$work/caulk.times"
  jq '.timings.total_ms - .timings.steps_ms - .timings.probes_ms' "$work/summary.json" >>"$work/caulk.overhead"
  cat "$work/rss" >>"$work/caulk.rss"
  test "$(jq -r .result "$work/summary.json")" = patched
done

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

# docker build on Debian's dockerd (classic builder: --network host works
# with a daemon that has no bridge); loading the image is not timed.
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
  /usr/bin/docker rmi -f "caulk-bench:patched-$i" >/dev/null
done

# caulk on the same dockerd's BuildKit, its build cache emptied before each
# round (docker build above runs with --no-cache).
for i in $(seq "$rounds"); do
  /usr/bin/docker builder prune -af >/dev/null
  rm -rf "$work/cache/steps"
  sync
  start=$(date +%s.%N)
  CAULK_CACHE_DIR=$work/cache "$caulk" patch --json -i docker-daemon:caulk-bench:vulnerable \
    -r "$work/report.json" -t "bk-$i" --engine buildkit --addr "docker-unix://${DOCKER_HOST#unix://}" \
    --working-folder "$work/w" >"$work/bk-summary.json"
  end=$(date +%s.%N)
  echo "$end - $start" | bc >>"$work/bk.times"
  test "$(jq -r .result "$work/bk-summary.json")" = patched
  /usr/bin/docker rmi -f "caulk-bench:bk-$i" >/dev/null
done
/usr/bin/docker rmi -f caulk-bench:vulnerable >/dev/null

c=$(median <"$work/caulk.times"); b=$(median <"$work/buildah.times"); d=$(median <"$work/docker.times")
k=$(median <"$work/bk.times")
o=$(median <"$work/caulk.overhead"); r=$(median <"$work/caulk.rss")
fastest=$(printf '%s\n%s\n' "$b" "$d" | sort -n | head -1)
printf '\nmedian of %d rounds, %d packages:\n' "$rounds" "${#names[@]}"
printf '  caulk patch        %6.2f s  (own overhead %d ms, peak RSS %d MB)\n' "$c" "$o" "$((r / 1024))"
printf '  buildah            %6.2f s\n' "$b"
printf '  docker build       %6.2f s\n' "$d"
printf '  caulk --engine buildkit %6.2f s  (%.2f x docker build, goal <= 1.2)\n' "$k" "$(echo "$k / $d" | bc -l)"
printf '  caulk / fastest of the two: %.2f (goal <= 0.5)\n' "$(echo "$c / $fastest" | bc -l)"
