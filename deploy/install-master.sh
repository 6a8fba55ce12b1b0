#!/bin/sh
# install-master.sh — install a BUILT Spoke checkout as the master daemon.
#
#   install-master.sh [--source DIR] [--prefix /opt/spoke] [--listen 0.0.0.0:7443]
#                     [--node /usr/bin/node] [--no-start] [--dry-run]
#
# Run `pnpm install && pnpm build` in the checkout first, on a host with the same Node.js major
# version and architecture (better-sqlite3 is a native module). --source defaults to the
# checkout this script lives in.
#
# What it does: creates the `spoke` system user; copies the whole checkout (minus .git and any
# .spoke state) to PREFIX, swapping the old copy out; writes /etc/spoke/master.env (kept if it
# exists, except SPOKE_LISTEN when --listen is given); installs spoke-master.service and a
# /usr/local/bin/spoke CLI wrapper; enables and (re)starts the service unless --no-start.
# State (database, CA, CLI socket) lives in /var/lib/spoke and is never touched here.
#
# Safe to run again (that is how you upgrade). --dry-run prints every command instead of
# running it; read-only checks still run.
set -eu

PROG=install-master
UNIT=spoke-master.service
UNIT_PATH=/etc/systemd/system/$UNIT
DROPIN_DIR=/etc/systemd/system/$UNIT.d
DROPIN=$DROPIN_DIR/10-install.conf
ENV_FILE=/etc/spoke/master.env
WRAPPER=/usr/local/bin/spoke
SPOKE_USER=spoke
STATE_DIR=/var/lib/spoke

DEF_PREFIX=/opt/spoke
DEF_NODE=/usr/bin/node

SOURCE=
PREFIX=$DEF_PREFIX
LISTEN=
NODE=
NO_START=0
DRY_RUN=0

die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
say() { printf '%s: %s\n' "$PROG" "$*"; }

usage() {
  cat <<'USAGE'
usage: install-master.sh [--source DIR] [--prefix /opt/spoke] [--listen 0.0.0.0:7443]
                         [--node /usr/bin/node] [--no-start] [--dry-run]
  --source: a built checkout (pnpm install && pnpm build); default: the checkout holding this script.
USAGE
}

q() {
  case $1 in
    '' | *[!A-Za-z0-9_./:=,@%+-]*) printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")" ;;
    *) printf '%s' "$1" ;;
  esac
}

# Prints a command; runs it unless --dry-run.
run() {
  line='+'
  for a in "$@"; do line="$line $(q "$a")"; done
  printf '%s\n' "$line"
  [ "$DRY_RUN" = 1 ] && return 0
  "$@"
}

# write_file PATH MODE: writes stdin to PATH (atomically) with MODE; under --dry-run prints it.
write_file() {
  content=$(cat)
  printf '+ write %s (mode %s) <<EOF\n%s\nEOF\n' "$1" "$2" "$content"
  [ "$DRY_RUN" = 1 ] && return 0
  printf '%s\n' "$content" >"$1.tmp.$$"
  chmod "$2" "$1.tmp.$$"
  mv -f "$1.tmp.$$" "$1"
}

need_arg() { [ $# -ge 2 ] || die "$1 needs a value (see --help)"; }
while [ $# -gt 0 ]; do
  case $1 in
    --*=*) opt=${1%%=*}; val=${1#*=}; shift; set -- "$opt" "$val" "$@"; continue ;;
  esac
  case $1 in
    --source) need_arg "$@"; SOURCE=$2; shift 2 ;;
    --prefix) need_arg "$@"; PREFIX=$2; shift 2 ;;
    --listen) need_arg "$@"; LISTEN=$2; shift 2 ;;
    --node) need_arg "$@"; NODE=$2; shift 2 ;;
    --no-start) NO_START=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

SCRIPT_DIR=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)

case $PREFIX in
  / | */ | *//* | */./* | */. | */../* | */..) die "--prefix must be a normalised absolute path, got: $PREFIX" ;;
  /?*) ;;
  *) die "--prefix must be an absolute path, got: $PREFIX" ;;
esac
if [ -n "$LISTEN" ]; then
  port=${LISTEN##*:}
  case $LISTEN in *:*) ;; *) die "--listen must be HOST:PORT, got: $LISTEN" ;; esac
  case $port in '' | *[!0-9]*) die "--listen must be HOST:PORT, got: $LISTEN" ;; esac
  [ -n "${LISTEN%:*}" ] || die "--listen must be HOST:PORT, got: $LISTEN"
fi

