#!/usr/bin/env bash
# Installs every Debian 12 package cityledger needs to build, test and run.
# Idempotent: does nothing (and needs no network) when everything is already installed.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  librocksdb-dev libboost-dev libboost-program-options-dev
  nlohmann-json3-dev libsodium-dev libssl-dev doctest-dev libcli11-dev
  clang libclang-rt-14-dev
  curl python3 procps
  libpq-dev postgresql-15 gnuplot-nox  # bench rush compares with PostgreSQL; plots of bench figures
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
