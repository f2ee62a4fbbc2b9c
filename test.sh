#!/usr/bin/env bash
# Sets up (see setup.sh), then runs the linters, the type checker and the test suite.
# Playback tests play into a PulseAudio null sink, which keeps real time; they run again
# under CPython 3.13 when one is installed (pyenv), since simpleaudio crashed there.
set -euo pipefail
cd "$(dirname "$0")"

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
test_need=()
command -v pulseaudio >/dev/null 2>&1 || test_need+=(pulseaudio)
command -v parec >/dev/null 2>&1 || test_need+=(pulseaudio-utils)
ls /usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so >/dev/null 2>&1 || test_need+=(libasound2-plugins)
# The editor tests drive the real yaml-language-server (tests/editor) and the share page's
# tests run axe-core inside the page (tests/browser): npm packages, pinned by their locks.
command -v node >/dev/null 2>&1 || test_need+=(nodejs)
command -v npm >/dev/null 2>&1 || test_need+=(npm)
# The share page's tests drive Debian's chromium (Playwright, with its executable_path).
command -v chromium >/dev/null 2>&1 || test_need+=(chromium)
# Playwright's own node (its driver) links libatomic, which a minimal Debian lacks.
/sbin/ldconfig -p 2>/dev/null | grep -q 'libatomic\.so\.1' || test_need+=(libatomic1)
extras=dev
if command -v gcc >/dev/null 2>&1 && python3 -c 'import sys; sys.exit(sys.version_info >= (3, 12))'; then
  # Where a compiler exists, the simpleaudio backend is built and tested too.
  [ -e /usr/include/alsa/asoundlib.h ] || test_need+=(libasound2-dev)
  extras=dev,simpleaudio
fi
if [ ${#test_need[@]} -gt 0 ]; then
  echo "test: installing test packages: ${test_need[*]}" >&2
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${test_need[@]}" >/dev/null
fi

EXTRAS=$extras ./setup.sh
# Installed as the lock pins it, again only when the lock has changed since.
for npm_folder in tests/editor tests/browser; do
  if [ ! $npm_folder/node_modules/.package-lock.json -nt $npm_folder/package-lock.json ]; then
    (cd $npm_folder && npm ci --no-audit --no-fund --silent)
  fi
done
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
if [ $# -eq 0 ]; then
  # The benchmark is never part of the suite; run once at its smallest size, it proves the
  # command works (its numbers on a shared CI machine mean little).
  .venv/bin/python bench/compare.py --minutes 10
fi

# The playback tests and those that fork worker processes again under CPython 3.13, where
# one is installed (pydub needs audioop-lts there; a pool that ends broken waits for every
# worker; and it warns, here an error, when a process with threads forks).
py313=""
for candidate in "$(command -v python3.13 || true)" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3.13; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c 'import sys' >/dev/null 2>&1; then
    py313=$candidate
    break
  fi
done
if [ -n "$py313" ] && [ $# -eq 0 ]; then
  echo "test: playback tests under $("$py313" --version)" >&2
  [ -x .venv-3.13/bin/python ] || "$py313" -m venv .venv-3.13
  .venv-3.13/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv-3.13/bin/python -m pip install -q -e '.[dev]'
  .venv-3.13/bin/python -m pytest -p no:cacheprovider tests/test_playback.py tests/test_cache.py \
    tests/test_forking.py tests/test_sound.py tests/test_clients.py tests/test_cluster.py \
    -k 'not bundled_session_exports'
elif [ $# -eq 0 ]; then
  echo "test: no CPython 3.13 here; playback tests ran under $(.venv/bin/python --version) only" >&2
fi
