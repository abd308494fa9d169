#!/usr/bin/env bash
# Build (or reuse) the lab's "fresh Raspberry Pi OS Lite" root filesystem.
#
# Usage: build-rootfs.sh CACHE_DIR
# Prints the path of the finished, pristine root filesystem on stdout. The lab copies
# it for every run, so each run starts from a freshly flashed "Pi". The rootfs is cached
# under a key made of this script's content, so editing the package list rebuilds it.
set -euo pipefail

cache_dir=${1:?usage: build-rootfs.sh CACHE_DIR}
here=$(cd "$(dirname "$0")" && pwd)

# What Raspberry Pi OS Lite (bookworm) has that matters to the playbook: systemd as init,
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
  nftables iproute2 iputils-ping procps ca-certificates less
)

suite=bookworm
# The mirror this machine's apt already uses (deb822 or one-line sources).
mirror=$(grep -rhoE '^(URIs:[[:space:]]*|deb[[:space:]]+)(\[[^]]*\][[:space:]]+)?https?://[^[:space:]]*debian/?([[:space:]]|$)' \
  /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
  | grep -oE 'https?://[^[:space:]]+' | grep -v -- '-security' | head -n1 || true)
mirror=${mirror:-http://deb.debian.org/debian}

key=$( { cat "$0"; echo "$mirror"; } | sha256sum | cut -c1-12)
rootfs="$cache_dir/rootfs-$suite-$key"
keyfile="$cache_dir/id_ed25519"

mkdir -p "$cache_dir"
if [[ ! -f "$keyfile" ]]; then
  ssh-keygen -q -t ed25519 -N '' -C pvs-bridge-lab -f "$keyfile" >&2
fi

if [[ -f "$rootfs/.lab-complete" ]]; then
  echo "$rootfs"
  exit 0
fi

# Old cache entries (another key) are dropped: one rootfs is ~500 MB.
find "$cache_dir" -maxdepth 1 -name "rootfs-*" -type d ! -path "$rootfs" -exec rm -rf {} + >&2
rm -rf "$rootfs" "$rootfs.tmp"
tmp="$rootfs.tmp"
echo "lab: building the $suite root filesystem from $mirror (cached afterwards)" >&2
include=$(IFS=,; echo "${packages[*]}")
debootstrap --variant=minbase --include="$include" "$suite" "$tmp" "$mirror" >&2

# --- what the Raspberry Pi Imager's settings produce on first boot ---------------------
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
touch "$tmp/.lab-complete"
mv "$tmp" "$rootfs"
echo "$rootfs"
