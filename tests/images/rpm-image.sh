#!/bin/bash
# Assembles an OCI image layout from a root built by rpm.sh, and prints
# nothing.
#
#   rpm-image.sh KIND PORT OUT_DIR
#
# KIND is a root of rpm.sh (toolless, azure), distroless (azure without its
# rpm database) or rpm-dnf.sh's (dnf). The image has two layers: the root,
# and a layer with /etc/yum.repos.d/caulk.repo pointing dnf at
# http://127.0.0.1:PORT/, where the test serves rpm.sh's repository. The
# image is named KIND.
set -euo pipefail
# shellcheck source=layout.sh
. "$(dirname "$0")/layout.sh"

kind=${1:?usage: rpm-image.sh KIND PORT OUT_DIR}
port=${2:?usage: rpm-image.sh KIND PORT OUT_DIR}
out=${3:?usage: rpm-image.sh KIND PORT OUT_DIR}
case $kind in
dnf) material=$("$(dirname "$0")/rpm-dnf.sh") ;;
*) material=$("$(dirname "$0")/rpm.sh") ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
case $kind in
# Azure Linux distroless: the container manifests and no rpm database.
distroless)
  cp "$material/azure.tar" "$work/root.tar"
  tar --delete -f "$work/root.tar" ./var/lib/rpm
  ;;
*) cp "$material/$kind.tar" "$work/root.tar" ;;
esac
mkdir -p "$work/repos/etc/yum.repos.d"
printf '[caulk-test]\nname=caulk test repository\nbaseurl=http://127.0.0.1:%s/\ngpgcheck=0\n' "$port" \
  >"$work/repos/etc/yum.repos.d/caulk.repo"
tar -c --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1700000000 \
  -C "$work/repos" ./etc/yum.repos.d/caulk.repo >"$work/repos.tar"
jq -n --arg kind "$kind" '{
  created: "2023-11-14T22:13:20Z", architecture: "amd64", os: "linux",
  config: {Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
           Cmd: ["/usr/bin/caulk-demo"], Labels: {"org.example.kind": $kind}},
  history: [{created: "2023-11-14T22:13:20Z", created_by: "dnf --installroot (tests/images/rpm.sh)"},
            {created: "2023-11-14T22:13:20Z", created_by: "caulk test: repository file"}]
}' >"$work/config.json"
oci_layout "$out" "$kind" "$work/config.json" "$work/root.tar" "$work/repos.tar"
