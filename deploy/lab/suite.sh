#!/usr/bin/env bash
# One suite of `make lab`: a freshly flashed "Pi" of Debian SUITE, booted with
# systemd-nspawn, wired to a simulated PVS and a home LAN, provisioned and undone by
# each deploy path the README documents, with the facts checked after each step.
#
#   [pvslab<run>-<suite>-pvs netns]    [systemd-nspawn -b "Pi"]      [pvslab<run>-<suite>-lan netns]
#   br0 172.27.153.1/24  <-- veth -->  eth0 (DHCP from the "PVS")
#   pvs-bridge simulate :80            eth1 (DHCP from the "router") <-- veth -->  br0 10.203.0.1/24
#   dnsmasq: DHCP, gateway+DNS=itself                                     dnsmasq (home router)
#                                                                         Ansible, checks
#
# Usage: suite.sh SUITE WORK (run by run.sh, which holds the lab lock and sets LAB_RUN,
# the run's id in every name). Progress lines go to file descriptor 3, details to stdout
# and stderr (the suite's log); WORK/result gets "ok SUMMARY" or "FAILED: REASON".
# Everything runs inside namespaces this script creates: nothing is sent from the host's
# own network namespace.
set -euo pipefail

suite=${1:?usage: suite.sh SUITE WORK}
work=${2:?usage: suite.sh SUITE WORK}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache="$here/.cache"
venv="$repo/.venv"
run=${LAB_RUN:?set by run.sh}

# Names of this run only (interface names stay within 15 characters).
pvs_ns="pvslab${run}-${suite}-pvs"
lan_ns="pvslab${run}-${suite}-lan"
pvs_veth="lab${run}${suite:0:1}p"
lan_veth="lab${run}${suite:0:1}l"
machine="pvslab${run}-$suite"
pvs_addr=172.27.153.1
router_addr=10.203.0.1
pi_lan_addr=10.203.0.10
inverters=7
key="$cache/id_ed25519"

# shellcheck source=deploy/lab/progress.sh
source "$here/progress.sh"
# shellcheck source=deploy/lab/lab-lib.sh
source "$here/lab-lib.sh"
# shellcheck source=deploy/lab/facts.sh
source "$here/facts.sh"
# shellcheck source=deploy/lab/paths.sh
source "$here/paths.sh"

# --- cleanup, on success, failure and Ctrl-C ---------------------------------------------------
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e # everything below is attempted, whatever fails
  # LAB_HOLD=SECONDS keeps a failed suite's Pi up that long, to look around in it.
  if ((rc != 0)) && [[ ${LAB_HOLD:-} =~ ^[0-9]+$ ]]; then
    say "$suite: holding the Pi ${LAB_HOLD}s: ip netns exec $lan_ns ssh -i $key pi@$pi_lan_addr"
    sleep "$LAB_HOLD"
  fi
  [[ -n $current ]] && kill -TERM "$current" 2>/dev/null
  if [[ -f $work/pi.pid ]]; then
    local sup
    sup=$(cat "$work/pi.pid")
    kill -TERM "$sup" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$sup" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$sup" 2>/dev/null || true
  fi
  [[ -f $work/nspawn.pid ]] && kill -KILL "$(cat "$work/nspawn.pid")" 2>/dev/null
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  ip netns del "$pvs_ns" 2>/dev/null
  ip netns del "$lan_ns" 2>/dev/null
  ip link del "$pvs_veth" 2>/dev/null
  ip link del "$lan_veth" 2>/dev/null
  rm -rf "$work/root" "$work/cp" "$work/tmp" "$work/checkout" "$work/wheelhouse"
  rm -f "$work/pi.pid" "$work/nspawn.pid" "$work/pids"
  [[ -s $work/result ]] || echo "FAILED: stopped (status $rc)" >"$work/result"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "FAILED: interrupted" >"$work/result"; exit 130' INT TERM
rm -f "$work/result"
mkdir -p "$work/cp" "$work/tmp"

# --- the "freshly flashed Pi" image and the wheelhouse ----------------------------------------
say "$suite: root filesystem"
step bash "$here/build-rootfs.sh" "$suite" "$cache" >"$work/rootfs.path" 2>"$work/rootfs.log" &&
  rootfs=$(cat "$work/rootfs.path") ||
  { tail -20 "$work/rootfs.log"; fail "could not build the $suite root filesystem"; }
