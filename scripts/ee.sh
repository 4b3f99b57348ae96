#!/usr/bin/env bash
# make ee: stage the release artifacts for the execution environment and create its build
# context with ansible-builder (no container engine needed):
#   dist/ee/relayguard-mail.tar.gz                      the collection (ansible-galaxy build)
#   dist/ee/wheels/relayguard-<version>-py3-none-any.whl   the engine (built from pyproject.toml)
#   context/                                            Containerfile + _build/
# Then: podman build -f context/Containerfile -t relayguard-ee context/
# Usage: scripts/ee.sh [CONTEXT_DIR]   (default: context)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
context=${1:-context}
rm -rf dist/ee
mkdir -p dist/ee/wheels
"$BIN/ansible-galaxy" collection build --force --output-path dist >/dev/null
version=$("$BIN/python" -c 'import yaml; print(yaml.safe_load(open("galaxy.yml"))["version"])')
cp "dist/relayguard-mail-$version.tar.gz" dist/ee/relayguard-mail.tar.gz
# The engine's wheel: only the package itself; its dependencies come from the index in the build.
"$BIN/python" -m pip wheel -q --disable-pip-version-check --no-deps \
  -w dist/ee/wheels . >/dev/null
"$BIN/ansible-builder" create -f execution-environment.yml -c "$context" \
  --output-filename Containerfile >/dev/null
echo "ee: $context/Containerfile (collection $version, $(ls dist/ee/wheels))"
