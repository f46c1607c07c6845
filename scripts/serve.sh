#!/usr/bin/env bash
# One command to run bhatti on this host: installs prerequisites, builds the
# guest images (every tier: the Debian `minimal` tier users get by default,
# `interpreter` for E2B's code interpreter and the larger `dev` tier;
# BHATTI_TIERS=busybox,minimal,interpreter skips dev),
# builds bhatti and starts the daemon in the foreground.
#
#   scripts/serve.sh [extra args for `bhatti serve`]
set -euo pipefail
cd "$(dirname "$0")/.."
BHATTI_TIERS=${BHATTI_TIERS:-all} scripts/setup.sh
cargo build --release -p bhatti
exec target/release/bhatti serve "$@"
