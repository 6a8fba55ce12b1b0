#!/bin/sh
# install-agent.sh — install, enroll and start the Spoke agent on a web server.
#
#   install-agent.sh --master HOST:PORT --token TOKEN [--bundle PATH/TO/spoke-agent.js]
#                    [--roots /var/aegir,/var/www] [--user root|NAME] [--prefix /opt/spoke-agent]
#                    [--state-dir /var/lib/spoke-agent] [--node /usr/bin/node]
#                    [--no-start] [--force] [--dry-run]
#
# Make the token on the master: spoke server token web-1 [--cluster web] [--ttl 1h]
# The token may also come from the environment (SPOKE_TOKEN=... install-agent.sh ...), which
# keeps it out of `ps`. Tokens are single use and are never written to disk by this script.
#
# Safe to run again: it re-copies the bundle, re-installs the unit and restarts the agent.
# If the host is already enrolled (STATE_DIR/agent.crt exists):
#   * without --token: the enrollment is kept (this is how you upgrade the bundle);
#   * with --token: refused unless --force (re-enrolls; make the token with --replace).
#
# --user: the agent runs as root by default (it writes the roots and will reload nginx/apache,
# manage php-fpm and MariaDB). --user NAME creates a system user/group NAME, enrolls as it and
# runs the agent as it; that user can only write roots it owns, so the root DIRECTORIES are
# chowned to it (not their existing contents), and it cannot reload services without extra
# grants you set up yourself.
#
# --dry-run prints every command (and file written) instead of running it. Read-only checks
# (node version, bundle, enrollment state) still run.
set -eu

PROG=install-agent
UNIT=spoke-agent.service
UNIT_PATH=/etc/systemd/system/$UNIT
DROPIN_DIR=/etc/systemd/system/$UNIT.d
DROPIN=$DROPIN_DIR/10-install.conf
ENV_FILE=/etc/spoke/agent.env

DEF_PREFIX=/opt/spoke-agent
DEF_STATE=/var/lib/spoke-agent
DEF_NODE=/usr/bin/node

MASTER=
TOKEN=${SPOKE_TOKEN:-}
BUNDLE=
ROOTS=
AGENT_USER=root
PREFIX=$DEF_PREFIX
STATE_DIR=$DEF_STATE
NODE=
NO_START=0
FORCE=0
DRY_RUN=0

die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
say() { printf '%s: %s\n' "$PROG" "$*"; }

usage() {
  cat <<'USAGE'
usage: install-agent.sh --master HOST:PORT --token TOKEN [--bundle PATH/TO/spoke-agent.js]
                        [--roots /var/aegir,/var/www] [--user root|NAME] [--prefix /opt/spoke-agent]
                        [--state-dir /var/lib/spoke-agent] [--node /usr/bin/node]
                        [--no-start] [--force] [--dry-run]
  --token may be replaced by the SPOKE_TOKEN environment variable.
  Already enrolled? Omit --master/--token to upgrade in place, or add --force to re-enroll.
USAGE
}

# Shell-quotes one word for display.
q() {
  case $1 in
    '' | *[!A-Za-z0-9_./:=,@%+-]*) printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")" ;;
    *) printf '%s' "$1" ;;
  esac
}

# Prints a command (after $SHOW, e.g. a redacted environment); runs it unless --dry-run.
SHOW=
run() {
  line="+${SHOW:+ $SHOW}"
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

# --- arguments ---
need_arg() { [ $# -ge 2 ] || die "$1 needs a value (see --help)"; }
while [ $# -gt 0 ]; do
  case $1 in
    --*=*) opt=${1%%=*}; val=${1#*=}; shift; set -- "$opt" "$val" "$@"; continue ;;
  esac
  case $1 in
    --master) need_arg "$@"; MASTER=$2; shift 2 ;;
    --token) need_arg "$@"; TOKEN=$2; shift 2 ;;
    --bundle) need_arg "$@"; BUNDLE=$2; shift 2 ;;
    --roots) need_arg "$@"; ROOTS=$2; shift 2 ;;
    --user) need_arg "$@"; AGENT_USER=$2; shift 2 ;;
    --prefix) need_arg "$@"; PREFIX=$2; shift 2 ;;
    --state-dir) need_arg "$@"; STATE_DIR=$2; shift 2 ;;
    --node) need_arg "$@"; NODE=$2; shift 2 ;;
    --no-start) NO_START=1; shift ;;
    --force) FORCE=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

