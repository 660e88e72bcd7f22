#!/usr/bin/env bash
# The Podman 5 lane: a second Podman on a Debian 12 (Podman 4.3) host. Debian 13 "trixie" packages
# (podman 5.4, netavark, aardvark-dns, pasta, crun, runc, sqlite state) in their own root tree,
# entered with pivot_root in a private mount namespace. Not chroot: the kernel refuses a rootless
# user namespace inside a chroot, and rootless Podman needs one. Same kernel, same cgroup tree.
# Run as root. Debian packages only (mmdebstrap from the Debian mirror the host's apt uses).
#
#   podman5-lane.sh setup               build the tree once (about 40 s), or say it is ready
#   podman5-lane.sh run USER CMD...     run CMD (argv) as host user USER inside the tree, in the test
#                                       network namespace (scripts/test-netns.sh) unless
#                                       PODSHELL_HOST_NET=1 (package mirrors: image builds)
#   podman5-lane.sh version             the tree's podman version
#   podman5-lane.sh reset USER          an idle USER starts empty: its lane processes (pause,
#                                       leftover containers) end, its runtime dir, lock segment and
#                                       podman storage go (CI does this before each run)
#
# USER is a host user with its own subuid/subgid range. Give the lane its own user: Podman 4 and
# Podman 5 must not share one user's storage (5 migrates the state database to sqlite and its
# network config to netavark). The tree gets the user's name, uid, gid, ranges and home; the host's
# /home, /opt (the Node of scripts/host-setup.sh), /tmp and /dev are bound in. CMD runs in DIR
# when PODMAN5_DIR is set (a path under /home, /opt or /tmp), else in the user's home.
# The tree's crun fails on hybrid-cgroup hosts as the host's does; podshell probes and uses runc.
set -euo pipefail
ROOT=${PODSHELL_PODMAN5_ROOT:-/var/tmp/podshell-podman5}
SUITE=trixie
# podman pulls in conmon, netavark, aardvark-dns, passt (pasta) and containers-storage; slirp4netns
# is listed so doctor can compare the two helpers; mmdebstrap so `image build --offline` works inside;
# gcc and libc6-dev because the e2e attack tests compile their static probe on the host; direnv for
# the host-exec attack test (direnv on the host must run nothing the agent planted); openssh-client
# (ssh, scp) for the ssh-config test.
PKGS=podman,crun,runc,passt,slirp4netns,uidmap,fuse-overlayfs,catatonit,mmdebstrap,debian-archive-keyring,ca-certificates,curl,git,iproute2,procps,socat,gcc,libc6-dev,direnv,openssh-client
NS=${PODSHELL_TEST_NETNS:-podshell-test}
# The lane user's XDG_RUNTIME_DIR, kept on the host's /run across `run` calls as a login session
# keeps /run/user/UID: podman's pause process and running containers (the gateway) are recorded in
# it, and its lock segment in /dev/shm (the host's) lives as long. A fresh one per call made every
# call look like a reboot to podman ("Refreshing container ...: acquiring lock 0 ...: file exists").
RUNDIR=/run/podshell-podman5
here=$(cd "$(dirname "$0")" && pwd)

log() { printf '[podman5-lane] %s\n' "$*" >&2; }

# The Debian mirror the host's apt uses (deb822 or one-line format), else mmdebstrap's default.
host_mirror() {
  local m
  m=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1 || true)
  [ -n "$m" ] || m=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}' | grep -v security | head -n1 || true)
  printf '%s' "${PODSHELL_DEBIAN_MIRROR:-$m}"
}

setup() {
  exec 9>"$ROOT.lock"; flock 9   # two CI runs or helpers building at once: one builds, one waits
  # A tree made from another package list is rebuilt.
  if [ -x "$ROOT/usr/bin/podman" ] && [ "$(cat "$ROOT/.podshell-pkgs" 2>/dev/null)" = "$PKGS" ]; then log "$ROOT ready (podman $(version))"; return; fi
  command -v mmdebstrap >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null; }
  local mirror t0=$SECONDS
  mirror=$(host_mirror)
  rm -rf "$ROOT.tmp"
  # --variant=apt: essential + apt, then PKGS with their dependencies (not recommends: no extras).
  mmdebstrap --variant=apt --include="$PKGS" "$SUITE" "$ROOT.tmp" ${mirror:+"$mirror"} >/dev/null
  echo "$PKGS" >"$ROOT.tmp/.podshell-pkgs"
  rm -rf "$ROOT"; mv "$ROOT.tmp" "$ROOT"
  log "built $ROOT in $((SECONDS - t0)) s (podman $(version))"
}

version() { chroot "$ROOT" dpkg-query -W -f '${Version}' podman; }

