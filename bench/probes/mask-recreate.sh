#!/bin/sh
# (sh bench/probes/mask-recreate.sh, from the repository root, as the unprivileged user.)
# Does a create-time socket mask survive the host service re-creating its socket (a restart:
# unlink + bind at the same path)? The mask is what podshell binds (an empty read-only file over
# the socket); the container runs under the --allow-socket twin profile (AF_UNIX allowed).
set -u
dir=$(mktemp -d); empty=$(mktemp); py=$(mktemp); chmod 755 "$dir"; chmod 444 "$empty"; chmod 644 "$py"
sock="$dir/.s.PGSQL.5432"
cat > "$py" <<'PY'
import socket, time
seen = []
for i in range(60):
    try:
        s = socket.socket(socket.AF_UNIX); s.connect('/work/repo/.s.PGSQL.5432')
        print('CONNECTED after', i * 0.1, 's', s.recv(40)); break
    except OSError as e:
        if e.strerror not in seen: seen.append(e.strerror); print(round(i * 0.1, 1), 's:', e.strerror)
        time.sleep(0.1)
else: print('never connected')
PY
python3 - "$sock" <<'PY' &
import os, socket, sys, time, threading
def serve(s):
    while True:
        try: c, _ = s.accept(); c.send(b'HOST-SERVICE-REACHED'); c.close()
        except OSError: return
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(5); os.chmod(sys.argv[1], 0o777)
threading.Thread(target=serve, args=(s,), daemon=True).start()
time.sleep(3)  # the container is up, the mask in place: the service restarts
s.close(); os.unlink(sys.argv[1])
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(5); os.chmod(sys.argv[1], 0o777)
print('host: socket re-created', flush=True)
threading.Thread(target=serve, args=(s,), daemon=True).start()
time.sleep(8)
PY
srv=$!
sleep 0.5
podman --runtime runc run --rm --network none --userns keep-id --cap-drop ALL --security-opt no-new-privileges \
  --security-opt seccomp="$PWD/seccomp/unix-sockets.json" -v "$dir":/work/repo:ro -v "$empty":/work/repo/.s.PGSQL.5432:ro \
  -v "$py":/p.py:ro localhost/podshell-sandbox:latest python3 /p.py
kill $srv 2>/dev/null; rm -rf "$dir" "$empty" "$py"
