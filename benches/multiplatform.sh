#!/bin/bash
# Two-platform update-all of the Debian 12 index tests/images/multiarch-debian.sh
# builds (amd64 natively, arm64 under qemu-user): one `caulk patch` over
# both platforms (--jobs 2) against the two platforms patched one after the
# other (`--platform linux/amd64`, then `--platform linux/arm64`). Prints the
# last two-platform run's phases per platform (when each started, how long
# each step took), then the wall times and their ratio (together / one after
# the other).
#
#   benches/multiplatform.sh [ROUNDS]     (default 1; the median of each is reported)
#
# CAULK_BIN=PATH uses that binary instead of building a release one. Needs
# root, network to the Debian mirrors, qemu-aarch64 registered (scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-1}

if [ -z "${CAULK_BIN:-}" ]; then
  cargo build --release --quiet -p caulk
  CAULK_BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/caulk
fi
layout=$(tests/images/multiarch-debian.sh bookworm)
work=$(mktemp -d /var/tmp/caulk-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# One caulk run on a fresh copy, with empty step caches (apt indexes and
# downloads) so both ways fetch what they need. Its progress lines, with
# the time each was printed, go to $work/last.log.
patch() {
  rm -rf "$work/c" "$work/cache/steps" && cp -a "$layout" "$work/c"
  sync
  CAULK_CACHE_DIR=$work/cache "$CAULK_BIN" patch --json -v -i "oci:$work/c:bookworm" -t out \
    --timeout 60m --working-folder "$work/w" "$@" 2>&1 >"$work/summary.json" |
    while IFS= read -r line; do printf '%s %s\n' "$(date +%T.%N | cut -c1-12)" "$line"; done >"$work/last.log"
  test "$(jq -r .result "$work/summary.json")" = patched
}

# Reports of nothing: runs that unpack each platform's layers and stop at
# "nothing to patch", so both ways start with a warm layer cache.
cp -a "$layout" "$work/c"
for arch in amd64 arm64; do
  python3 tests/images/apt-report.py "$(tests/images/vulnerable-debian.sh bookworm "" $arch)" bookworm \
    >"$work/empty-$arch.json" 2>/dev/null
  CAULK_CACHE_DIR=$work/cache "$CAULK_BIN" patch --json -i "oci:$work/c:bookworm" -t unused \
    -r "$work/empty-$arch.json" --working-folder "$work/w" >/dev/null
done
for i in $(seq "$rounds"); do
  start=$(date +%s.%N)
  patch --jobs 2
  end=$(date +%s.%N)
  echo "$end - $start" | bc >>"$work/together.times"
  cp "$work/last.log" "$work/together.log"

  start=$(date +%s.%N)
  patch --platform linux/amd64
  patch --platform linux/arm64
  end=$(date +%s.%N)
  echo "$end - $start" | bc >>"$work/apart.times"
done

# Where the time went in the last run of both: each platform's phases and
# steps, with when they started and how long the steps took.
echo "last run of both platforms, phase by phase:"
grep -E 'INFO linux/' "$work/together.log" | sed -E 's/ +INFO / /' || true
echo
together=$(median <"$work/together.times")
apart=$(median <"$work/apart.times")
printf 'both platforms in one run (--jobs 2): %6.1f s\n' "$together"
printf 'one platform after the other:        %6.1f s\n' "$apart"
printf 'ratio: %.2f\n' "$(echo "$together / $apart" | bc -l)"
