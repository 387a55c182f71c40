#!/usr/bin/env bash
# deps.sh: install the Debian packages mgrok builds and tests with, if missing.
set -eu
PKGS="build-essential pkg-config clang libevent-dev libssl-dev libyaml-dev
      libhttp-parser-dev zlib1g-dev nettle-dev libcmocka-dev python3 python3-pytest python3-pytest-xdist
      openssl curl socat iperf3 iproute2 procps faketime systemd
      golang-go golang-github-xtaci-smux-dev libjansson-dev
      prometheus chromium chromium-driver python3-selenium haproxy nginx-light
      tinyproxy dante-server
      libhiredis-dev redis-server"
missing=()
for p in $PKGS; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps.sh: installing ${missing[*]}" >&2
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
