#!/usr/bin/env bash
# Builds the Debian package mbd_<version>_<arch>.deb into target/debian/ and checks it with
# lintian. Needs debhelper, lintian, and the Rust toolchain on PATH (Rust >= 1.85, e.g.
# rustup's: Debian 12's cargo is too old, so build dependencies are not checked for it).
#
#   scripts/package.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v dh >/dev/null || { echo "package.sh: install debhelper" >&2; exit 1; }
dpkg-checkbuilddeps || { echo "package.sh: install the build dependencies above" >&2; exit 1; }
dpkg-buildpackage -b -us -uc -d
version=$(dpkg-parsechangelog -S Version)
arch=$(dpkg --print-architecture)
mkdir -p target/debian
for f in "../mbd_${version}_${arch}.deb" "../mbd_${version}_${arch}.changes" \
    "../mbd_${version}_${arch}.buildinfo" "../mbd-dbgsym_${version}_${arch}.deb"; do
    [ -e "$f" ] && mv "$f" target/debian/
done
deb="target/debian/mbd_${version}_${arch}.deb"
echo "built $deb"
if command -v lintian >/dev/null; then
    lintian --fail-on error --info "$deb"
fi
