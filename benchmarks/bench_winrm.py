#!/usr/bin/env python3
"""WinRM round trips of one Exchange 2019 host against a lab twin: detect, and the whole
apply (relay change and security update), with wall time (docs/performance.md, "WinRM round
trips"). The twin counts HTTP requests and SOAP actions. Loopback only; run it in a network
namespace of its own (`unshare -n sh -c 'ip link set lo up && …'`). Usage:
  .venv/bin/python benchmarks/bench_winrm.py [--runs N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from exchange_remediation.roundtrips import SPEC, measure  # noqa: E402
from exchange_remediation.wirelab import wire_lab  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--first-address", default="127.0.33.1")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs = []
    for _ in range(args.runs):
        with wire_lab(SPEC, args.first_address) as lab, tempfile.TemporaryDirectory() as tmp:
            figures = measure(lab, Path(tmp))
        for phase in figures.values():
            result = phase.pop("result")
            failed = [result, result.get("relay") or {}, result.get("patch") or {}]
            assert not any(part.get("failed") for part in failed), result
        runs.append(figures)
        print(json.dumps(figures), flush=True)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