SCRIPT_DIR=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)

abs_dir() { # abs_dir NAME VALUE: VALUE must be an absolute, normalised path
  case $2 in
    /*) ;;
    *) die "$1 must be an absolute path, got: $2" ;;
  esac
  case $2 in
    / | */ | *//* | */./* | */. | */../* | */..) die "$1 must be a normalised path without a trailing slash, got: $2" ;;
  esac
}
abs_dir --prefix "$PREFIX"
abs_dir --state-dir "$STATE_DIR"
case $AGENT_USER in
  '' | *[!a-z0-9_-]* | [!a-z_]*) die "--user must be a plain user name (lowercase letters, digits, _ and -), got: $AGENT_USER" ;;
esac
if [ -n "$MASTER" ]; then
  port=${MASTER##*:}
  case $MASTER in
    *:*) ;;
    *) die "--master must be HOST:PORT, got: $MASTER" ;;
  esac
  case $port in
    '' | *[!0-9]*) die "--master must be HOST:PORT, got: $MASTER" ;;
  esac
  [ -n "${MASTER%:*}" ] || die "--master must be HOST:PORT, got: $MASTER"
fi
if [ -n "$ROOTS" ]; then
  old_ifs=$IFS; IFS=,
  for r in $ROOTS; do abs_dir "--roots entry" "$r"; done
  IFS=$old_ifs
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

# --- bundle ---
if [ -z "$BUNDLE" ]; then
  for c in "$SCRIPT_DIR/../packages/agent/dist/spoke-agent.js" "$SCRIPT_DIR/spoke-agent.js" "./spoke-agent.js"; do
    if [ -f "$c" ]; then BUNDLE=$c; break; fi
  done
  [ -n "$BUNDLE" ] || die "no spoke-agent.js found next to this script or in a checkout; build it (pnpm build) and pass --bundle PATH/TO/spoke-agent.js"
fi
[ -f "$BUNDLE" ] || die "bundle not found: $BUNDLE"
BUNDLE=$(CDPATH='' cd -- "$(dirname -- "$BUNDLE")" && pwd)/$(basename -- "$BUNDLE")
BUNDLE_VERSION=$("$NODE" "$BUNDLE" version 2>/dev/null) || die "$BUNDLE does not run with node v$NODE_VERSION (see: $NODE $BUNDLE version)"
case $BUNDLE_VERSION in spoke-agent*) ;; *) die "$BUNDLE is not a spoke-agent bundle (see: $NODE $BUNDLE version)" ;; esac

# --- enrollment state ---
ENROLL=1
if [ -f "$STATE_DIR/agent.crt" ]; then
  if [ "$FORCE" = 1 ]; then
    [ -n "$TOKEN" ] || die "--force re-enrolls and needs a new token (on the master: spoke server token NAME --replace)"
  elif [ -n "$TOKEN" ]; then
    die "$STATE_DIR/agent.crt exists: this host is already enrolled; add --force to re-enroll (make the token with: spoke server token NAME --replace), or omit --token to keep the enrollment"
  else
    ENROLL=0
  fi
fi
if [ "$ENROLL" = 1 ]; then
  [ -n "$MASTER" ] || die "--master HOST:PORT is required to enroll"
  [ -n "$TOKEN" ] || die "--token TOKEN (or SPOKE_TOKEN) is required to enroll; on the master: spoke server token NAME"
fi
if [ -n "$TOKEN" ]; then
  # Same shape the agent checks (spoke1.<43 base64url>.<64 hex>); caught here before any change.
  printf '%s\n' "$TOKEN" | grep -Eq '^spoke1\.[A-Za-z0-9_-]{43}\.[0-9a-f]{64}$' ||
    die "the token is malformed (expected spoke1.<secret>.<ca-fingerprint>); copy it again from: spoke server token NAME"
fi
# Roots: flag, else the existing agent.json, else the agent's defaults.
if [ -z "$ROOTS" ] && [ -f "$STATE_DIR/agent.json" ]; then
  ROOTS=$("$NODE" -e 'const c=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));process.stdout.write((c.roots||[]).join(","))' "$STATE_DIR/agent.json" 2>/dev/null || true)
