# shellcheck shell=bash
# Command-line tools the repository's checks need but does not build, fetched from Debian's
# archive and unpacked under tools/ (git-ignored). Source this file, then call the function.
#
#   ensure_prom_tools    promtool, amtool (and the prometheus server binary, not started)
#   ensure_python_yaml   a python3 that can `import yaml` (for checks that read YAML)
#
# Nothing is installed system-wide and no daemon is started: the .deb files are downloaded
# with `apt-get download` and unpacked with `dpkg -x`. Calling it again is cheap: it does
# nothing when the binaries are already unpacked.

# Repository root: the directory above scripts/lib/.
TOOLS_ROOT_DIR=${TOOLS_ROOT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}

_tools_log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }

# Downloads the named Debian packages into $1 (a directory); runs `apt-get update` once and
# tries again only when the first download fails (a fresh machine has no package lists).
_tools_apt_download() { # dir package...
  local dir=$1
  shift
  (cd "$dir" && apt-get download -q "$@" >/dev/null 2>&1) && return 0
  _tools_log "apt-get download failed; running apt-get update once"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  (cd "$dir" && apt-get download -q "$@" >/dev/null)
}

# Makes promtool and amtool runnable and exports:
#   PROMTOOL    tools/prometheus/root/usr/bin/promtool
#   AMTOOL      tools/prometheus/root/usr/bin/amtool
#   PROMETHEUS  tools/prometheus/root/usr/bin/prometheus (server binary, for later use)
#   ZONEINFO    only when the system has no time zone data: amtool resolves
#               `location: Asia/Tokyo` in time intervals through it.
ensure_prom_tools() {
  local base="$TOOLS_ROOT_DIR/tools/prometheus"
  local root="$base/root"
  PROMTOOL="$root/usr/bin/promtool"
  AMTOOL="$root/usr/bin/amtool"
  PROMETHEUS="$root/usr/bin/prometheus"
  export PROMTOOL AMTOOL PROMETHEUS

  # A binary that runs is there; one that does not (absent, or cut short by an interrupted
  # unpack) is fetched again.
  local packages=()
  { "$PROMTOOL" --version >/dev/null 2>&1 && [ -x "$PROMETHEUS" ]; } || packages+=(prometheus)
  "$AMTOOL" --version >/dev/null 2>&1 || packages+=(prometheus-alertmanager)
  # Go reads time zones from /usr/share/zoneinfo; without it, use an unpacked tzdata.
  if [ ! -e /usr/share/zoneinfo/Asia/Tokyo ] && [ ! -e "$root/usr/share/zoneinfo/Asia/Tokyo" ]; then
    packages+=(tzdata)
  fi

  if [ ${#packages[@]} -gt 0 ]; then
    _tools_log "fetching ${packages[*]} into tools/prometheus (unpacked, not installed)"
    mkdir -p "$root"
    local tmp
    tmp=$(mktemp -d)
    # apt's download sandbox user must be able to write the target directory.
    chmod 0777 "$tmp"
    if ! _tools_apt_download "$tmp" "${packages[@]}"; then
      rm -rf "$tmp"
      echo "ensure_prom_tools: could not download ${packages[*]}" >&2
      return 1
    fi
    local deb
    for deb in "$tmp"/*.deb; do
      dpkg -x "$deb" "$root" || { rm -rf "$tmp"; echo "ensure_prom_tools: dpkg -x $deb failed" >&2; return 1; }
    done
    rm -rf "$tmp"
  fi

  if [ ! -e /usr/share/zoneinfo/Asia/Tokyo ]; then
    export ZONEINFO="$root/usr/share/zoneinfo"
  fi

  local bin
  for bin in "$PROMTOOL" "$AMTOOL" "$PROMETHEUS"; do
    if [ ! -x "$bin" ]; then
      echo "ensure_prom_tools: $bin is missing after unpacking" >&2
      return 1
    fi
  done
}

# Sets TOOLS_PYTHON to a python3 that can import yaml: the one on PATH or Debian's when either
# has PyYAML, else Debian's python3 with python3-yaml unpacked under tools/python-yaml
# (PYTHONPATH exported).
ensure_python_yaml() {
  local candidate
  for candidate in python3 /usr/bin/python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import yaml; yaml.safe_load("a: 1")' >/dev/null 2>&1; then
      TOOLS_PYTHON=$(command -v "$candidate")
      export TOOLS_PYTHON
      return 0
    fi
  done
  local root="$TOOLS_ROOT_DIR/tools/python-yaml/root"
  local site="$root/usr/lib/python3/dist-packages"
  if [ ! -d "$site/yaml" ]; then
    _tools_log "fetching python3-yaml into tools/python-yaml (unpacked, not installed)"
    mkdir -p "$root"
    local tmp
    tmp=$(mktemp -d)
    chmod 0777 "$tmp"
    if ! _tools_apt_download "$tmp" python3-yaml; then
      rm -rf "$tmp"
      echo "ensure_python_yaml: could not download python3-yaml" >&2
      return 1
    fi
    dpkg -x "$tmp"/python3-yaml_*.deb "$root"
    rm -rf "$tmp"
  fi
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  TOOLS_PYTHON=/usr/bin/python3
  export TOOLS_PYTHON
  "$TOOLS_PYTHON" -c 'import yaml; yaml.safe_load("a: 1")' || { echo "ensure_python_yaml: yaml still not importable" >&2; return 1; }
}

# Run directly (not sourced): fetch the tools and print where they are.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  ensure_prom_tools
  printf 'PROMTOOL=%s\nAMTOOL=%s\nPROMETHEUS=%s\n' "$PROMTOOL" "$AMTOOL" "$PROMETHEUS"
fi
