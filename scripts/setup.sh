#!/usr/bin/env bash
# Installs every system package bhatti needs on a Debian/Ubuntu host, the
# Python tools the tests run (PyPI's openapi-spec-validator, schemathesis and
# the E2B SDK, in a venv at $BHATTI_CACHE_DIR/venv), the npm packages of web/
# (xterm.js) and tests/e2b-js/ (the E2B JS SDK), then builds the guest
# images (kernel, rootfs tiers) into the image cache ($BHATTI_CACHE_DIR,
# default /var/cache/bhatti, outside the clone).
#
#   scripts/setup.sh                 # packages + kernel + busybox, minimal, interpreter tiers
#   BHATTI_TIERS=busybox scripts/setup.sh  # only the busybox tier
#   BHATTI_TIERS=all scripts/setup.sh  # + the Debian `dev` tier
#   scripts/setup.sh --packages          # system packages only (scripts/install.sh)
#   scripts/setup.sh --runtime-packages  # only what `bhatti serve` needs (a release)
#
# BHATTI_TIERS is a comma-separated list of busybox, minimal, interpreter,
# dev, all. The default (what CI runs) builds `minimal` too (the E2B SDK's
# tests run commands with bash, which busybox lacks) and `interpreter`
# (minimal + a Jupyter kernel: the code-interpreter SDK's tests), not the
# `dev` tier: that is
# large (about 700 MiB of files, a few hundred MB from the Debian mirror);
# its VM test runs once it is built.
#
# Safe to run again: packages already present are skipped and images are
# rebuilt only when their inputs changed.
set -euo pipefail
cd "$(dirname "$0")/.."

# What `bhatti serve` needs on a host (VMM, disks, sandbox networking).
RUNTIME_PACKAGES=(qemu-system-x86 qemu-utils e2fsprogs iproute2 nftables ca-certificates)
PACKAGES=(
  "${RUNTIME_PACKAGES[@]}"
  # guest images
  busybox-static debootstrap
  # guest kernel build (from Debian's kernel source)
  linux-source-6.1 build-essential flex bison bc libelf-dev libssl-dev
  cpio xz-utils kmod
  # tooling used by scripts; shellcheck lints them (crates/bhatti/tests/install.rs)
  file shellcheck
  # the OpenAPI document's validator (crates/server/tests/openapi.rs)
  python3 python3-venv
  # OCI import tests (crates/oci/tests/fetch_registry.rs, fetch_local.rs):
  # a local registry, and test images built with umoci, copied with skopeo
  docker-registry skopeo umoci
  # their self-signed TLS and token-server keys (fetch_registry.rs, fetch_bearer.rs)
  openssl
  # the web UI's browser tests (tests/web) drive Debian's headless Chromium
  # (npm, for web/, is installed by install_web only where it is missing:
  # a Node.js from elsewhere brings its own and conflicts with Debian's)
  chromium chromium-driver
)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then SUDO=sudo; else
      echo "setup needs root (or sudo) to install packages" >&2; exit 1; fi
  else SUDO=; fi
}

# The packages of PACKAGES that are not installed, one per line.
missing_packages() {
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
      || echo "$p"
  done
}

apt_install() {
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "$@" >/dev/null
}

install_packages() {
  local missing=()
  mapfile -t missing < <(missing_packages)
  if [ ${#missing[@]} -eq 0 ]; then
    say "system packages: all present"
    return
  fi
  need_root
  say "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  apt_install "${missing[@]}"
  # Installing one package can remove another that conflicts with it: a
  # qemu-utils from backports goes when Debian's qemu-system-x86 comes in.
  # Install what is missing now (Debian's matching version) once more.
  mapfile -t missing < <(missing_packages)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing (removed by the first install): ${missing[*]}"
    apt_install "${missing[@]}"
  fi
  mapfile -t missing < <(missing_packages)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: still not installed: ${missing[*]}" >&2
    exit 1
  fi
}

# web/node_modules from the committed lock file (the UI embeds the copies in
# web/assets/vendor; `npm run vendor` in web/ refreshes them after an upgrade).
install_web() {
  if ! command -v npm >/dev/null; then
    PACKAGES=(nodejs npm)
    install_packages
  fi
  say "npm ci in web/ (xterm.js)"
  (cd web && npm ci --no-audit --no-fund --silent)
  say "npm ci in tests/e2b-js/ (the E2B JS SDK)"
  (cd tests/e2b-js && npm ci --no-audit --no-fund --silent)
}

check_rust() {
  if ! command -v cargo >/dev/null; then
    echo "cargo not found: install Rust 1.95 (rustup) first" >&2; exit 1
  fi
}

# PyPI's openapi-spec-validator, schemathesis and e2b (the E2B SDK), pinned,
# in a venv under the cache dir (not the system Python);
# crates/server/tests/openapi.rs runs the validator, the VM test
# fuzz::schemathesis_against_a_daemon the fuzzer, e2b::python_sdk the SDK's
# tests (tests/e2b), e2b::code_interpreter the code-interpreter SDK's
# (tests/e2b-interpreter), web_ui::browser the UI's browser tests (tests/web, selenium).
PY_TOOLS=(openapi-spec-validator==0.9.0 schemathesis==4.32.5 e2b==2.63.0
  e2b-code-interpreter==2.11.5 selenium==4.50.0)
install_validator() {
  local venv="${BHATTI_CACHE_DIR:-/var/cache/bhatti}/venv"
  local missing=() t have
  for t in "${PY_TOOLS[@]}"; do
    have=$("$venv/bin/pip" show "${t%%==*}" 2>/dev/null | sed -n 's/^Version: //p' || true)
    [ "$have" = "${t#*==}" ] || missing+=("$t")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "python tools (${PY_TOOLS[*]}): present"
    return
  fi
  say "installing ${missing[*]} into $venv"
  if [ ! -w "$(dirname "$venv")" ] && [ ! -w "$venv" ]; then need_root; else SUDO=; fi
  $SUDO mkdir -p "$venv"
  [ -x "$venv/bin/pip" ] || $SUDO python3 -m venv "$venv"
  $SUDO "$venv/bin/pip" install --quiet "${missing[@]}"
}

case "${1:-}" in
  --packages) install_packages; exit ;;
  --runtime-packages) PACKAGES=("${RUNTIME_PACKAGES[@]}"); install_packages; exit ;;
  "") ;;
  *) echo "usage: scripts/setup.sh [--packages|--runtime-packages]" >&2; exit 2 ;;
esac
install_packages
install_validator
install_web
check_rust
say "building guest images (kernel, rootfs tiers: ${BHATTI_TIERS:-busybox,minimal,interpreter})"
cargo xtask images --tier "${BHATTI_TIERS:-busybox,minimal,interpreter}"