fi
[ -n "$ROOTS" ] || ROOTS=/var/aegir,/var/www

say "node v$NODE_VERSION ($NODE), $BUNDLE_VERSION from $BUNDLE"
say "user $AGENT_USER, prefix $PREFIX, state $STATE_DIR, roots $ROOTS$([ "$ENROLL" = 1 ] && printf ', enrolling with %s' "$MASTER" || printf ', keeping the existing enrollment')"

if [ "$DRY_RUN" = 0 ]; then
  command -v systemctl >/dev/null 2>&1 || die "systemctl not found: this installer needs systemd"
fi
cd /

# --- user ---
GROUP=root
if [ "$AGENT_USER" != root ]; then
  GROUP=$AGENT_USER
  if getent passwd "$AGENT_USER" >/dev/null 2>&1; then
    GROUP=$(id -gn "$AGENT_USER")
    say "user $AGENT_USER exists (group $GROUP)"
  else
    command -v useradd >/dev/null 2>&1 || [ "$DRY_RUN" = 1 ] || die "useradd not found; create the system user $AGENT_USER yourself and re-run"
    NOLOGIN=$(command -v nologin 2>/dev/null || echo /usr/sbin/nologin)
    run useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home --shell "$NOLOGIN" "$AGENT_USER"
  fi
  if [ "$DRY_RUN" = 0 ]; then
    command -v runuser >/dev/null 2>&1 || die "runuser (util-linux) not found; it is needed to enroll as $AGENT_USER"
  fi
fi

# --- bundle ---
run install -d -m 0755 "$PREFIX"
run install -m 0755 "$BUNDLE" "$PREFIX/spoke-agent.js"
if [ -f "$BUNDLE.map" ]; then
  run install -m 0644 "$BUNDLE.map" "$PREFIX/spoke-agent.js.map"
else
  run rm -f "$PREFIX/spoke-agent.js.map"
fi
if [ -f "$SCRIPT_DIR/README.md" ]; then
  run install -m 0644 "$SCRIPT_DIR/README.md" "$PREFIX/README.md"
fi

# --- state dir and roots ---
run install -d -m 0700 -o "$AGENT_USER" -g "$GROUP" "$STATE_DIR"
if [ "$AGENT_USER" != root ]; then
  # Moving from root to a user (or re-running): the identity must belong to the agent's user.
  run chown -R "$AGENT_USER:$GROUP" "$STATE_DIR"
  old_ifs=$IFS; IFS=,
  for r in $ROOTS; do
    IFS=$old_ifs
    run mkdir -p "$r"
    run chown "$AGENT_USER:$GROUP" "$r"
    say "note: $r is now owned by $AGENT_USER; existing files below it keep their owners (chown -R them if the agent must manage them)"
  done
  IFS=$old_ifs
fi

# --- enroll ---
if [ "$ENROLL" = 1 ]; then
  # The token goes through the environment, not argv, and is not printed.
  export SPOKE_TOKEN="$TOKEN"
  # runuser (no -l) keeps the environment, SPOKE_TOKEN included.
  SHOW='SPOKE_TOKEN=<redacted>'
  if [ "$AGENT_USER" = root ]; then
    run "$NODE" "$PREFIX/spoke-agent.js" enroll --master "$MASTER" --state-dir "$STATE_DIR" --roots "$ROOTS"
  else
    run runuser -u "$AGENT_USER" -- "$NODE" "$PREFIX/spoke-agent.js" enroll --master "$MASTER" --state-dir "$STATE_DIR" --roots "$ROOTS"
  fi
  SHOW=
  unset SPOKE_TOKEN
else
  say "already enrolled ($STATE_DIR/agent.crt); keeping it"
fi

# --- environment file (kept if it exists: it is yours to edit) ---
run install -d -m 0755 /etc/spoke
if [ -f "$ENV_FILE" ]; then
  say "keeping existing $ENV_FILE"
else
  write_file "$ENV_FILE" 0644 <<'EOF'
# Spoke agent settings (read by spoke-agent.service). After editing: systemctl restart spoke-agent
# Master address, server name, cluster and roots live in /var/lib/spoke-agent/agent.json.
# pino log level: trace, debug, info, warn, error
SPOKE_LOG_LEVEL=info
# Reconnect backoff towards the master: first delay and cap, in milliseconds.
#SPOKE_BACKOFF_INITIAL_MS=500
#SPOKE_BACKOFF_MAX_MS=15000
EOF
fi

