#!/usr/bin/env bash
# Runs a command as an unprivileged test user, inside the test network namespace (scripts/test-netns.sh),
# with the environment rootless podman needs. Run as root:
#   scripts/as-test-user.sh USER DIR -- npx vitest run --project e2e test/e2e/x.test.ts
#   PODSHELL_HOST_NET=1 scripts/as-test-user.sh USER DIR -- npm ci   (install/image builds need the
#   package mirrors, which the test namespace cannot reach: run those in the host's namespace)
# nsenter (not `ip netns exec`): ip netns exec remounts /sys, which hides the cgroup tree podman needs.
set -euo pipefail
U=$1; DIR=$2; shift 2; [ "${1:-}" = -- ] && shift
NS=${PODSHELL_TEST_NETNS:-podshell-test}
HOME_DIR=$(getent passwd "$U" | cut -d: -f6)
if [ "${PODSHELL_HOST_NET:-}" = 1 ]; then enter=(); else bash "$(dirname "$0")/test-netns.sh"; enter=(nsenter --net="/run/netns/$NS"); fi
exec "${enter[@]}" runuser -u "$U" -- env XDG_RUNTIME_DIR="/run/user/$(id -u "$U")" HOME="$HOME_DIR" \
  PATH="${PODSHELL_NODE_DIR:-/opt/podshell-node}/bin:/usr/local/bin:/usr/bin:/bin" \
  ${CI:+CI=$CI} bash -c 'cd "$0" && exec "$@"' "$DIR" "$@"
