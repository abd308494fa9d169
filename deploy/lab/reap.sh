# What lab runs killed hard (SIGKILL, a crash, a reboot of the host's namespaces) left
# behind, removed by the next run while it holds the lab lock (sourced by run.sh); the
# logs of the last few runs are kept.
# A run is known by its id (its run.sh's PID) in every name it creates; only runs whose
# run.sh is gone are touched, never a live one.

# alive_run ID: the lab run ID is still running (this one, or a run.sh with that PID).
alive_run() {
  local id=$1
  [[ $id == "$run" ]] && return 0
  tr "\0" " " 2>/dev/null <"/proc/$id/cmdline" | grep -q 'run\.sh'
}

# run_ids WORKROOT: the ids of every run with namespaces, veths or copies in a work directory.
run_ids() {
  {
    ip netns list | sed -nE 's/^pvslab([0-9]+)-.*/\1/p'
    ip -o link show | sed -nE 's/^[0-9]+: lab([0-9]+)[bt][pl][@:].*/\1/p'
    # (a run that ended cleanly left only logs in its directory)
    find "$1" -mindepth 3 -maxdepth 3 -regex '.*/[0-9]+/[a-z]+/\(root\|checkout\|wheelhouse\|pi.pid\|pids\)' \
      2>/dev/null | sed -nE 's|.*/([0-9]+)/[a-z]+/[^/]+$|\1|p'
  } | sort -u
}

# kill_run_processes ID WORKROOT: the run's dnsmasq, simulator and Pi (everything in its
# namespaces, or with its root file system, or naming its work directory), then pi.sh.
kill_run_processes() {
  local id=$1 dir="$2/$1" proc pid
  for ns in $(ip netns list | awk -v p="pvslab$id-" 'index($1, p) == 1 {print $1}'); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
  done
  for proc in /proc/[0-9]*; do
    pid=${proc#/proc/}
    if [[ $(readlink "$proc/root" 2>/dev/null) == "$dir/"* ]] ||
      tr "\0" " " 2>/dev/null <"$proc/cmdline" | grep -qF -e "$dir/" -e "pvslab$id-"; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

keep_runs=5

reap_dead_runs() {
  local workroot=$1 id mount old
  mkdir -p "$workroot"
  for id in $(run_ids "$workroot"); do
    alive_run "$id" && continue
    say "removing what the dead lab run $id left behind"
    kill_run_processes "$id" "$workroot"
    for name in $(ip netns list | awk -v p="pvslab$id-" 'index($1, p) == 1 {print $1}'); do
      ip netns del "$name" 2>/dev/null || true
    done
    for name in "lab${id}"{b,t}{p,l}; do ip link del "$name" 2>/dev/null || true; done
    for mount in $(awk -v d="$workroot/$id/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do
      umount -l "$mount" 2>/dev/null || true
    done
    # Its logs stay (the run before may have just printed their path); its copies go.
    rm -rf "${workroot:?}/$id"/*/{root,checkout,wheelhouse,cp,tmp,pi.pid,nspawn.pid,pids}
  done
  # The logs of the last few runs are kept, older ones dropped.
  find "$workroot" -mindepth 1 -maxdepth 1 -regex '.*/[0-9]+' -printf '%T@ %p\n' | sort -rn |
    tail -n +"$((keep_runs + 1))" | cut -d' ' -f2- | while read -r old; do
    alive_run "$(basename "$old")" || rm -rf "$old"
  done
  # The layout before per-run directories kept its files directly in work/.
  find "$workroot" -mindepth 1 -maxdepth 1 ! -regex '.*/[0-9]+' -exec rm -rf {} +
}
