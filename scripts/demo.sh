#!/usr/bin/env bash
# `make demo`: bring up the lab (a fresh, vulnerable fleet), audit it from an untrusted vantage
# point with the relay probe, leave the report under reports/latest and print its summary,
# then take the lab down. The change-window playbook (secure-relay.yml) joins this demo when it
# lands; until then the demo is an audit.
set -euo pipefail
cd "$(dirname "$0")/.."
rg=.venv/bin/relayguard
cleanup() { "$rg" lab down >/dev/null 2>&1 || true; }
trap cleanup EXIT

if [ "$(id -u)" -ne 0 ]; then
  echo "demo: not root — the real Postfix hosts are left out and the twins listen on port 2525"
fi
"$rg" lab down >/dev/null 2>&1 || true
up_json=$("$rg" lab up --json --tarpit 0)
mapfile -t targets < <(printf '%s' "$up_json" | .venv/bin/python -c \
  'import json,sys; [print(h["smtp"]) for h in json.load(sys.stdin)["hosts"]]')
source_ip=$(printf '%s' "$up_json" | .venv/bin/python -c \
  'import json,sys; print(json.load(sys.stdin)["untrusted_client"])')
echo "demo: lab up with ${#targets[@]} hosts; probing from untrusted ${source_ip}"

status=0
"$rg" probe --source-address "$source_ip" --local-domain corp.example --timeout 10 \
  --report reports "${targets[@]}" || status=$?
echo
"$rg" report reports/latest --format markdown | sed -n '1,40p'
echo
echo "demo: report written to $(readlink -f reports/latest)/ (report.json, .xml, .md, .html)"
echo "demo: probe exit status ${status} (0 all closed, 2 open relays found, 3 inconclusive)"