image=cached
grep -q 'building the' "$work/rootfs.log" && image=built
cp -a --reflink=auto "$rootfs" "$work/root"
python=$(readlink "$work/root/usr/bin/python3")   # python3.11 on bookworm, python3.13 on trixie
python=${python#python}
say "$suite: wheelhouse for the Pi's Python $python (the Pi has no route to any index)"
step bash "$here/wheelhouse.sh" "$python" "$cache" "$work/wheelhouse" >"$work/wheelhouse.log" 2>&1 ||
  { tail -20 "$work/wheelhouse.log"; fail "could not build the wheelhouse"; }

# --- the networks ------------------------------------------------------------------------------
say "$suite: namespaces: PVS $pvs_addr/24 (DHCP: gateway+DNS=PVS), home LAN $router_addr/24"
for ns in "$pvs_ns" "$lan_ns"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$ns" link add br0 type bridge
  ip -n "$ns" link set br0 up
done
ip -n "$pvs_ns" addr add "$pvs_addr/24" dev br0
ip -n "$lan_ns" addr add "$router_addr/24" dev br0

# The "PVS": DHCP on 172.27.153.0/24 handing out ITSELF as gateway and DNS, like the real
# one, and a DNS server that answers every name with its own address.
ip netns exec "$pvs_ns" dnsmasq --conf-file=/dev/null --keep-in-foreground --user=root \
  --bind-interfaces --interface=br0 --except-interface=lo --no-resolv --no-hosts \
  --address=/#/$pvs_addr --dhcp-authoritative \
  --dhcp-range=172.27.153.10,172.27.153.99,255.255.255.0,1h \
  --dhcp-option=option:router,$pvs_addr --dhcp-option=option:dns-server,$pvs_addr \
  --pid-file="$work/pvs-dnsmasq.pid" --dhcp-leasefile="$work/pvs.leases" --log-dhcp --log-facility="$work/pvs-dnsmasq.log" &
pids+=($!)
# The home router: the Pi's DHCP reservation on the LAN is 10.203.0.10.
ip netns exec "$lan_ns" dnsmasq --conf-file=/dev/null --keep-in-foreground --user=root \
  --bind-interfaces --interface=br0 --except-interface=lo --no-resolv --no-hosts \
  --dhcp-authoritative --dhcp-range=$pi_lan_addr,$pi_lan_addr,255.255.255.0,1h \
  --dhcp-option=option:router,$router_addr --dhcp-option=option:dns-server,$router_addr \
  --pid-file="$work/lan-dnsmasq.pid" --dhcp-leasefile="$work/lan.leases" --log-dhcp --log-facility="$work/lan-dnsmasq.log" &
pids+=($!)
ip netns exec "$pvs_ns" "$venv/bin/pvs-bridge" simulate --listen "$pvs_addr:80" \
  --listen-ws "$pvs_addr:9002" --inverters "$inverters" --latency 0.5 >"$work/simulator.log" 2>&1 &
pids+=($!)

# --- boot the Pi -------------------------------------------------------------------------------
say "$suite: booting the Pi (systemd-nspawn -b; eth0 -> PVS, eth1 -> home LAN)"
bash "$here/pi.sh" "$work/root" "$pvs_ns" "$lan_ns" "$work" "$machine" "$pvs_veth" "$lan_veth" \
  2>"$work/pi.log" &
echo $! >"$work/pi.pid"
echo "${pids[*]}" >"$work/pids"
check_fresh_pi
say "$suite: fresh Pi up, and as on a real one the PVS took its default route"

# --- the deploy paths ----------------------------------------------------------------------------
# Both on the same Pi: the on-Pi path starts from what the laptop path's undo left, which
# the undo checks found to be as fresh.
# LAB_PATHS=on-pi (or laptop) runs one of them, while working on it.
prepare_checkout
for path in ${LAB_PATHS:-laptop on-pi}; do
  case $path in
    laptop) laptop_path ;;
    on-pi) on_pi_path ;;
    *) fail "unknown path in LAB_PATHS: $path (laptop, on-pi)" ;;
  esac
done

summary="$(IFS=';'; echo "${parts[*]}" | sed 's/;/; /g'); ${#facts[@]} facts; image $image"
echo "ok $summary" >"$work/result"
echo "lab: ok $suite: $summary"
