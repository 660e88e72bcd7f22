#!/usr/bin/env bash
# Test network (run as root; idempotent). The e2e suite's upstream servers must never sit on this
# machine's own LAN address: .ci/run (and a developer, by hand) runs the tests inside a network
# namespace made here, whose only non-loopback address is its own test address. Its veth peer in the
# root namespace has the other end, so rootless podman's slirp4netns (wherever it was started) routes
# to it, and nothing else is reachable from inside: traffic stays on this machine.
#   podshell-test: lo + psht1 198.18.0.2/24  <--veth-->  root ns: psht0 198.18.0.1/24
# 198.18.0.0/15 (RFC 2544, benchmarking) is a range the gateway treats as private: reachable only
# through an endpoint's allowed_ips, exactly as a LAN test host would be.
set -euo pipefail
NS=${PODSHELL_TEST_NETNS:-podshell-test}
# Callers may run concurrently (every as-test-user.sh call comes here): one at a time.
exec 9>/run/podshell-test-netns.lock
flock 9
# (No `ip ... | grep -q` here: with pipefail, grep's early exit can fail the pipeline by SIGPIPE.)
if [ ! -e "/run/netns/$NS" ]; then
  ip netns add "$NS"
fi
if ! ip link show psht0 >/dev/null 2>&1; then
  ip link add psht0 type veth peer name psht1
  ip link set psht1 netns "$NS"
  ip addr add 198.18.0.1/24 dev psht0
fi
ip link set psht0 up
ip -n "$NS" link set lo up
[[ $(ip -n "$NS" addr show dev psht1) == *" 198.18.0.2/"* ]] || ip -n "$NS" addr add 198.18.0.2/24 dev psht1
ip -n "$NS" link set psht1 up
# Every request through the gateway is a new TCP connection from podman's network helper
# (slirp4netns/pasta, started in this namespace) to the upstream test server; the helper's side
# closes first, so each leaves a TIME_WAIT for 60 s. The load test makes ~480 such connections a
# second to one address:port: in 60 s that is the whole ephemeral range (28,232 ports; measured
# 11,450 TIME_WAIT after 30 s at load 5), and the next connect fails with EADDRNOTAVAIL, which
# the gateway reports as a 502. The kernel's default reuse (tcp_tw_reuse=2) covers 127/8 only,
# not this address: allow reuse of a TIME_WAIT port older than 1 s here (per namespace).
ip netns exec "$NS" sysctl -qw net.ipv4.tcp_tw_reuse=1
echo "[test-netns] $NS ready: tests bind 198.18.0.2" >&2
