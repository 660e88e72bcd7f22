#!/bin/sh
# (sh bench/probes/host-sockets.sh, from the repository root, as the unprivileged user.)
# Attacker's view of host unix sockets with AF_UNIX allowed vs denied (issue 9). Runs as the test
# user on the "host": an abstract socket and a pathname socket created in a mounted directory AFTER
# the container started (so no create-time mask can cover it); the container polls and connects.
set -u
cd ~/w
dir=$(mktemp -d); py=$(mktemp); chmod 755 "$dir"; chmod 644 "$py"
cat > "$py" <<'PY'
import socket, sys, time
for p in [sys.argv[1], '\0podshell-probe-abstract']:
    ok = False
    for _ in range(50):
        try:
            s = socket.socket(socket.AF_UNIX); s.connect(p); print('CONNECTED', repr(p), s.recv(40)); ok = True; break
        except OSError as e:
            err = e.strerror
            if e.errno == 1: break
            time.sleep(0.1)
    if not ok: print('refused', repr(p), err)
PY
python3 -c '
import socket, threading, sys, time
def serve(addr):
    s = socket.socket(socket.AF_UNIX); s.bind(addr); s.listen(5)
    if not addr.startswith("\0"): import os; os.chmod(addr, 0o777)  # as PostgreSQL does
    while True:
        c, _ = s.accept(); c.send(b"HOST-SERVICE-REACHED"); c.close()
threading.Thread(target=serve, args=("\0podshell-probe-abstract",), daemon=True).start()
time.sleep(1.5)  # after the container started
threading.Thread(target=serve, args=(sys.argv[1] + "/.s.PGSQL.5432",), daemon=True).start()
time.sleep(12)' "$dir" &
srv=$!
for prof in default unix-sockets; do
  echo "== profile $prof"
  podman --runtime runc run --rm --network none --userns keep-id --cap-drop ALL --security-opt no-new-privileges \
    --security-opt seccomp=$PWD/seccomp/$prof.json -v "$dir":/work/repo:ro -v "$py":/p.py:ro \
    localhost/podshell-sandbox:latest python3 /p.py /work/repo/.s.PGSQL.5432
done
kill $srv; rm -rf "$dir" "$py"
