#!/usr/bin/env bash
# `make lab`: prove the README's deploy paths on booted Debian "Pis" wired to a simulated
# PVS, one per suite: bookworm (Debian 12) and trixie (Debian 13), the bases of the
# Raspberry Pi OS images in use. See suite.sh for what one suite does.
#
# Usage: run.sh [SUITE...]   (default: $LAB_SUITES, else "bookworm trixie")
# While working on the lab: LAB_PATHS=on-pi (or laptop) runs one deploy path, and
# LAB_HOLD=SECONDS keeps a failed suite's Pi up that long (the SSH command is printed).
# Ends with exactly one line per suite, "lab: ok SUITE ...", "lab: FAILED SUITE ..." or
# "lab: skipped SUITE: <reason>" (exit 0 when skipped), each naming its log.
#
# Sharing a machine: every name (namespaces, veths, machine, work directory) carries the
# run's id (this script's PID), and a lock makes a second lab on the machine wait for
# the first. At start, only what dead runs left behind is removed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache="$here/.cache"
venv="$repo/.venv"
run=$$
# shellcheck source=deploy/lab/progress.sh
source "$here/progress.sh"

read -r -a suites <<<"${*:-${LAB_SUITES:-bookworm trixie}}"
for suite in "${suites[@]}"; do
  [[ $suite =~ ^(bookworm|trixie)$ ]] || { echo "lab: unknown suite '$suite' (bookworm, trixie)"; exit 2; }
done

skip() {
  for suite in "${suites[@]}"; do echo "lab: skipped $suite: $*"; done
  exit 0
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
command -v flock >/dev/null || missing+=(util-linux)
command -v unzip >/dev/null || missing+=(unzip)
if ((${#missing[@]})); then
  command -v apt-get >/dev/null || skip "missing ${missing[*]} and no apt-get to install them"
  say "installing ${missing[*]}"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } \
    >/dev/null || skip "could not install ${missing[*]} with apt-get"
fi
probe_ns="pvslab${run}-probe"
ip netns add "$probe_ns" 2>/dev/null || skip "cannot create network namespaces here (ip netns add failed)"
ip netns del "$probe_ns"
[[ -x $venv/bin/ansible-playbook ]] || { echo "lab: FAILED: $venv/bin/ansible-playbook missing: run make"; exit 1; }

# --- one lab at a time on this machine ---------------------------------------------------------
# The lock is machine-wide (/run), so labs of two checkouts wait for each other too.
lockdir=/run/pvs-bridge-lab
mkdir -p "$lockdir"
exec 9>"$lockdir/lock"
if ! flock -n 9; then
  say "waiting for the lab lock held by PID $(cat "$lockdir/holder" 2>/dev/null || echo '?') ($lockdir/lock)"
  flock 9
fi
echo "$run" >"$lockdir/holder"

# shellcheck source=deploy/lab/reap.sh
source "$here/reap.sh"
reap_dead_runs "$here/work"

workdir="$here/work/$run"
mkdir -p "$workdir"
if ! "$venv/bin/python" "$here/check-unit-drift.py" >"$workdir/unit-drift.log"; then
  cat "$workdir/unit-drift.log"
  for suite in "${suites[@]}"; do echo "lab: FAILED $suite: systemd unit drift (see above)"; done
  exit 1
fi

# --- the suites, one after the other -------------------------------------------------------------
child=
trap '[[ -n $child ]] && kill -TERM "$child" 2>/dev/null; wait; echo "lab: interrupted"; exit 130' INT TERM
lines=()
failed=0
for suite in "${suites[@]}"; do
  mkdir -p "$workdir/$suite"
  log="$workdir/$suite/lab.log"
  started=$SECONDS
  say "$suite: started (log: ${log#"$repo"/})"
  rc=0
  # (9>&-: no process of the suite keeps the lock once this script is gone)
  LAB_RUN=$run bash "$here/suite.sh" "$suite" "$workdir/$suite" 3>&2 >"$log" 2>&1 9>&- &
  child=$!
  wait "$child" || rc=$?
  child=
  result=$(cat "$workdir/$suite/result" 2>/dev/null || echo "FAILED: no result (status $rc)")
  ((rc == 0)) || failed=1
  [[ $result == ok* && $rc == 0 ]] || result="FAILED ${result#FAILED: }"
  result="${result/#ok/ok $suite:}"
  [[ $result == FAILED* ]] && result="FAILED $suite: ${result#FAILED }"
  tail_part="; $((SECONDS - started))s; log ${log#"$repo"/}"
  # One line under 200 characters: the result is shortened, never the time or the log path.
  room=$((199 - 5 - ${#tail_part}))
  ((${#result} > room)) && result="${result:0:$((room - 3))}..."
  lines+=("lab: $result$tail_part")
done
printf '%s\n' "${lines[@]}"
exit "$failed"
