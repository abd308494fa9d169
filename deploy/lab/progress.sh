# Progress lines of the lab, sourced by its scripts.
#
# say MESSAGE: one line "lab: [ 12s] MESSAGE" on file descriptor 3 when open (the
# terminal, while stdout and stderr go to the suite's log) and on stderr (the log),
# else on stdout; the seconds
# count from LAB_T0 (the run's start, epoch seconds), so every script of one run agrees.
LAB_T0=${LAB_T0:-$(date +%s)}
export LAB_T0

say() {
  local line
  printf -v line 'lab: [%4ds] %s' "$(($(date +%s) - LAB_T0))" "$*"
  if { true >&3; } 2>/dev/null; then
    echo "$line" >&3
    echo "$line" >&2
  else
    echo "$line"
  fi
}

# watch_debootstrap SUITE PID LOG TARGET: while PID runs, every 10 s, say which debootstrap
# stage LOG has reached and how far it got: packages downloaded so far, then packages
# installed in TARGET (a root filesystem takes about a minute: silence would look like a hang).
watch_debootstrap() {
  local suite=$1 pid=$2 log=$3 target=$4 last stage count
  while kill -0 "$pid" 2>/dev/null; do
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || return 0
      sleep 0.2
    done
    last=$(grep -E '^I: [A-Z]' "$log" 2>/dev/null | tail -n1 | awk '{print $2}')
    case $last in
      Retrieving | Validating) stage=downloading ;;
      Extracting) stage=extracting ;;
      Installing | Unpacking) stage=unpacking ;;
      Configuring) stage=configuring ;;
      Base) stage=finishing ;;
      *) stage="reading the package lists" ;;
    esac
    case $last in
      Retrieving | Validating | Extracting)
        count="$(grep -cE "^I: $last [a-z0-9]" "$log" 2>/dev/null || true) packages" ;;
      Installing | Unpacking | Configuring | Base)
        count="$(grep -c '^Status: install ok \(installed\|unpacked\|half-configured\)' \
          "$target/var/lib/dpkg/status" 2>/dev/null || true) packages unpacked" ;;
      *) count= ;;
    esac
    say "$suite image: $stage${count:+ ($count)}"
  done
}
