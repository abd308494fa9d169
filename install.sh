#!/usr/bin/env bash
# Install pvs-bridge on THIS Raspberry Pi: no laptop, no Ansible knowledge needed.
#
#   git clone https://.../pvs-bridge && cd pvs-bridge && sudo ./install.sh
#
# It installs what it needs (python3-venv from apt if missing, Ansible in a virtualenv
# under /opt/pvs-bridge-deploy), detects the PVS-side interface (the one with a 172.27.x
# lease from the PVS, else the wired port eth0) and the home-LAN side, asks only what it
# cannot detect (never without a terminal), keeps the answers in ONE file,
# /etc/pvs-bridge/settings.yml, and applies the same roles as `make deploy` (ansible/site.yml)
# to this machine. Run it again at any time (after `git pull`: the bridge is upgraded in
# place); it reads the settings file again. `sudo ./install.sh --undo` takes it all out.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
settings_dir=/etc/pvs-bridge
settings=$settings_dir/settings.yml
tools=/opt/pvs-bridge-deploy
venv=$tools/venv
requirements=$repo/ansible/controller-requirements.txt

usage() {
  cat <<USAGE
usage: sudo ./install.sh [options] [-- ansible-playbook options]

Installs pvs-bridge on this Pi (ansible/site.yml, applied locally). Settings are kept in
$settings: edit it and run this again. Every answer can be given as an option, and
without a terminal nothing is ever asked.

  --pvs-interface IF   the interface cabled to the PVS (default: the one with a
                       172.27.x lease, else eth0); saved in the settings file
  --hostname NAME      the Pi's host name, also NAME.local (default: pvs-bridge); saved
  --wheelhouse DIR     install Ansible and the bridge from the wheels in DIR, with no
                       index at all (for a Pi without Internet): DIR holds
                       ansible-core, pvs_bridge-*.whl and all their dependencies for
                       this Pi's Python (default: wheelhouse/ in this checkout, when
                       it holds wheels; else PyPI)
  --undo               remove the bridge and every change the install made
                       (ansible/undeploy.yml), then Ansible and the settings file
  --check              show what would change, change nothing (but install Ansible)
  -y, --yes            ask nothing (use what is detected, and the defaults)
  -h, --help           this text
USAGE
}

say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

pvs_interface= hostname_flag= wheelhouse= undo=false check=false yes=false
passthrough=()
while (($#)); do
  case $1 in
    --pvs-interface) pvs_interface=${2:?--pvs-interface needs an interface name}; shift 2 ;;
    --pvs-interface=*) pvs_interface=${1#*=}; shift ;;
    --hostname) hostname_flag=${2:?--hostname needs a name}; shift 2 ;;
    --hostname=*) hostname_flag=${1#*=}; shift ;;
    --wheelhouse) wheelhouse=${2:?--wheelhouse needs a directory}; shift 2 ;;
    --wheelhouse=*) wheelhouse=${1#*=}; shift ;;
    --undo) undo=true; shift ;;
    --check) check=true; shift ;;
    -y | --yes) yes=true; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; passthrough=("$@"); break ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done

[[ -z $hostname_flag || $hostname_flag =~ ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ ]] ||
  die "--hostname $hostname_flag: one DNS label (lower case, digits, dashes)"
[[ $(id -u) -eq 0 ]] || die "run it as root: sudo ./install.sh"
# A checkout carried to a Pi without Internet brings its wheels along in wheelhouse/.
if [[ -z $wheelhouse ]] && compgen -G "$repo/wheelhouse/*.whl" >/dev/null; then
  wheelhouse=$repo/wheelhouse
fi
if [[ -n $wheelhouse ]]; then
  [[ -d $wheelhouse ]] || die "--wheelhouse $wheelhouse: no such directory"
  wheelhouse=$(cd "$wheelhouse" && pwd)
fi
# Questions only with a terminal to answer them, and not with --yes.
interactive=false
[[ -t 0 && -t 1 && $yes == false ]] && interactive=true
export LC_ALL=C.UTF-8 # Ansible insists on a UTF-8 locale; a fresh Pi under sudo may have none
export ANSIBLE_CONFIG=$repo/ansible/ansible.cfg

ask() { # QUESTION DEFAULT: prints the answer (the default when nobody can answer)
  local answer=
  if $interactive; then
    read -r -p "$1 [$2]: " answer || true
  fi
  echo "${answer:-$2}"
}

# --- Python with venv, and Ansible in a virtualenv of its own --------------------------------
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
  die "needs Python 3.11 or later (Raspberry Pi OS bookworm or trixie)"
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  say "installing python3-venv"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; } >/dev/null ||
    die "could not install python3-venv with apt-get (no Internet?); install it, then run this again"
fi
stamp=$venv/.requirements-$( (cat "$requirements"; python3 --version) | sha256sum | cut -c1-12)
if [[ ! -f $stamp ]]; then
  say "installing Ansible into $venv${wheelhouse:+ (from $wheelhouse, no index)}"
  rm -rf "$venv"
  mkdir -p "$tools"
  python3 -m venv "$venv"
  pip=("$venv/bin/pip" install --quiet --disable-pip-version-check --no-input)
  [[ -n $wheelhouse ]] && pip+=(--no-index --find-links "$wheelhouse")
  "${pip[@]}" -r "$requirements" || die "could not install Ansible into $venv"
  touch "$stamp"
fi

