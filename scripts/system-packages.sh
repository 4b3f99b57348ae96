#!/usr/bin/env bash
# Install the Debian packages relayguard's tests and lab need, when running as root and they
# are missing. Without root, say what is missing and carry on: the tests that need them skip
# outside CI with an install hint, and fail in CI.
#
# Exim and Sendmail run beside Postfix: Debian's MTAs conflict (one mail-transport-agent is
# installed at a time), so their packages are downloaded and unpacked (dpkg -x) into the
# project's .mta/ folder instead of installed; only their shared libraries (and m4, which
# sendmail-cf needs) are installed normally. The lab runs each with its own configuration
# and spool (src/relayguard/lab/exim, src/relayguard/lab/sendmail).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
packages=(postfix nmap swaks openssh-server iproute2 chromium nsd smbclient samba-common-bin
  # Cyrus SASL for the lab's AUTH-offering Postfix instances: saslpasswd2, the PLAIN/LOGIN
  # mechanisms and the sasldb auxprop plugin
  sasl2-bin libsasl2-modules libsasl2-modules-db
  # shared libraries and tools of the unpacked exim4-daemon-light and sendmail-bin
  m4 libidn12 libgnutls-dane0 libgnutls30 libpcre2-8-0 libdb5.3 libnsl2 libcrypt1
  libwrap0 liblockfile1 libldap-2.5-0 libsasl2-2 libssl3)
# Unpacked, not installed (see above), each MTA into its own tree (.mta/exim4, .mta/sendmail:
# both ship a usr/sbin/sendmail); the stamp names the exact set so a change re-unpacks.
exim_packages=(exim4-base exim4-config exim4-daemon-light)
sendmail_packages=(sendmail-base sendmail-bin sendmail-cf)
mta_dir="${RELAYGUARD_MTA_DIR:-$here/.mta}"
mta_stamp="$mta_dir/.unpacked"
mta_want="exim4: ${exim_packages[*]}; sendmail: ${sendmail_packages[*]}"

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
mta_ready=0
[ -f "$mta_stamp" ] && [ "$(cat "$mta_stamp")" = "$mta_want" ] && mta_ready=1
# Exim's binary looks its user up before it reads any configuration (exim4-base's postinst
# creates it); sendmail-base's postinst creates smmsp, sendmail's submission user.
for user in Debian-exim smmsp; do getent passwd "$user" >/dev/null || mta_ready=0; done
[ ${#missing[@]} -eq 0 ] && [ $mta_ready -eq 1 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  [ ${#missing[@]} -eq 0 ] ||
    echo "relayguard: not root; missing Debian packages: ${missing[*]} (tests needing them skip)" >&2
  [ $mta_ready -eq 1 ] ||
    echo "relayguard: not root; Exim and Sendmail not unpacked in $mta_dir (their tests skip)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
updated=0
if [ ${#missing[@]} -gt 0 ]; then
  echo "relayguard: installing ${missing[*]}" >&2
  # Postfix must not configure (or start) a system mail server: the tests run their own instances.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq
  updated=1
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # NSD serves the DNS tests' zones itself (tests/support/nsd.py): no system name server.
  if [[ " ${missing[*]} " == *" nsd "* ]] && command -v systemctl >/dev/null; then
    systemctl disable --now nsd >/dev/null 2>&1 || true
  fi
fi
if [ $mta_ready -eq 0 ]; then
  echo "relayguard: unpacking $mta_want into $mta_dir" >&2
  getent passwd Debian-exim >/dev/null ||
    adduser --system --group --quiet --allow-bad-names --home /var/spool/exim4 --no-create-home Debian-exim
  getent passwd smmsp >/dev/null ||
    adduser --system --group --quiet --home /var/lib/sendmail --no-create-home smmsp
  [ $updated -eq 1 ] || apt-get update -qq
  rm -rf "$mta_dir/debs" "$mta_dir/exim4" "$mta_dir/sendmail"
  mkdir -p "$mta_dir/debs" "$mta_dir/exim4" "$mta_dir/sendmail"
  # apt's sandbox user must be able to write the download folder.
  chmod 0755 "$mta_dir" "$mta_dir/exim4" "$mta_dir/sendmail"
  chown _apt "$mta_dir/debs" 2>/dev/null || true
  (cd "$mta_dir/debs" && apt-get download -qq "${exim_packages[@]}" "${sendmail_packages[@]}")
  for p in "${exim_packages[@]}"; do dpkg -x "$mta_dir"/debs/"$p"_*.deb "$mta_dir/exim4"; done
  for p in "${sendmail_packages[@]}"; do dpkg -x "$mta_dir"/debs/"$p"_*.deb "$mta_dir/sendmail"; done
  echo "$mta_want" >"$mta_stamp"
fi
