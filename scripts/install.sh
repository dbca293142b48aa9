#!/usr/bin/env bash
# Install minik as a systemd service, offline, from a binary built in this tree (as k3s's
# install script does, without downloading anything).
#
#   install.sh [--dry-run] [--bin PATH] [server|agent] [FLAGS...]
#
# It copies the binary (--bin PATH or INSTALL_MINIK_BIN; default target/release/minik, else
# target/debug/minik) to /usr/local/bin/minik, writes the unit
# /etc/systemd/system/minik.service (minik-agent.service for an agent) running
# `minik server|agent FLAGS`, its environment file <unit>.env (mode 0600: the MINIK_*
# variables given, e.g. the join token), and the uninstaller
# /usr/local/bin/minik-uninstall.sh (minik-agent-uninstall.sh), then enables and
# (re)starts the service when systemd is the running init.
#
# The command and flags: the trailing arguments, after INSTALL_MINIK_EXEC's words; the
# command is `agent` when MINIK_URL is set (then MINIK_TOKEN is needed), else `server`.
# Environment:
#   INSTALL_MINIK_BIN=PATH         the binary to install
#   INSTALL_MINIK_BIN_DIR=DIR      where to install it (default /usr/local/bin)
#   INSTALL_MINIK_SYSTEMD_DIR=DIR  where to write the unit (default /etc/systemd/system)
#   INSTALL_MINIK_EXEC="CMD FLAGS" the command and flags (split on spaces)
#   INSTALL_MINIK_SKIP_ENABLE=true do not enable the service (and do not start it)
#   INSTALL_MINIK_SKIP_START=true  do not start the service
#   INSTALL_MINIK_DRY_RUN=1        as --dry-run: print every action, change nothing
#   INSTALL_MINIK_ROOT=DIR         every path is under DIR and systemctl is not run (tests)
#   MINIK_URL, MINIK_TOKEN         join a server as an agent
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ ! -f "$HERE/uninstall.sh" ]; then
  echo "[ERROR] $HERE/uninstall.sh is missing: run install.sh from minik's source tree" >&2
  exit 1
fi
# The shared helpers (info, fatal, is_true, act, at, setup_env, systemd_running) and the
# uninstaller's defaults.
# shellcheck source=scripts/uninstall.sh
. "$HERE/uninstall.sh"

