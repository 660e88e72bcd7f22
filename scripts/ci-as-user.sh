#!/usr/bin/env bash
# Runs as the unprivileged test user: install, build, host check, offline images (.ci/run then runs npm test).
set -euo pipefail
cd "$(dirname "$0")/.."
NODE_DIR=${PODSHELL_NODE_DIR:-/opt/podshell-node}
export PATH="$NODE_DIR/bin:$PATH"
export XDG_RUNTIME_DIR=/run/user/$(id -u)
export HOME=$(getent passwd "$(id -un)" | cut -d: -f6)
cd "$PWD"
echo "[ci] $(id) node $(node --version) podman $(podman --version)"
# Stale rootless state (pause process gone, "invalid internal status"): host-setup clears the runtime
# dir when this user is idle; if it was not (a process still exiting), podman's own reset is the fix.
info_err=$(podman info 2>&1 >/dev/null || true)
if [[ $info_err == *"invalid internal status"* ]]; then
  echo "[ci] podman state is stale: podman system migrate"
  podman system migrate
fi
# A stale vfs store from an earlier podman call would pin the driver: reset once if so.
if [ "$(podman info --format '{{.Store.GraphDriverName}}' 2>/dev/null)" != overlay ]; then
  podman system reset -f >/dev/null 2>&1 || true
fi
npm ci --no-audit --no-fund
# Lint before anything runs: ESLint (type-aware) over src, test, bench and scripts, and the formatter
# over the files it covers (package.json format:check).
npm run lint
npm run format:check
# The exec server (native/execd.c) must build here: without it every exec would silently take the
# podman exec path and test/e2e/exec-server.test.ts would test nothing.
PODSHELL_REQUIRE_EXECD=1 npm run build
node dist/cli/main.js doctor
node dist/cli/main.js image build all --offline
