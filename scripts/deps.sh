#!/usr/bin/env bash
# Installs the Debian packages mbd needs to build and to run its tests (Debian 12 or later).
# Idempotent; uses sudo when not run as root.
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
PACKAGES=(
    # build: C compilers and make (liblzma, zstd, jemalloc are built from source), and
    # sequoia-openpgp's nettle backend (bindgen needs libclang)
    build-essential pkg-config nettle-dev libclang-dev clang
    # tests: dpkg (version oracle), gpgv (signature checks), apt-ftparchive (Packages oracle)
    dpkg-dev xz-utils gpgv apt-utils
    # tests: the web UI in a real headless browser (Debian's selenium drives chromium)
    chromium chromium-driver python3-selenium
    # tests: uploads with the stock dput client; a certificate for HTTPS/FTPS
    dput openssl curl
    # setup: the release tables --from-origins selects codenames from
    distro-info-data
    # builds: chroots and sbuild (the daemon uses them; the build test runs them for real)
    sbuild schroot mmdebstrap debootstrap eatmydata arch-test lintian sudo autopkgtest
    # the real-package corpus (scripts/real-corpus.sh): dget, dch, debsign; signing
    devscripts libdistro-info-perl gnupg
    # the debmirror export is compared with Debian's debmirror; mail goes to a real SMTP
    # server on loopback (aiosmtpd)
    debmirror python3-aiosmtpd
    # the Debian package (scripts/package.sh)
    debhelper
)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
