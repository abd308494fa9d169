#!/usr/bin/env bash
# Boot the lab's "Pi" (the root filesystem in ROOT) with systemd-nspawn and keep it wired.
#
# Usage: pi.sh ROOT PVS_NS LAN_NS WORK MACHINE PVS_VETH LAN_VETH
# The Pi (machine name MACHINE) gets two veths: eth0 into the PVS namespace's bridge, eth1
# into the home-LAN namespace's bridge; their host-side ends are PVS_VETH and LAN_VETH
# (per run, so that two labs on one machine never share a name). A reboot inside the container ends systemd-nspawn with status 133
# (the veths die with it); this supervisor then boots it again and rewires the new veths,
# like systemd-nspawn@.service's RestartForceExitStatus=133 would. It stops on any other
# exit, after MAX_BOOTS boots, or on SIGTERM (which powers the container off cleanly).
set -uo pipefail

root=$1 pvs_ns=$2 lan_ns=$3 work=$4 machine=$5 pvs_veth=$6 lan_veth=$7
max_boots=4
nspawn_pid=

stop() {
  if [[ -n $nspawn_pid ]] && kill -0 "$nspawn_pid" 2>/dev/null; then
    kill -TERM "$nspawn_pid" 2>/dev/null   # nspawn -b turns this into an orderly poweroff
    for _ in $(seq 1 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$nspawn_pid" 2>/dev/null
  fi
  exit 0
}
trap stop TERM INT

wire() {  # host-side veth name, namespace
  local dev=$1 ns=$2
  for _ in $(seq 1 300); do
    ip link show "$dev" >/dev/null 2>&1 && break
    kill -0 "$nspawn_pid" 2>/dev/null || return 1
    sleep 0.1
  done
  ip link set "$dev" netns "$ns" && ip -n "$ns" link set "$dev" master br0 up
}

for ((boot = 1; boot <= max_boots; boot++)); do
  echo "$boot" > "$work/boots"
  systemd-nspawn --quiet --boot --directory="$root" --machine="$machine" \
    --register=no --keep-unit --resolv-conf=off --timezone=off --link-journal=no \
    --network-veth-extra="$pvs_veth:eth0" --network-veth-extra="$lan_veth:eth1" \
    </dev/null >>"$work/console.log" 2>&1 &
  nspawn_pid=$!
  echo "$nspawn_pid" > "$work/nspawn.pid"
  if ! wire "$pvs_veth" "$pvs_ns" || ! wire "$lan_veth" "$lan_ns"; then
    echo "pi.sh: could not wire the veths of boot $boot" >&2
  fi
  wait "$nspawn_pid"
  rc=$?
  nspawn_pid=
  if [[ $rc -ne 133 ]]; then
    echo "pi.sh: systemd-nspawn exited with $rc after boot $boot" >&2
    exit "$rc"
  fi
  echo "pi.sh: the Pi rebooted (boot $boot), booting it again" >&2
done
echo "pi.sh: too many reboots" >&2
exit 1
