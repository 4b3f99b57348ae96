#!/usr/bin/env bash
# make sanity: `ansible-test sanity` on the collection as users get it — the artifact that
# `ansible-galaxy collection build` makes, installed into <tmp>/ansible_collections/relayguard/mail
# (ansible-test resolves the working directory, so the collections/ link into this repository
# will not do) — for every ansible-core release meta/runtime.yml claims, on each Python that
# release supports and this machine has (pyenv's /root/.pyenv/versions/* and the PATH).
#
#   scripts/sanity.sh                 all of SANITY_CORES (default: 2.17 2.18 2.19 2.21)
#   SANITY_CORES=2.19 scripts/sanity.sh
#   SANITY_FULL=1 scripts/sanity.sh   every test on every release (see below)
#
# Each release gets a cached venv .venv-sanity/<release> with ansible-core~=<release>.0 only;
# ansible-test installs each sanity test's pinned requirements itself (--requirements) into its
# own venvs under ~/.ansible/test/venv. No containers: everything runs on local interpreters.
#
# Budget (CI has 90 min for all of make test, pytest takes ~28): the full set of tests —
# pylint, pep8, yamllint, validate-modules, ansible-doc, the code-smell tests, ... — runs on
# the newest release; the older releases run validate-modules, import and compile, the tests
# whose verdict depends on the release (its module argument spec, its import sandbox, its
# Pythons). pylint on every release x Python was measured as too slow for the budget.
#
# Tests skipped by name, and why (only these):
#   pslint — needs PowerShell (pwsh) and PSScriptAnalyzer from the PowerShell Gallery, which
#            this machine cannot reach; the collection ships no .ps1 files anyway (the
#            Exchange scripts are templates inside the relayguard engine, linted by its tests).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
read -r -a CORES <<<"${SANITY_CORES:-2.17 2.18 2.19 2.21}"
NEWEST=${CORES[${#CORES[@]}-1]}
CACHE=$ROOT/.venv-sanity
LOGS=$CACHE/logs
PYENV_VERSIONS=${PYENV_ROOT:-$HOME/.pyenv}/versions
SKIP=(--skip-test pslint)
QUICK=(--test validate-modules --test import --test compile)
mkdir -p "$LOGS"

# An interpreter for Python X.Y that really runs (a pyenv shim for a version not selected
# with `pyenv global` does not), or nothing.
find_python() {
  local v=$1 p
  for p in "$PYENV_VERSIONS"/"$v".*/bin/python"$v"; do
    [ -x "$p" ] && { echo "$p"; return 0; }
  done
  p=$(command -v "python$v" 2>/dev/null) && "$p" -c '' 2>/dev/null && echo "$p"
  return 0
}

# The Pythons ansible-test looks up as pythonX.Y on PATH: put the real ones first.
path=""
for v in 3.7 3.8 3.9 3.10 3.11 3.12 3.13 3.14; do
  p=$(find_python "$v")
  [ -n "$p" ] && path="$path$(dirname "$p"):"
done
export PATH="$path$PATH"

# The Python that runs ansible-test itself: one of the release's controller Pythons.
controller_python() {
  local candidates v p
  case $1 in
    2.17) candidates="3.11 3.12 3.10" ;;
    2.18 | 2.19) candidates="3.11 3.12 3.13" ;;
    *) candidates="3.13 3.12 3.14" ;;
  esac
  for v in $candidates; do
    p=$(find_python "$v")
    [ -n "$p" ] && { echo "$p"; return 0; }
  done
  return 1
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

galaxy=$ROOT/.venv/bin/ansible-galaxy
[ -x "$galaxy" ] || galaxy=ansible-galaxy
"$galaxy" collection build --output-path "$work/dist" >/dev/null
tarball=$(echo "$work"/dist/relayguard-mail-*.tar.gz)

failed=()
summary=()
start_all=$SECONDS
for core in "${CORES[@]}"; do
  start=$SECONDS
  venv=$CACHE/$core
  if [ ! -f "$venv/.complete" ]; then
    py=$(controller_python "$core") || { echo "sanity: no controller Python for $core" >&2; exit 1; }
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "ansible-core~=$core.0"
    touch "$venv/.complete"
  fi
  # ansible-test bootstraps pip in its venvs with a get-pip.py from a host this machine cannot
  # reach; it uses a cached copy when there is one: put our stand-in there (see the script).
  for pv in $(grep -ho "pip='[0-9.]*'" "$venv"/lib/python3*/site-packages/ansible_test/_internal/python_requirements.py | tr -dc '0-9.\n'); do
    cached=$HOME/.ansible/test/cache/get_pip_${pv//./_}.py
    [ -f "$cached" ] || { mkdir -p "$(dirname "$cached")" && cp scripts/sanity-get-pip.py "$cached"; }
  done

  # Install from an empty directory: this repository's ansible.cfg lists collections/, where
  # relayguard.mail already "is", and the install would then do nothing.
  mkdir -p "$work/$core"
  (cd "$work" && "$venv/bin/ansible-galaxy" collection install --offline -p "$work/$core" "$tarball" >/dev/null)
  dest=$work/$core/ansible_collections/relayguard/mail
  # tests/ is not in the artifact (build_ignore); ansible-test reads its config and ignores there.
  mkdir -p "$dest/tests"
  cp tests/config.yml "$dest/tests/"
  [ -d tests/sanity ] && cp -r tests/sanity "$dest/tests/"

  if [ "$core" = "$NEWEST" ] || [ -n "${SANITY_FULL:-}" ]; then tests=("${SKIP[@]}"); scope=full; else tests=("${QUICK[@]}"); scope=quick; fi
  log=$LOGS/$core.log
  echo "sanity: ansible-core $("$venv/bin/python" -c 'import ansible.release as r; print(r.__version__)') ($scope) ..."
  if (cd "$dest" && "$venv/bin/ansible-test" sanity --requirements --color no "${tests[@]}") >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
    failed+=("$core")
    grep -E '^(ERROR|FATAL):|^[a-z-]+ --python' "$log" | sed "s/^/  [$core] /" || true
  fi
  summary+=("$core $scope $result $((SECONDS - start))s (log: ${log#"$ROOT"/})")
done

printf 'sanity: %s\n' "${summary[@]}"
echo "sanity: total $((SECONDS - start_all))s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "sanity: FAILED on ansible-core ${failed[*]}" >&2
  exit 1
fi
