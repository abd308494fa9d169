# The two ways onto the Pi, run as the README tells a homeowner (sourced by suite.sh):
# the README's fenced blocks after <!-- lab: laptop -->, <!-- lab: on-pi -->,
# <!-- lab: undo-laptop --> and <!-- lab: undo-on-pi --> (readme_blocks.py), verbatim
# with PI_ADDRESS replaced by the Pi's home-LAN address. The lab's own needs (the
# wheelhouse, its SSH key) go through the documented settings places: the ARGS make
# variable and Ansible's environment on the laptop path, the checkout's wheelhouse/ on
# the on-Pi path (deploy/lab/CONTRACT.md).

checkout="$work/checkout"
recap=
parts=()  # what each path proved, for the summary line

readme_block() {  # NAME: the README's block NAME, ready to run
  "$venv/bin/python" "$here/readme_blocks.py" "$repo/README.md" "$1" "$pi_lan_addr" >"$work/block-$1.sh" ||
    fail "README block $1: $(cat "$work/block-$1.sh")"
}

# A copy of the working tree (as after git clone, with local changes), holding the
# wheelhouse; its .venv is this checkout's, where make finds Ansible (installed here on
# the host, which reaches the index: the lab's home LAN routes nowhere).
prepare_checkout() {
  mkdir -p "$checkout"
  (cd "$repo" && git ls-files -z -co --exclude-standard | tar --null --ignore-failed-read -T - -cf -) |
    tar -xf - -C "$checkout"
  ln -s "$venv" "$checkout/.venv"
  mkdir -p "$checkout/wheelhouse"
  cp "$work/wheelhouse"/*.whl "$checkout/wheelhouse/"
  make -C "$checkout" .venv/.deploy-stamp >"$work/deploy-stamp.log" 2>&1 ||
    { tail -20 "$work/deploy-stamp.log"; fail "make .venv/.deploy-stamp failed on the host"; }
}

# ran NAME LOG STATUS: the recap of a deploy command's log, or the suite's end.
ran() {
  local name=$1 log=$2 rc=$3
  if ((rc != 0)); then
    show_failure "$log"
    fail "$name failed (status $rc), see $(basename "$log")"
  fi
  recap=$(recap_of "$log")
  say "$suite: $name: ${recap:-no recap}"
}

# laptop NAME BLOCK [ansible-playbook options]: run a laptop-side block in the checkout copy,
# from the home-LAN namespace, as the homeowner's laptop would.
laptop() {
  local name=$1 block=$2 options=${3:-} log="$work/$1.log" rc=0
  readme_block "$block"
  step ip netns exec "$lan_ns" env -C "$checkout" \
    ARGS="-e bridge_install_source=wheelhouse -e bridge_wheelhouse_dir=$work/wheelhouse $options" \
    ANSIBLE_PRIVATE_KEY_FILE="$key" ANSIBLE_HOST_KEY_CHECKING=False \
    ANSIBLE_SSH_COMMON_ARGS="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null" \
    ANSIBLE_NOCOLOR=1 ANSIBLE_SSH_CONTROL_PATH_DIR="$work/cp" ANSIBLE_LOCAL_TEMP="$work/tmp" \
    timeout 900 bash -e -o pipefail "$work/block-$block.sh" >"$log" 2>&1 || rc=$?
  ran "$name" "$log" "$rc"
}

# on_pi NAME BLOCK: run an on-Pi block over SSH as the pi user, from its home directory.
on_pi() {
  local name=$1 block=$2 log="$work/$1.log" rc=0
  readme_block "$block"
  step pi "timeout 900 bash -e -o pipefail -c $(printf '%q' "$(cat "$work/block-$block.sh")")" \
    </dev/null >"$log" 2>&1 || rc=$?
  ran "$name" "$log" "$rc"
}

second_run_idle() {  # NAME: the recap of the second run says changed=0
  [[ $(changed_of "$recap") == 0 ]] || {
    grep -E '^changed:' "$work/$1.log" | head
    fail "$1 was not idempotent: $recap"
  }
  fact "$1: changed=0"
}

laptop_path() {
  local done=()
  if [[ $suite == bookworm ]]; then
    laptop laptop-check laptop --check
    done+=(check)
  fi
  laptop laptop-first laptop
  check_bridge
  check_network
  check_firewall
  laptop laptop-second laptop
  second_run_idle laptop-second
  check_restart
  check_reboot
  check_cable
  check_upgrade
  done+=(1st 2nd-idle restart reboot cable upgrade)
  laptop laptop-undo undo-laptop
  check_undone "make undeploy"
  laptop laptop-undo-again undo-laptop
  second_run_idle laptop-undo-again
  parts+=("laptop: ${done[*]} undo undo-idle")
}

on_pi_path() {
  say "$suite: copying the checkout to ~pi/pvs-bridge on the Pi"
  tar -C "$checkout" --exclude=./.venv --exclude=./ansible/inventory.ini -cf - . |
    pi 'rm -rf pvs-bridge && mkdir pvs-bridge && tar -xf - -C pvs-bridge' ||
    fail "could not copy the checkout to the Pi"
  on_pi on-pi-first on-pi
  check_bridge
  check_network
  on_pi on-pi-second on-pi
  second_run_idle on-pi-second
  on_pi on-pi-undo undo-on-pi
  check_undone "install.sh --undo"
  parts+=("on-pi: 1st 2nd-idle undo")
}

# The PVS cable pulled (or the PVS off): eth0 loses its link. Re-running the deploy then
# must neither fail nor change anything, and once the cable is back the bridge recovers.
check_cable() {
  say "$suite: pulling the PVS cable and deploying again"
  ip -n "$pvs_ns" link set "$pvs_veth" down
  retry 30 pi '[ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" != 1 ]' || fail "eth0 kept its link"
  # NetworkManager takes the profile down a few seconds after the link goes: the state a
  # real Pi is in whenever the PVS is off, and the one in which "nmcli connection up" fails.
  retry 60 pi '! nmcli -t -f DEVICE connection show --active | grep -qx eth0' ||
    fail "NetworkManager kept the PVS-side profile active without a link"
  laptop laptop-no-link laptop
  [[ $(changed_of "$recap") == 0 ]] || fail "with the PVS cable out the deploy changed something: $recap"
  grep -q 'has no link to the PVS' "$work/laptop-no-link.log" || fail "the deploy did not say the PVS link is down"
  ip -n "$pvs_ns" link set "$pvs_veth" up
  # A client poll makes the bridge try the PVS again (it only refreshes while polled).
  recovered() {
    probe devicelist "http://$pi_lan_addr:80/cgi-bin/dl_cgi?Command=DeviceList" "$inverters" &&
      probe health "http://$pi_lan_addr:8080/health" eth0
  }
  retry 180 recovered || fail "the bridge did not recover after the cable came back: $(recovered 2>&1)"
  fact "cable pulled: deploy ok with changed=0, bridge ok again once plugged back"
}

# The checkout changes (as after git pull) and its wheel is rebuilt, same version: the
# deploy puts the new wheel in place and restarts the bridge, the state directory stays,
# and the run after that changes nothing.
check_upgrade() {
  local marker="# lab upgrade $run"
  say "$suite: upgrading in place (the checkout changed, its wheel rebuilt)"
  echo "$marker" >>"$checkout/bridge/__init__.py"
  rm -f "$work/wheelhouse"/pvs_bridge-*.whl
  SOURCE_DATE_EPOCH=315532800 "$venv/bin/pip" wheel --quiet --disable-pip-version-check --no-deps \
    -w "$work/wheelhouse" "$checkout" >"$work/upgrade-wheel.log" 2>&1 ||
    { tail -20 "$work/upgrade-wheel.log"; fail "could not rebuild the bridge's wheel"; }
  local state before after
  # (the state directory is the service user's alone: looked at with sudo)
  state='sudo find /var/lib/pvs-bridge -type f -exec sha256sum {} + | sort -k2'
  pi 'sudo touch /var/lib/pvs-bridge/lab-kept' || fail "no state directory /var/lib/pvs-bridge"
  before=$(pi "$state" | grep -E 'lab-kept|\.(pem|crt|key)$')
  laptop laptop-upgrade laptop
  (($(changed_of "$recap") > 0)) || fail "the changed checkout was not installed: $recap"
  pi "grep -qxF '$marker' /opt/pvs-bridge/venv/lib/python3*/site-packages/bridge/__init__.py" ||
    fail "after the upgrade, the Pi's bridge/__init__.py lacks the new line"
  after=$(pi "$state")
  while read -r line; do
    grep -qxF "$line" <<<"$after" || fail "the upgrade lost or changed ${line##* } in the state directory"
  done <<<"$before"
  check_health_only
  laptop laptop-upgrade-again laptop
  second_run_idle laptop-upgrade-again
  fact "upgrade in place: new wheel installed, state directory kept ($(wc -l <<<"$before") files: certificate, marker), next run changed=0"
}
