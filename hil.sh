#!/usr/bin/env bash
# tcp-hil quickstart: installs what it needs on a fresh Debian/Ubuntu machine (as root), then
#   ./hil.sh run    -- the main job on the default lab (virtual twin in network namespaces)
#   ./hil.sh test   -- the whole test suite (unit + integration against real Linux stacks)
#   ./hil.sh <args> -- any other `hil` command, e.g. ./hil.sh stack serve --help
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(python3 python3-venv python3-dev gcc libc6-dev dpkg-dev tshark iproute2 iputils-ping socat netcat-openbsd iperf procps ethtool chromium)

need_apt() {
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || return 0
  done
  return 1
}

if [ "$(id -u)" != 0 ]; then
  echo "hil.sh: run as root (network namespaces, TAP devices and apt need it)" >&2
  exit 1
fi

if need_apt; then
  echo "hil.sh: installing system packages: ${APT_PACKAGES[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
fi

# Python >= 3.11: the first interpreter on PATH that qualifies.
PY=""
for cand in python3 python3.13 python3.12 python3.11; do
  if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    PY=$cand; break
  fi
done
[ -n "$PY" ] || { echo "hil.sh: need Python >= 3.11" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "hil.sh: installing Python dependencies into .venv (log: .venv/install.log)" >&2
  if ! { .venv/bin/python -m pip install --upgrade pip && .venv/bin/python -m pip install -e '.[test,lint]'; } \
      >.venv/install.log 2>&1; then
    tail -30 .venv/install.log >&2
    exit 1
  fi
  touch .venv/.installed
fi

cmd=${1:-run}
shift || true
case "$cmd" in
  test) exec .venv/bin/python -m pytest -q "$@" ;;
  *)    exec .venv/bin/hil "$cmd" "$@" ;;
esac
