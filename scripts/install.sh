#!/usr/bin/env bash
# Sets up a bhatti host, from a clone or from a release (docs/install.md):
#
#   1. system packages (scripts/setup.sh: every package in a clone, only
#      the runtime ones for a release)
#   2. the guest images into the image cache (a clone builds them with
#      `cargo xtask images`; a release copies its prebuilt images/)
#   3. `bhatti` into <prefix>/bin (a clone builds it: cargo build --release)
#   4. the data dir and the daemon config <data_dir>/config.yaml
#   5. an operator API user (`bhatti user create`)
#   6. the invoking user's CLI config ~/.bhatti/config.yaml (url, token;
#      mode 0600, owned by $SUDO_USER under sudo)
#   7. the systemd unit bhatti.service, enabled and (re)started when systemd
#      runs this host
#
# A release is a directory holding this script, setup.sh, `bhatti`,
# bhatti.service and images/ (vmlinux, *.ext4, manifest.json); the script
# finds it next to itself, or give --from DIR.
#
# Safe to run again (an upgrade): packages and images already there are
# skipped, the binary is replaced and the daemon restarted — which keeps
# running VMs (KillMode=process, on_shutdown: keep). An existing daemon
# config, operator user or CLI config is never overwritten.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PREFIX=/usr/local
DATA_DIR=/var/lib/bhatti
CACHE_DIR=${BHATTI_CACHE_DIR:-/var/cache/bhatti}
LISTEN=127.0.0.1:8080
ON_SHUTDOWN=keep
TIERS=all
UNIT_DIR=/etc/systemd/system
SYSTEMD=1
PACKAGES=1
DRY_RUN=0
FROM=
OPERATOR=
CLI_CONFIG=
INVOKER=${SUDO_USER:-}
[ -n "$INVOKER" ] || INVOKER=$(id -un)

usage() {
  cat <<EOF
usage: install.sh [options]

Sets up this host to run bhatti (see docs/install.md). Run it as root
(sudo): it installs packages, writes /etc/systemd/system and <prefix>.

  --prefix DIR         install bhatti as DIR/bin/bhatti (default $PREFIX)
  --data-dir DIR       the daemon's data dir (default $DATA_DIR)
  --cache-dir DIR      the image cache (default \$BHATTI_CACHE_DIR or /var/cache/bhatti)
  --listen ADDR        the daemon's API address (default $LISTEN)
  --on-shutdown MODE   keep|snapshot: what stopping the daemon does to running
                       VMs (default keep; see docs/install.md)
  --operator NAME      the operator API user to create (default: the invoking
                       user, \$SUDO_USER under sudo)
  --cli-config PATH    the CLI config to write (default ~INVOKER/.bhatti/config.yaml)
  --tiers T            image tiers a clone builds, comma-separated:
                       busybox|minimal|dev|all (default $TIERS: every tier, the
                       large dev one included)
  --from DIR           install from the release in DIR (default: a clone when
                       this script is in one, else the release next to it)
  --unit-dir DIR       where the unit goes (default $UNIT_DIR)
  --no-systemd         do not install or start the systemd unit
  --no-packages        do not install system packages
  --dry-run            print every action, do none
  -h, --help           this help
EOF
}

die() { echo "install.sh: $*" >&2; exit 1; }
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }

