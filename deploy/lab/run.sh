#!/usr/bin/env bash
# `make lab`: prove ansible/site.yml on a booted Debian "Pi" wired to a simulated PVS.
#
#   [pvslab-pvs netns]                 [systemd-nspawn -b "Pi"]            [pvslab-lan netns]
#   br0 172.27.153.1/24  <-- veth -->  eth0 (DHCP from the "PVS")
#   pvs-bridge simulate :80            eth1 (DHCP from the "router") <-- veth -->  br0 10.203.0.1/24
#   dnsmasq: DHCP, gateway+DNS=itself                                     dnsmasq (home router)
#                                                                         ansible-playbook, checks
#
# Everything runs inside namespaces this script creates: nothing is sent from the host's
# own network namespace. Ends with one line "lab: ok ..." or "lab: FAILED ...", or
# "lab: skipped: <reason>" (exit 0) where the machine cannot run it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache="$here/.cache"
work="$here/work"
venv="$repo/.venv"

pvs_ns=pvslab-pvs
lan_ns=pvslab-lan
pvs_addr=172.27.153.1
router_addr=10.203.0.1
pi_lan_addr=10.203.0.10
inverters=7
started=$SECONDS

skip() { echo "lab: skipped: $*"; exit 0; }
say() { printf 'lab: [%4ds] %s\n' "$((SECONDS - started))" "$*"; }
fail() {
  echo "lab: FAILED: $*"
  exit 1
}

# --- can this machine run the lab? -----------------------------------------------------------
[[ $(uname -s) == Linux ]] || skip "needs Linux (network namespaces, systemd-nspawn)"
[[ $(id -u) -eq 0 ]] || skip "needs root (network namespaces, veths, systemd-nspawn); run as root"
command -v ip >/dev/null || skip "iproute2 (ip) is not installed"

missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
command -v dnsmasq >/dev/null || missing+=(dnsmasq-base)
command -v ssh >/dev/null || missing+=(openssh-client)
if ((${#missing[@]})); then
  command -v apt-get >/dev/null || skip "missing ${missing[*]} and no apt-get to install them"
  say "installing ${missing[*]}"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } \
    >/dev/null || skip "could not install ${missing[*]} with apt-get"
fi
probe_ns="pvslab-probe-$$"
ip netns add "$probe_ns" 2>/dev/null || skip "cannot create network namespaces here (ip netns add failed)"
ip netns del "$probe_ns"
[[ -x $venv/bin/ansible-playbook ]] || fail "$venv/bin/ansible-playbook missing: run make (it creates .venv)"

# --- cleanup, on success, failure and Ctrl-C ---------------------------------------------------
pids=()      # background services (dnsmasq, simulator)
current=     # the long foreground step running now (see step)
# step CMD...: run CMD as a child and wait for it, so that Ctrl-C/TERM reach the trap at once
# (bash runs traps only between commands, but `wait` is interruptible).
step() {
  "$@" &
  current=$!
  local rc=0
  wait "$current" || rc=$?
  current=
  return "$rc"
}
# Kill PID if it is still one of ours: its command line mentions the lab's work directory
# or namespaces (so a PID reused since a killed run is left alone).
kill_ours() {
  local pid=$1 signal=${2:-TERM}
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  local cmdline
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 0
  grep -qE "pvslab|$work" <<<"$cmdline" || return 0
  kill "-$signal" "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n $current ]] && kill -TERM "$current" 2>/dev/null
  if [[ -f $work/pi.pid ]]; then
    local sup
    sup=$(cat "$work/pi.pid")
    kill -TERM "$sup" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$sup" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$sup" 2>/dev/null || true
  fi
  if [[ -f $work/nspawn.pid ]]; then
    kill -KILL "$(cat "$work/nspawn.pid")" 2>/dev/null || true
  fi
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  rm -f "$work/pids"
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  ip netns del "$pvs_ns" 2>/dev/null || true
  ip netns del "$lan_ns" 2>/dev/null || true
  ip link del pvslab-pvs 2>/dev/null || true
  ip link del pvslab-lan 2>/dev/null || true
  rm -rf "$work/root" "$work/cp" "$work/tmp"
  rm -f "$work/pi.pid" "$work/nspawn.pid"
  exit "$rc"
}
trap cleanup EXIT
exec 3>&1   # the trap may fire inside a step whose output goes to a log
trap 'echo "lab: interrupted" >&3; exit 130' INT TERM

# Leftovers of a run that was killed hard (SIGKILL leaves no chance to clean up).
for pid in $(cat "$work/pi.pid" "$work/nspawn.pid" "$work/pids" 2>/dev/null); do kill_ours "$pid" KILL; done
ip netns del "$pvs_ns" 2>/dev/null || true
ip netns del "$lan_ns" 2>/dev/null || true
rm -rf "$work"
mkdir -p "$work/cp" "$work/tmp"

# --- static checks that need no machine ------------------------------------------------------
"$venv/bin/python" "$here/check-unit-drift.py" >"$work/unit-drift.log" ||
  { cat "$work/unit-drift.log"; fail "systemd unit drift"; }

# --- the "freshly flashed Pi" image and the wheelhouse ----------------------------------------
image=cached
compgen -G "$cache/rootfs-*/.lab-complete" >/dev/null || image=built
say "root filesystem ($image)"
step bash "$here/build-rootfs.sh" "$cache" >"$work/rootfs.path" 2>"$work/rootfs.log" &&
  rootfs=$(cat "$work/rootfs.path") ||
  { tail -20 "$work/rootfs.log"; fail "could not build the root filesystem"; }
key="$cache/id_ed25519"
cp -a --reflink=auto "$rootfs" "$work/root"

say "wheelhouse for the Pi (built on the host; the Pi itself has no route to any index)"
mkdir -p "$work/wheelhouse"
step env SOURCE_DATE_EPOCH=315532800 "$venv/bin/pip" wheel --quiet --disable-pip-version-check \
  -w "$work/wheelhouse" "$repo" >"$work/wheelhouse.log" 2>&1 ||
  { tail -20 "$work/wheelhouse.log"; fail "could not build the wheelhouse"; }

# --- the networks ------------------------------------------------------------------------------
say "namespaces: PVS $pvs_addr/24 (DHCP: gateway+DNS=PVS), home LAN $router_addr/24"
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
  --dhcp-leasefile="$work/pvs.leases" --log-dhcp --log-facility="$work/pvs-dnsmasq.log" &
pids+=($!)
# The home router: the Pi's DHCP reservation on the LAN is 10.203.0.10.
ip netns exec "$lan_ns" dnsmasq --conf-file=/dev/null --keep-in-foreground --user=root \
  --bind-interfaces --interface=br0 --except-interface=lo --no-resolv --no-hosts \
  --dhcp-authoritative --dhcp-range=$pi_lan_addr,$pi_lan_addr,255.255.255.0,1h \
  --dhcp-option=option:router,$router_addr --dhcp-option=option:dns-server,$router_addr \
  --dhcp-leasefile="$work/lan.leases" --log-dhcp --log-facility="$work/lan-dnsmasq.log" &
pids+=($!)
ip netns exec "$pvs_ns" "$venv/bin/pvs-bridge" simulate --listen "$pvs_addr:80" \
  --listen-ws "$pvs_addr:9002" --inverters "$inverters" --latency 0.5 >"$work/simulator.log" 2>&1 &
pids+=($!)

# --- boot the Pi -------------------------------------------------------------------------------
say "booting the Pi (systemd-nspawn -b; eth0 -> PVS, eth1 -> home LAN)"
bash "$here/pi.sh" "$work/root" "$pvs_ns" "$lan_ns" "$work" 2>"$work/pi.log" &
echo $! >"$work/pi.pid"
echo "${pids[*]}" >"$work/pids"

in_lan() { ip netns exec "$lan_ns" "$@"; }
in_pvs() { ip netns exec "$pvs_ns" "$@"; }
pi() {
  in_lan ssh -q -i "$key" -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=no \
    -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "pi@$pi_lan_addr" "$@"
}
probe() { "$venv/bin/python" "$here/probe.py" "$@"; }
# retry SECONDS COMMAND...: run COMMAND every 2 s until it succeeds, at most SECONDS.
retry() {
  local limit=$1 deadline=$((SECONDS + $1))
  shift
  while ! "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 2
  done
}

retry 120 pi true || { tail -30 "$work/console.log"; fail "the Pi did not answer SSH on $pi_lan_addr"; }
retry 60 pi 'ip -4 route show default | grep -q "via 172.27.153.1"' ||
  fail "the fresh Pi never took the PVS's DHCP gateway (the lab would not test the countermeasure)"
before=$(pi 'ip -4 route show default | grep "via 172.27.153.1"')
say "fresh Pi up, and as on a real one the PVS took its default route: $before"

# --- provision ---------------------------------------------------------------------------------
cat >"$work/inventory.ini" <<INI
[pvs_bridge]
pi ansible_host=$pi_lan_addr ansible_user=pi ansible_ssh_private_key_file=$key ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'

[pvs_bridge:vars]
network_pvs_interface=eth0
bridge_install_source=wheelhouse
bridge_wheelhouse_dir=$work/wheelhouse
INI

recap=
playbook() {  # NAME [ansible-playbook args...]
  local name=$1 log="$work/ansible-$1.log"
  shift
  if ! step ip netns exec "$lan_ns" env ANSIBLE_CONFIG="$repo/ansible/ansible.cfg" ANSIBLE_NOCOLOR=1 \
    ANSIBLE_SSH_CONTROL_PATH_DIR="$work/cp" ANSIBLE_LOCAL_TEMP="$work/tmp" \
    timeout 900 "$venv/bin/ansible-playbook" -i "$work/inventory.ini" "$repo/ansible/site.yml" \
    "$@" >"$log" 2>&1; then
    grep -B2 -A12 -E 'fatal:|FAILED!|ERROR!' "$log" | tail -60
    fail "ansible-playbook ($name) failed; log: $log"
  fi
  recap=$(grep -E '^pi +:' "$log" | tail -n1)
  say "playbook $name: ${recap#pi*: }"
}

playbook check --check
playbook first
playbook second
changed=$(sed -nE 's/.*changed=([0-9]+).*/\1/p' <<<"$recap")
[[ $changed == 0 ]] || {
  grep -E '^changed:' "$work/ansible-second.log" | head
  fail "second run was not idempotent: changed=$changed"
}
playbook check-provisioned --check
[[ $(sed -nE 's/.*changed=([0-9]+).*/\1/p' <<<"$recap") == 0 ]] ||
  fail "check mode on the provisioned Pi predicts changes: $recap"

# --- the facts -----------------------------------------------------------------------------------
facts=()
bridge_facts() {  # after provisioning, after a restart, after a reboot
  retry 90 in_lan "$venv/bin/python" "$here/probe.py" health "http://$pi_lan_addr:8080/health" eth0 ||
    fail "/health never became ok from the LAN: $(in_lan "$venv/bin/python" "$here/probe.py" health "http://$pi_lan_addr:8080/health" eth0 2>&1)"
}

bridge_facts
for port in 80 8080; do
  out=$(in_lan "$venv/bin/python" "$here/probe.py" devicelist \
    "http://$pi_lan_addr:$port/cgi-bin/dl_cgi?Command=DeviceList" "$inverters") ||
    fail "DeviceList on :$port: $out"
done
facts+=("DeviceList=$inverters inverters on :80 and :8080")
# The live feed from the LAN side, relayed from the simulated PVS's own feed (port 9002).
retry 60 in_lan "$venv/bin/python" "$here/probe.py" feed "ws://$pi_lan_addr:9002/" ||
  fail "live feed on :9002: $(in_lan "$venv/bin/python" "$here/probe.py" feed "ws://$pi_lan_addr:9002/" 2>&1)"
out=$(in_lan "$venv/bin/python" "$here/probe.py" feed "ws://$pi_lan_addr:9002/") || fail "$out"
facts+=("$out on :9002")
# The 2025 API over HTTPS from the LAN side (the lab's PVS runs legacy firmware: the
# bridge serves the API from its site model), as Enhanced SunPower and pypvs use it.
out=$(in_lan "$venv/bin/python" "$here/probe.py" api "https://$pi_lan_addr" "$inverters") ||
  fail "2025 API over HTTPS: $out"
facts+=("$out on :443")
health_fact=$(in_lan "$venv/bin/python" "$here/probe.py" health "http://$pi_lan_addr:8080/health" eth0)
# upstream = "auto" (the role's default) must have found the PVS from eth0's lease.
grep -q "upstream=http://$pvs_addr\b" <<<"$health_fact" || fail "upstream auto did not find the PVS: $health_fact"
facts+=("$health_fact (auto)")

default_route=$(pi 'ip -4 route show default')
grep -q 172.27.153.1 <<<"$default_route" && fail "default route still via the PVS: $default_route"
grep -q "via $router_addr dev eth1" <<<"$default_route" || fail "no default route via the home LAN: $default_route"
facts+=("default via $router_addr dev eth1 (fresh: via 172.27.153.1)")
pi 'grep -q 172.27.153.1 /etc/resolv.conf' && fail "the PVS is still a DNS server: $(pi cat /etc/resolv.conf)"
facts+=("resolv.conf without the PVS")
forward=$(pi 'cat /proc/sys/net/ipv4/ip_forward')
[[ $forward == 0 ]] || fail "ip_forward=$forward"
facts+=("ip_forward=0")
# (captured first: `grep -q` closing a pipe early would fail the pipeline under pipefail)
chain=$(pi 'sudo nft list chain inet pvs_bridge forward')
grep -q 'policy drop' <<<"$chain" || fail "nftables forward policy is not drop: $chain"

# The PVS side tries to route through the Pi into the LAN (with a route back, so only the
# Pi can be what stops it), and to reach the Pi's own services.
pi_pvs_addr=$(pi "ip -4 -o addr show dev eth0" | sed -nE 's/.* inet ([0-9.]+)\/.*/\1/p')
[[ -n $pi_pvs_addr ]] || fail "the Pi has no address on the PVS side"
ip -n "$pvs_ns" route add 10.203.0.0/24 via "$pi_pvs_addr"
ip -n "$lan_ns" route add 172.27.153.0/24 via "$pi_lan_addr"
in_pvs ping -c 2 -W 1 -q "$router_addr" >/dev/null 2>&1 && fail "the PVS side pinged the LAN through the Pi"
out=$(in_pvs "$venv/bin/python" "$here/probe.py" closed "$router_addr" 53) ||
  fail "the PVS side reached the LAN through the Pi: $out"
in_lan "$venv/bin/python" "$here/probe.py" closed "$router_addr" 53 >/dev/null 2>&1 &&
  fail "control: the LAN router's TCP 53 should answer inside the LAN"
for port in 22 80 443 8080 9002; do
  out=$(in_pvs "$venv/bin/python" "$here/probe.py" closed "$pi_pvs_addr" "$port") ||
    fail "the PVS side reached the Pi's port $port: $out"
done
facts+=("PVS side cannot reach the LAN through the Pi, nor the Pi's ports 22/80/443/8080/9002")

# A PVS address off eth0's subnet (some units use 172.27.152.1) would follow the default
# route into the home LAN, as every poll would with the PVS cable out. The firewall must
# refuse it on the Pi at once; without it, the packet reaches the lab's LAN namespace
# (which routes nowhere) and the connect times out (status 124).
leak=$(pi 'timeout 5 bash -c "exec 3<>/dev/tcp/172.27.152.1/80" 2>&1; echo "status=$?"')
grep -q 'status=124' <<<"$leak" && fail "a request for 172.27.152.1 left by the home LAN: $leak"
grep -qE 'status=[1-9]' <<<"$leak" || fail "connecting to 172.27.152.1 did not fail: $leak"
facts+=("PVS-network traffic never leaves by the LAN")

service_user() {
  local pid
  pid=$(pi 'systemctl show -p MainPID --value pvs-bridge')
  [[ $pid =~ ^[1-9][0-9]*$ ]] || { echo "pvs-bridge not running (MainPID=$pid)"; return 1; }
  user=$(pi "ps -o user= -p $pid" | tr -d ' ')
  [[ $user == pvs-bridge ]] || { echo "pvs-bridge runs as '$user'"; return 1; }
  echo "$pid"
}
pid1=$(service_user) || fail "$pid1"
facts+=("service user pvs-bridge")

pi 'sudo systemctl restart pvs-bridge'
bridge_facts
pid2=$(service_user) || fail "after restart: $pid2"
[[ $pid2 != "$pid1" ]] || fail "systemctl restart did not restart pvs-bridge"
facts+=("back after systemctl restart")

say "rebooting the Pi"
pi 'sudo systemctl reboot' 2>/dev/null || true
retry 90 grep -qx 2 "$work/boots" || fail "the Pi did not reboot ($(tail -3 "$work/pi.log"))"
retry 120 pi true || fail "the Pi did not come back after the reboot"
bridge_facts
pid3=$(service_user) || fail "after reboot: $pid3"
out=$(in_lan "$venv/bin/python" "$here/probe.py" devicelist \
  "http://$pi_lan_addr:80/cgi-bin/dl_cgi?Command=DeviceList" "$inverters") || fail "after reboot: $out"
default_route=$(pi 'ip -4 route show default')
grep -q 172.27.153.1 <<<"$default_route" && fail "after reboot, default route via the PVS: $default_route"
[[ $(pi 'cat /proc/sys/net/ipv4/ip_forward') == 0 ]] || fail "after reboot, ip_forward is not 0"
tables=$(pi 'sudo nft list tables')
grep -q 'inet pvs_bridge' <<<"$tables" || fail "after reboot, the firewall is not loaded: $tables"
[[ $(pi hostname) == pvs-bridge ]] || fail "after reboot, the host name is $(pi hostname)"
facts+=("back after a reboot (firewall, routes, forwarding, hostname pvs-bridge kept)")

# The PVS cable pulled (or the PVS off): eth0 loses its link. Re-running the playbook then
# must neither fail nor change anything, and once the cable is back the bridge recovers.
say "pulling the PVS cable and running the playbook again"
ip -n "$pvs_ns" link set pvslab-pvs down
retry 30 pi '[ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" != 1 ]' || fail "eth0 kept its link"
# NetworkManager takes the profile down a few seconds after the link goes: the state a
# real Pi is in whenever the PVS is off, and the one in which "nmcli connection up" fails.
retry 60 pi '! nmcli -t -f DEVICE connection show --active | grep -qx eth0' ||
  fail "NetworkManager kept the PVS-side profile active without a link"
playbook no-link
[[ $(sed -nE 's/.*changed=([0-9]+).*/\1/p' <<<"$recap") == 0 ]] ||
  fail "with the PVS cable out the playbook changed something: $recap"
grep -q 'has no link to the PVS' "$work/ansible-no-link.log" || fail "the playbook did not say the PVS link is down"
ip -n "$pvs_ns" link set pvslab-pvs up
# A client poll makes the bridge try the PVS again (it only refreshes while polled).
recovered() {
  in_lan "$venv/bin/python" "$here/probe.py" devicelist \
    "http://$pi_lan_addr:80/cgi-bin/dl_cgi?Command=DeviceList" "$inverters" &&
    in_lan "$venv/bin/python" "$here/probe.py" health "http://$pi_lan_addr:8080/health" eth0
}
retry 180 recovered || fail "the bridge did not recover after the cable came back: $(recovered 2>&1)"
facts+=("cable pulled: playbook ok with changed=0, bridge ok again once plugged back")

facts+=("check mode ok (fresh, and changed=0 once provisioned), second run changed=0")
facts+=("image $image, $((SECONDS - started))s")
summary=$(IFS=';'; echo "${facts[*]}")
echo "lab: ok ${summary//;/; }"
