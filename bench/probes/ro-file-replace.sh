#!/bin/sh
# (sh bench/probes/ro-file-replace.sh, from the repository root, as the unprivileged user.)
# Does a read-only bind over one file inside a read-write tree (how podshell protects .git/config,
# hooks and agent settings) survive the HOST replacing that file atomically (write a temp file,
# rename it over: git's config.lock, editors, Claude Code's settings writer)?
set -u
dir=$(mktemp -d); chmod 777 "$dir"; mkdir -p "$dir/.git"; chmod 777 "$dir/.git"; echo '[core]' > "$dir/.git/config"; chmod 666 "$dir/.git/config"
( sleep 3; printf '[core]\n\tbare = false\n' > "$dir/.git/config.lock"; chmod 666 "$dir/.git/config.lock"; mv "$dir/.git/config.lock" "$dir/.git/config"; echo "host: .git/config replaced (lock + rename, as git does)" ) &
podman --runtime runc run --rm --network none --userns keep-id --cap-drop ALL --security-opt no-new-privileges \
  --security-opt seccomp="$PWD/seccomp/default.json" -v "$dir":/work/repo -v "$dir/.git/config":/work/repo/.git/config:ro \
  localhost/podshell-sandbox:latest sh -c 'for i in 1 2 3 4 5 6 7 8 9 10; do if printf "\tfsmonitor = /work/repo/evil.sh\n" >> /work/repo/.git/config 2>/dev/null; then echo "$i: agent WROTE .git/config"; break; else echo "$i: write refused"; fi; sleep 0.5; done'
wait; echo "host sees:"; cat "$dir/.git/config"; rm -rf "$dir"
