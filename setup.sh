#!/usr/bin/env bash
# Sets up everything guided-audio needs on a Debian-like machine, with no compiler:
# system packages (skipped when present), then a virtualenv in .venv with the project.
set -euo pipefail
cd "$(dirname "$0")"

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
apt_install() {
  echo "setup: installing system packages: $*" >&2
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
# The sound output (miniaudio, a wheel) loads libasound at run time: no headers, no gcc.
if ! /sbin/ldconfig -p 2>/dev/null | grep -q 'libasound\.so\.2'; then
  if apt-cache show libasound2t64 >/dev/null 2>&1; then need+=(libasound2t64); else need+=(libasound2); fi
fi
[ ${#need[@]} -eq 0 ] || apt_install "${need[@]}"

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[${EXTRAS:-dev}]"
echo "setup: ready (.venv/bin/guided-audio)" >&2
