#!/usr/bin/env bash
# One command for everything: installs prerequisites, builds the guest
# images, then runs every test tier (protocol, agent, VM) and the lint gates.
#
#   scripts/test.sh [extra args passed to the test runner]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
say "tests"
cargo xtask test "$@"
