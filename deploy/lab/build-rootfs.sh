#!/usr/bin/env bash
# Build (or reuse) the lab's "fresh Raspberry Pi OS Lite" root filesystem.
#
# Usage: build-rootfs.sh SUITE CACHE_DIR
# SUITE is the Debian release the Raspberry Pi OS image is based on: bookworm (12) or
# trixie (13). Prints the path of the finished, pristine root filesystem on stdout. The
# lab copies it for every run, so each run starts from a freshly flashed "Pi". The rootfs
# is cached per suite under a key made of this script's content, so editing the package
# list or the first-boot settings (customize) rebuilds it. While debootstrap runs, a progress line goes to file descriptor 3
# (when open) every 10 s; debootstrap's own output goes to stderr.
set -euo pipefail

suite=${1:?usage: build-rootfs.sh SUITE CACHE_DIR}
cache_dir=${2:?usage: build-rootfs.sh SUITE CACHE_DIR}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=deploy/lab/progress.sh
source "$here/progress.sh"

# What Raspberry Pi OS Lite (bookworm or trixie) has that matters to the playbook: systemd as init,
# NetworkManager, OpenSSH, sudo, python3 (with python3-apt, which Ansible's apt module uses),
# avahi (mDNS) and systemd-timesyncd. The packages the roles install (python3-venv,
# nftables) are pre-seeded too: the lab's "Pi" has no route to a package mirror, while a
# real Pi reaches one through the home LAN; with them present the roles' apt step finds
# nothing missing, exactly as on a second run on a real Pi.
packages=(
  systemd systemd-sysv dbus libpam-systemd
  network-manager openssh-server sudo
  python3 python3-apt python3-venv
  avahi-daemon libnss-mdns systemd-timesyncd
  nftables iproute2 iputils-ping procps ca-certificates less git make
)
# The mirror this machine's apt already uses (deb822 or one-line sources).
mirror=$(grep -rhoE '^(URIs:[[:space:]]*|deb[[:space:]]+)(\[[^]]*\][[:space:]]+)?https?://[^[:space:]]*debian/?([[:space:]]|$)' \
  /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
  | grep -oE 'https?://[^[:space:]]+' | grep -v -- '-security' | head -n1 || true)
mirror=${mirror:-http://deb.debian.org/debian}

# --- what the Raspberry Pi Imager's settings produce on first boot ---------------------
customize() {
  local tmp=$1
  echo raspberrypi > "$tmp/etc/hostname"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
    > "$tmp/etc/hosts"
  : > "$tmp/etc/machine-id"   # generated on first boot, as on a flashed card
  chroot "$tmp" useradd --create-home --uid 1000 --shell /bin/bash --groups sudo pi
  chroot "$tmp" passwd --lock root >/dev/null
  echo 'pi ALL=(ALL) NOPASSWD: ALL' > "$tmp/etc/sudoers.d/010_pi-nopasswd"
  chmod 0440 "$tmp/etc/sudoers.d/010_pi-nopasswd"
  install -d -m 0700 -o 1000 -g 1000 "$tmp/home/pi/.ssh"
  install -m 0600 -o 1000 -g 1000 "$keyfile.pub" "$tmp/home/pi/.ssh/authorized_keys"
  # The imager writes a NetworkManager profile for the Wi-Fi it was given. The lab's
  # home-LAN link is a veth ("eth1"), so its profile is an Ethernet one, but with Wi-Fi's
  # route metric (600): like on a real Pi, an unprotected wired DHCP lease from the PVS
  # (metric 100) would win the default route. eth0, the PVS side, has no profile: NM's
  # automatic "Wired connection 1" takes the PVS's DHCP offer, gateway and DNS included.
  cat > "$tmp/etc/NetworkManager/system-connections/preconfigured.nmconnection" <<'NM'
[connection]
id=preconfigured
type=ethernet
interface-name=eth1
autoconnect=true

[ethernet]

[ipv4]
method=auto
route-metric=600

[ipv6]
method=auto
route-metric=600
NM
  chmod 0600 "$tmp/etc/NetworkManager/system-connections/preconfigured.nmconnection"
  # ssh host keys are made by openssh-server's postinst; the console getty is useless here.
  chroot "$tmp" systemctl mask console-getty.service >/dev/null 2>&1 || true
  chroot "$tmp" apt-get clean
}

keyfile="$cache_dir/id_ed25519"
mkdir -p "$cache_dir"
if [[ ! -f "$keyfile" ]]; then
  ssh-keygen -q -t ed25519 -N '' -C pvs-bridge-lab -f "$keyfile" >&2
fi
key=$( { declare -p packages; declare -f customize; echo "$mirror $suite"; cat "$keyfile.pub"; } |
  sha256sum | cut -c1-12)
rootfs="$cache_dir/rootfs-$suite-$key"

if [[ -f "$rootfs/.lab-complete" ]]; then
  echo "$rootfs"
  exit 0
fi

# unmount_under DIR: what debootstrap (or chroot) left mounted below DIR when it was killed
# (its /proc, /sys): rm -rf must never walk into those.
unmount_under() {
  local dir mounts
  dir=$(realpath -m "$1")
  mounts=$(awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r)
  for mount in $mounts; do umount -l "$mount" 2>/dev/null || true; done
}
remove() { for dir in "$@"; do unmount_under "$dir"; rm -rf "$dir"; done; }

# Old cache entries of this suite (another key) are dropped: one rootfs is ~500 MB.
for old in "$cache_dir"/rootfs-"$suite"-*; do
  [[ -e $old && $old != "$rootfs" ]] && remove "$old"
done
tmp="$rootfs.tmp"
remove "$rootfs" "$tmp"
rm -f "$tmp.log"
# An interrupted build leaves nothing behind (and nothing mounted).
trap 'exit 130' INT TERM
trap '[[ -n ${debootstrap_pid:-} ]] && kill -- "-$debootstrap_pid" 2>/dev/null; wait; remove "$tmp"; rm -f "$tmp.log"' EXIT
echo "lab: building the $suite root filesystem from $mirror (cached afterwards)" >&2
include=$(IFS=,; echo "${packages[*]}")
# In its own session, so that an interrupted build can stop all of debootstrap at once.
setsid debootstrap --variant=minbase --include="$include" "$suite" "$tmp" "$mirror" >"$tmp.log" 2>&1 &
debootstrap_pid=$!
watch_debootstrap "$suite" "$debootstrap_pid" "$tmp.log" "$tmp"
wait "$debootstrap_pid" || { cat "$tmp.log" >&2; exit 1; }
cat "$tmp.log" >&2
rm -f "$tmp.log"

customize "$tmp"
touch "$tmp/.lab-complete"
unmount_under "$tmp"
mv "$tmp" "$rootfs"
trap - EXIT
echo "$rootfs"
