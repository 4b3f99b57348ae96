#!/usr/bin/env bash
# Install the Debian packages relayguard's tests and lab need, when running as root and they
# are missing. Without root, say what is missing and carry on: the tests that need them skip
# outside CI with an install hint, and fail in CI.
set -euo pipefail
packages=(postfix nmap swaks openssh-server iproute2 chromium nsd)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "relayguard: not root; missing Debian packages: ${missing[*]} (tests needing them skip)" >&2
  exit 0
fi
echo "relayguard: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Postfix must not configure (or start) a system mail server: the tests run their own instances.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# NSD serves the DNS tests' zones itself (tests/support/nsd.py): no system name server.
if [[ " ${missing[*]} " == *" nsd "* ]] && command -v systemctl >/dev/null; then
  systemctl disable --now nsd >/dev/null 2>&1 || true
fi
