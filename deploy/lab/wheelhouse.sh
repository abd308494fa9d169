#!/usr/bin/env bash
# The lab Pi's wheelhouse: everything pip needs on a Pi with no route to any index.
#
# Usage: wheelhouse.sh PYTHON_VERSION CACHE_DIR DEST
# DEST gets the bridge's own wheel, built from this checkout, and the x86_64 wheels for
# CPython PYTHON_VERSION (the Pi's: 3.11 on bookworm, 3.13 on trixie) of every dependency
# and of ansible-core (the on-Pi install runs Ansible on the Pi itself). The dependencies
# are downloaded once per Python version and dependency list, then cached in CACHE_DIR.
set -euo pipefail

pyver=${1:?usage: wheelhouse.sh PYTHON_VERSION CACHE_DIR DEST}
cache_dir=${2:?usage: wheelhouse.sh PYTHON_VERSION CACHE_DIR DEST}
dest=${3:?usage: wheelhouse.sh PYTHON_VERSION CACHE_DIR DEST}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
pip=("$repo/.venv/bin/pip" --disable-pip-version-check)

# ansible-core as install.sh and `make deploy` install it (ansible/controller-requirements.txt).
ansible_core=$(grep -hE '^ansible-core' "$repo/ansible/controller-requirements.txt" | head -n1)
ansible_core=${LAB_ANSIBLE_CORE:-${ansible_core:-ansible-core}}

mkdir -p "$dest" "$cache_dir"
SOURCE_DATE_EPOCH=315532800 "${pip[@]}" wheel --quiet --no-deps -w "$dest" "$repo"
wheel=$(ls "$dest"/pvs_bridge-*.whl)

# The cache key: the Python version and what is asked for (the bridge's dependencies as
# its wheel declares them, and ansible-core's pin).
requires=$(unzip -p "$wheel" '*.dist-info/METADATA' | grep -E '^Requires-Dist:' | sort)
key=$( { echo "$pyver $ansible_core"; echo "$requires"; } | sha256sum | cut -c1-12)
deps="$cache_dir/wheels-py$pyver-$key"
if [[ ! -f $deps/.complete ]]; then
  rm -rf "$deps" "$deps.tmp"
  for old in "$cache_dir"/wheels-py"$pyver"-*; do [[ -e $old ]] && rm -rf "$old"; done
  # Wheels only (the Pi builds nothing), for the Pi's CPython on x86_64 (the lab's Pi is a
  # container on this machine); glibc 2.36 (bookworm) and newer runs every tag listed.
  "${pip[@]}" download --quiet --only-binary=:all: --python-version "$pyver" \
    --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_34_x86_64 \
    -d "$deps.tmp" "$wheel" "$ansible_core"
  rm -f "$deps.tmp"/pvs_bridge-*.whl
  touch "$deps.tmp/.complete"
  mv "$deps.tmp" "$deps"
fi
cp "$deps"/*.whl "$dest"/
ls "$dest" | wc -l
