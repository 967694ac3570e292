#!/usr/bin/env python3
"""Writes a Trivy-format (SchemaVersion 2) report for an image layout built by
vulnerable-debian.sh, from what apt says *now*: for each named package that
is installed, the installed version (dpkg status of the image) and the
candidate of the image's own apt sources (`apt-cache policy` against a fresh
index). Packages whose candidate is newer become findings fixed in the
candidate; no scanner runs.

Usage: apt-report.py LAYOUT REF PACKAGE... > report.json
       apt-report.py LAYOUT REF --all-behind > report.json  (every installed package)
A package named like `nope-*` that is not installed becomes a finding anyway
(fixed in 99), for tests of packages that do not exist in the image.
"""
import json
import os
import subprocess
import sys
import tarfile
import tempfile

layout, ref, packages = sys.argv[1], sys.argv[2], sys.argv[3:]


def blob(digest):
    return os.path.join(layout, "blobs", *digest.split(":"))


index = json.load(open(os.path.join(layout, "index.json")))
entry = next(m for m in index["manifests"]
             if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref)
manifest = json.load(open(blob(entry["digest"])))
config = json.load(open(blob(manifest["config"]["digest"])))

with tempfile.TemporaryDirectory() as root:
    wanted = ("var/lib/dpkg/status", "etc/apt/", "etc/os-release", "usr/lib/os-release")
    for layer in manifest["layers"]:
        with tarfile.open(blob(layer["digest"])) as tar:
            members = [m for m in tar.getmembers()
                       if m.name.lstrip("./").startswith(wanted) and (m.isfile() or m.isdir())]
            tar.extractall(root, members=members, filter="data")
    for d in ("var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "var/lib/dpkg"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    apt = ["-o", f"Dir={root}/", "-o", f"Dir::State::status={root}/var/lib/dpkg/status",
           "-o", "Debug::NoLocking=1", "-o", f"APT::Architecture={config['architecture']}",
           "-o", "Dir::Etc::preferencesparts=/dev/null", "-o", "APT::Sandbox::User=root"]
    subprocess.run(["apt-get", *apt, "-qq", "update"], check=True, stdout=sys.stderr)
    os_release = {}
    for name in ("etc/os-release", "usr/lib/os-release"):
        path = os.path.join(root, name)
        if os.path.isfile(path):
            for line in open(path):
                if "=" in line:
                    k, v = line.strip().split("=", 1)
                    os_release[k] = v.strip('"')
            break
    if packages == ["--all-behind"]:
        listed = subprocess.run(
            ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f=${Package}\\t${db:Status-Abbrev}\\n"],
            capture_output=True, text=True, check=True).stdout
        packages = [line.split("\t")[0] for line in listed.splitlines() if line.split("\t")[1].startswith("ii")]
    installed = {}
    for package in packages:
        version = subprocess.run(
            ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f=${Version}", package],
            capture_output=True, text=True).stdout.strip()
        if version:
            installed[package] = version
    candidates = {}
    if installed:
        policy = subprocess.run(["apt-cache", *apt, "policy", *installed],
                                capture_output=True, text=True, check=True).stdout
        current = None
        for line in policy.splitlines():
            if line and not line.startswith(" "):
                current = line.rstrip(":").split(":")[0]
            elif line.strip().startswith("Candidate:") and current:
                candidates[current] = line.split(":", 1)[1].strip()
    vulns = []
    for package in packages:
        if package not in installed:
            if package.startswith("nope-"):
                vulns.append((package, "1.0", "99"))
            continue
        candidate = candidates.get(package, "")
        newer = candidate and candidate != "(none)" and subprocess.run(
            ["dpkg", "--compare-versions", candidate, "gt", installed[package]]).returncode == 0
        if newer:
            vulns.append((package, installed[package], candidate))

report = {
    "SchemaVersion": 2,
    "ArtifactName": f"{layout}:{ref}",
    "ArtifactType": "container_image",
    "Metadata": {
        "OS": {"Family": os_release.get("ID", "debian"), "Name": os_release.get("VERSION_ID", "")},
        "ImageConfig": {"architecture": config["architecture"], "os": config["os"]},
    },
    "Results": [{
        "Target": f"{ref} ({os_release.get('ID', 'debian')} {os_release.get('VERSION_ID', '')})",
        "Class": "os-pkgs",
        "Type": os_release.get("ID", "debian"),
        "Vulnerabilities": [{
            "VulnerabilityID": f"TEST-{ref}-{name}",
            "PkgName": name,
            "InstalledVersion": installed,
            "FixedVersion": fixed,
            "Status": "fixed",
            "Severity": "HIGH",
        } for name, installed, fixed in vulns],
    }],
}
json.dump(report, sys.stdout, indent=2)