[ "$DRY_RUN" = 1 ] && say "dry run: printing commands, changing nothing"
if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
  die "must run as root (try: sudo $0 ...), or use --dry-run to see the plan"
fi

# --- node >= 20 ---
if [ -z "$NODE" ]; then
  if [ -x "$DEF_NODE" ]; then NODE=$DEF_NODE; else NODE=$(command -v node 2>/dev/null || true); fi
fi
if [ -z "$NODE" ] || [ ! -x "$NODE" ]; then die "Node.js >= 20 is required but 'node' was not found; install it (distribution package 'nodejs' or https://nodejs.org) or pass --node PATH"; fi
NODE_VERSION=$("$NODE" -p 'process.versions.node' 2>/dev/null) || die "$NODE does not run; install Node.js >= 20 or pass --node PATH"
NODE_MAJOR=${NODE_VERSION%%.*}
case $NODE_MAJOR in '' | *[!0-9]*) die "cannot read the version of $NODE (got: $NODE_VERSION)" ;; esac
[ "$NODE_MAJOR" -ge 20 ] || die "Node.js >= 20 is required, $NODE is v$NODE_VERSION; upgrade it or pass --node PATH"

# --- source checkout ---
[ -n "$SOURCE" ] || SOURCE=$SCRIPT_DIR/..
[ -d "$SOURCE" ] || die "--source $SOURCE is not a directory"
SOURCE=$(CDPATH='' cd -- "$SOURCE" && pwd)
DAEMON=packages/master/dist/spoke-master.js
CLI=packages/master/dist/spoke.js
for f in "$DAEMON" "$CLI"; do
  [ -f "$SOURCE/$f" ] || die "$SOURCE/$f is missing; build the checkout first (pnpm install && pnpm build)"
