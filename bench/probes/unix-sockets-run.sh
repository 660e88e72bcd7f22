#!/bin/sh
# Runs unix-sockets.sh in the sandbox image under podshell's default seccomp profile and its
# --allow-socket twin, with the flags podshell gives the agent (keep-id, no capabilities,
# no-new-privileges; own network namespace). From the repository root, as the unprivileged user:
#   sh bench/probes/unix-sockets-run.sh
for prof in default unix-sockets; do
  echo "== profile $prof"
  podman --runtime runc run --rm --network none --userns keep-id --cap-drop ALL --security-opt no-new-privileges \
    --security-opt seccomp="$PWD/seccomp/$prof.json" -v "$PWD/bench/probes/unix-sockets.sh":/probe.sh:ro \
    localhost/podshell-sandbox:latest sh /probe.sh
done