# --- systemd unit ---
if [ -f "$SCRIPT_DIR/systemd/$UNIT" ]; then
  run install -m 0644 "$SCRIPT_DIR/systemd/$UNIT" "$UNIT_PATH"
else
  # Inline copy of deploy/systemd/spoke-agent.service (comments trimmed; keep in sync).
  write_file "$UNIT_PATH" 0644 <<'EOF'
# Spoke agent. See deploy/systemd/spoke-agent.service in the Spoke repository for the full
# commentary. Always restarted, except exit 3 (CERT_REVOKED, CERT_UNKNOWN, NOT_ENROLLED,
# CONFIG_INVALID: re-enroll or fix the config first) and exit 2 (usage).
[Unit]
Description=Spoke agent (web server side of the Spoke control plane)
Documentation=file:///opt/spoke-agent/README.md
Wants=network-online.target
After=network-online.target
StartLimitIntervalSec=600
StartLimitBurst=5

[Service]
Type=simple
User=root
Environment=SPOKE_LOG_LEVEL=info
EnvironmentFile=-/etc/spoke/agent.env
StateDirectory=spoke-agent
StateDirectoryMode=0700
ExecStart=/usr/bin/node /opt/spoke-agent/spoke-agent.js run --state-dir /var/lib/spoke-agent
KillSignal=SIGTERM
TimeoutStopSec=30s
Restart=always
RestartPreventExitStatus=2 3
RestartSec=10s
NoNewPrivileges=true
ProtectSystem=true
PrivateTmp=true
ProtectKernelTunables=true
ProtectKernelModules=true
ProtectKernelLogs=true
ProtectControlGroups=true
ProtectClock=true
RestrictRealtime=true
LockPersonality=true
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
EOF
fi

# Drop-in for anything that differs from the unit's defaults (user, node, paths).
DROPIN_BODY=
if [ "$AGENT_USER" != root ]; then
  DROPIN_BODY="User=$AGENT_USER
Group=$GROUP"
fi
if [ "$NODE" != "$DEF_NODE" ] || [ "$PREFIX" != "$DEF_PREFIX" ] || [ "$STATE_DIR" != "$DEF_STATE" ]; then
  DROPIN_BODY="${DROPIN_BODY:+$DROPIN_BODY
}ExecStart=
ExecStart=$NODE $PREFIX/spoke-agent.js run --state-dir $STATE_DIR"
  if [ "$STATE_DIR" != "$DEF_STATE" ]; then
    # StateDirectory= takes a name under /var/lib; anything else is created (and owned) above.
    case ${STATE_DIR#/var/lib/} in
      "$STATE_DIR" | */*) sd= ;;
      *) sd=${STATE_DIR#/var/lib/} ;;
    esac
    DROPIN_BODY="$DROPIN_BODY
StateDirectory=${sd:+
StateDirectory=$sd}"
  fi
fi
if [ -n "$DROPIN_BODY" ]; then
  run install -d -m 0755 "$DROPIN_DIR"
  write_file "$DROPIN" 0644 <<EOF
# Written by install-agent.sh; re-running it rewrites this file. Your own changes: systemctl edit spoke-agent
[Service]
$DROPIN_BODY
EOF
else
  run rm -f "$DROPIN"
fi

run systemctl daemon-reload
if [ "$NO_START" = 1 ]; then
  say "installed, not started (--no-start). Start with: systemctl enable --now spoke-agent"
  exit 0
fi
# reset-failed clears a "failed" state and the start limit (e.g. after a revoked certificate).
run systemctl reset-failed "$UNIT" 2>/dev/null || true
run systemctl enable "$UNIT"
# restart (not start): picks up a new bundle or a new identity when re-run.
run systemctl restart "$UNIT"
if [ "$DRY_RUN" = 0 ]; then
  sleep 2
  if systemctl is-active --quiet "$UNIT"; then
    say "spoke-agent is running. Logs: journalctl -u spoke-agent -f   On the master: spoke server ls"
  else
    systemctl --no-pager status "$UNIT" >&2 || true
    die "spoke-agent did not stay up; see: journalctl -u spoke-agent -n 50"
  fi
fi
