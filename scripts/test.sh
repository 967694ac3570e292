#!/bin/bash
# The test command, on a Debian 12 machine with a rustup toolchain, as root:
# installs what the tests need, starts the Docker daemon they use, checks
# formatting and lints, and runs every test. CI (.ci/run) runs exactly this.
#
#   scripts/test.sh                 everything
#   scripts/test.sh NEXTEST_ARGS    setup, then only `cargo nextest run NEXTEST_ARGS`
#                                   (e.g. -p caulk-plugin-trivy), no fmt, clippy or doc tests
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step "checking the machine"
need_root "the test suite"

step "system packages"
# Each one is used by something here:
#   mmdebstrap        tests/images/*.sh build the real Debian roots the tests patch
#   bubblewrap        the local executor (host/crates/exec) and every test that patches
#   jq zstd           tests/images/*.sh write OCI layouts (synthetic.sh has a zstd layer)
#   python3 python3-pip python3-packaging
#                     tests/images/apt-report.py; plugins/pip's real_pip test runs the
#                     host's pip; sdk's version_python tests compare with `packaging`
#   skopeo            caulk-image's tests check caulk's output against skopeo's
#   docker-registry apache2-utils
#                     the registry tests (htpasswd for the auth tests)
#   docker.io         the docker-daemon: tests (tests/scripts/dockerd.sh)
#   rpm dnf createrepo-c
#                     tests/images/rpm.sh builds RPMs, a repository and rpm roots; the rpm
#                     updater's tests patch them with the host's dnf (and python3's http.server)
#   qemu-user-static binfmt-support arch-test
#                     tests/images/multiarch-debian.sh builds an arm64 root and the
#                     multi-platform tests patch it: arm64 binaries run under qemu-user
#   buildah time bc   benchmarks only: benches/patch.sh, benches/library.sh and
#                     caulk-image's image_io bench (not run here)
install_packages \
  ca-certificates util-linux \
  mmdebstrap bubblewrap jq zstd \
  python3 python3-pip python3-packaging \
  skopeo docker-registry apache2-utils docker.io \
  rpm dnf createrepo-c \
  qemu-user-static binfmt-support arch-test \
  buildah time bc

step "foreign architectures"
# qemu-aarch64 registered with the F flag (Debian's default for
# qemu-user-static): the kernel opens the interpreter at registration, so it
# runs inside bubblewrap's sandbox, where /usr/libexec is the image's.
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
update-binfmts --enable qemu-aarch64
grep -qx 'flags: .*F.*' /proc/sys/fs/binfmt_misc/qemu-aarch64

step "rust toolchain"
ensure_rust
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest

step "services"
# A private Docker Engine for the docker-daemon: transport tests.
CAULK_TEST_DOCKER_HOST=$(bash tests/scripts/dockerd.sh start)
export CAULK_TEST_DOCKER_HOST
trap 'bash tests/scripts/dockerd.sh stop || true' EXIT
echo "CAULK_TEST_DOCKER_HOST=$CAULK_TEST_DOCKER_HOST"

if [ $# -gt 0 ]; then
  step "tests: cargo nextest run $*"
  cargo nextest run --locked "$@"
  exit
fi

step "format"
cargo fmt --all --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
cargo nextest run --workspace --locked --no-fail-fast

step "doc tests"
cargo test --workspace --doc --locked

step "done"
