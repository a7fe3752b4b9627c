#!/usr/bin/env bash
# Fuzzes, in release mode, for SECONDS each (default 60):
#  - the upload parsers (.changes, .dsc, .deb, changelog) with proptest mutations of the
#    fixtures (tests/fuzz.rs);
#  - the real daemon's API (every call, generated and mutated arguments, anonymous and as
#    admin) and FTP command path (generated commands, garbage, vanishing sessions)
#    (tests/fuzz_network.rs).
#
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
MBD_FUZZ_SECONDS=${1:-60} cargo test --release --test integration fuzz -- --nocapture --test-threads 3