reset() {
  local user=$1 uid home pids
  uid=$(id -u "$user"); home=$(getent passwd "$user" | cut -d: -f6)
  # Everything this user runs here is the lane's (CI gives the lane its own user): end it by pid.
  pids=$(ps -u "$uid" -o pid= || true)
  if [ -n "$pids" ]; then kill $pids 2>/dev/null || true; sleep 1; kill -9 $(ps -u "$uid" -o pid= || true) 2>/dev/null || true; fi
  rm -rf "${RUNDIR:?}/user/$uid" "/dev/shm/libpod_rootless_lock_$uid" "$home/.local/share/containers" "$home/.local/share/podshell" "$home/.cache/podshell"
  log "reset $user: no processes, empty runtime dir and podman storage"
}

run() {
  local user=$1; shift
  [ -x "$ROOT/usr/bin/podman" ] || { log "no tree at $ROOT: run '$0 setup' first"; exit 1; }
  local uid gid home f
  uid=$(id -u "$user"); gid=$(id -g "$user"); home=$(getent passwd "$user" | cut -d: -f6)
  case $home in /home/*) ;; *) log "$user's home $home is not under /home (only /home is bound into the tree)"; exit 1 ;; esac
  # The user as the host knows it, inside the tree.
  grep -q "^$user:" "$ROOT/etc/group" || echo "$user:x:$gid:" >>"$ROOT/etc/group"
  grep -q "^$user:" "$ROOT/etc/passwd" || echo "$user:x:$uid:$gid::$home:/bin/bash" >>"$ROOT/etc/passwd"
  for f in subuid subgid; do
    sed -i "/^$user:/d" "$ROOT/etc/$f"
    grep "^$user:" "/etc/$f" >>"$ROOT/etc/$f" || { log "$user has no /etc/$f range (scripts/host-setup.sh makes one)"; exit 1; }
  done
  mkdir -p "$RUNDIR/user/$uid"; chown "$uid:$gid" "$RUNDIR/user/$uid"; chmod 700 "$RUNDIR/user/$uid"
  local enter=()
  if [ "${PODSHELL_HOST_NET:-}" != 1 ]; then bash "$here/test-netns.sh"; enter=(nsenter --net="/run/netns/$NS"); fi
  local path="${PODSHELL_NODE_DIR:-/opt/podshell-node}/bin:/usr/local/bin:/usr/bin:/bin"
  # In a private mount namespace: bind the tree onto itself (pivot_root needs a mount point), give
  # it the host's /dev, /sys, /home, /opt, /tmp, a fresh proc and /run, then pivot into it and drop
  # the old root. /run is a tmpfs of this namespace; /run/user/UID is the user's dir under $RUNDIR.
  # PODMAN_IGNORE_CGROUPSV1_WARNING: Podman 5 warns on every command on a cgroup v1 host.
  exec "${enter[@]}" unshare -m --propagation private bash -c '
    set -e; R=$1; uid=$2; gid=$3; home=$4; path=$5; dir=$6; rundir=$7; shift 7
    mount --rbind "$R" "$R"; cd "$R"
    mount --rbind /dev dev; mount --rbind /sys sys; mount -t proc proc proc
    mount --rbind /home home; mkdir -p opt; mount --rbind /opt opt; mount --rbind /tmp tmp
    mount -t tmpfs tmpfs run; mkdir -p run/user/$uid; mount --bind "$rundir/user/$uid" run/user/$uid
    mkdir -p .oldroot; pivot_root . .oldroot; umount -l /.oldroot; cd /
    mount --make-rshared /
    exec setpriv --reuid=$uid --regid=$gid --init-groups env -i HOME="$home" USER="$(id -nu $uid)" LOGNAME="$(id -nu $uid)" \
      XDG_RUNTIME_DIR=/run/user/$uid PATH="$path" TERM=dumb LANG=C.UTF-8 \
      PODMAN_IGNORE_CGROUPSV1_WARNING=1 ${CI:+CI=$CI} ${NODE_EXTRA_CA_CERTS:+NODE_EXTRA_CA_CERTS=$NODE_EXTRA_CA_CERTS} \
      ${PODSHELL_FUZZ_COUNT:+PODSHELL_FUZZ_COUNT=$PODSHELL_FUZZ_COUNT} \
      bash -c "cd \"\$0\" && exec \"\$@\"" "${dir:-$home}" "$@"' _ "$ROOT" "$uid" "$gid" "$home" "$path" "${PODMAN5_DIR:-}" "$RUNDIR" "$@"
}

case ${1:-} in
  setup) setup ;;
  version) version ;;
  reset) [ $# -eq 2 ] || { echo "usage: $0 reset USER" >&2; exit 2; }; reset "$2" ;;
  run) [ $# -ge 3 ] || { echo "usage: $0 run USER CMD..." >&2; exit 2; }; shift; run "$@" ;;
  *) echo "usage: $0 setup | version | run USER CMD..." >&2; exit 2 ;;
esac