usage() { sed -n '2,28s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

# The minik binary to install: given, or the newest profile built in this tree.
find_binary() {
  local bin=$1 repo
  if [ -z "$bin" ]; then
    repo=$(cd "$HERE/.." && pwd)
    bin="$repo/target/release/minik"
    [ -e "$bin" ] || bin="$repo/target/debug/minik"
  fi
  [ -e "$bin" ] || fatal "minik binary not found: $bin (build it with 'cargo build --release -p minik', or give --bin PATH or INSTALL_MINIK_BIN)"
  [ -f "$bin" ] && [ -x "$bin" ] || fatal "$bin is not an executable file"
  [[ $("$bin" --version 2>/dev/null) == minik* ]] ||
    fatal "$bin is not a minik binary that runs here ('$bin --version' does not name minik)"
  (cd "$(dirname "$bin")" && printf '%s/%s' "$(pwd)" "$(basename "$bin")")
}

# One argument as systemd's command-line syntax needs it: plain words as they are, others
# double-quoted with \ and " escaped; % and $ doubled (systemd expands them).
unit_word() {
  local w=$1
  w=${w//%/%%}
  w=${w//\$/\$\$}
  if [[ $w =~ ^[A-Za-z0-9_./:=,@+-]+$ ]]; then
    printf '%s' "$w"
  else
    w=${w//\\/\\\\}
    w=${w//\"/\\\"}
    printf '"%s"' "$w"
  fi
}

# The data dir the flags name (--data-dir/-d), else MINIK_DATA_DIR, else the default.
data_dir_of() {
  local dir=${MINIK_DATA_DIR:-/var/lib/minik}
  while [ $# -gt 0 ]; do
    case "$1" in
      --data-dir | -d) dir=${2:-$dir} ;;
      --data-dir=*) dir=${1#--data-dir=} ;;
    esac
    shift
  done
  printf '%s' "$dir"
}

# Write stdin to FILE (a system path, under the root prefix) with MODE, atomically and never
# readable by others on the way; in a dry run print it instead (secrets hidden), or only
# SUMMARY when given.
write_file() {
  local file mode=$2 summary=${3:-} tmp
  file=$(at "$1")
  if is_true "$DRY_RUN"; then
    printf '[DRY-RUN] would write %s (mode %s):\n' "$file" "$mode"
    if [ -n "$summary" ]; then
      cat >/dev/null
      printf '    %s\n' "$summary"
    else
      sed -E 's/^([A-Z_]*(TOKEN|SECRET|PASSWORD)[A-Z_]*=).*/\1<hidden>/; s/^/    /'
    fi
    return 0
  fi
  mkdir -p "$(dirname "$file")"
  tmp=$(mktemp "$file.XXXXXX")
  cat >"$tmp"
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$file"
  info "wrote $file"
}

# Copy the binary into place (through a temporary file: the old one may be running).
install_binary() {
  local src=$1 dest tmp
  dest=$(at "$BIN_DIR/minik")
  if is_true "$DRY_RUN"; then
    printf '[DRY-RUN] would copy %s to %s (mode 0755)\n' "$src" "$dest"
    return 0
  fi
  mkdir -p "$(dirname "$dest")"
  tmp=$(mktemp "$dest.XXXXXX")
  cp "$src" "$tmp"
  chmod 0755 "$tmp"
  mv -f "$tmp" "$dest"
  info "installed $dest ($("$dest" --version | head -n 1))"
}

# The environment file: every MINIK_* variable given (the harness's MINIK_BIN and
# MINIK_TEST_* aside) and the proxy settings.
env_file() {
  local name value
  echo "# Environment of $SERVICE.service, written by minik's install.sh."
  for name in $(compgen -e | LC_ALL=C sort); do
    case "$name" in
      MINIK_BIN | MINIK_TEST_*) continue ;;
      MINIK_* | HTTP_PROXY | HTTPS_PROXY | NO_PROXY | http_proxy | https_proxy | no_proxy) ;;
      *) continue ;;
    esac
    value=${!name}
    [[ $value != *$'\n'* ]] || fatal "$name holds a newline: it cannot go in an environment file"
    value=${value//\\/\\\\}
    value=${value//\"/\\\"}
    printf '%s="%s"\n' "$name" "$value"
  done
}

# The unit: `minik CMD FLAGS`, restarted always; only the main process is killed on stop
# (containers keep running, as with k3s); minik does not notify systemd, so it is up once
# exec'd (Type=exec).
unit_file() {
  local exec_line=$1
  cat <<EOF
[Unit]
Description=minik: Kubernetes in one binary ($CMD)
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=exec
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-$SYSTEMD_DIR/$SERVICE.service.env
KillMode=process
Delegate=yes
User=root
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=$exec_line
EOF
}

# The uninstaller: uninstall.sh with this installation's settings.
uninstaller() {
  awk -v settings="$(
    printf 'SERVICE=%q\nBIN_DIR=%q\nSYSTEMD_DIR=%q\nDATA_DIR=%q' \
      "$SERVICE" "$BIN_DIR" "$SYSTEMD_DIR" "$DATA_DIR"
  )" '
    /^# BEGIN SETTINGS/ { print; print settings; skip = 1; next }
    /^# END SETTINGS/ { skip = 0 }
    !skip { print }
  ' "$HERE/uninstall.sh"
}

install_main() {
  local bin_src=${INSTALL_MINIK_BIN:-} src exec_words args word dir exec_line
  local uninstall_text env_text unit_text
  while [ $# -gt 0 ]; do
    case "$1" in
      --dry-run) DRY_RUN=1 ;;
      --bin)
        [ $# -ge 2 ] || fatal "--bin needs a path"
        bin_src=$2
        shift
        ;;
      --bin=*) bin_src=${1#--bin=} ;;
      -h | --help)
        usage
        exit 0
        ;;
      --)
        shift
        break
        ;;
      *) break ;;
    esac
    shift
  done
  setup_env "install.sh"
  BIN_DIR=${INSTALL_MINIK_BIN_DIR:-/usr/local/bin}
  SYSTEMD_DIR=${INSTALL_MINIK_SYSTEMD_DIR:-/etc/systemd/system}
  for dir in "$BIN_DIR" "$SYSTEMD_DIR"; do
    [[ $dir == /* ]] || fatal "$dir: INSTALL_MINIK_BIN_DIR and INSTALL_MINIK_SYSTEMD_DIR must be absolute paths"
  done
  src=$(find_binary "$bin_src")

  # The command: INSTALL_MINIK_EXEC's first word, else the first argument, when it is one.
  read -r -a exec_words <<<"${INSTALL_MINIK_EXEC:-}"
  args=("$@")
  CMD=""
  if [[ ${exec_words[0]:-} =~ ^(server|agent)$ ]]; then
    CMD=${exec_words[0]}
    exec_words=("${exec_words[@]:1}")
  elif [[ ${args[0]:-} =~ ^(server|agent)$ ]]; then
    CMD=${args[0]}
    args=("${args[@]:1}")
  fi
  args=("${exec_words[@]}" "${args[@]}")
  if [ -z "$CMD" ]; then
    if [ -n "${MINIK_URL:-}" ]; then CMD=agent; else CMD=server; fi
  fi
  if [ -n "${MINIK_URL:-}" ]; then
    [[ $MINIK_URL == https://* ]] || fatal "MINIK_URL=$MINIK_URL must be an https:// URL (e.g. https://10.0.0.1:6443)"
    [ -n "${MINIK_TOKEN:-}" ] || fatal "MINIK_URL is set but MINIK_TOKEN is not: an agent joins with the server's token (its data dir's token file)"
  elif [ "$CMD" = agent ] && [[ " ${args[*]} " != *" --server"* && " ${args[*]} " != *" -s "* ]]; then
    fatal "an agent needs the server to join: set MINIK_URL and MINIK_TOKEN"
  fi
  if [ "$CMD" = agent ]; then SERVICE=minik-agent; else SERVICE=minik; fi
  DATA_DIR=$(data_dir_of "${args[@]}")

  exec_line=$(unit_word "$BIN_DIR/minik")
  for word in "$CMD" "${args[@]}"; do
    exec_line+=" $(unit_word "$word")"
  done

  # Everything is made before anything is written: a fault changes nothing.
  uninstall_text=$(uninstaller)
  env_text=$(env_file)
  unit_text=$(unit_file "$exec_line")
  info "installing minik as $SERVICE.service from $src"
  install_binary "$src"
  printf '%s\n' "$uninstall_text" | write_file "$BIN_DIR/$SERVICE-uninstall.sh" 0755 \
    "scripts/uninstall.sh with SERVICE=$SERVICE BIN_DIR=$BIN_DIR SYSTEMD_DIR=$SYSTEMD_DIR DATA_DIR=$DATA_DIR"
  printf '%s\n' "$env_text" | write_file "$SYSTEMD_DIR/$SERVICE.service.env" 0600
  printf '%s\n' "$unit_text" | write_file "$SYSTEMD_DIR/$SERVICE.service" 0644

  if ! systemd_running; then
    if [ -n "$ROOT" ]; then
      info "installed under $ROOT: systemctl not run"
    else
      info "systemd is not the running init: $SYSTEMD_DIR/$SERVICE.service is not enabled or started; run '$BIN_DIR/minik $CMD' yourself"
    fi
    return 0
  fi
  act systemctl daemon-reload
  if is_true "${INSTALL_MINIK_SKIP_ENABLE:-}"; then
    info "not enabling or starting $SERVICE (INSTALL_MINIK_SKIP_ENABLE)"
    return 0
  fi
  act systemctl enable "$SERVICE"
  if is_true "${INSTALL_MINIK_SKIP_START:-}"; then
    info "not starting $SERVICE (INSTALL_MINIK_SKIP_START)"
    return 0
  fi
  act systemctl restart "$SERVICE"
  info "started $SERVICE; uninstall with $BIN_DIR/$SERVICE-uninstall.sh"
}

install_main "$@"
if is_true "$DRY_RUN"; then
  info "dry run: nothing was changed"
fi