# Runs a command, or prints it (shell-quoted, after "+ ") on a dry run.
run() {
  if [ "$DRY_RUN" = 1 ]; then
    printf '+'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

# write_file PATH MODE OWNER: stdin to PATH, atomically (a temp file in the
# same dir, then rename); OWNER is user[:group] or empty. A dry run prints
# the content, with any token masked.
write_file() {
  local path=$1 mode=$2 owner=$3 tmp content
  content=$(cat)
  if [ "$DRY_RUN" = 1 ]; then
    printf '+ write %q (mode %s%s)\n' "$path" "$mode" "${owner:+, owner $owner}"
    printf '%s\n' "$content" | sed -e 's/^token: .*/token: <the new key>/' -e 's/^/|   /'
    return
  fi
  tmp=$(mktemp "$(dirname "$path")/.install.XXXXXX")
  printf '%s\n' "$content" >"$tmp"
  chmod "$mode" "$tmp"
  [ -z "$owner" ] || chown "$owner" "$tmp"
  mv -f "$tmp" "$path"
}

parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --prefix) PREFIX=${2:?}; shift ;;
      --data-dir) DATA_DIR=${2:?}; shift ;;
      --cache-dir) CACHE_DIR=${2:?}; shift ;;
      --listen) LISTEN=${2:?}; shift ;;
      --on-shutdown) ON_SHUTDOWN=${2:?}; shift ;;
      --operator) OPERATOR=${2:?}; shift ;;
      --cli-config) CLI_CONFIG=${2:?}; shift ;;
      --tiers) TIERS=${2:?}; shift ;;
      --from) FROM=${2:?}; shift ;;
      --unit-dir) UNIT_DIR=${2:?}; shift ;;
      --no-systemd) SYSTEMD=0 ;;
      --no-packages) PACKAGES=0 ;;
      --dry-run) DRY_RUN=1 ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
  done
  case "$ON_SHUTDOWN" in keep|snapshot) ;; *) die "--on-shutdown: keep or snapshot" ;; esac
  [[ "$TIERS" =~ ^(busybox|minimal|dev|all)(,(busybox|minimal|dev|all))*$ ]] \
    || die "--tiers: comma-separated busybox, minimal, dev or all"
  [[ "$LISTEN" =~ :[0-9]+$ ]] || die "--listen: HOST:PORT, not $LISTEN"
  [ -n "$OPERATOR" ] || OPERATOR=$INVOKER
  [[ "$OPERATOR" =~ ^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$ ]] \
    || die "operator name '$OPERATOR': [a-zA-Z0-9][a-zA-Z0-9._-]{0,62} (give --operator)"
  for d in PREFIX DATA_DIR CACHE_DIR UNIT_DIR; do
    [[ "${!d}" = /* ]] || die "${d,,} must be an absolute path: ${!d}"
  done
}

# Where the binary, images and unit come from: MODE=clone (REPO) or
# MODE=release (FROM).
find_source() {
  if [ -n "$FROM" ]; then
    FROM=$(cd "$FROM" && pwd)
    MODE=release
  elif [ -x "$HERE/bhatti" ] && [ -d "$HERE/images" ]; then
    FROM=$HERE
    MODE=release
  elif [ -f "$HERE/../Cargo.toml" ] && [ -d "$HERE/../crates/bhatti" ]; then
    REPO=$(cd "$HERE/.." && pwd)
    MODE=clone
  else
    die "neither a clone nor a release here ($HERE); give --from DIR"
  fi
  if [ "$MODE" = release ]; then
    [ -x "$FROM/bhatti" ] || die "no executable $FROM/bhatti"
    [ -f "$FROM/images/vmlinux" ] || die "no $FROM/images/vmlinux"
    UNIT_SRC=$FROM/bhatti.service
    BIN_SRC=$FROM/bhatti
  else
    UNIT_SRC=$REPO/deploy/bhatti.service
    BIN_SRC=$REPO/target/release/bhatti
  fi
  [ "$SYSTEMD" = 0 ] || [ -f "$UNIT_SRC" ] || die "no unit file $UNIT_SRC"
}

step_packages() {
  [ "$PACKAGES" = 1 ] || { say "packages: skipped (--no-packages)"; return; }
  if [ "$MODE" = clone ]; then
    say "system packages (scripts/setup.sh --packages)"
    run "$REPO/scripts/setup.sh" --packages
  else
    [ -x "$FROM/setup.sh" ] || die "no $FROM/setup.sh (or give --no-packages)"
    say "system packages (setup.sh --runtime-packages)"
    run "$FROM/setup.sh" --runtime-packages
  fi
}

# A clone builds the binary and the images; a release copies its images.
step_build() {
  if [ "$MODE" = clone ]; then
    say "building bhatti and the guest images (tiers: $TIERS) into $CACHE_DIR"
    [ "$DRY_RUN" = 1 ] || command -v cargo >/dev/null \
      || die "cargo not found: install Rust (rustup), or run sudo env \"PATH=\$PATH\" $0"
    run cd "$REPO"
    run cargo build --release -p bhatti
    run env "BHATTI_CACHE_DIR=$CACHE_DIR" cargo xtask images --tier "$TIERS"
    return
  fi
  say "guest images from $FROM/images into $CACHE_DIR/images"
  if [ -f "$CACHE_DIR/images/manifest.json" ] \
    && cmp -s "$FROM/images/manifest.json" "$CACHE_DIR/images/manifest.json"; then
    note "already installed (same manifest)"
    return
  fi
  run install -d -m 0755 "$CACHE_DIR/images"
  local f name
  for f in "$FROM"/images/*; do
    name=$(basename "$f")
    # A new file renamed over the old: a sandbox being created from the old
    # one keeps reading it.
    run cp --sparse=always "$f" "$CACHE_DIR/images/.$name.new"
    run mv -f "$CACHE_DIR/images/.$name.new" "$CACHE_DIR/images/$name"
  done
}

step_binary() {
  say "bhatti into $PREFIX/bin"
  BHATTI=$PREFIX/bin/bhatti
  run install -d -m 0755 "$PREFIX/bin"
  run install -m 0755 "$BIN_SRC" "$BHATTI"
}

# The default image tier: minimal when it is (being) installed, else dev
# when that is, else busybox.
default_image() {
  if [ "$MODE" = clone ]; then
    case ",$TIERS," in
      *,all,*|*,minimal,*) echo minimal ;;
      *,dev,*) echo dev ;;
      *) echo busybox ;;
    esac
  else
    [ -f "$FROM/images/minimal.ext4" ] && echo minimal || echo busybox
  fi
}

step_daemon_config() {
  local cfg=$DATA_DIR/config.yaml
  say "data dir $DATA_DIR and daemon config $cfg"
  run install -d -m 0700 "$DATA_DIR"
  if [ -e "$cfg" ]; then
    note "$cfg exists: kept as it is"
    return
  fi
  write_file "$cfg" 0600 "" <<EOF
# bhatti daemon config, written by scripts/install.sh (docs/install.md).
data_dir: "$DATA_DIR"
listen: "$LISTEN"
image: $(default_image)
# keep: stopping the daemon (systemctl stop/restart, an upgrade) leaves VMs
# running for the next daemon; snapshot: writes each VM to disk first (set it
# before a host reboot; docs/install.md).
on_shutdown: $ON_SHUTDOWN
EOF
}

# The URL a client on this host uses for LISTEN (a wildcard address means
# loopback).
client_url() {
  local host=${LISTEN%:*} port=${LISTEN##*:}
  case "$host" in ""|0.0.0.0|"[::]") host=127.0.0.1 ;; esac
  echo "http://$host:$port"
}

# Creates the operator user unless it exists; sets KEY to its new key.
step_operator() {
  say "operator API user '$OPERATOR'"
  KEY=
  if [ "$DRY_RUN" = 1 ]; then
    run "$BHATTI" user create --data-dir "$DATA_DIR" --json --name "$OPERATOR"
    note "(skipped if '$OPERATOR' exists)"
    KEY=dry-run
    return
  fi
  local out
  out=$("$BHATTI" user list --data-dir "$DATA_DIR" --json)
  if [[ "$out" == *"\"name\":\"$OPERATOR\""* ]]; then
    note "'$OPERATOR' exists: not created again (its key was shown when it was created;"
    note "\`$BHATTI user rotate-key $OPERATOR --data-dir $DATA_DIR\` issues a new one)"
    return
  fi
  out=$("$BHATTI" user create --data-dir "$DATA_DIR" --json --name "$OPERATOR")
  KEY=$(printf '%s' "$out" | sed -n 's/.*"key":"\([^"]*\)".*/\1/p')
  [ -n "$KEY" ] || die "no key in the answer of bhatti user create"
}

step_cli_config() {
  local home group dir
  home=$(getent passwd "$INVOKER" | cut -d: -f6 || true)
  [ -n "$home" ] || home=$HOME
  [ -n "$CLI_CONFIG" ] || CLI_CONFIG=$home/.bhatti/config.yaml
  say "CLI config $CLI_CONFIG (user $INVOKER)"
  if [ -e "$CLI_CONFIG" ]; then
    note "$CLI_CONFIG exists: kept as it is"
    [ -z "$KEY" ] || [ "$DRY_RUN" = 1 ] \
      || note "the new key of '$OPERATOR' (shown only now): $KEY"
    return
  fi
  if [ -z "$KEY" ]; then
    note "no new key to write (the operator existed); \`bhatti setup\` writes it"
    return
  fi
  group=$(id -gn "$INVOKER")
  dir=$(dirname "$CLI_CONFIG")
  if [ ! -d "$dir" ]; then
    run install -d -m 0700 -o "$INVOKER" -g "$group" "$dir"
  fi
  write_file "$CLI_CONFIG" 0600 "$INVOKER:$group" <<EOF
url: "$(client_url)"
token: $KEY
EOF
}

step_unit() {
  [ "$SYSTEMD" = 1 ] || { say "systemd unit: skipped (--no-systemd)"; return; }
  local unit
  unit=$(<"$UNIT_SRC")
  unit=${unit//\/usr\/local\/bin\/bhatti/$BHATTI}
  unit=${unit//\/var\/lib\/bhatti/$DATA_DIR}
  unit=${unit//\/var\/cache\/bhatti/$CACHE_DIR}
  say "systemd unit $UNIT_DIR/bhatti.service"
  run install -d -m 0755 "$UNIT_DIR"
  write_file "$UNIT_DIR/bhatti.service" 0644 "" <<<"$unit"
  if [ ! -d /run/systemd/system ]; then
    note "systemd is not running on this host: not enabled or started;"
    note "run the daemon with: $BHATTI serve --data-dir $DATA_DIR"
    return
  fi
  run systemctl daemon-reload
  run systemctl enable bhatti.service
  # A restart keeps running VMs (KillMode=process, on_shutdown: keep).
  run systemctl restart bhatti.service
}

main() {
  parse_args "$@"
  find_source
  if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" -ne 0 ]; then
    die "run it as root (sudo $0 ...), or see the plan with --dry-run"
  fi
  [ "$DRY_RUN" = 0 ] || say "dry run: nothing is done; every action is printed"
  say "installing from a $MODE (${REPO:-$FROM})"
  step_packages
  step_build
  step_binary
  step_daemon_config
  step_operator
  step_cli_config
  step_unit
  say "done: $(client_url) (bhatti --help; docs/install.md)"
}

main "$@"