done
case $SOURCE/ in
  "$PREFIX"/*) die "--source $SOURCE is inside --prefix $PREFIX; install from a separate checkout" ;;
esac
case $PREFIX/ in
  "$SOURCE"/*) die "--prefix $PREFIX is inside --source $SOURCE" ;;
esac
MASTER_VERSION=$("$NODE" "$SOURCE/$DAEMON" version 2>/dev/null) || die "$SOURCE/$DAEMON does not run with node v$NODE_VERSION (not installed? run pnpm install && pnpm build in $SOURCE; see: $NODE $SOURCE/$DAEMON version)"
# better-sqlite3 must resolve from the daemon's directory and load with THIS node (native ABI).
"$NODE" -e 'const D=require("node:module").createRequire(process.argv[1])("better-sqlite3"); new D(":memory:").close()' "$SOURCE/$DAEMON" 2>/dev/null ||
  die "better-sqlite3 does not load for $SOURCE/$DAEMON with node v$NODE_VERSION; run pnpm install (and pnpm rebuild better-sqlite3) in $SOURCE on this host"

say "node v$NODE_VERSION ($NODE), $MASTER_VERSION from $SOURCE"
say "prefix $PREFIX, state $STATE_DIR, listen ${LISTEN:-from $ENV_FILE (default 0.0.0.0:7443)}"

if [ "$DRY_RUN" = 0 ]; then
  command -v systemctl >/dev/null 2>&1 || die "systemctl not found: this installer needs systemd"
fi
cd /

# --- user ---
if getent passwd "$SPOKE_USER" >/dev/null 2>&1; then
  say "user $SPOKE_USER exists"
else
  command -v useradd >/dev/null 2>&1 || [ "$DRY_RUN" = 1 ] || die "useradd not found; create the system user $SPOKE_USER yourself and re-run"
  NOLOGIN=$(command -v nologin 2>/dev/null || echo /usr/sbin/nologin)
  run useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home --shell "$NOLOGIN" "$SPOKE_USER"
fi

# --- code: copy to PREFIX.new, then swap (a running master keeps its open files until restart) ---
run rm -rf "$PREFIX.new" "$PREFIX.old"
run mkdir -p "$(dirname "$PREFIX")"
run cp -a "$SOURCE" "$PREFIX.new"
# No repository history, and never a development state dir (it may hold a CA key).
run rm -rf "$PREFIX.new/.git" "$PREFIX.new/.spoke"
run chown -R root:root "$PREFIX.new"
run chmod -R go-w "$PREFIX.new"
run "$NODE" -e 'const D=require("node:module").createRequire(process.argv[1])("better-sqlite3"); new D(":memory:").close()' "$PREFIX.new/$DAEMON"
if [ -e "$PREFIX" ]; then
  run mv "$PREFIX" "$PREFIX.old"
  run mv "$PREFIX.new" "$PREFIX"
  run rm -rf "$PREFIX.old"
else
  run mv "$PREFIX.new" "$PREFIX"
fi

# --- environment file ---
run install -d -m 0755 /etc/spoke
if [ -f "$ENV_FILE" ]; then
  if [ -n "$LISTEN" ]; then
    if grep -q '^SPOKE_LISTEN=' "$ENV_FILE"; then
      run sed -i "s|^SPOKE_LISTEN=.*|SPOKE_LISTEN=$LISTEN|" "$ENV_FILE"
    else
      printf '+ echo SPOKE_LISTEN=%s >> %s\n' "$LISTEN" "$ENV_FILE"
      [ "$DRY_RUN" = 1 ] || printf 'SPOKE_LISTEN=%s\n' "$LISTEN" >>"$ENV_FILE"
    fi
  else
    say "keeping existing $ENV_FILE"
  fi
else
  write_file "$ENV_FILE" 0644 <<EOF
# Spoke master settings (read by spoke-master.service). After editing: systemctl restart spoke-master
# TLS listener for agents, HOST:PORT. Agents dial this; open it in the firewall for web servers only.
SPOKE_LISTEN=${LISTEN:-0.0.0.0:7443}
# pino log level: trace, debug, info, warn, error
SPOKE_LOG_LEVEL=info
# Agent heartbeat interval in ms (an agent is offline after 3 missed heartbeats).
#SPOKE_HEARTBEAT_MS=5000
# 'spoke server verify' fails when a root has less free space than this (bytes; default 256 MiB).
#SPOKE_MIN_FREE_BYTES=268435456
EOF
fi

# --- systemd unit ---
[ -f "$SCRIPT_DIR/systemd/$UNIT" ] || die "$SCRIPT_DIR/systemd/$UNIT is missing; run this script from the checkout's deploy/ directory"
run install -m 0644 "$SCRIPT_DIR/systemd/$UNIT" "$UNIT_PATH"
if [ "$NODE" != "$DEF_NODE" ] || [ "$PREFIX" != "$DEF_PREFIX" ]; then
  run install -d -m 0755 "$DROPIN_DIR"
  write_file "$DROPIN" 0644 <<EOF
# Written by install-master.sh; re-running it rewrites this file. Your own changes: systemctl edit spoke-master
[Service]
ExecStart=
ExecStart=$NODE --max-semi-space-size=4 $PREFIX/$DAEMON run --state-dir $STATE_DIR --listen \${SPOKE_LISTEN}
EOF
else
  run rm -f "$DROPIN"
fi

# --- CLI wrapper ---
write_file "$WRAPPER" 0755 <<EOF
#!/bin/sh
# Spoke operator CLI (installed by install-master.sh): runs as the $SPOKE_USER user against
# the master's socket in $STATE_DIR. Usage: spoke help
set -eu
NODE=$NODE
CLI=$PREFIX/$CLI
if [ "\$(id -un)" = $SPOKE_USER ]; then
  exec "\$NODE" "\$CLI" --state-dir $STATE_DIR "\$@"
elif [ "\$(id -u)" = 0 ] && command -v runuser >/dev/null 2>&1; then
  exec runuser -u $SPOKE_USER -- "\$NODE" "\$CLI" --state-dir $STATE_DIR "\$@"
else
  exec sudo -u $SPOKE_USER -- "\$NODE" "\$CLI" --state-dir $STATE_DIR "\$@"
fi
EOF

run systemctl daemon-reload
if [ "$NO_START" = 1 ]; then
  say "installed, not started (--no-start). Start with: systemctl enable --now spoke-master"
else
  run systemctl reset-failed "$UNIT" 2>/dev/null || true
  run systemctl enable "$UNIT"
  run systemctl restart "$UNIT"
  if [ "$DRY_RUN" = 0 ]; then
    sleep 2
    if ! systemctl is-active --quiet "$UNIT"; then
      systemctl --no-pager status "$UNIT" >&2 || true
      die "spoke-master did not stay up; see: journalctl -u spoke-master -n 50"
    fi
  fi
fi

cat <<EOF

The operator CLI runs as the $SPOKE_USER user (the socket $STATE_DIR/spoke.sock is 0600):
  spoke status                          # wrapper: $WRAPPER
  sudo -u $SPOKE_USER $NODE $PREFIX/$CLI --state-dir $STATE_DIR server ls
Add a web server:
  spoke server token web-1 --cluster web --ttl 1h     # prints a one-time token
  # on web-1: install-agent.sh --master <this host>:<port from $ENV_FILE> --token <token>
Logs: journalctl -u spoke-master -f
EOF
