#!/usr/bin/env bash
# The Podman 5 lane of .ci/run (run as root): the e2e suite again under Podman 5.4, from a checkout
# that is already installed and built (node_modules, dist), as the lane's own user.
#   scripts/ci-podman5.sh CHECKOUT [vitest args...]     (no args: the whole e2e project)
# Steps: the user (scripts/host-setup.sh), the tree (scripts/podman5-lane.sh setup), an empty start
# (reset), a copy of CHECKOUT owned by the user, doctor and the offline images in the host's network
# namespace (package mirrors), the e2e tests in the test namespace, and a reset at the end so no
# gateway or pause process outlives the run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CHECKOUT=$1; shift
LANE_USER=${PODSHELL_TEST_USER5:-podshell-ci5}
LANE="$here/podman5-lane.sh"
T0=$SECONDS
stamp() { printf '[ci-podman5] +%ss %s\n' "$((SECONDS - T0))" "$*" >&2; }

PODSHELL_TEST_USER=$LANE_USER bash "$here/host-setup.sh"
bash "$LANE" setup
bash "$LANE" reset "$LANE_USER"
stamp "tree ready (podman $(bash "$LANE" version)), user $LANE_USER"
HOME5=$(getent passwd "$LANE_USER" | cut -d: -f6)
WORK5=$HOME5/ci/main
rm -rf "$WORK5"; mkdir -p "$WORK5"
tar -C "$CHECKOUT" --exclude=.git --exclude=test-results --exclude=.test-home -cf - . | tar -C "$WORK5" -xf -
chown -R "$LANE_USER:$LANE_USER" "$HOME5/ci"
status=0
PODSHELL_HOST_NET=1 PODMAN5_DIR="$WORK5" bash "$LANE" run "$LANE_USER" \
  bash -c 'node dist/cli/main.js doctor && node dist/cli/main.js image build all --offline' || status=$?
stamp "doctor and images: exit $status"
if [ "$status" = 0 ]; then
  PODMAN5_DIR="$WORK5" bash "$LANE" run "$LANE_USER" node_modules/.bin/vitest run --project e2e "$@" || status=$?
  stamp "e2e: exit $status"
fi
bash "$LANE" reset "$LANE_USER" || true
exit "$status"
