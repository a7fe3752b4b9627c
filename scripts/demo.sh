#!/usr/bin/env bash
# Builds mbd and makes a signed APT repository from the fixture packages in ./mbd-home (or
# $MBD_HOME), then prints the apt entry that uses it. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
MBD=target/release/mbd
HOME_DIR=$(realpath -m "${MBD_HOME:-mbd-home}")
"$MBD" --home "$HOME_DIR" setup --identity demo --distributions bookworm:amd64+i386 \
    --repositories test:Default:bookworm
if ! "$MBD" --home "$HOME_DIR" repo ls mbd-hello | grep -q 'bookworm-test-unstable '; then
    "$MBD" --home "$HOME_DIR" repo include bookworm-test-unstable fixtures/pkg/mbd-hello_1.0-1~test12+1_amd64.changes
    "$MBD" --home "$HOME_DIR" repo include bookworm-test-unstable fixtures/pkg/mbd-hello_1.0-2~test12+1_amd64.changes
    "$MBD" --home "$HOME_DIR" repo migrate mbd-hello bookworm-test-unstable --full
fi
"$MBD" --home "$HOME_DIR" repo ls mbd-hello
"$MBD" --home "$HOME_DIR" pub-key --binary > "$HOME_DIR/archive.pgp"
cat <<TXT

A signed repository is in $HOME_DIR/repositories/test. For apt (/etc/apt/sources.list.d/mbd.sources):

Types: deb deb-src
URIs: file:$HOME_DIR/repositories/test
Suites: bookworm-test-unstable bookworm-test-stable
Components: main
Signed-By: $HOME_DIR/archive.pgp
TXT
