#!/bin/sh
# (sh bench/probes/mask-dir-recreate.sh, from the repository root, as the unprivileged user.)
# Does a directory mask (an empty read-only tmpfs over a `.ai-read-deny` directory, as podshell
# makes it) survive the HOST removing and re-creating that directory while the sandbox runs (a
# branch switch, a tool regenerating its secrets dir)? Linux detaches a mount whose mountpoint is
# removed from another mount namespace.
set -u
dir=$(mktemp -d); chmod 755 "$dir"; mkdir "$dir/secrets"; echo SECRET-V1 > "$dir/secrets/key"; touch "$dir/secrets/.ai-read-deny"
chmod -R a+rX "$dir"
( sleep 3; rm -rf "$dir/secrets"; mkdir "$dir/secrets"; echo SECRET-V2 > "$dir/secrets/key"; chmod -R a+rX "$dir/secrets"; echo "host: secrets/ re-created" ) &
podman --runtime runc run --rm --network none --userns keep-id --cap-drop ALL --security-opt no-new-privileges \
  --security-opt seccomp="$PWD/seccomp/default.json" -v "$dir":/work/repo:ro --mount type=tmpfs,destination=/work/repo/secrets,tmpfs-mode=0555,tmpfs-size=4k,notmpcopyup,ro=true \
  localhost/podshell-sandbox:latest sh -c 'for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo "$i: $(cat /work/repo/secrets/key 2>&1)"; sleep 0.5; done'
wait; rm -rf "$dir"
