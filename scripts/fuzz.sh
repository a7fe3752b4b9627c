#!/usr/bin/env bash
# Fuzzes the upload parsers (.changes, .dsc, .deb, changelog) with proptest mutations of the
# fixtures, in release mode, for SECONDS (default 60). See tests/fuzz.rs.
#
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
MBD_FUZZ_SECONDS=${1:-60} cargo test --release --test integration fuzz:: -- --nocapture
