#!/usr/bin/env bash
# Installs what the test suite needs (Debian packages) and runs every test: the cargo
# suite (it starts its own redis-server on unix sockets, drives real bash, zsh and fish, and
# loads the dashboard in a headless Chromium, through chromedriver, that reaches nothing but
# 127.0.0.1), then the Debian package test (scripts/package-test.sh: builds the .deb,
# installs it on this machine, tries it as a fresh account and purges it; it needs root or
# sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(redis-server redis-tools zsh fish tmux shellcheck gcc util-linux faketime chromium
    chromium-driver openssl)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if ((${#missing[@]})); then
    sudo=()
    ((EUID == 0)) || sudo=(sudo)
    echo "Installing test dependencies: ${missing[*]}" >&2
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The browser is installed above: its tests must not skip for want of one.
CANHAZGPU_REQUIRE_BROWSER=1 cargo test --locked "$@"
bash scripts/package-test.sh
