# The facts the lab checks on its Pi (sourced by suite.sh, after lab-lib.sh).
# Each check_* function ends the suite with fail REASON, or records its facts with fact.

facts=()
# fact TEXT: a checked fact, in the suite's log (the summary line only counts them).
fact() {
  facts+=("$*")
  echo "lab: fact: $*"
}

check_fresh_pi() {
  retry 120 pi true || { tail -30 "$work/console.log"; fail "the Pi did not answer SSH on $pi_lan_addr"; }
  retry 60 pi "ip -4 route show default | grep -q 'via $pvs_addr'" ||
    fail "the fresh Pi never took the PVS's DHCP gateway (the lab would not test the countermeasure)"
  fact "fresh Pi: $(pi "ip -4 route show default | grep 'via $pvs_addr'")"
}

# The bridge answers from the LAN side: /health, DeviceList on :80 and :8080, the live
# feed on :9002 and the 2025 API over HTTPS on :443, with the PVS found by upstream=auto.
check_bridge() {
  local out
  check_health_only
  out=$(probe health "http://$pi_lan_addr:8080/health" eth0) || fail "$out"
  grep -q "upstream=http://$pvs_addr\b" <<<"$out" || fail "upstream auto did not find the PVS: $out"
  fact "$out (auto)"
  for port in 80 8080; do
    out=$(probe devicelist "http://$pi_lan_addr:$port/cgi-bin/dl_cgi?Command=DeviceList" "$inverters") ||
      fail "DeviceList on :$port: $out"
  done
  fact "DeviceList=$inverters inverters on :80 and :8080"
  retry 60 probe feed "ws://$pi_lan_addr:9002/" ||
    fail "live feed on :9002: $(probe feed "ws://$pi_lan_addr:9002/" 2>&1)"
  fact "$(probe feed "ws://$pi_lan_addr:9002/") on :9002"
  out=$(probe api "https://$pi_lan_addr" "$inverters") || fail "2025 API over HTTPS: $out"
  fact "$out on :443"
}

# Routes, DNS and forwarding as the network role leaves them.
check_network() {
  local default_route chain
  default_route=$(pi 'ip -4 route show default')
  grep -q "$pvs_addr" <<<"$default_route" && fail "default route still via the PVS: $default_route"
  grep -q "via $router_addr dev eth1" <<<"$default_route" || fail "no default route via the home LAN: $default_route"
  fact "default via $router_addr dev eth1 (fresh: via $pvs_addr)"
  pi "grep -q $pvs_addr /etc/resolv.conf" && fail "the PVS is still a DNS server: $(pi cat /etc/resolv.conf)"
  fact "resolv.conf without the PVS"
  [[ $(pi 'cat /proc/sys/net/ipv4/ip_forward') == 0 ]] || fail "ip_forward is not 0"
  fact "ip_forward=0"
  # (captured first: `grep -q` closing a pipe early would fail the pipeline under pipefail)
  chain=$(pi 'sudo nft list chain inet pvs_bridge forward')
  grep -q 'policy drop' <<<"$chain" || fail "nftables forward policy is not drop: $chain"
  fact "nftables forward policy drop"
}

# The PVS side tries to route through the Pi into the LAN (with a route back, so only the
# Pi can be what stops it), and to reach the Pi's own services; a PVS address off eth0's
# subnet must be refused on the Pi rather than leave by the home LAN.
check_firewall() {
  local pi_pvs_addr out leak
  pi_pvs_addr=$(pi "ip -4 -o addr show dev eth0" | sed -nE 's/.* inet ([0-9.]+)\/.*/\1/p')
  [[ -n $pi_pvs_addr ]] || fail "the Pi has no address on the PVS side"
  ip -n "$pvs_ns" route replace 10.203.0.0/24 via "$pi_pvs_addr"
  ip -n "$lan_ns" route replace 172.27.153.0/24 via "$pi_lan_addr"
  in_pvs ping -c 2 -W 1 -q "$router_addr" >/dev/null 2>&1 && fail "the PVS side pinged the LAN through the Pi"
  out=$(in_pvs "$venv/bin/python" "$here/probe.py" closed "$router_addr" 53) ||
    fail "the PVS side reached the LAN through the Pi: $out"
  probe closed "$router_addr" 53 >/dev/null 2>&1 &&
    fail "control: the LAN router's TCP 53 should answer inside the LAN"
  for port in 22 80 443 8080 9002; do
    out=$(in_pvs "$venv/bin/python" "$here/probe.py" closed "$pi_pvs_addr" "$port") ||
      fail "the PVS side reached the Pi's port $port: $out"
  done
  fact "PVS side cannot reach the LAN through the Pi, nor the Pi's ports 22/80/443/8080/9002"
  # Without the firewall the packet reaches the lab's LAN namespace (which routes
  # nowhere) and the connect times out (status 124).
  leak=$(pi 'timeout 5 bash -c "exec 3<>/dev/tcp/172.27.152.1/80" 2>&1; echo "status=$?"')
  grep -q 'status=124' <<<"$leak" && fail "a request for 172.27.152.1 left by the home LAN: $leak"
  grep -qE 'status=[1-9]' <<<"$leak" || fail "connecting to 172.27.152.1 did not fail: $leak"
  fact "PVS-network traffic never leaves by the LAN"
}

