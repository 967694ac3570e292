# shellcheck shell=bash
# Shared by scripts/quickstart.sh and scripts/test.sh: step reporting and
# installing what a fresh Debian 12 machine with only a rustup toolchain
# lacks. Sourced, not run.

# The step in progress, named by the error trap when a command fails.
CAULK_STEP="starting"

step() {
  CAULK_STEP=$1
  printf '\n== %s (%s)\n' "$1" "$(date +%T)"
}

die() {
  printf 'error: %s\n' "$1" >&2
  [ -n "${2:-}" ] && printf '  hint: %s\n' "$2" >&2
  exit 1
}

# Every command that fails under `set -e` ends here, so no step fails silently.
on_error() {
  local status=$?
  printf '\nerror: step "%s" failed (exit %s, %s line %s)\n' "$CAULK_STEP" "$status" "${BASH_SOURCE[1]:-$0}" "${BASH_LINENO[0]}" >&2
  exit "$status"
}
trap on_error ERR
set -o errtrace

need_root() {
  [ "$(id -u)" = 0 ] || die "$1 needs root" "run it as root (sudo $0): the local executor mounts overlayfs and runs bubblewrap"
}

# Installs the Debian packages named that are not installed yet; runs
# apt-get update only when something is missing.
install_packages() {
  local missing=() package
  for package in "$@"; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$package" 2>/dev/null | grep -q '^ii' || missing+=("$package")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "all present: $*"
    return
  fi
  command -v apt-get >/dev/null || die "apt-get not found; missing packages: ${missing[*]}" "this script is for Debian 12; install them with your package manager"
  echo "installing: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The toolchain rust-toolchain.toml pins, with its components and the wasm
# target the built-in plugins are compiled for (rustup does not add targets
# on first use here).
ensure_rust() {
  command -v rustup >/dev/null || die "rustup not found" "install Rust with rustup (https://rustup.rs), then run this again"
  local toolchain
  toolchain=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
  rustup toolchain list | grep -q "^$toolchain" \
    || rustup toolchain install "$toolchain" --profile minimal --component rustfmt,clippy
  # A toolchain that was already there may lack them (a minimal profile).
  rustup component add --toolchain "$toolchain" rustfmt clippy
  rustup target list --toolchain "$toolchain" --installed | grep -qx wasm32-wasip2 \
    || rustup target add --toolchain "$toolchain" wasm32-wasip2
  cargo --version
}

# Fails unless DIR's file system has at least GIB GiB free.
need_space() {
  local dir=$1 gib=$2 free
  mkdir -p "$dir"
  free=$(df -Pk "$dir" | awk 'NR == 2 {print int($4 / 1048576)}')
  [ "$free" -ge "$gib" ] || die "only $free GiB free under $dir; $3 needs about $gib GiB" "free some space or point it elsewhere"
  echo "$dir: $free GiB free"
}

# Fails unless URL answers within 20 s.
need_url() {
  if ! command -v curl >/dev/null; then
    echo "curl is missing: not checking $1"
    return
  fi
  curl -sSfI --max-time 20 -o /dev/null "$1" \
    || die "cannot reach $1" "$2"
  echo "reachable: $1"
}
