#!/usr/bin/env bash
# minik's uninstaller. scripts/install.sh installs it as /usr/local/bin/minik-uninstall.sh
# (minik-agent-uninstall.sh for an agent) with the SETTINGS block below filled in. It stops
# and disables the service, stops the node's pods and removes its network
# (`minik stop --all`), then removes the unit, its env file, the binary, /etc/minik (kept
# with --keep-config), the data dir, minik's pod logs under /var/log/pods, /run/minik and
# itself. The binary, config and data stay while the other minik service (server or agent)
# is still installed.
#   --dry-run (or INSTALL_MINIK_DRY_RUN=1)  print every action, change nothing
#   --keep-config                            keep /etc/minik
#   INSTALL_MINIK_ROOT=DIR                   every path is under DIR; systemctl and
#                                            `minik stop` are not run (tests)
# install.sh sources this file for the helpers both scripts share (the functions up to
# uninstall_main); only running it uninstalls.
set -euo pipefail

# BEGIN SETTINGS (install.sh writes the installed values here)
SERVICE=minik
BIN_DIR=/usr/local/bin
SYSTEMD_DIR=/etc/systemd/system
DATA_DIR=/var/lib/minik
# END SETTINGS
CONFIG_DIR=/etc/minik
POD_LOG_DIR=/var/log/pods
RUN_DIR=/run/minik
DRY_RUN=${INSTALL_MINIK_DRY_RUN:-}

info() { printf '[INFO]  %s\n' "$*"; }
fatal() {
  printf '[ERROR] %s\n' "$*" >&2
  exit 1
}
is_true() {
  case "${1:-}" in
    1 | true | TRUE | True | yes) return 0 ;;
  esac
  return 1
}

# Run a command; in a dry run only print it.
act() {
  if is_true "$DRY_RUN"; then
    printf '[DRY-RUN] would run:'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

# PATH (as the installed system sees it) as this run writes it: under INSTALL_MINIK_ROOT.
at() { printf '%s%s' "$ROOT" "$1"; }

# ROOT from the environment; refuse a real (un-rooted) run as non-root.
setup_env() {
  ROOT=${INSTALL_MINIK_ROOT:-}
  if [ -n "$ROOT" ]; then
    [ -d "$ROOT" ] || fatal "INSTALL_MINIK_ROOT=$ROOT is not a directory"
    ROOT=$(cd "$ROOT" && pwd)
    ROOT=${ROOT%/}
  fi
  if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ] && ! is_true "$DRY_RUN"; then
    fatal "$1 must run as root (or with INSTALL_MINIK_ROOT=DIR to work under DIR; --dry-run to preview)"
  fi
}

# Whether to drive systemd: no root prefix and systemd is the running init.
systemd_running() { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }

# Say PATH was removed (a dry run has said what it would do).
removed() { is_true "$DRY_RUN" || info "removed $1"; }

# Remove a file (or symlink) if it is there.
remove_file() {
  local path
  path=$(at "$1")
  if [ -e "$path" ] || [ -L "$path" ]; then
    act rm -f -- "$path"
    removed "$path"
  fi
}

# Remove a directory tree: unmount whatever is mounted under it (deepest first), then
# remove it without crossing into other filesystems.
remove_tree() {
  local dir mount
  dir=$(at "$1")
  [ -e "$dir" ] || return 0
  while read -r mount; do
    [ -n "$mount" ] || continue
    act umount -l -- "$mount" || info "could not unmount $mount"
  done < <(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' \
    /proc/self/mountinfo 2>/dev/null | sort -r)
  act rm -rf --one-file-system -- "$dir"
  removed "$dir"
}

# The pod log directories of this node's pods: /var/log/pods/<ns>_<name>_<uid> for each
# pod uid under the data dir (other kubelets' logs stay).
remove_pod_logs() {
  local pods uid logs dir
  pods=$(at "$DATA_DIR/agent/pods")
  logs=$(at "$POD_LOG_DIR")
  [ -d "$pods" ] && [ -d "$logs" ] || return 0
  for uid in "$pods"/*; do
    [ -d "$uid" ] || continue
    uid=${uid##*/}
    for dir in "$logs"/*_"$uid"; do
      [ -d "$dir" ] || continue
      act rm -rf --one-file-system -- "$dir"
      removed "$dir"
    done
  done
  return 0
}

uninstall_usage() {
  sed -n '2,14s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

uninstall_main() {
  local keep_config="" other unit bin
  while [ $# -gt 0 ]; do
    case "$1" in
      --dry-run) DRY_RUN=1 ;;
      --keep-config) keep_config=1 ;;
      -h | --help)
        uninstall_usage
        exit 0
        ;;
      *) fatal "unknown argument '$1' (--dry-run, --keep-config)" ;;
    esac
    shift
  done
  setup_env "uninstalling minik"
  unit="$SYSTEMD_DIR/$SERVICE.service"
  bin="$BIN_DIR/minik"
  if [ "$SERVICE" = minik ]; then other=minik-agent; else other=minik; fi

  if systemd_running; then
    act systemctl stop "$SERVICE" || info "could not stop $SERVICE"
    act systemctl disable "$SERVICE" || info "could not disable $SERVICE"
  fi
  remove_file "$unit"
  remove_file "$unit.env"
  if systemd_running; then
    act systemctl daemon-reload
    act systemctl reset-failed "$SERVICE" 2>/dev/null || true
  fi
  if [ -e "$(at "$SYSTEMD_DIR/$other.service")" ]; then
    info "$other is still installed: keeping its pods, $bin, $CONFIG_DIR and $DATA_DIR"
  else
    if [ -n "$ROOT" ]; then
      info "not running 'minik stop --all' (INSTALL_MINIK_ROOT is set)"
    elif [ -x "$bin" ]; then
      act "$bin" stop --all --data-dir "$DATA_DIR" ||
        info "'minik stop --all' failed; removing the files anyway"
    fi
    remove_file "$bin"
    if [ -n "$keep_config" ]; then
      info "keeping $(at "$CONFIG_DIR") (--keep-config)"
    else
      remove_tree "$CONFIG_DIR"
    fi
    remove_pod_logs
    if [ -d "$(at "$POD_LOG_DIR")" ]; then
      act rmdir --ignore-fail-on-non-empty -- "$(at "$POD_LOG_DIR")"
    fi
    remove_tree "$DATA_DIR"
    remove_tree "$RUN_DIR"
  fi
  remove_file "$BIN_DIR/$SERVICE-uninstall.sh"
  if is_true "$DRY_RUN"; then
    info "dry run: nothing was changed"
  else
    info "$SERVICE.service is uninstalled"
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  uninstall_main "$@"
fi