playbook() { # PLAYBOOK [ansible-playbook args...]
  local book=$1
  shift
  local args=(-i "$repo/ansible/local.ini" "$repo/ansible/$book")
  [[ -f $settings ]] && args+=(-e "@$settings")
  args+=(-e "bridge_controller_build_dir=$tools/wheel")
  if [[ -n $wheelhouse ]]; then
    args+=(-e bridge_install_source=wheelhouse -e "bridge_wheelhouse_dir=$wheelhouse")
  else
    args+=(-e bridge_install_source=controller_wheel)
  fi
  $check && args+=(--check --diff)
  "$venv/bin/ansible-playbook" "${args[@]}" "$@" "${passthrough[@]}"
}

# --- undo ----------------------------------------------------------------------------------
if $undo; then
  if $interactive; then
    [[ $(ask "Remove pvs-bridge and restore this Pi's network, firewall and host name? (yes/no)" no) == yes ]] ||
      die "nothing changed"
  fi
  playbook undeploy.yml
  $check || { rm -rf "$tools"; say "undone: the Pi is as it was before the install"; }
  exit 0
fi

# --- the settings: detected once, kept in one file ------------------------------------------
# The PVS side: the interface holding a lease from the PVS (172.27.x), else the wired port.
leased=$(ip -4 -o addr show 2>/dev/null | awk '$4 ~ /^172\.27\./ { print $2; exit }')
wired=
for dev in /sys/class/net/*; do
  if [[ -e $dev/device && ! -e $dev/wireless && $(cat "$dev/type" 2>/dev/null) == 1 ]]; then
    wired+="${dev##*/} "
  fi
done
# The home-LAN side: the default route that is not the PVS's.
lan=$(ip -4 route show default 2>/dev/null | awk '$3 !~ /^172\.27\./ { for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }')

setting() { # KEY: its value in the settings file ("" when absent)
  [[ -f $settings ]] || return 0
  sed -nE "s/^$1:[[:space:]]*\"?([^\"#]*)\"?.*$/\1/p" "$settings" | head -n1 | sed 's/[[:space:]]*$//'
}
saved_pvs=$(setting network_pvs_interface)
saved_hostname=$(setting appliance_hostname)

if [[ -z $pvs_interface ]]; then
  if [[ -n $saved_pvs ]]; then
    pvs_interface=$saved_pvs
  elif [[ -n $leased ]]; then
    pvs_interface=$leased
  elif [[ -e /sys/class/net/eth0 && $wired == "eth0 " ]]; then
    pvs_interface=eth0
  else
    # No lease, and not exactly one wired port: the one thing worth asking.
    pvs_interface=$(ask "Interface cabled to the PVS (wired ones: ${wired:-none})" eth0)
  fi
fi
[[ $pvs_interface =~ ^[A-Za-z0-9_.:-]{1,15}$ ]] || die "not an interface name: $pvs_interface"
[[ -e /sys/class/net/$pvs_interface ]] ||
  say "note: $pvs_interface does not exist yet (a USB adapter not plugged in?); its profile waits for it"
[[ -n $lan && $lan == "$pvs_interface" ]] &&
  die "$pvs_interface carries the home-LAN default route; the PVS side must be another interface (--pvs-interface)"
hostname_value=${hostname_flag:-${saved_hostname:-pvs-bridge}}

say "PVS side: $pvs_interface${leased:+ (lease from the PVS on $leased)}; home LAN: ${lan:-?}; host name: $hostname_value"
say "settings: $settings"
if $interactive && [[ ! -f $settings ]]; then
  [[ $(ask "Provision this Pi as the PVS bridge now? (yes/no)" yes) == yes ]] || die "nothing changed"
fi

if $check && [[ ! -f $settings ]]; then
  # --check changes nothing on the Pi: the first settings go to a file that is thrown away.
  settings=$(mktemp)
  trap 'rm -f "$settings"' EXIT
  rm -f "$settings"
fi
if [[ ! -f $settings ]]; then
  install -d -m 0755 "$(dirname "$settings")"
  (umask 077 && cat >"$settings" <<SETTINGS
# pvs-bridge settings for this Pi: the one place for them. install.sh wrote this file on
# its first run and reads it on every run: edit it, then run \`sudo ./install.sh\` again.
# Root's alone (0600), so secrets may go here too. \`sudo ./install.sh --undo\` deletes it.
#
# Any variable of the roles may be set here (ansible/inventory.example.ini lists the
# common ones, each role's defaults/main.yml every one), and every key of the bridge's
# config.toml under bridge_config (deploy/config.example.toml documents them), e.g.
#   bridge_config:
#     cache: {refresh: 30}
#     server: {listen_tls: []}
#   bridge_secrets:
#     upstream: {password: "..."}
#     writes: {enabled: true, token: "a-long-random-string"}
#     mqtt: {url: "mqtt://user:password@broker:1883"}

# The interface cabled to the PVS (a USB Ethernet adapter is usually eth1).
network_pvs_interface: $pvs_interface
# Host name; the Pi also answers as <name>.local.
appliance_hostname: $hostname_value
SETTINGS
  )
else
  # Options given on this run replace the saved values; the rest of the file is kept.
  [[ $pvs_interface != "$saved_pvs" ]] &&
    sed -i -E "s/^network_pvs_interface:.*/network_pvs_interface: $pvs_interface/" "$settings"
  [[ $hostname_value != "$saved_hostname" ]] &&
    sed -i -E "s/^appliance_hostname:.*/appliance_hostname: $hostname_value/" "$settings"
  grep -q '^network_pvs_interface:' "$settings" || echo "network_pvs_interface: $pvs_interface" >>"$settings"
  grep -q '^appliance_hostname:' "$settings" || echo "appliance_hostname: $hostname_value" >>"$settings"
fi

playbook site.yml
if $check; then
  say "checked: nothing was changed"
else
  say "done: http://$hostname_value.local:8080/health"
fi
