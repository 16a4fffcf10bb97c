# shellcheck shell=bash
# Tools for the deployment checks (Helm chart rendering, Kubernetes schema validation, checkov,
# promtool), installed under tools/ (git-ignored). Source this file, then call the function.
#
#   ensure_deploy_tools   a Python venv at tools/deploy-venv with the exact packages of
#                         scripts/lib/deploy/requirements.txt (every transitive dependency
#                         pinned by requirements.lock), plus promtool (ensure_prom_tools).
#
# Exports:
#   DEPLOY_PY   tools/deploy-venv/bin/python   (helm_python, kubernetes_validate, jsonschema, yaml)
#   CHECKOV     tools/deploy-venv/bin/checkov  (run it with --skip-download: no network needed)
#   PROMTOOL, AMTOOL, PROMETHEUS               (from ensure_prom_tools, scripts/lib/tools.sh)
#
# Nothing is installed system-wide. Calling it again is cheap: the venv keeps a stamp (a hash
# of both requirement files and the base interpreter's version) and pip runs only when the
# stamp differs or the venv no longer works (e.g. its base interpreter went away).

# shellcheck source=scripts/lib/tools.sh
source "$(dirname "${BASH_SOURCE[0]}")/tools.sh"

_deploy_requirements_dir() { printf '%s/scripts/lib/deploy' "$TOOLS_ROOT_DIR"; }

# A python3 (3.9 or newer) that can make a venv with pip: the one on PATH, else Debian's.
_deploy_base_python() {
  local candidate
  for candidate in python3 /usr/bin/python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys, venv, ensurepip; sys.exit(0 if sys.version_info >= (3, 9) else 1)' >/dev/null 2>&1; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

# The stamp: what the venv was built from. Any change rebuilds it.
_deploy_stamp() { # base-python
  local dir
  dir=$(_deploy_requirements_dir)
  {
    cat "$dir/requirements.txt" "$dir/requirements.lock"
    "$1" -c 'import sys; print(sys.version)'
  } | sha256sum | cut -d' ' -f1
}

# True when the venv at $1 was built from stamp $2 and still works.
_deploy_venv_ok() { # venv stamp
  [ -f "$1/.requirements-stamp" ] && [ "$(cat "$1/.requirements-stamp")" = "$2" ] &&
    [ -x "$1/bin/checkov" ] &&
    "$1/bin/python" -c 'import helm_python, kubernetes_validate, jsonschema, yaml' >/dev/null 2>&1
}

# (Re)builds the venv at $1 from the requirement files in $2, with base interpreter $3, and
# writes stamp $4 last, so an interrupted install is redone next time.
_deploy_venv_build() { # venv requirements-dir base-python stamp
  _tools_log "installing the deployment tools into tools/deploy-venv (pinned: scripts/lib/deploy/requirements.txt)"
  rm -rf "$1"
  "$3" -m venv "$1" || { echo "ensure_deploy_tools: could not create $1" >&2; return 1; }
  if ! "$1/bin/pip" install --quiet --disable-pip-version-check --no-input \
    -r "$2/requirements.txt" -c "$2/requirements.lock"; then
    echo "ensure_deploy_tools: pip install failed (see above); tools/deploy-venv left incomplete" >&2
    return 1
  fi
  "$1/bin/python" -c 'import helm_python, kubernetes_validate, jsonschema, yaml' ||
    { echo "ensure_deploy_tools: the venv cannot import its packages" >&2; return 1; }
  printf '%s\n' "$4" >"$1/.requirements-stamp"
}

ensure_deploy_tools() {
  local venv="$TOOLS_ROOT_DIR/tools/deploy-venv"
  local dir
  dir=$(_deploy_requirements_dir)
  local base
  if ! base=$(_deploy_base_python); then
    echo "ensure_deploy_tools: no python3 (>= 3.9, with venv and ensurepip) found" >&2
    return 1
  fi
  local want
  want=$(_deploy_stamp "$base")

  if ! _deploy_venv_ok "$venv" "$want"; then
    # Checks that run side by side must not build the same venv twice at once: the first
    # builds it under the lock, the others find it built.
    mkdir -p "$TOOLS_ROOT_DIR/tools"
    local lock_fd status=0
    exec {lock_fd}>"$TOOLS_ROOT_DIR/tools/.deploy-venv.lock"
    flock "$lock_fd"
    _deploy_venv_ok "$venv" "$want" || _deploy_venv_build "$venv" "$dir" "$base" "$want" || status=$?
    exec {lock_fd}>&-
    [ "$status" -eq 0 ] || return "$status"
  fi

  DEPLOY_PY="$venv/bin/python"
  CHECKOV="$venv/bin/checkov"
  export DEPLOY_PY CHECKOV

  ensure_prom_tools
}

# Run directly (not sourced): install the tools and print where they are.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  ensure_deploy_tools
  printf 'DEPLOY_PY=%s\nCHECKOV=%s\nPROMTOOL=%s\n' "$DEPLOY_PY" "$CHECKOV" "$PROMTOOL"
fi
