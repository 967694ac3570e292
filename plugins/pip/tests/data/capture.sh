#!/bin/sh
# Copies the files the pip plugin reads from the Debian 12 test image (built
# by tests/support/mod.rs, base_image()) into roots/bookworm-python, and
# fetches the PyPI pages the look-up tests answer from:
#
#   sh tests/data/capture.sh /var/tmp/caulk-test-cache/pip/bookworm-python-v2
#
# With a second argument, copies the same files of another root (the image
# after tests/real_pip.rs patched it) into roots/NAME and fetches nothing.
set -eu
image=$1
name=${2:-bookworm-python}
here=$(cd "$(dirname "$0")" && pwd)
root=$here/roots/$name
rm -rf "$root"
mkdir -p "$root"
cd "$image"
# Distribution metadata of every environment, pyvenv.cfg files, the PEP 668
# marker and os-release, byte for byte.
find usr/lib/python3/dist-packages usr/local/lib/python3.11/dist-packages \
     opt/app/venv/lib/python3.11/site-packages srv/nopip/lib/python3.11/site-packages \
     opt/legacy/lib/python3.9/site-packages \
     -path '*-info/*' \( -name METADATA -o -name RECORD -o -name INSTALLER -o -name top_level.txt \
     -o -name PKG-INFO -o -name requires.txt \) -print > /tmp/caulk-capture.list
printf '%s\n' opt/app/venv/pyvenv.cfg srv/nopip/pyvenv.cfg usr/lib/python3.11/EXTERNALLY-MANAGED \
    etc/os-release >> /tmp/caulk-capture.list
# Of setuptools' vendored copies only wheel's is kept (the vendored-copy
# case); pip's own RECORDs are large and unused.
grep -v -e '/setuptools/_vendor/' -e '/pip-23.0.1.dist-info/RECORD' /tmp/caulk-capture.list > /tmp/caulk-capture.keep
grep '/setuptools/_vendor/wheel-0.43.0.dist-info/' /tmp/caulk-capture.list >> /tmp/caulk-capture.keep
tar -cf - -T /tmp/caulk-capture.keep | tar -xf - -C "$root"
# The standard library is recognised by its os.py and the system CA bundle
# by its path; their contents do not matter, so they are empty here.
mkdir -p "$root/usr/lib/python3.11" "$root/etc/ssl/certs"
: > "$root/usr/lib/python3.11/os.py"
: > "$root/etc/ssl/certs/ca-certificates.crt"
[ "$name" = bookworm-python ] || exit 0
# PyPI's simple API pages (PEP 691 JSON), compressed.
mkdir -p "$here/pypi"
for p in urllib3 requests certifi idna jinja2 markupsafe chardet; do
    curl -sS --fail -H 'Accept: application/vnd.pypi.simple.v1+json' "https://pypi.org/simple/$p/" \
        | gzip -9n > "$here/pypi/$p.json.gz"
done