# service_pid: the bridge's main PID, checked to run as the pvs-bridge user.
service_pid() {
  local pid user
  pid=$(pi 'systemctl show -p MainPID --value pvs-bridge')
  [[ $pid =~ ^[1-9][0-9]*$ ]] || { echo "pvs-bridge not running (MainPID=$pid)"; return 1; }
  user=$(pi "ps -o user= -p $pid" | tr -d ' ')
  [[ $user == pvs-bridge ]] || { echo "pvs-bridge runs as '$user'"; return 1; }
  echo "$pid"
}

check_restart() {
  local before after
  before=$(service_pid) || fail "$before"
  fact "service user pvs-bridge"
  pi 'sudo systemctl restart pvs-bridge'
  check_health_only
  after=$(service_pid) || fail "after restart: $after"
  [[ $after != "$before" ]] || fail "systemctl restart did not restart pvs-bridge"
  fact "back after systemctl restart"
}

# /health is ok from the LAN side (within 90 s).
check_health_only() {
  retry 90 probe health "http://$pi_lan_addr:8080/health" eth0 ||
    fail "/health never became ok from the LAN: $(probe health "http://$pi_lan_addr:8080/health" eth0 2>&1)"
}

check_reboot() {
  local boots out tables
  boots=$(cat "$work/boots")
  say "$suite: rebooting the Pi"
  pi 'sudo systemctl reboot' 2>/dev/null || true
  retry 90 grep -qx "$((boots + 1))" "$work/boots" || fail "the Pi did not reboot ($(tail -3 "$work/pi.log"))"
  retry 120 pi true || fail "the Pi did not come back after the reboot"
  check_health_only
  out=$(service_pid) || fail "after reboot: $out"
  out=$(probe devicelist "http://$pi_lan_addr:80/cgi-bin/dl_cgi?Command=DeviceList" "$inverters") ||
    fail "after reboot: $out"
  out=$(pi 'ip -4 route show default')
  grep -q "$pvs_addr" <<<"$out" && fail "after reboot, default route via the PVS: $out"
  [[ $(pi 'cat /proc/sys/net/ipv4/ip_forward') == 0 ]] || fail "after reboot, ip_forward is not 0"
  tables=$(pi 'sudo nft list tables')
  grep -q 'inet pvs_bridge' <<<"$tables" || fail "after reboot, the firewall is not loaded: $tables"
  [[ $(pi hostname) == pvs-bridge ]] || fail "after reboot, the host name is $(pi hostname)"
  fact "back after a reboot (firewall, routes, forwarding, hostname pvs-bridge kept)"
}

# After an undo the Pi is as a fresh one: the PVS's DHCP takes the default route again,
# and no unit, firewall table, user or configuration of the bridge is left.
check_undone() {
  local how=$1 left
  retry 90 pi "ip -4 route show default | grep -q 'via $pvs_addr'" ||
    fail "after $how, the Pi did not take the PVS's default route again: $(pi 'ip -4 route show default')"
  left=$(pi 'systemctl list-unit-files --no-legend pvs-bridge.service; systemctl cat pvs-bridge.service 2>/dev/null | head -1')
  [[ -z $left ]] || fail "after $how, a pvs-bridge unit is left: $left"
  pi 'sudo nft list table inet pvs_bridge' >/dev/null 2>&1 && fail "after $how, nftables table inet pvs_bridge is left"
  pi 'getent passwd pvs-bridge' >/dev/null && fail "after $how, the pvs-bridge user is left"
  pi 'test -e /etc/pvs-bridge' && fail "after $how, /etc/pvs-bridge is left"
  pi 'test -e /etc/NetworkManager/conf.d/90-pvs-bridge.conf' &&
    fail "after $how, /etc/NetworkManager/conf.d/90-pvs-bridge.conf is left"
  left=$(pi hostname)
  [[ $left == raspberrypi ]] || fail "after $how, the host name is $left (fresh: raspberrypi)"
  fact "after $how: PVS default route back, no unit, nft table, user, /etc/pvs-bridge or NM conf; hostname raspberrypi"
}
