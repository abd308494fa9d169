# Helpers of one lab suite (sourced by suite.sh after it set the names below).
#   work, key, venv, here, repo: paths; pvs_ns, lan_ns: namespaces; pi_lan_addr
# Everything that talks to the Pi runs inside the home-LAN namespace.

pids=()  # background services (dnsmasq, simulator)
current= # the long foreground step running now (see step)

# fail REASON: the suite's result line, then exit (the EXIT trap cleans up).
fail() {
  echo "FAILED: $*" >"$work/result"
  echo "lab: FAILED: $*"
  exit 1
}

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

# retry SECONDS COMMAND...: run COMMAND every 2 s until it succeeds, at most SECONDS.
retry() {
  local deadline=$((SECONDS + $1))
  shift
  while ! "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 2
  done
}

in_lan() { ip netns exec "$lan_ns" "$@"; }
in_pvs() { ip netns exec "$pvs_ns" "$@"; }
ssh_options=(-q -i "$key" -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=no
  -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR)
pi() { in_lan ssh "${ssh_options[@]}" "pi@$pi_lan_addr" "$@"; }
probe() { in_lan "$venv/bin/python" "$here/probe.py" "$@"; }

# recap_of LOG: the PLAY RECAP of every host in LOG, on one line ("" if none), e.g.
# "pvs-bridge: ok=70 changed=0 failed=0 skipped=23" (the zero counts of rarer states left out).
recap_of() {
  grep -E '^[^ ]+ +: ok=' "$1" | sed -E 's/ +: +/: /; s/ +/ /g; s/ (unreachable|rescued|ignored)=0//g; s/ $//' |
    paste -sd'|' | sed 's/|/ | /g'
}
# changed_of RECAP: the changed= counts of every host in RECAP, added up ("" if none).
changed_of() {
  grep -oE 'changed=[0-9]+' <<<"$1" | cut -d= -f2 | awk '{n += $1} END {if (NR) print n}'
}

# show_failure LOG: the lines around Ansible's first error, for the suite log.
show_failure() {
  grep -B2 -A12 -E 'fatal:|FAILED!|ERROR!|failed=[1-9]' "$1" | tail -60 || tail -40 "$1"
}
