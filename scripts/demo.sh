#!/usr/bin/env bash
# `make demo`: bring up the lab (a fresh, vulnerable fleet), close its open relays with
# secure-relay.yml (probe, detect, plan, apply in batches, verify, roll back, report) and install
# the updates the Exchange twins are behind on from the lab's packages (ex2019-compliant: relay
# closed, but CU15 without its updates; docs/exchange.md#patch-level), run it
# again in audit mode to show every host compliant with zero changes, print the report's
# summary and path, then take the lab down. Without root the lab has no Postfix, Exim or
# Sendmail hosts (they need port 25 and real servers) and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
rg=$bin/relayguard
export PATH="$PWD/$bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"
cleanup() { "$rg" lab down >/dev/null 2>&1 || true; }
trap cleanup EXIT

if [ "$(id -u)" -ne 0 ]; then
  echo "demo: not root — the lab leaves out its Postfix, Exim and Sendmail hosts; the Exchange twins listen on port 2525"
fi
"$rg" lab down >/dev/null 2>&1 || true
fleet_args=()
if [ -n "${DEMO_FLEET:-}" ]; then fleet_args=(--hosts "$DEMO_FLEET"); fi
up_json=$("$rg" lab up --json --tarpit 0 "${fleet_args[@]}")
printf '%s' "$up_json" | "$bin/python" -c '
import json, sys
up = json.load(sys.stdin)
hosts = up["hosts"]
print(f"demo: lab up with {len(hosts)} hosts:", ", ".join(h["name"] for h in hosts))
if up["left_out"]:
    print("demo: left out (need root):", ", ".join(map(str, up["left_out"])))'

# An Exchange 5.5 host on "Do not reroute" is reached over SMB, where relayguard cannot write
# the Routing tab (its storage is undocumented: docs/exchange.md). On a real server an admin
# switches it by hand in Exchange Administrator (KB Q169683); the demo does that step in the
# lab, says so, and lets secure-relay.yml do the rest.
printf '%s' "$up_json" | "$bin/python" -c '
import json, sys
from pathlib import Path
from relayguard.lab.exchange.profiles import ORG_DOMAIN
from relayguard.lab.exchange.state import RoutingEntry
from relayguard.lab.exchange.store import StateStore
for host in json.load(sys.stdin)["hosts"]:
    if host["profile"] != "sp2-noreroute":
        continue
    def by_hand(state):
        state.exchange55.Routing.RerouteIncoming = True
        state.exchange55.Routing.RoutingList = [RoutingEntry(Domain=ORG_DOMAIN, Action="Inbound")]
    StateStore(Path(".lab/state") / (host["name"] + ".json")).update(by_hand)
    print("demo: by hand on", host["name"], "(as in Exchange Administrator, KB Q169683):",
          "Reroute incoming SMTP mail on,", ORG_DOMAIN, "accepted as inbound")'

playbook=("$bin/ansible-playbook" -i .lab/inventory.yml -i inventory/lab secure-relay.yml)
# Every batch runs in the demo, so that one host that cannot be closed does not hide the rest
# (a change window keeps the defaults: a first batch of one host, relay_max_fail_percentage=0,
# stop at the first failure). Ansible stops anyway when every host of a batch fails.
echo
echo "demo: 1/2 ansible-playbook secure-relay.yml (enforce, batches of 50 % and 100 %)"
set +e
"${playbook[@]}" -e '{"relay_serial": ["50%", "100%"], "relay_max_fail_percentage": 100}' | sed -n '/Report \//p; /PLAY RECAP/,$p'
enforce=${PIPESTATUS[0]}
set -e
echo
echo "demo: 2/2 ansible-playbook secure-relay.yml -e relay_mode=audit (must change nothing)"
set +e
"${playbook[@]}" -e relay_mode=audit | sed -n '/Report \//p; /PLAY RECAP/,$p'
audit=${PIPESTATUS[0]}
set -e
echo
"$rg" report reports/latest --format markdown | sed -n '1,60p'
echo
echo "demo: report written to $(readlink -f reports/latest)/ (report.json, .xml, .md, .html, .sarif, .csv)"
echo "demo: enforce run exit status ${enforce}; audit run exit status ${audit} (0: every host compliant)"
exit "$audit"
